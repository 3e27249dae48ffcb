from django.urls import path

from . import views

urlpatterns = [
    path("r/<path:name>/-/tags/<ref:tag>/history/", views.tag_history, name="tag_history"),
    path("r/<path:name>/-/tags/<ref:tag>/rollback/", views.tag_rollback, name="tag_rollback"),
]
