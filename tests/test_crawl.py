"""testbed/crawl.py's text extraction, normalisation and comparison, on literal pages (no registry, no server)."""

from __future__ import annotations

import io
from datetime import date

from testbed.crawl import _safe, compare, extract_html, normalise

TODAY = date(2026, 12, 4)


def _page(body: str, title: str = "Repository") -> str:
    return (
        f"<!doctype html><html><head><title>{title} · registryui</title><script>var x = 1;</script>"
        f"<style>p {{ color: red }}</style></head><body><main>{body}</main></body></html>"
    )


def _snapshot(body: str, origin: str = "http://127.0.0.1:8001", day: str = "2026-12-04") -> dict:
    return {
        "origin": origin,
        "date": day,
        "pages": {
            "GET /r/acme/web/": {"status": 200, "content_type": "text/html; charset=utf-8", **extract_html(_page(body))}
        },
    }


def _compare(before: str, after: str, **after_snapshot: str) -> tuple[int, str]:
    out = io.StringIO()
    differ = compare(_snapshot(before), _snapshot(after, **after_snapshot), out)
    return differ, out.getvalue()


def test_extract__visible_text_leaves_out_script_style_and_template():
    page = extract_html(_page("<p>latest</p><template><p>hidden row</p></template><script>alert(1)</script>"))
    assert page["title"] == "Repository · registryui"
    assert page["text"] == ["latest"]


def test_extract__how_the_template_wraps_text_does_not_matter():
    wrapped = extract_html(_page("<p>\n  4 tags\n  <b>·</b>\n  3 distinct images\n</p><div>118.1 KB</div>"))
    one_line = extract_html(_page("<p>4 tags <b>·</b> 3 distinct images</p>  <div>118.1&nbsp;KB</div>"))
    assert wrapped["text"] == one_line["text"] == ["4 tags · 3 distinct images", "118.1 KB"]


def test_extract__links_htmx_gets_forms_and_assets():
    page = extract_html(
        '<html><head><link rel="stylesheet" href="/static/app.css"><script src="/static/app.js">'
        '</script></head><body><a href="/r/acme/web/?sort=name">Tag</a>'
        '<div hx-get="/?counts=1" hx-trigger="load"></div>'
        '<form method="post" action="/-/logout/"><button>Sign out</button></form></body></html>'
    )
    assert page["links"] == ["/r/acme/web/?sort=name"]
    assert page["hx"] == ["/?counts=1"]
    assert page["forms"] == ["POST /-/logout/"]
    assert page["assets"] == ["/static/app.css", "/static/app.js"]


def test_compare__relative_times_are_equal():
    differ, out = _compare(
        "<p>Index updated 3 min ago · full sync 2 minutes ago</p><td>3 years, 6 months ago</td>",
        "<p>Index updated just now · full sync a second ago</p><td>3 years, 7 months ago</td>",
    )
    assert differ == 0, out
    assert out.strip() == "1 pages compared, 0 differ"


def test_compare__a_different_tag_name_differs():
    differ, out = _compare("<td>1.10.0</td><td>3 min ago</td>", "<td>1.11.0</td><td>just now</td>")
    assert differ == 1
    assert "-1.10.0" in out and "+1.11.0" in out
    assert out.strip().endswith("1 pages compared, 1 differ")


def test_compare__digests_sizes_and_counts_are_never_normalised_away():
    for before, after in [
        ("sha256:ec2fb44ace3f", "sha256:5745a1ea039e"),
        ("118.1 KB", "118.2 KB"),
        ("4 tags", "5 tags"),
        ("took 1 s · every 15 min", "took 1 s · every 30 min"),
    ]:
        assert _compare(f"<p>{before}</p>", f"<p>{after}</p>")[0] == 1, (before, after)


def test_compare__the_runs_own_timestamps_and_durations_are_equal():
    differ, out = _compare(
        "<p>Started 2026-12-04 16:00:04 UTC · took 1 s</p><p>every 15 min; next 16:15 UTC (in 14 minutes)</p>"
        "<p>78.8 GB free of 252.0 GB</p><p>3 ms</p>",
        "<p>Started 2026-12-05 09:41:59 UTC · took 2 s</p><p>every 15 min; next 09:56 UTC (in 15 minutes)</p>"
        "<p>78.6 GB free of 252.0 GB</p><p>12.5 ms</p>",
        day="2026-12-05",
    )
    assert differ == 0, out


def test_compare__an_images_creation_date_is_content():
    assert normalise("Created 2024-01-01 00:00:00 UTC", today=TODAY) == "Created 2024-01-01 00:00:00 UTC"
    assert normalise("Created Dec. 4, 2026, 3:05 p.m.", today=TODAY) == "Created {timestamp}"
    assert _compare("<p>2024-01-01 00:00:00 UTC</p>", "<p>2024-01-02 00:00:00 UTC</p>")[0] == 1


def test_compare__the_dashboards_own_port_is_equal():
    differ, out = _compare(
        "<pre>url: http://127.0.0.1:8001/-/events/</pre>",
        "<pre>url: http://127.0.0.1:9002/-/events/</pre>",
        origin="http://127.0.0.1:9002",
    )
    assert differ == 0, out


def test_compare__a_page_crawled_on_one_side_only_differs():
    before, after = _snapshot("<p>x</p>"), _snapshot("<p>x</p>")
    after["pages"]["GET /r/acme/new/"] = after["pages"]["GET /r/acme/web/"]
    out = io.StringIO()
    assert compare(before, after, out) == 1
    assert "GET /r/acme/new/:\n  only in after" in out.getvalue()


def test_compare__one_change_on_many_pages_is_shown_once():
    before, after = _snapshot("<p>Activity</p>"), _snapshot("<p>Activity log</p>")
    for snap in (before, after):
        for i in range(3):
            snap["pages"][f"GET /r/acme/web/?page={i}"] = snap["pages"]["GET /r/acme/web/"]
    out = io.StringIO()
    assert compare(before, after, out) == 4
    assert out.getvalue().count("+Activity log") == 1
    assert out.getvalue().strip().endswith("4 pages compared, 4 differ")


def test_crawl__never_follows_a_link_that_changes_state():
    assert not _safe("/r/acme/web/-/tags/latest/delete/")
    assert not _safe("/-/gc/start/")
    assert not _safe("/admin/auth/user/")
    assert _safe("/-/deleted/")  # the read-only list of what was deleted
    assert _safe("/r/acme/web/-/tags/latest/history/")
