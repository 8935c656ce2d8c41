"""Gold (SPEC §5): the aggregates the warehouse serves.

Owns the table definitions (``tables``), the pure aggregations over silver rows
(``aggregates``) and the rebuild of the touched days and months from a pinned silver version
(``build``). May import ``contracts``, ``silver`` (to read it), ``lake`` and ``errors``.
"""
