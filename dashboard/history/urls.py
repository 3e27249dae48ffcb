from django.urls import include, path

from . import views

of_a_tag = [
    path("history/", views.tag_history, name="tag_history"),
    path("rollback/", views.tag_rollback, name="tag_rollback"),
]
urlpatterns = [path("r/<path:name>/-/tags/<ref:tag>/", include(of_a_tag))]
