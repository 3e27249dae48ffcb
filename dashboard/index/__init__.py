"""The index: what the dashboard knows of the whole registry, kept in its database (the data layer).

store   writes (idempotent, safe across processes)
events  the registry's notifications in, the activity feed out
sync    the reconcile: catalog → tags → HEAD per tag → fetch what is unknown
The worker's tasks sit beside what they run: events.apply_events, sync.run_sync.

What pages read from it lives with the pages: browse.indexed, insight.search, insight.figures.
"""
