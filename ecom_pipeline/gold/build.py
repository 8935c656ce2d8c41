"""The gold step: rebuild the gold rows of the days and months a run touched, from silver.

The lake keeps one file per gold table and month, ``gold/{table}/month=YYYY-MM/{table}.parquet``,
replaced whole (atomically) when any of its days changes. A month file always holds the complete
month, so the warehouse load can replace whole months and a day whose rows all vanished leaves
nothing stale behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.gold import aggregates as gold
from ecom_pipeline.gold.plan import GoldPlan
from ecom_pipeline.gold.tables import (
    DAILY_PAYMENTS,
    DAILY_REVENUE,
    MONTHLY_CUSTOMERS,
    GoldTable,
)
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.storage import Lake
from ecom_pipeline.silver.partitioning import parse_partition_path
from ecom_pipeline.silver.store import SilverSnapshot, SilverStore

PAYMENT_COLUMNS = ["payment_date", "payment_method", "payment_status", "amount"]
ORDER_COLUMNS = [
    "order_id",
    "customer_id",
    "order_date",
    "order_status",
    "total_amount",
    "customer_region",
]


@dataclass(frozen=True)
class GoldMonth:
    """The complete rows of one gold table for one month, as written to the lake."""

    table: GoldTable
    month: str
    key: str
    rows: pa.Table


def rebuild(lake: Lake, plan: GoldPlan) -> list[GoldMonth]:
    """Rewrite ``gold/{table}/month=…`` of every gold table for the days and months planned."""
    orders = SilverStore(lake, SPECS[Dataset.ORDERS]).current()  # one version for all of gold
    payments = SilverStore(lake, SPECS[Dataset.PAYMENTS]).current()
    revenue = rebuild_daily(lake, DAILY_REVENUE, orders, sorted(plan.order_days))
    daily_payments = rebuild_daily(lake, DAILY_PAYMENTS, payments, sorted(plan.payment_days))
    rebuilt = {m.month: m.rows for m in revenue}
    return (
        revenue
        + daily_payments
        + rebuild_monthly_customers(lake, orders, plan.monthly_months, rebuilt)
    )


def read_gold_month(lake: Lake, table: GoldTable, month: str) -> pa.Table:
    try:
        return lake.read_parquet([layout.gold_key(table.name, month)]).cast(table.schema)
    except FileNotFoundError:
        return table.schema.empty_table()


def _date_column(dataset: Dataset) -> str:
    """The date partition ``dataset``'s rows are dated by (`DatasetSpec.date_column`)."""
    column = SPECS[dataset].date_column
    assert column is not None, f"{dataset} rows are not dated"
    return column


def _partitions_where(
    snapshot: SilverSnapshot, column: str, keep: Callable[[str], bool]
) -> list[str]:
    """The version's partitions whose value of ``column`` passes ``keep`` (from the Delta log:
    no data file is opened)."""
    return [p for p in snapshot.partitions if keep(parse_partition_path(p)[column])]


def _in_month(month: str) -> Callable[[str], bool]:
    prefix = f"{month}-"
    return lambda day: day.startswith(prefix)


def _replace_days(
    old: pa.Table, new: pa.Table, date_column: str, days: set[date], table: GoldTable
) -> pa.Table:
    keep = pc.invert(pc.is_in(old.column(date_column), value_set=pa.array(sorted(days))))
    merged = pa.concat_tables([old.filter(keep), new.cast(table.schema)])
    return merged.sort_by([(k, "ascending") for k in table.key])


def rebuild_daily(
    lake: Lake, table: GoldTable, snapshot: SilverSnapshot, days: list[date]
) -> list[GoldMonth]:
    """Recompute a daily gold table for these days from one silver version, and rewrite their
    month files.

    A month's days are one scan of their partitions (pruned in the Delta log) streamed through
    the aggregation: memory holds the groups, not the days.
    """
    aggregate, columns = {
        DAILY_REVENUE.name: (gold.daily_revenue, ORDER_COLUMNS),
        DAILY_PAYMENTS.name: (gold.daily_payments, PAYMENT_COLUMNS),
    }[table.name]
    date_column = _date_column(snapshot.store.spec.name)  # also the day column of the table
    by_month: dict[str, set[date]] = {}
    for day in days:
        by_month.setdefault(day.strftime("%Y-%m"), set()).add(day)
    months = []
    for month, month_days in sorted(by_month.items()):
        wanted = {d.isoformat() for d in month_days}
        partitions = _partitions_where(snapshot, date_column, wanted.__contains__)
        rows = _replace_days(
            read_gold_month(lake, table, month),
            aggregate(snapshot.reader(partitions, columns)),
            date_column,
            month_days,
            table,
        )
        key = layout.gold_key(table.name, month)
        lake.write_parquet(key, rows)
        months.append(GoldMonth(table, month, key, rows))
    return months


def rebuild_monthly_customers(
    lake: Lake, orders: SilverSnapshot, months: list[str], daily_revenue: Mapping[str, pa.Table]
) -> list[GoldMonth]:
    """Recompute ``monthly_customers`` for these months from one orders version, and rewrite
    their files.

    ``daily_revenue`` holds the months whose orders this run changed (their rebuilt
    ``daily_revenue`` rows). A month's revenue is summed from its ``daily_revenue`` rows (read
    from the lake for the other months). Its active customers are counted from one streamed
    scan of its orders' regions and customer ids (memory holds the distinct customers, not the
    month) when its orders changed; a month rebuilt only for its signups keeps the counts its
    file holds, which no other change can alter.
    """
    customers = SilverStore(lake, SPECS[Dataset.CUSTOMERS]).read(
        columns=["customer_id", "customer_region", "signup_date"]
    )
    result = []
    for month in sorted(set(months)):
        revenue = daily_revenue.get(month)
        if revenue is None:  # the run changed the month's signups, not its orders
            revenue = read_gold_month(lake, DAILY_REVENUE, month)
            active = _active_customers_of(read_gold_month(lake, MONTHLY_CUSTOMERS, month))
        else:
            active = None
        if active is None:  # its orders changed, or it has no file yet: count them
            active = _active_customers(orders, month)
        rows = gold.monthly_customers(month, customers, active, revenue)
        key = layout.gold_key(MONTHLY_CUSTOMERS.name, month)
        lake.write_parquet(key, rows)
        result.append(GoldMonth(MONTHLY_CUSTOMERS, month, key, rows))
    return result


def _active_customers(orders: SilverSnapshot, month: str) -> pa.Table:
    partitions = _partitions_where(orders, _date_column(Dataset.ORDERS), _in_month(month))
    return gold.active_customers(orders.reader(partitions, ["customer_region", "customer_id"]))


def _active_customers_of(month_file: pa.Table) -> pa.Table | None:
    """The active customers a ``monthly_customers`` file holds (None for no file)."""
    if month_file.num_rows == 0:
        return None
    return month_file.select(["customer_region", "active_customers"])
