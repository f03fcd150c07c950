"""URLs: the admin, the REST API of every ledger, the schema and the health check."""

from django.contrib import admin
from django.urls import include, path

from ledger_project import admin as project_admin  # noqa: F401  (registers the user admin first)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("core_ledger.urls")),  # api/ and healthz, as any host project mounts them
]

handler404 = "core_ledger.urls.handler404"
