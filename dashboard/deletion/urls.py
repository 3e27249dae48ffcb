from django.urls import path

from . import views

urlpatterns = [
    path("-/deleted/", views.deleted, name="deleted"),
    path("-/deleted/<int:pk>/restore/", views.restore, name="restore"),
    path("r/<path:name>/-/manifests/<ref:digest>/delete/", views.image_delete, name="image_delete"),
    path("r/<path:name>/-/tags/<ref:tag>/delete/", views.tag_delete, name="tag_delete"),
    path("r/<path:name>/-/untag/", views.bulk_untag, name="bulk_untag"),
]
