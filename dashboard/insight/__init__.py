"""Search, storage and activity: what the registry holds and what happened to it, from the index."""
