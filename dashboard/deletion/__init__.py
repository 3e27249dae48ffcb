"""Deleting safely: untag, delete by digest, bulk untag, the audit of what was deleted, restore."""
