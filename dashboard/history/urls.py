from django.urls import include, path

from . import views

urlpatterns = [
    path("r/<path:name>/-/tags/<ref:tag>/", include([
        path("history/", views.tag_history, name="tag_history"),
        path("rollback/", views.tag_rollback, name="tag_rollback"),
    ])),
]
