"""Shared Ledger core: the reusable ledger every ledger app builds on."""

# The one place the version is written: the wheel (pyproject.toml) reads it from here.
__version__ = "0.9.0"
