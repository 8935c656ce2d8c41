"""Partition paths of the silver layer (SPEC §4)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.errors import PartitionValueError
from ecom_pipeline.silver.partitioning import partition_column


def test_partition_column_refuses_a_value_that_cannot_name_a_folder() -> None:
    spec = SPECS[Dataset.CUSTOMERS]
    with pytest.raises(PartitionValueError, match="customer_region"):
        partition_column(pa.table({"customer_region": ["EU", "../x"]}), spec)


def test_partition_paths_are_hive_folders_and_parse_back() -> None:
    from datetime import date

    from ecom_pipeline.silver.partitioning import parse_partition_path

    orders = pa.table({"order_date": [date(2026, 11, 20)], "customer_region": ["EU"]})
    [path] = partition_column(orders, SPECS[Dataset.ORDERS]).to_pylist()
    assert path == "order_date=2026-11-20/customer_region=EU"
    assert parse_partition_path(path) == {"order_date": "2026-11-20", "customer_region": "EU"}
    assert partition_column(pa.table({"age": [30]}), SPECS[Dataset.EMPLOYEES]).to_pylist() == [""]
