from django.urls import path

from . import views

urlpatterns = [
    path("-/gc/", views.gc_page, name="gc"),
    path("-/gc/start/", views.gc_start, name="gc_start"),
    path("-/gc/runs/<int:pk>/", views.gc_run, name="gc_run"),
]
