"""URLs mirror the resources. `/-/` separates a repository name from what follows: `-` can
never be a name component, so `/r/a/manifests/-/manifests/x/` is unambiguous (as GitLab does)."""

from django.contrib.auth.views import LogoutView
from django.urls import path, register_converter

from . import views, views_events, views_history, views_insight, views_search, views_sync
from .auth import LoginView


class ReferenceConverter:
    # A tag or a digest: no slash. The grammar check happens in the client.
    regex = r"[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ReferenceConverter, "ref")

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("-/login/", LoginView.as_view(), name="login"),
    path("-/logout/", LogoutView.as_view(), name="logout"),
    path("-/deleted/", views.deleted, name="deleted"),
    path("-/health/", views.health_page, name="health"),
    path("-/health.json", views.health_json, name="health_json"),
    path("-/live", views.live, name="live"),
    path("metrics", views.metrics_view, name="metrics"),
    path("-/gc/", views.gc_page, name="gc"),
    path("-/gc/start/", views.gc_start, name="gc_start"),
    path("-/gc/runs/<int:pk>/", views.gc_run, name="gc_run"),
    path("-/deleted/<int:pk>/restore/", views.restore, name="restore"),
    path("-/events/", views_events.receive, name="events"),
    path("-/sync/", views_sync.sync_page, name="sync"),
    path("-/sync/start/", views_sync.sync_start, name="sync_start"),
    path("-/sync/runs/<int:pk>/", views_sync.sync_run, name="sync_run"),
    path("-/search/", views_search.search, name="search"),
    path("-/storage/", views_insight.storage, name="storage"),
    path("-/activity/", views_insight.activity, name="activity"),
    path("r/<path:name>/-/tags/<ref:tag>/history/", views_history.tag_history, name="tag_history"),
    path("r/<path:name>/-/tags/<ref:tag>/rollback/", views_history.tag_rollback, name="tag_rollback"),
    path("r/<path:name>/-/manifests/<ref:digest>/delete/", views.image_delete, name="image_delete"),
    path("r/<path:name>/-/manifests/<ref:reference>/", views.manifest, name="manifest"),
    path("r/<path:name>/-/tags/<ref:tag>/delete/", views.tag_delete, name="tag_delete"),
    path("r/<path:name>/-/untag/", views.bulk_untag, name="bulk_untag"),
    path("r/<path:name>/-/blobs/<ref:digest>/download", views.blob_download, name="blob_download"),
    path("r/<path:name>/-/blobs/<ref:digest>/", views.blob, name="blob"),
    path("r/<path:name>/", views.repository, name="repository"),
]
