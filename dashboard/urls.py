"""URLs mirror the resources. `/-/` separates a repository name from what follows: `-` can
never be a name component, so `/r/a/manifests/-/manifests/x/` is unambiguous (as GitLab does).

Each feature package lists its own URLs; browse comes last, since `r/<path:name>/` would
otherwise take every address below a repository."""

from django.contrib.auth.views import LogoutView
from django.urls import include, path, register_converter

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
    path("-/login/", LoginView.as_view(), name="login"),
    path("-/logout/", LogoutView.as_view(), name="logout"),
    path("", include("dashboard.health.urls")),
    path("", include("dashboard.deletion.urls")),
    path("", include("dashboard.gc.urls")),
    path("", include("dashboard.sync.urls")),
    path("", include("dashboard.insight.urls")),
    path("", include("dashboard.history.urls")),
    path("", include("dashboard.browse.urls")),
]
