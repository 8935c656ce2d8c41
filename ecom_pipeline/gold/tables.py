"""The gold tables of SPEC §5: names, keys and typed columns.

The gold builder produces Arrow tables with exactly these columns (in this order), the lake
stores them as ``gold/{table}/month=YYYY-MM/{table}.parquet``, and the warehouse adapter creates
and loads tables of the same shape plus ``_loaded_at``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ecom_pipeline.contracts.datasets import AMOUNT_TYPE

LOADED_AT = "_loaded_at"
#: Every gold table carries `month` (YYYY-MM); a load replaces whole months (SPEC §5).
MONTH = "month"


@dataclass(frozen=True)
class GoldTable:
    """One gold table.

    Attributes:
        name: table name in the lake and in the warehouse schema.
        schema: the columns as built and stored in the lake (no ``_loaded_at``).
        key: the columns that identify a row.
    """

    name: str
    schema: pa.Schema
    key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(self.schema.names)


DAILY_REVENUE = GoldTable(
    name="daily_revenue",
    schema=pa.schema(
        [
            pa.field("order_date", pa.date32(), nullable=False),
            pa.field("customer_region", pa.string(), nullable=False),
            pa.field("orders", pa.int64(), nullable=False),
            pa.field("cancelled_orders", pa.int64(), nullable=False),
            pa.field("revenue", AMOUNT_TYPE, nullable=False),
            pa.field("avg_order_value", AMOUNT_TYPE),
            pa.field("customers", pa.int64(), nullable=False),
            pa.field(MONTH, pa.string(), nullable=False),
        ]
    ),
    key=("order_date", "customer_region"),
)

DAILY_PAYMENTS = GoldTable(
    name="daily_payments",
    schema=pa.schema(
        [
            pa.field("payment_date", pa.date32(), nullable=False),
            pa.field("payment_method", pa.string(), nullable=False),
            pa.field("payments", pa.int64(), nullable=False),
            pa.field("failed_payments", pa.int64(), nullable=False),
            pa.field("succeeded_amount", AMOUNT_TYPE, nullable=False),
            pa.field("refunded_amount", AMOUNT_TYPE, nullable=False),
            pa.field(MONTH, pa.string(), nullable=False),
        ]
    ),
    key=("payment_date", "payment_method"),
)

MONTHLY_CUSTOMERS = GoldTable(
    name="monthly_customers",
    schema=pa.schema(
        [
            pa.field(MONTH, pa.string(), nullable=False),
            pa.field("customer_region", pa.string(), nullable=False),
            pa.field("new_customers", pa.int64(), nullable=False),
            pa.field("active_customers", pa.int64(), nullable=False),
            pa.field("revenue", AMOUNT_TYPE, nullable=False),
        ]
    ),
    key=(MONTH, "customer_region"),
)

GOLD_TABLES: tuple[GoldTable, ...] = (DAILY_REVENUE, DAILY_PAYMENTS, MONTHLY_CUSTOMERS)


def gold_table(name: str) -> GoldTable:
    for table in GOLD_TABLES:
        if table.name == name:
            return table
    known = ", ".join(t.name for t in GOLD_TABLES)
    raise KeyError(f"unknown gold table {name!r}; known: {known}")
