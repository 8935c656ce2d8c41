"""The duplicate rule of SPEC §3, as one pure function over Arrow tables.

One row per key survives: the one with the latest version (``updated_at``); on a tie the one
that comes last by source file, then line, then ingestion time. The file key embeds the
delivery day (``raw/orders/dt=2026-11-21/…``), so "later file" means a later delivery day, then
a later file name. Because the winner is the maximum of a total order over the rows' own
values, the outcome does not depend on the order in which files or days are processed: that is
what lets a backfill of old files run after newer days without overwriting newer records.
Employees have no version column: the last row seen wins.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import INGESTED_AT, SOURCE_FILE, SOURCE_LINE, DatasetSpec


def precedence_columns(spec: DatasetSpec) -> tuple[str, ...]:
    """Columns whose ascending order ranks the versions of one key; the last one wins."""
    tie_breakers = (SOURCE_FILE, SOURCE_LINE, INGESTED_AT)
    if spec.version_column is None:
        return tie_breakers
    return (spec.version_column, *tie_breakers)


def winners_mask(table: pa.Table, spec: DatasetSpec) -> pa.BooleanArray:
    """True for each row that survives the duplicate rule, False for each superseded one."""
    count = table.num_rows
    if count == 0:
        return pa.array([], pa.bool_())
    names = [*spec.key, *precedence_columns(spec)]
    sortable = pa.table({name: _sortable(table.column(name)) for name in names})
    order = pc.sort_indices(sortable, sort_keys=[(n, "ascending") for n in names]).to_numpy()
    # In key order, a row is the last of its key when the next row has another key.
    last_of_key = np.ones(count, dtype=bool)
    if count > 1:
        same_as_next = np.ones(count - 1, dtype=bool)
        for name in spec.key:
            column = table.column(name).take(order).combine_chunks()
            equal = pc.equal(column.slice(0, count - 1), column.slice(1))
            same_as_next &= pc.fill_null(equal, False).to_numpy(zero_copy_only=False)
        last_of_key[:-1] = ~same_as_next
    mask = np.zeros(count, dtype=bool)
    mask[order] = last_of_key
    return pa.array(mask)


def _sortable(column: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The column in a type Arrow can sort a table by: a dictionary-encoded one (the source
    file of a day's rows) becomes the rank of each row's value among the dictionary's."""
    if not pa.types.is_dictionary(column.type):
        return column
    encoded = column.combine_chunks()
    ranks = pc.rank(encoded.dictionary, sort_keys="ascending", tiebreaker="dense")
    return pc.take(ranks, encoded.indices)


def latest_per_key(table: pa.Table, spec: DatasetSpec) -> pa.Table:
    """The rows that survive the duplicate rule (one per key), in their original order."""
    return table.filter(winners_mask(table, spec))
