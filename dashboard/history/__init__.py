"""A tag's history of digests and the audited roll back to an earlier one."""
