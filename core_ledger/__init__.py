"""Shared Ledger core: the reusable ledger every ledger app builds on."""
