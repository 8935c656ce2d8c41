"""Silver (SPEC §4): validated rows as one Delta Lake table per dataset.

Owns the duplicate rule (``dedup``), the partition columns and keys (``partitioning``), the
Delta table store with its merge, compaction and retention (``store``), the day's upsert and
its row accounting (``upsert``) and the conversion of the earlier snapshot format
(``migrate``). May import ``contracts``, ``lake`` and ``errors``; never ``gold``.
"""
