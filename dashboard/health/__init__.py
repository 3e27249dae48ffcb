"""Is the registry healthy, and if not, what to do: checks, the page, JSON, liveness, /metrics."""
