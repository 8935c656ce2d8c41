"""Hive partition paths of the silver layer (SPEC §4), built and checked in one place.

A partition value becomes a folder name, so it is checked before it is used: a value such as
``..``, ``a/b`` or an empty string could otherwise make a writer leave its dataset's folder.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import DatasetSpec
from ecom_pipeline.errors import PartitionValueError

_SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
#: Separates key columns in a combined key (a control character no value contains).
KEY_SEPARATOR = "\x1f"


def check_partition_value(column: str, value: str) -> str:
    if not _SAFE_VALUE.fullmatch(value) or value in (".", ".."):
        raise PartitionValueError(
            f"partition value {value!r} of column {column!r} cannot name a folder: expected "
            "letters, digits and _.:- (at most 64, not starting with a symbol)"
        )
    return value


def partition_path(spec: DatasetSpec, values: dict[str, str]) -> str:
    """``order_date=2026-11-20/customer_region=EU`` (empty for an unpartitioned dataset)."""
    return "/".join(
        f"{column}={check_partition_value(column, values[column])}" for column in spec.partition_by
    )


def parse_partition_path(path: str) -> dict[str, str]:
    """The inverse of `partition_path`."""
    if not path:
        return {}
    return dict(segment.split("=", 1) for segment in path.split("/"))


def partition_column(table: pa.Table, spec: DatasetSpec) -> pa.Array:
    """Each row's partition path, as a string array; every value is checked first."""
    if not spec.partition_by:
        return pa.array([""] * table.num_rows, pa.string())
    parts = []
    for column in spec.partition_by:
        text = pc.cast(table.column(column), pa.string())
        for value in pc.unique(text).to_pylist():
            if value is None:
                raise PartitionValueError(f"{spec.name}: a row has no {column!r} to partition by")
            check_partition_value(column, value)
        parts.append(pc.binary_join_element_wise(f"{column}=", text, ""))
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "/")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def partitions_of(table: pa.Table, spec: DatasetSpec) -> set[str]:
    """The distinct partition paths of the rows (checked like `partition_column`), computed on
    the distinct partition values: a day's million rows hold a handful of partitions."""
    if table.num_rows == 0:
        return set()
    if not spec.partition_by:
        return {""}
    columns = list(spec.partition_by)
    distinct = table.select(columns).group_by(columns, use_threads=False).aggregate([])
    return set(partition_column(distinct, spec).to_pylist())


def combined_key(table: pa.Table, spec: DatasetSpec) -> pa.Array:
    """The key as one string per row (the single key column itself when there is one)."""
    columns = [pc.cast(table.column(name), pa.string()) for name in spec.key]
    joined = (
        columns[0] if len(columns) == 1 else pc.binary_join_element_wise(*columns, KEY_SEPARATOR)
    )
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined
