"""The rows one silver merge takes in, read from scratch as often as needed, never held whole.

A day can be ten times its usual size. The merge therefore reads its incoming rows twice: the
key, precedence and partition columns once (the duplicate rule and the accounting need every
key at once, but not the rest of the row), then every column a batch at a time, straight into
the Delta writer. Each reading produces the same rows in the same order, so a mask computed on
the first applies to the second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import SOURCE_FILE

#: Working column: True for rows that count in the files' accounting (False: rows moved
#: between partitions by the pipeline itself).
ACCOUNTED = "__accounted"


def working_schema(silver: pa.Schema) -> pa.Schema:
    """The silver schema plus the ``ACCOUNTED`` flag: the schema of every incoming batch."""
    return silver.append(pa.field(ACCOUNTED, pa.bool_()))


def with_accounted(table: pa.Table, accounted: bool) -> pa.Table:
    """The table with an ``ACCOUNTED`` column of ``accounted`` (kept when it has one)."""
    if ACCOUNTED in table.column_names:
        return table
    flags = np.full(table.num_rows, accounted, dtype=bool)
    return table.append_column(ACCOUNTED, pa.array(flags))


class IncomingRows:
    """A merge's incoming rows in the working schema, re-readable in one fixed order.

    Args:
        schema: the working schema (see `working_schema`).
        tables: called for each reading; yields the rows as tables in that schema, in the
            same order every time.
    """

    def __init__(self, schema: pa.Schema, tables: Callable[[], Iterable[pa.Table]]) -> None:
        self.schema = schema
        self._tables = tables

    @classmethod
    def from_table(cls, table: pa.Table, silver: pa.Schema) -> IncomingRows:
        """Rows already in memory (tests, the moves of ``UNKNOWN`` orders)."""
        schema = working_schema(silver)
        rows = with_accounted(table, True).select(schema.names).cast(schema)
        return cls(schema, lambda: [rows])

    def tables(self) -> Iterator[pa.Table]:
        """Every row, a table (a staged block) at a time."""
        for table in self._tables():
            if table.num_rows:
                yield table

    def columns(self, names: Iterable[str]) -> pa.Table:
        """These columns of every row, in order: what the duplicate rule needs of a day."""
        wanted = list(dict.fromkeys(names))
        schema = pa.schema([self.schema.field(n) for n in wanted])
        parts = [_detached(table.select(wanted)) for table in self.tables()]
        return pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()

    def filtered(self, mask: np.ndarray, schema: pa.Schema) -> pa.RecordBatchReader:
        """The rows where ``mask`` (one flag per row, in order) is True, in ``schema`` (a
        subset of the working columns), as a stream a batch at a time."""

        def batches() -> Iterator[pa.RecordBatch]:
            start = 0
            for table in self.tables():
                keep = mask[start : start + table.num_rows]
                start += table.num_rows
                if keep.any():
                    kept = table if keep.all() else table.filter(pa.array(keep))
                    yield from kept.select(schema.names).cast(schema).to_batches()
            if start != len(mask):
                raise ValueError(f"incoming rows changed between readings ({start} ≠ {len(mask)})")

        return pa.RecordBatchReader.from_batches(schema, batches())


def _detached(table: pa.Table) -> pa.Table:
    """The columns copied out of their staged block: a block read from scratch is one buffer,
    and a column kept by reference keeps the whole block (a 10 M-row day's key pass held every
    block, about 2 GB). The source file, the same on every row of a file, is dictionary-encoded
    instead (4 bytes a row rather than about 50)."""
    columns = [
        pc.dictionary_encode(column)
        if name == SOURCE_FILE
        else pa.concat_arrays(column.chunks)
        if column.num_chunks
        else column
        for name, column in zip(table.column_names, table.columns, strict=True)
    ]
    return pa.table(columns, names=table.column_names)
