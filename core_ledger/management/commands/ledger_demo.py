"""Load the idempotent demo data that `make run` uses."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from core_ledger.exceptions import LedgerError
from core_ledger.ledger import Direction, PostedBy, registry
from core_ledger.operations import SharedOperation
from core_ledger.selectors import username_field
from core_ledger.services import entry_post

DEMO_USERS = ("alice", "bob", "carol")


def demo_user_get_or_create(name: str) -> tuple[Any, bool]:
    """The demo user ``name``, whatever the user model logs in with.

    ``USERNAME_FIELD`` gets ``name``, or ``name@example.com`` when the model logs in by email;
    the email field (if the model has one) gets ``name@example.com``.
    """
    User = get_user_model()
    email_field = User.get_email_field_name()
    email = f"{name}@example.com"
    login = email if email_field == username_field() else name
    defaults = {}
    if email_field != username_field() and any(
        f.name == email_field for f in User._meta.get_fields()
    ):
        defaults[email_field] = email
    return User._default_manager.get_or_create(**{username_field(): login}, defaults=defaults)


class Command(BaseCommand):
    help = (
        "Create demo users with activity in every ledger, and a staff login 'admin'. Safe to rerun: "
        "every demo entry carries an idempotency key, so a rerun posts nothing new. The admin "
        "password is $DEMO_ADMIN_PASSWORD, or a fresh random one printed on each run.\n\n"
        "Example: python manage.py ledger_demo"
    )

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        with transaction.atomic():
            admin, _ = demo_user_get_or_create("admin")
            admin.is_staff = admin.is_superuser = True
            admin.set_password(password)
            admin.save()
            users = []
            for name in DEMO_USERS:
                user, created = demo_user_get_or_create(name)
                if created:
                    user.set_password(f"{name}-demo")
                    user.save(update_fields=["password"])
                users.append(user)
        posted = 0
        for ledger in registry:
            own_credit = next(
                (
                    op
                    for op, rule in ledger.operation_rules.items()
                    if rule.direction is Direction.CREDIT
                    and rule.posted_by is PostedBy.STAFF
                    and op not in SharedOperation.values
                ),
                SharedOperation.CREDIT_ADD,
            )
            own_debit = next(
                (
                    op
                    for op, rule in ledger.operation_rules.items()
                    if rule.direction is Direction.DEBIT and op not in SharedOperation.values
                ),
                SharedOperation.CREDIT_SPEND,
            )
            for i, user in enumerate(users, start=1):
                plan = [
                    (SharedOperation.CREDIT_ADD, 50 * i, admin),
                    (own_credit, 20 * i, admin),
                    (own_debit, 5 * i, user),
                    (SharedOperation.CREDIT_SPEND, 3, user),
                ]
                for n, (operation, amount, actor) in enumerate(plan):
                    try:
                        result = entry_post(
                            ledger=ledger,
                            user_id=user.pk,
                            operation=operation,
                            amount=amount,
                            actor=actor,
                            idempotency_key=f"demo-{ledger.label}-{user.get_username()}-{n}",
                            description=f"Demo {operation.lower().replace('_', ' ')}",
                        )
                    except LedgerError as exc:
                        self.stderr.write(f"demo {ledger.label}/{user.get_username()}: {exc}")
                        continue
                    posted += 0 if result.replayed else 1
        self.stdout.write(
            self.style.SUCCESS(f"Demo data ready: {len(users)} users, {posted} new entries.")
        )
        self.stdout.write(
            f"Staff login for /admin/: {admin.get_username()} / {password} (user id {admin.pk})"
        )
        self.stdout.write(
            "Demo users: "
            + ", ".join(
                f"{u.get_username()} / {name}-demo (id {u.pk})"
                for u, name in zip(users, DEMO_USERS, strict=True)
            )
        )
