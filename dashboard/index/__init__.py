"""The index: what the dashboard knows of the whole registry, kept in its database.

store   writes (idempotent, safe across processes)
events  the registry's notifications in, the activity feed out
sync    the reconcile: catalog → tags → HEAD per tag → fetch what is unknown
queries what the pages read: tags paged and sorted, search, storage, activity
"""
