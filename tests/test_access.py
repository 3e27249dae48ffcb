"""Who may do what: closed by default, viewers browse, only maintainers change anything."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client


@pytest.fixture
def closed(dashboard, configure):
    """The dashboard as shipped: anonymous browsing off."""
    configure(ANONYMOUS_READ=False)
    return dashboard


def _user(username: str, group: str | None) -> User:
    user = User.objects.create_user(username, password="correct horse battery")
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def test_roles__groups_exist_with_their_permissions(db) -> None:
    perms = {g.name: sorted(p.codename for p in g.permissions.all()) for g in Group.objects.all()}
    assert perms["viewer"] == ["browse_registry"]
    assert perms["maintainer"] == ["browse_registry", "delete_from_registry"]


def test_anonymous__closed_by_default__every_page_sends_to_sign_in(client, closed) -> None:
    for url in ["/", "/r/acme/web/", "/r/acme/web/-/manifests/latest/", "/-/deleted/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/-/login/?next=")


def test_anonymous__htmx_request_redirects_the_whole_page(client, closed) -> None:
    response = client.get("/r/acme/web/", headers={"HX-Request": "true"})
    assert response["HX-Redirect"].startswith("/-/login/")


def test_anonymous_read__browses_but_cannot_post(client, dashboard) -> None:
    assert client.get("/r/acme/web/").status_code == 200
    response = client.post("/r/acme/web/-/tags/latest/delete/")
    assert response.status_code == 302 and response["Location"].startswith("/-/login/")
    assert "latest" in dashboard.seeded.tags["acme/web"]


def test_signed_in_without_role__403_that_says_what_to_do(client, closed) -> None:
    client.force_login(_user("nobody", None))
    response = client.get("/")
    assert response.status_code == 403
    assert "no role" in response.content.decode()


def test_viewer__browses__no_delete_controls__403_on_every_mutating_url(client, closed) -> None:
    client.force_login(_user("vera", "viewer"))
    body = client.get("/r/acme/web/?details=1").content.decode()
    assert "Untag…" not in body and 'name="tag"' not in body
    confirm = client.get("/r/acme/web/-/tags/latest/delete/").content.decode()
    assert "may browse but not delete" in confirm
    assert re.search(r"<button type=\"submit\" class=\"danger\" disabled>", confirm)
    digest = closed.seeded.digest("acme/web", "latest")
    for url, data in [("/r/acme/web/-/tags/latest/delete/", {}), ("/r/acme/web/-/untag/", {"tag": ["latest"]}),
                      (f"/r/acme/web/-/manifests/{digest}/delete/", {"tag": ["latest", "1.10.0"]}),
                      ("/-/deleted/1/restore/", {})]:
        assert client.post(url, data).status_code == 403, url
    assert "Recently deleted" not in client.get("/").content.decode()


def test_delete__forged_post_without_csrf_token_is_refused(closed) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user("mia", "maintainer"))
    assert client.post("/r/acme/web/-/tags/latest/delete/").status_code == 403


def test_delete__nothing_is_deleted_on_get(client, closed) -> None:
    client.force_login(_user("mia", "maintainer"))
    before = client.get("/r/acme/web/?details=1").content.decode().count('class="tag-row')
    client.get("/r/acme/web/-/tags/latest/delete/")
    client.get("/r/acme/web/-/untag/?tag=latest&tag=1.9.0")
    after = client.get("/r/acme/web/?details=1").content.decode().count('class="tag-row')
    assert before == after == 4


def test_login__throttled_after_five_wrong_passwords(client, closed) -> None:
    _user("vera", "viewer")
    for _ in range(5):
        response = client.post("/-/login/", {"username": "vera", "password": "wrong"})
        assert response.status_code == 200 and "Please enter a correct username" in response.content.decode()
    response = client.post("/-/login/", {"username": "vera", "password": "correct horse battery"})
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_login__right_password_signs_in_and_returns_to_next(client, closed) -> None:
    _user("vera", "viewer")
    response = client.post("/-/login/", {"username": "vera", "password": "correct horse battery",
                                         "next": "/r/acme/web/"})
    assert response.status_code == 302 and response["Location"] == "/r/acme/web/"


def test_first_start__admin_from_django_superuser_env(db, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-pass")
    call_command("ensure_admin")
    assert User.objects.get(username="root").check_password("s3cret-pass")
    assert "s3cret-pass" not in capsys.readouterr().out


def test_first_start__one_time_password_printed_once(db, monkeypatch, capsys, settings, tmp_path) -> None:
    settings.DATA_DIR = tmp_path
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = re.search(r"password: +(\S+)", out).group(1)
    assert User.objects.get(username="admin").check_password(password)
    call_command("ensure_admin")
    again = capsys.readouterr().out
    assert password not in again and "changepassword admin" in again
    assert User.objects.filter(is_superuser=True).count() == 1


def test_login__behind_proxy__lockout_counts_by_forwarded_address(client, closed, settings) -> None:
    settings.BEHIND_PROXY = True
    _user("vera", "viewer")
    for _ in range(5):
        client.post("/-/login/", {"username": "vera", "password": "wrong"},
                    headers={"X-Forwarded-For": "198.51.100.7"})
    # Another visitor behind the same proxy still signs in; a forged first entry changes nothing.
    response = client.post("/-/login/", {"username": "vera", "password": "correct horse battery"},
                           headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    assert response.status_code == 302
    client.logout()
    response = client.post("/-/login/", {"username": "vera", "password": "correct horse battery"},
                           headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    assert "Too many failed sign-ins" in response.content.decode()
