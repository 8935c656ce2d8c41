"""`IncomingRows`: a merge's rows read twice from scratch, in one order, never whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ecom_pipeline.lake.staging import Staging
from ecom_pipeline.silver.incoming import ACCOUNTED, IncomingRows, working_schema

SILVER = pa.schema([pa.field("id", pa.string()), pa.field("n", pa.int64())])


def staged(*blocks: list[int], readings: list[int] | None = None) -> IncomingRows:
    """Rows in blocks, as the staged files of a day give them, re-read on every reading
    (each reading appends to ``readings``)."""
    schema = working_schema(SILVER)
    readings = readings if readings is not None else []

    def tables() -> list[pa.Table]:
        readings.append(1)
        return [
            pa.table(
                {"id": [f"k{n}" for n in block], "n": block, ACCOUNTED: [True] * len(block)},
                schema=schema,
            )
            for block in blocks
        ]

    return IncomingRows(schema, tables)


def test_columns_are_every_rows_columns_in_order() -> None:
    rows = staged([1, 2], [], [3])
    assert rows.columns(["n"]).column("n").to_pylist() == [1, 2, 3]
    assert rows.columns(["id", ACCOUNTED]).num_columns == 2


def test_filtered_streams_the_masked_rows_across_blocks_and_reads_again_each_time() -> None:
    readings: list[int] = []
    rows = staged([1, 2, 3], [4, 5], readings=readings)
    mask = np.array([False, True, False, True, True])
    for _ in range(2):  # a retried merge reads the rows again
        assert rows.filtered(mask, SILVER).read_all().to_pylist() == [
            {"id": "k2", "n": 2},
            {"id": "k4", "n": 4},
            {"id": "k5", "n": 5},
        ]
    assert len(readings) == 2


def test_rows_that_change_between_readings_are_refused() -> None:
    rows = staged([1, 2, 3])
    with pytest.raises(ValueError, match="changed between readings"):
        rows.filtered(np.ones(4, dtype=bool), SILVER).read_all()


def test_a_table_in_memory_counts_its_rows_unless_it_says_otherwise() -> None:
    table = pa.table({"id": ["a"], "n": [1]})
    assert IncomingRows.from_table(table, SILVER).columns([ACCOUNTED]).to_pylist() == [
        {ACCOUNTED: True}
    ]


def test_the_key_columns_read_from_scratch_keep_none_of_the_staged_blocks(tmp_path: Path) -> None:
    """A block read back from scratch is one buffer; key columns kept by reference would keep
    every block of the day (its wide columns too) in memory while the rest is read."""
    schema = working_schema(pa.schema([*SILVER, pa.field("payload", pa.string())]))
    block = pa.table(
        {
            "id": [f"k{i}" for i in range(1000)],
            "n": range(1000),
            "payload": ["x" * 2000] * 1000,
            ACCOUNTED: [True] * 1000,
        },
        schema=schema,
    )
    block_bytes = block.nbytes
    staged_rows = Staging(tmp_path).write("payments", "day", schema, [block] * 8)
    del block
    held: list[int] = []  # Arrow memory in use as each block is read

    def tables() -> Iterator[pa.Table]:
        for batch in staged_rows.to_reader():
            held.append(pa.total_allocated_bytes() - start)
            yield pa.Table.from_batches([batch])

    start = pa.total_allocated_bytes()
    keys = IncomingRows(schema, tables).columns(["id", "n"])
    assert keys.num_rows == 8000
    assert max(held) < 3 * block_bytes, (held, block_bytes)  # the block read and the last one
