from django.urls import path

from . import views

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("r/<path:name>/-/manifests/<ref:reference>/", views.manifest, name="manifest"),
    path("r/<path:name>/-/blobs/<ref:digest>/download", views.blob_download, name="blob_download"),
    path("r/<path:name>/-/blobs/<ref:digest>/", views.blob, name="blob"),
    path("r/<path:name>/", views.repository, name="repository"),
]
