from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Registry dashboard"

    def ready(self) -> None:
        from .auth import ensure_roles

        post_migrate.connect(ensure_roles, sender=self)
