"""registryui's Django app, split by feature; docs/architecture.md is the map."""
