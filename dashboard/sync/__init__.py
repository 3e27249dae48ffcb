"""The index's inputs as pages: the sync page (live progress, history) and the registry's events endpoint."""
