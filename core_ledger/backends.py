"""An authentication backend: Django's ``ModelBackend`` with a user's permissions read in one query.

Why: every API request loads a fresh user object (token authentication), and a post by a regular
user asks ``has_perm`` once (is the caller a service account of the ledger?). The stock backend
answers with two ORM queries (direct permissions, then group permissions) whose construction and
compilation cost 3-5 ms of CPU on a 2-core machine: more than a whole trivial authenticated DRF
request (bench/README, "REST"). This backend reads the same rows in one plain SQL statement.

Same answers as ``ModelBackend``: inactive and anonymous users and object permissions get none,
superusers get every permission (the stock code path), everyone else gets the union of their own
and their groups' permissions. Authentication itself is ``ModelBackend``'s, unchanged. Enable it
with ``AUTHENTICATION_BACKENDS = ["core_ledger.backends.ModelBackend"]``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router


def permission_rows_sql(user_ref: str) -> str | None:
    """``SELECT app_label, codename …`` of the user ``user_ref`` names (a ``%s`` parameter, or a
    column of an outer query), from the models' own table and column names (None: no M2Ms)."""
    user_model = get_user_model()
    try:
        own: Any = user_model._meta.get_field("user_permissions")
        groups: Any = user_model._meta.get_field("groups")
    except Exception:  # a custom user model without PermissionsMixin: the stock path
        return None
    group_perms: Any = Group._meta.get_field("permissions")
    qn = connections[router.db_for_read(Permission)].ops.quote_name
    own_table = qn(own.m2m_db_table())
    groups_table = qn(groups.m2m_db_table())
    group_perms_table = qn(group_perms.m2m_db_table())
    return (
        f"SELECT ct.{qn('app_label')}, p.{qn('codename')} "
        f"FROM {qn(Permission._meta.db_table)} p "
        f"JOIN {qn(ContentType._meta.db_table)} ct ON ct.{qn('id')} = p.{qn('content_type_id')} "
        f"WHERE p.{qn('id')} IN ("
        f"SELECT {qn(own.m2m_reverse_name())} FROM {own_table} "
        f"WHERE {qn(own.m2m_column_name())} = {user_ref} "
        f"UNION SELECT gp.{qn(group_perms.m2m_reverse_name())} FROM {group_perms_table} gp "
        f"JOIN {groups_table} ug ON ug.{qn(groups.m2m_reverse_name())} = "
        f"gp.{qn(group_perms.m2m_column_name())} "
        f"WHERE ug.{qn(groups.m2m_column_name())} = {user_ref})"
    )


def _permissions_sql() -> str | None:
    return permission_rows_sql("%s")


def remember_permissions(user_obj: Any, perms: set[str]) -> None:
    """Give a user object the permission set read along with it (the token look-up reads both
    in one statement): ``has_perm`` then asks the database nothing more. The cache attribute is
    Django's own (``ModelBackend`` keeps the same set there); superusers take the stock path."""
    if user_obj.is_active and not user_obj.is_superuser:
        user_obj._perm_cache = perms


class ModelBackend(DjangoModelBackend):
    """``django.contrib.auth.backends.ModelBackend``, one query for a user's permissions."""

    _sql: str | None = None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if user_obj.is_superuser:
            return super().get_all_permissions(user_obj, obj)
        if not hasattr(user_obj, "_perm_cache"):
            if ModelBackend._sql is None:
                ModelBackend._sql = _permissions_sql() or ""
            if not ModelBackend._sql:
                return super().get_all_permissions(user_obj, obj)
            with connections[router.db_for_read(Permission)].cursor() as cursor:
                cursor.execute(ModelBackend._sql, [user_obj.pk, user_obj.pk])
                user_obj._perm_cache = {f"{app}.{codename}" for app, codename in cursor.fetchall()}
        perms: set[str] = user_obj._perm_cache
        return perms
