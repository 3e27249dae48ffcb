"""Browsing: the catalog, a repository's tags, a manifest, a blob (from the index, or live)."""
