"""The warehouse (SPEC §6): gold tables loaded into DuckDB, PostgreSQL or Redshift.

Owns the engine adapter with its one-transaction-per-table load (``engine``) and the SQL it
speaks per dialect (``sql``). May import ``gold.tables``, ``lake.layout`` (the gold file
keys), ``lake.failpoints`` (test-only kill points), ``settings`` and ``errors``.
"""
