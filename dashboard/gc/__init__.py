"""Garbage collection: the registry's own `garbage-collect`, previewed and run in the worker."""
