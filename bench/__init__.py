"""Benchmarks: Shared Ledger against the PostgreSQL ceiling on the same machine (bench/README.md)."""
