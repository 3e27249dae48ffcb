"""The first hour of a new user: the first sign-in (a boxed one-time password, saved where only its
owner can read it, and how to reset it on every later start), the admin site under registryui's
name, a refusal that names the role and leads back, and an unreachable registry that points at
`make demo`."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from tests.helpers.html import dom
from tests.helpers.pages import HTMX, closed_port, signed_in


@pytest.fixture
def data_dir(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir of this test's own, and no DJANGO_SUPERUSER_* from the environment."""
    for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD", "DJANGO_SUPERUSER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR


def _ensure_admin(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    call_command("ensure_admin", *args)
    return capsys.readouterr().out


def _box(out: str) -> list[str]:
    """The inside of the one box in `out`, a line per row."""
    lines = out.rstrip("\n").splitlines()
    top = [i for i, line in enumerate(lines) if line.startswith("┌")]
    bottom = [i for i, line in enumerate(lines) if line.startswith("└")]
    assert len(top) == len(bottom) == 1, out
    inside = lines[top[0] + 1 : bottom[0]]
    assert inside and all(line.startswith("│ ") and line.endswith(" │") for line in inside), out
    assert len({len(line) for line in lines[top[0] : bottom[0] + 1]}) == 1, "the box's edges line up"
    return [line[2:-2].strip() for line in inside]


def _field(box: list[str], label: str) -> str:
    [value] = [line.split(":", 1)[1].strip() for line in box if line.startswith(f"{label}:")]
    return value


# -- the first sign-in ------------------------------------------------------------------------------


def test_first_start__password_in_a_box_with_user_and_url__saved_readable_by_owner_only(
    db, data_dir: Path, capsys
) -> None:
    out = _ensure_admin(capsys, "--url", "http://127.0.0.1:8000")
    box = _box(out)
    password = _field(box, "password")
    assert _field(box, "user name") == "admin"
    assert _field(box, "URL") == "http://127.0.0.1:8000/-/login/"
    assert User.objects.get(username="admin").check_password(password)
    # The box is the whole output: nothing after it to push it off the screen.
    assert out.rstrip("\n").splitlines()[-1].startswith("└")

    saved = data_dir / "first-admin-password"
    assert f"Saved in {saved}" in box
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert saved.read_text() == f"user name: admin\npassword: {password}\n"
    # It signs in, as the box says.
    assert Client().post("/-/login/", {"username": "admin", "password": password}).status_code == 302


def test_first_start__an_existing_file_is_made_private_again(db, data_dir: Path, capsys) -> None:
    data_dir.mkdir(parents=True)
    saved = data_dir / "first-admin-password"
    saved.write_text("left over\n")
    saved.chmod(0o644)
    password = _field(_box(_ensure_admin(capsys)), "password")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600 and password in saved.read_text()


def test_first_start__file_cannot_be_written__box_says_so_and_still_shows_it(
    db, settings, tmp_path: Path, data_dir: Path, capsys
) -> None:
    settings.DATA_DIR = tmp_path / "not-a-directory"
    settings.DATA_DIR.write_text("")
    box = _box(_ensure_admin(capsys))
    assert any(line.startswith(f"Could not save it in {settings.DATA_DIR / 'first-admin-password'}") for line in box)
    assert User.objects.get(username="admin").check_password(_field(box, "password"))


def test_second_start__says_how_to_reset__keeps_the_file_while_the_password_works(db, data_dir: Path, capsys) -> None:
    password = _field(_box(_ensure_admin(capsys)), "password")
    saved = data_dir / "first-admin-password"

    out = _ensure_admin(capsys)
    assert password not in out and "┌" not in out
    assert re.search(r"^ {4}\S*python\S* manage\.py changepassword admin$", out, re.MULTILINE), out
    assert "DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD only create the first admin" in out
    assert f"admin’s one-time password is still in {saved}" in out
    assert saved.is_file()

    # Changed after signing in: the file would only mislead now.
    admin = User.objects.get(username="admin")
    admin.set_password("a password of my own")
    admin.save()
    out = _ensure_admin(capsys)
    assert f"Removed {saved}: the one-time password in it no longer works." in out
    assert not saved.exists()
    assert "changepassword admin" in _ensure_admin(capsys)
    assert User.objects.filter(is_superuser=True).count() == 1


def test_first_start__from_django_superuser_env__no_password_shown_or_saved(
    db, data_dir: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-pass")
    out = _ensure_admin(capsys)
    assert "created admin “root” from DJANGO_SUPERUSER_USERNAME" in out and "s3cret-pass" not in out
    assert not (data_dir / "first-admin-password").exists()
    # The env vars no longer change anything: the reminder says so, and names the real admin.
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "other")
    out = _ensure_admin(capsys)
    assert "changepassword root" in out and not User.objects.filter(username="other").exists()


# -- the admin site ---------------------------------------------------------------------------------


def test_admin__carries_registryui_name_and_links_back_to_the_dashboard(client, db) -> None:
    client.force_login(User.objects.create_superuser("root", password="x" * 20))
    response = client.get("/admin/")
    assert response.status_code == 200
    doc = dom(response)
    assert doc.one("title").text == "Users, roles (groups) and audit records | registryui admin"
    site_name = doc.one("div", id="site-name")
    assert site_name.text == "◳ registryui · administration"
    assert [(a.attrs["href"], a.text) for a in site_name.find_all("a")] == [
        ("/", "◳ registryui"),
        ("/admin/", "administration"),
    ]
    back = [a for a in doc.one("div", id="user-tools").find_all("a") if a.text == "Back to the dashboard"]
    assert [a.attrs["href"] for a in back] == ["/"]
    assert "View site" not in response.content.decode()
    assert "Django administration" not in response.content.decode()


def test_admin__sign_in_page_carries_registryui_name(client, db) -> None:
    doc = dom(client.get("/admin/login/"))
    assert doc.one("div", id="site-name").text == "◳ registryui · administration"


# -- a styled refusal -------------------------------------------------------------------------------


@pytest.fixture
def closed(dashboard, configure):
    configure(ANONYMOUS_READ=False)
    return dashboard


def _refusal(response) -> tuple[str, list[tuple[str, str]]]:
    """A 403's explanation and its links (href, text)."""
    assert response.status_code == 403
    box = dom(response).one("section", cls="error-box")
    return box.text, [(a.attrs["href"], a.text) for a in box.find_all("a")]


@pytest.mark.parametrize("url", ["/-/gc/", "/-/deleted/"])
def test_viewer__maintainer_page__403_in_the_layout_names_the_role_and_links_back(client, closed, url) -> None:
    signed_in(client, "vera", "viewer")
    response = client.get(url, headers={"Referer": "http://testserver/r/acme/web/?sort=size"})
    body = response.content.decode()
    # The normal layout: the top bar, the stylesheet, the footer.
    doc = dom(response)
    assert doc.find("header", cls="topbar") and doc.find("footer", cls="footer")
    assert re.search(r'<link rel="stylesheet" href="/static/registryui/app[^"]*\.css">', body)
    text, links = _refusal(response)
    assert doc.one("h1").text == "For maintainers only"
    assert "Only maintainers may delete or restore." in text
    assert "You are signed in as “vera”." in text
    assert "This needs the maintainer role: ask an administrator to add you to the maintainer group." in text
    assert links == [
        ("http://testserver/r/acme/web/?sort=size", "Back to the page you came from"),
        ("/", "All repositories"),
    ]


def test_viewer__refused_post_from_htmx__the_message_alone_with_the_way_back(client, closed) -> None:
    signed_in(client, "vera", "viewer")
    response = client.post("/-/deleted/1/restore/", headers={**HTMX, "HX-Current-URL": "http://testserver/-/activity/"})
    assert "<html" not in response.content.decode()
    text, links = _refusal(response)
    assert "maintainer role" in text
    assert links[0] == ("http://testserver/-/activity/", "Back to the page you came from")


@pytest.mark.parametrize(
    "referer", ["https://elsewhere.example/r/acme/web/", "//elsewhere.example/", "http://testserver/-/gc/"]
)
def test_viewer__refusal_never_links_to_another_site_or_to_itself(client, closed, referer) -> None:
    signed_in(client, "vera", "viewer")
    _, links = _refusal(client.get("/-/gc/", headers={"Referer": referer}))
    assert links == [("/", "All repositories")]


def test_anonymous_read__maintainer_page__offers_to_sign_in(client, dashboard) -> None:
    text, links = _refusal(client.get("/-/gc/?runs=all&x=1"))
    assert "This needs the maintainer role" in text and "signed in as" not in text
    sign_in = [href for href, label in links if label == "Sign in as a maintainer"]
    assert sign_in == ["/-/login/?next=/-/gc/%3Fruns%3Dall%26x%3D1"]
    # Signing in there comes back to the page, query and all.
    signed_in(client, "mia", "maintainer", password="correct horse battery")
    client.logout()
    response = client.post(sign_in[0], {"username": "mia", "password": "correct horse battery"})
    assert response.status_code == 302 and response["Location"] == "/-/gc/?runs=all&x=1"


def test_admin__refusal_in_the_admin_names_no_role(client, db) -> None:
    client.force_login(User.objects.create_superuser("root", password="x" * 20))
    text, links = _refusal(client.get("/admin/dashboard/rollback/add/"))
    assert text.startswith("Not allowed") and "role" not in text
    assert links == [("/", "All repositories")]


def test_signed_in_without_role__same_page__names_both_roles(client, closed) -> None:
    client.force_login(User.objects.create_user("nobody", password="x" * 20))
    text, links = _refusal(client.get("/"))
    assert "no role" in text
    assert "ask an administrator to add you to the viewer or maintainer group" in text


# -- an unreachable registry ------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_unreachable__error_page_suggests_make_demo(client, dashboard, configure, htmx) -> None:
    port = closed_port()
    configure(REGISTRY_URL=f"http://127.0.0.1:{port}")
    response = client.get("/", headers=HTMX if htmx else None)
    assert response.status_code == 502
    text = dom(response).one("section", cls="error-box").text
    assert f"connection refused at http://127.0.0.1:{port}" in text
    assert "No registry yet? make demo (in a checkout of registryui) starts a local one with sample images" in text


def test_other_registry_errors__no_make_demo(client, dashboard) -> None:
    response = client.get("/r/acme/web/-/manifests/no-such-tag/")
    assert response.status_code == 404 and "make demo" not in response.content.decode()
