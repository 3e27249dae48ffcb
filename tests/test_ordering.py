"""dashboard.ordering: reading ?sort=&order=, the next-order links, tags by name (the database's
agreement with the Python key is in test_index_store)."""

from dashboard import ordering


def test_parse__an_unknown_column_or_order_falls_back_to_the_tables_default() -> None:
    assert ordering.STORAGE_REPOSITORIES.parse("bogus", "sideways") == ("total", "desc")
    assert ordering.STORAGE_TAGS.parse("", "") == ("unique", "desc")
    assert ordering.INDEXED_TAGS.parse("platform", "") == ("platform", "asc")
    assert ordering.LIVE_TAGS.parse("platform", "asc") == ("name", "asc")  # only the index sorts by platform


def test_following__the_current_column_turns_around__the_others_start_at_their_first_order() -> None:
    assert ordering.STORAGE_REPOSITORIES.following("name", "asc") == dict.fromkeys(
        ["name", "total", "unique", "shared", "reclaimable"], "desc")
    assert ordering.INDEXED_TAGS.next_orders("kind", "desc") == {
        "name_next": "desc", "created_next": "desc", "size_next": "desc", "platform_next": "asc", "kind_next": "asc",
        "image_next": "desc"}


def test_sort_by_name__names_that_are_not_versions_come_first_either_way() -> None:
    tags = ["1.10.0", "main", "1.9.0", "1.0.0-rc.1", "latest", "1.0.0", "v2"]
    assert ordering.sort_by_name(tags, str, descending=True) == [
        "latest", "main", "v2", "1.10.0", "1.9.0", "1.0.0", "1.0.0-rc.1"]
    assert ordering.sort_by_name(tags, str, descending=False) == [
        "latest", "main", "1.0.0-rc.1", "1.0.0", "1.9.0", "1.10.0", "v2"]
