"""``ledger_verify``'s high-water mark: how far each ledger has been proven sound."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from core_ledger.ledger import AnyLedger
from core_ledger.models import VerifyCheckpoint


def verify_checkpoint_save(
    *, ledger: AnyLedger, entry_id: int, full: bool, entries_checked: int
) -> VerifyCheckpoint:
    """Record that every entry of ``ledger`` up to ``entry_id`` is verified.

    Called only after a run that found nothing. The mark never moves back: a run that ends
    below the stored mark (a ``--since`` rerun of an older stretch) leaves it where it is.
    """
    with transaction.atomic(using=ledger.db_alias):
        current = (
            VerifyCheckpoint.objects.using(ledger.db_alias)
            .select_for_update()
            .filter(ledger=ledger.label)
            .first()
        )
        if current is not None and current.entry_id > entry_id:
            return current
        checkpoint, _ = VerifyCheckpoint.objects.using(ledger.db_alias).update_or_create(
            ledger=ledger.label,
            defaults={
                "entry_id": entry_id,
                "verified_at": timezone.now(),
                "full": full,
                "entries_checked": entries_checked,
            },
        )
    return checkpoint
