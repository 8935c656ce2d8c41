"""Gold (SPEC §5): the aggregates the warehouse serves.

Owns the table definitions (``tables``), the pure aggregations over silver rows
(``aggregates``), the days and months a run's silver changes reach (``plan``) and the rebuild
of those days and months from a pinned silver version (``build``). May import ``contracts``,
``silver`` (to read it), ``lake`` and ``errors``.
"""
