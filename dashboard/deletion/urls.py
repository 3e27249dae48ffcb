from django.urls import include, path

from . import views

in_repository = [
    path("manifests/<ref:digest>/delete/", views.image_delete, name="image_delete"),
    path("tags/<ref:tag>/delete/", views.tag_delete, name="tag_delete"),
    path("untag/", views.bulk_untag, name="bulk_untag"),
]
urlpatterns = [
    path("-/deleted/", views.deleted, name="deleted"),
    path("-/deleted/<int:pk>/restore/", views.restore, name="restore"),
    path("r/<path:name>/-/", include(in_repository)),
]
