"""Template filters: digests as people say them, kinds as labels."""
