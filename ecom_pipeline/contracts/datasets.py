"""The source datasets of SPEC §3 and §4: columns, keys, partitions and PII, in one place.

Everything that differs between datasets is data here; the code that validates, deduplicates
and partitions is written once and reads these specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import pyarrow as pa

ColumnKind = Literal["string", "date", "timestamp", "decimal", "integer"]

#: Every amount is an exact decimal with two places, end to end (CSV → silver → gold → warehouse).
AMOUNT_TYPE = pa.decimal128(18, 2)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": TIMESTAMP_TYPE,
    "decimal": AMOUNT_TYPE,
    "integer": pa.int32(),
}


class Dataset(StrEnum):
    """The datasets upstream systems deliver under ``raw/{dataset}/dt=YYYY-MM-DD/``."""

    ORDERS = "orders"
    CUSTOMERS = "customers"
    PAYMENTS = "payments"
    EMPLOYEES = "employees"


@dataclass(frozen=True)
class Column:
    """A source column: its name, kind, whether it is PII (hashed from validate on), and
    whether its values are nearly all different from row to row (ids, e-mails, update times:
    silver stores them without a Parquet dictionary, which such values only outgrow)."""

    name: str
    kind: ColumnKind
    pii: bool = False
    distinct: bool = False

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.kind]


@dataclass(frozen=True)
class DatasetSpec:
    """The contract of one source dataset.

    Attributes:
        name: the dataset, also its folder name under ``raw/`` and ``processed/``.
        columns: the source columns, in the canonical order silver stores them.
        key: the columns that identify a row; one row per key survives (SPEC §3).
        version_column: the column whose latest value wins among duplicates, or None when the
            last row seen wins (employees).
        partition_by: hive partition columns of the silver layer (SPEC §4).
        date_column: the date partition a row is dated by: silver retention expires rows by
            it and gold rebuilds the days it names; None when rows are not dated (customers,
            employees are kept whole).
    """

    name: Dataset
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    version_column: str | None
    partition_by: tuple[str, ...]
    date_column: str | None = None

    def __post_init__(self) -> None:
        if self.date_column is not None and self.date_column not in self.partition_by:
            raise ValueError(
                f"{self.name}: date_column {self.date_column!r} must be one of the partition "
                f"columns {self.partition_by}"
            )

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def pii_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.pii)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        """The typed schema of the dataset's business columns (PII columns hold hex hashes)."""
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])


ORDER_STATUSES = ("placed", "shipped", "delivered", "cancelled", "returned")
#: Statuses whose amount counts as revenue (SPEC §5).
REVENUE_STATUSES = ("placed", "shipped", "delivered")
REGIONS = ("NA", "LATAM", "EU", "MEA", "APAC")
#: Region of an order whose customer silver does not know yet (SPEC §4).
UNKNOWN_REGION = "UNKNOWN"
PAYMENT_METHODS = ("card", "paypal", "bank_transfer", "gift_card", "cash_on_delivery")
PAYMENT_STATUSES = ("succeeded", "failed", "refunded")

SPECS: dict[Dataset, DatasetSpec] = {
    Dataset.CUSTOMERS: DatasetSpec(
        name=Dataset.CUSTOMERS,
        columns=(
            Column("customer_id", "string", distinct=True),
            Column("first_name", "string", pii=True),
            Column("last_name", "string", pii=True),
            Column("email", "string", pii=True, distinct=True),
            Column("customer_region", "string"),
            Column("signup_date", "date"),
            Column("updated_at", "timestamp", distinct=True),
        ),
        key=("customer_id",),
        version_column="updated_at",
        partition_by=("customer_region",),
    ),
    Dataset.ORDERS: DatasetSpec(
        name=Dataset.ORDERS,
        columns=(
            Column("order_id", "string", distinct=True),
            Column("customer_id", "string", distinct=True),
            Column("order_date", "date"),
            Column("order_status", "string"),
            Column("total_amount", "decimal"),
            Column("updated_at", "timestamp", distinct=True),
        ),
        key=("order_id",),
        version_column="updated_at",
        # customer_region is not a source column: silver adds it from the customer.
        partition_by=("order_date", "customer_region"),
        date_column="order_date",
    ),
    Dataset.PAYMENTS: DatasetSpec(
        name=Dataset.PAYMENTS,
        columns=(
            Column("payment_id", "string", distinct=True),
            Column("order_id", "string", distinct=True),
            Column("payment_date", "date"),
            Column("payment_method", "string"),
            Column("payment_status", "string"),
            Column("amount", "decimal"),
            Column("updated_at", "timestamp", distinct=True),
        ),
        key=("payment_id",),
        version_column="updated_at",
        partition_by=("payment_date",),
        date_column="payment_date",
    ),
    Dataset.EMPLOYEES: DatasetSpec(
        name=Dataset.EMPLOYEES,
        columns=(
            Column("first_name", "string", pii=True),
            Column("last_name", "string", pii=True),
            Column("age", "integer"),
            Column("department", "string"),
            Column("job_title", "string"),
            Column("hire_date", "date"),
            Column("salary", "decimal"),
        ),
        key=("first_name", "last_name", "age"),
        version_column=None,
        partition_by=(),
    ),
}

#: Datasets a run may process at the same time, one lane beside the other; within a lane, in
#: order. Orders take their region from the customers silver holds, so they follow customers.
LANES: tuple[tuple[Dataset, ...], ...] = (
    (Dataset.CUSTOMERS, Dataset.ORDERS),
    (Dataset.PAYMENTS, Dataset.EMPLOYEES),
)
#: The order a run processes datasets in when one at a time (and reports them in).
PROCESSING_ORDER: tuple[Dataset, ...] = tuple(d for lane in LANES for d in lane)

# Lineage columns every silver row carries (SPEC §4). `_source_line` makes the duplicate rule's
# tie-break ("later file, then later line") independent of the order runs happen in.
SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
INGESTED_AT = "_ingested_at"
RUN_ID = "_run_id"
LINEAGE_FIELDS = (
    pa.field(SOURCE_FILE, pa.string()),
    pa.field(SOURCE_LINE, pa.int64()),
    pa.field(INGESTED_AT, TIMESTAMP_TYPE),
    pa.field(RUN_ID, pa.string()),
)


def validated_schema(spec: DatasetSpec) -> pa.Schema:
    """Schema of a validated row: typed business columns (PII hashed) and lineage."""
    return pa.schema([*spec.arrow_schema(), *LINEAGE_FIELDS])


def silver_schema(spec: DatasetSpec) -> pa.Schema:
    """Schema of a silver row: business columns, the derived partition columns, lineage."""
    fields = list(spec.arrow_schema())
    for name in spec.partition_by:
        if name not in spec.column_names:
            fields.append(pa.field(name, pa.string()))
    fields.extend(LINEAGE_FIELDS)
    return pa.schema(fields)
