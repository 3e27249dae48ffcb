from django.urls import path

from . import views

urlpatterns = [
    path("-/health/", views.health_page, name="health"),
    path("-/health.json", views.health_json, name="health_json"),
    path("-/live", views.live, name="live"),
    path("metrics", views.metrics_view, name="metrics"),
]
