from django.urls import path

from . import views

urlpatterns = [
    path("-/events/", views.receive, name="events"),
    path("-/sync/", views.sync_page, name="sync"),
    path("-/sync/start/", views.sync_start, name="sync_start"),
    path("-/sync/runs/<int:pk>/", views.sync_run, name="sync_run"),
]
