"""Make sure the first start does not leave an open dashboard: there is always an admin.

From DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD (Django's own convention) when set;
otherwise a random password, printed once.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin if there is none (from DJANGO_SUPERUSER_* or with a one-time password)."

    def handle(self, *args: object, **options: object) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
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
        line = "=" * 72
        self.stdout.write(
            f"{line}\nregistryui: created the first admin — shown once, change it after signing in:\n"
            f"    username: {username}\n    password: {password}\n"
            f"(set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD to choose them)\n{line}")
