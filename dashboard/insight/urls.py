from django.urls import path

from . import views

urlpatterns = [
    path("-/search/", views.search, name="search"),
    path("-/storage/", views.storage, name="storage"),
    path("-/activity/", views.activity, name="activity"),
]
