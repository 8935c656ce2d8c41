"""Partition paths and the split of rows by partition (SPEC §4)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecom_pipeline.datasets import SPECS, Dataset
from ecom_pipeline.partitioning import (
    PartitionValueError,
    partition_column,
    split_by_partition,
)

PATHS = ["order_date=2026-11-20/customer_region=EU", "order_date=2026-11-19/customer_region=NA", ""]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PATHS), max_size=60), st.booleans())
def test_split_keeps_every_row_once_in_order_and_partitions_sorted(
    paths: list[str], chunked: bool
) -> None:
    table = pa.table({"row": list(range(len(paths)))})
    array = pa.chunked_array([paths[:7], paths[7:]], pa.string()) if chunked else pa.array(paths)

    parts = list(split_by_partition(table, array))

    assert [name for name, _ in parts] == sorted(set(paths))
    for name, part in parts:
        assert part.column("row").to_pylist() == [i for i, p in enumerate(paths) if p == name]


def test_partition_column_refuses_a_value_that_cannot_name_a_folder() -> None:
    spec = SPECS[Dataset.CUSTOMERS]
    with pytest.raises(PartitionValueError, match="customer_region"):
        partition_column(pa.table({"customer_region": ["EU", "../x"]}), spec)
