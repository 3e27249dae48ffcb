"""dashboard.ordering's tables and name order (the database key's agreement: test_index_store)."""

from dashboard.ordering import INDEXED_TAGS, LIVE_TAGS, STORAGE_REPOSITORIES, STORAGE_TAGS, sort_by_name


def test_parse__an_unknown_column_or_order_falls_back_to_the_tables_default() -> None:
    assert STORAGE_REPOSITORIES.parse("bogus", "sideways") == ("total", "desc")
    assert STORAGE_TAGS.parse("", "") == ("unique", "desc")
    assert INDEXED_TAGS.parse("platform", "") == ("platform", "asc")
    assert LIVE_TAGS.parse("platform", "asc") == ("name", "asc")  # only the index sorts by platform


def test_next_orders__the_current_column_turns_around__the_others_start_at_their_first_order() -> None:
    assert STORAGE_REPOSITORIES.following("name", "asc") == dict.fromkeys(STORAGE_REPOSITORIES.descending, "desc")
    assert INDEXED_TAGS.next_orders("kind", "desc") == {
        "name_next": "desc",
        "created_next": "desc",
        "size_next": "desc",
        "platform_next": "asc",
        "kind_next": "asc",
        "image_next": "desc",
    }


def test_sort_by_name__names_that_are_not_versions_come_first_either_way() -> None:
    tags = ["1.10.0", "main", "1.9.0", "1.0.0-rc.1", "latest", "1.0.0", "v2"]
    newest = ["latest", "main", "v2", "1.10.0", "1.9.0", "1.0.0", "1.0.0-rc.1"]
    assert sort_by_name(tags, str, descending=True) == newest
    assert sort_by_name(tags, str, descending=False) == newest[:2] + newest[:1:-1]
