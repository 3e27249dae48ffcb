"""manage.py commands: gc, sync, ensure_admin."""
