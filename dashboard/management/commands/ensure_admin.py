"""Make sure the first start does not leave an open dashboard: there is always an admin.

From DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD (Django's own convention) when set;
otherwise a random password, printed once in a box (the start scripts run this command as the last
step before the server says it is listening, so the box is not lost in the start-up output) and
written to a file only its owner can read. Every later start says how to set or reset a password.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandParser

#: Where the one-time password is kept, in the data dir (REGISTRYUI_DATA_DIR: var/, or /data in the image).
PASSWORD_FILE = "first-admin-password"


def password_file() -> Path:
    return Path(settings.DATA_DIR) / PASSWORD_FILE


def box(lines: list[str]) -> str:
    """`lines` framed with box-drawing characters, as wide as the longest line."""
    width = max(len(line) for line in lines)
    rows = [f"│ {line.ljust(width)} │" for line in lines]
    return "\n".join([f"┌{'─' * (width + 2)}┐", *rows, f"└{'─' * (width + 2)}┘"])


def _manage() -> str:
    """How to call manage.py from where this runs: the venv's python relative to here (make run's
    .venv/bin/python), or plain `python` (the image has its venv on PATH)."""
    python = Path(sys.executable)
    try:
        return f"{python.relative_to(Path.cwd())} manage.py"
    except ValueError:
        return "python manage.py"


def _write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable and writable by its owner only (0600), also when it existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _saved(path: Path) -> dict[str, str]:
    """The user name and password `_write_private` saved (empty when there is no such file)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


class Command(BaseCommand):
    help = "Create the first admin if there is none (from DJANGO_SUPERUSER_* or with a one-time password)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="", help="where the dashboard will listen, shown in the sign-in box")

    def handle(self, *args: object, **options: object) -> None:
        users = get_user_model()
        url = str(options.get("url") or "").rstrip("/")
        admins = users.objects.filter(is_superuser=True).order_by("pk")
        if admins.exists():
            self._remind(admins.first())
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        if username and password:
            users.objects.create_superuser(username=username, email=email, password=password)
            self.stdout.write(f"registryui: created admin “{username}” from DJANGO_SUPERUSER_USERNAME.")
            return
        username = username or "admin"
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email=email, password=password)
        path = password_file()
        try:
            _write_private(path, f"user name: {username}\npassword: {password}\n")
            saved = [
                f"Saved in {path}",
                "(readable only by you; deleted at the first start after the password changes).",
            ]
        except OSError as exc:
            saved = [f"Could not save it in {path}: {exc.strerror or exc}.", "Copy it now."]
        lines = [
            "registryui: first sign-in (this password is shown only once)",
            "",
            f"  URL:        {url}/-/login/" + ("" if url else "  (on the dashboard's address)"),
            f"  user name:  {username}",
            f"  password:   {password}",
            "",
            "Change it after signing in (Admin › Change password).",
            *saved,
        ]
        self.stdout.write(box(lines))

    def _remind(self, admin: AbstractBaseUser) -> None:
        """A start after the first: no password to show, so say how to set or reset one, and keep
        the saved one-time password only while it still works."""
        username = admin.get_username()
        manage = _manage()
        lines = [
            f"registryui: admin “{username}” exists. To set or reset a password:",
            f"    {manage} changepassword {username}",
            "  (DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD only create the first admin, while there is",
            f"  none; {manage} createsuperuser adds another.)",
        ]
        path = password_file()
        saved = _saved(path)
        owner = get_user_model().objects.filter(username=saved.get("user name", "")).first() if saved else None
        if owner is not None and owner.check_password(saved.get("password", "")):
            lines.append(f"  {owner.get_username()}’s one-time password is still in {path} (only you can read it).")
        elif path.exists():
            try:
                path.unlink()
                lines.append(f"  Removed {path}: the one-time password in it no longer works.")
            except OSError:
                pass
        self.stdout.write("\n".join(lines))
