"""Prefect flows: ``daily``, ``backfill`` and ``retention`` (SPEC §7)."""
