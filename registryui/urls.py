from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]

handler403 = "dashboard.auth.permission_denied"
handler404 = "dashboard.web.not_found"
handler500 = "dashboard.web.server_error"
