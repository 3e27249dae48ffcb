"""URLs mirror the resources. `/-/` separates a repository name from what follows: `-` can
never be a name component, so `/r/a/manifests/-/manifests/x/` is unambiguous (as GitLab does)."""

from django.urls import path, register_converter

from . import views


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
    path("r/<path:name>/-/manifests/<ref:reference>/", views.manifest, name="manifest"),
    path("r/<path:name>/-/blobs/<ref:digest>/download", views.blob_download, name="blob_download"),
    path("r/<path:name>/-/blobs/<ref:digest>/", views.blob, name="blob"),
    path("r/<path:name>/", views.repository, name="repository"),
]
