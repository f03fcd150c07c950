"""URLs: the home page (the admin's "View site"), the admin, the REST API of every ledger, the
schema and the health check. Unknown paths under /api/ answer in the API's JSON error shape
(``handler404`` here, and ``ledger_project.middleware`` for 404s that DEBUG would render)."""

from django.contrib import admin
from django.urls import include, path

from ledger_project import admin as project_admin  # noqa: F401  (registers the user admin first)
from ledger_project.views import home

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("", include("core_ledger.urls")),  # api/ and healthz, as any host project mounts them
]

handler404 = "core_ledger.urls.handler404"
