"""Gold aggregates of SPEC §5: pure functions from silver rows to gold rows.

Amounts stay exact decimals throughout (Arrow decimal128 sums, Python `Decimal` for the one
division); each function returns a table with exactly its `GoldTable` schema.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import AMOUNT_TYPE, REVENUE_STATUSES
from ecom_pipeline.gold.tables import DAILY_PAYMENTS, DAILY_REVENUE, MONTHLY_CUSTOMERS

CENT = Decimal("0.01")
ZERO = pa.scalar(Decimal("0.00"), AMOUNT_TYPE)


def month_of(dates: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``YYYY-MM`` of each date."""
    return pc.strftime(dates, format="%Y-%m")


def _amount_where(condition: pa.Array, amounts: pa.Array) -> pa.Array:
    return pc.if_else(condition, amounts, ZERO)


def _as_int(condition: pa.Array) -> pa.Array:
    return pc.cast(condition, pa.int64())


def daily_revenue(orders: pa.Table) -> pa.Table:
    """One row per (order_date, customer_region) that has orders.

    Args:
        orders: silver orders (needs order_date, customer_region, order_status, total_amount,
            customer_id), one row per order.

    Returns:
        Rows of ``gold.daily_revenue``: order counts, cancellations, revenue over placed,
        shipped and delivered orders, their average value (null when none), distinct customers.
    """
    status = orders.column("order_status")
    counts_as_revenue = pc.is_in(status, value_set=pa.array(REVENUE_STATUSES))
    work = pa.table(
        {
            "order_date": orders.column("order_date"),
            "customer_region": orders.column("customer_region"),
            "customer_id": orders.column("customer_id"),
            "cancelled": _as_int(pc.equal(status, "cancelled")),
            "revenue_order": _as_int(counts_as_revenue),
            "revenue": _amount_where(counts_as_revenue, orders.column("total_amount")),
        }
    )
    grouped = work.group_by(["order_date", "customer_region"]).aggregate(
        [
            ([], "count_all"),
            ("cancelled", "sum"),
            ("revenue", "sum"),
            ("revenue_order", "sum"),
            ("customer_id", "count_distinct"),
        ]
    )
    revenue = pc.cast(grouped.column("revenue_sum"), AMOUNT_TYPE)
    revenue_orders = grouped.column("revenue_order_sum")
    average = [
        None if n == 0 else (total / n).quantize(CENT, rounding=ROUND_HALF_UP)
        for total, n in zip(revenue.to_pylist(), revenue_orders.to_pylist(), strict=True)
    ]
    result = pa.table(
        {
            "order_date": grouped.column("order_date"),
            "customer_region": grouped.column("customer_region"),
            "orders": grouped.column("count_all"),
            "cancelled_orders": grouped.column("cancelled_sum"),
            "revenue": revenue,
            "avg_order_value": pa.array(average, AMOUNT_TYPE),
            "customers": grouped.column("customer_id_count_distinct"),
            "month": month_of(grouped.column("order_date")),
        }
    )
    return _conform(result, DAILY_REVENUE.schema, DAILY_REVENUE.key)


def daily_payments(payments: pa.Table) -> pa.Table:
    """One row per (payment_date, payment_method) that has payments.

    Args:
        payments: silver payments, one row per payment.
    """
    status = payments.column("payment_status")
    amount = payments.column("amount")
    work = pa.table(
        {
            "payment_date": payments.column("payment_date"),
            "payment_method": payments.column("payment_method"),
            "failed": _as_int(pc.equal(status, "failed")),
            "succeeded_amount": _amount_where(pc.equal(status, "succeeded"), amount),
            "refunded_amount": _amount_where(pc.equal(status, "refunded"), amount),
        }
    )
    grouped = work.group_by(["payment_date", "payment_method"]).aggregate(
        [
            ([], "count_all"),
            ("failed", "sum"),
            ("succeeded_amount", "sum"),
            ("refunded_amount", "sum"),
        ]
    )
    result = pa.table(
        {
            "payment_date": grouped.column("payment_date"),
            "payment_method": grouped.column("payment_method"),
            "payments": grouped.column("count_all"),
            "failed_payments": grouped.column("failed_sum"),
            "succeeded_amount": pc.cast(grouped.column("succeeded_amount_sum"), AMOUNT_TYPE),
            "refunded_amount": pc.cast(grouped.column("refunded_amount_sum"), AMOUNT_TYPE),
            "month": month_of(grouped.column("payment_date")),
        }
    )
    return _conform(result, DAILY_PAYMENTS.schema, DAILY_PAYMENTS.key)


_PAYMENT_MEASURES = ("payments", "failed_payments", "succeeded_amount", "refunded_amount")


def sum_daily_payments(parts: pa.Table) -> pa.Table:
    """Daily payments rows of disjoint sets of payments (one per silver file), added up."""
    grouped = parts.group_by(["payment_date", "payment_method"]).aggregate(
        [(name, "sum") for name in _PAYMENT_MEASURES]
    )
    result = {name: grouped.column(name) for name in ("payment_date", "payment_method")}
    result |= {name: grouped.column(f"{name}_sum") for name in _PAYMENT_MEASURES}
    result["month"] = month_of(grouped.column("payment_date"))
    return _conform(pa.table(result), DAILY_PAYMENTS.schema, DAILY_PAYMENTS.key)


ACTIVE_CUSTOMERS_SCHEMA = pa.schema(
    [pa.field("customer_region", pa.string()), pa.field("customer_id", pa.string())]
)
#: Rows of orders `ActiveCustomers` gathers before reducing them (about 20 MB of pairs).
REDUCE_AT_ROWS = 1_000_000


def active_customers(orders: pa.Table) -> pa.Table:
    """The distinct (customer_region, customer_id) pairs of a set of orders: who was active,
    by the order's region.

    Active customers of different sets of orders can be concatenated and reduced again
    (`ActiveCustomers`): it is what `monthly_customers` needs of a month's orders.
    """
    pairs = orders.select(ACTIVE_CUSTOMERS_SCHEMA.names)
    return pairs.group_by(ACTIVE_CUSTOMERS_SCHEMA.names).aggregate([])


class ActiveCustomers:
    """The active customers of many sets of orders, added one set at a time.

    New parts wait until they hold as many rows as the merged total (and at least
    ``REDUCE_AT_ROWS``), then are merged into it: each row is reduced O(log parts) times, not
    once per part, and memory stays within about twice the result. A reduction has a fixed cost
    of milliseconds, so parts as small as a record batch wait for company.
    """

    def __init__(self, reduce_at_rows: int = REDUCE_AT_ROWS) -> None:
        self._reduce_at_rows = reduce_at_rows
        self._merged = ACTIVE_CUSTOMERS_SCHEMA.empty_table()
        self._waiting: list[pa.Table] = []
        self._waiting_rows = 0

    def add(self, orders: pa.Table) -> None:
        part = orders.select(ACTIVE_CUSTOMERS_SCHEMA.names).cast(ACTIVE_CUSTOMERS_SCHEMA)
        self._waiting.append(part)
        self._waiting_rows += part.num_rows
        if self._waiting_rows >= max(self._merged.num_rows, self._reduce_at_rows):
            self._merged = self.result()
            self._waiting, self._waiting_rows = [], 0

    def result(self) -> pa.Table:
        return active_customers(pa.concat_tables([self._merged, *self._waiting]))


def monthly_customers(
    month: str, customers: pa.Table, active: pa.Table, daily_revenue: pa.Table
) -> pa.Table:
    """One row per region with new or active customers or revenue in the month.

    Args:
        month: ``YYYY-MM``.
        customers: silver customers (customer_id, customer_region, signup_date), all of them.
        active: `active_customers` of the orders whose order_date falls in the month (of all of
            them at once, or of parts of them concatenated).
        daily_revenue: ``gold.daily_revenue`` rows; those of the month are summed (a month's
            revenue is the sum of its days', exactly: both are decimal sums of the same orders).

    Returns:
        Rows of ``gold.monthly_customers``: customers who signed up in the month, distinct
        customers with an order in the month (by the order's region), and revenue as in
        daily_revenue summed over the month.
    """
    first = date.fromisoformat(f"{month}-01")
    signup = customers.column("signup_date")
    # A range, not month_of: formatting every customer's date costs about a second a run.
    in_month = pc.and_(
        pc.greater_equal(signup, pa.scalar(first)),
        pc.less(signup, pa.scalar((first + timedelta(days=31)).replace(day=1))),
    )
    new = _by_region(customers.filter(in_month), ([], "count_all"))
    active_by_region = _by_region(active, ("customer_id", "count_distinct"))
    days = daily_revenue.filter(pc.equal(daily_revenue.column("month"), month))
    revenue = _by_region(days, ("revenue", "sum"))
    regions = sorted(set(new) | set(active_by_region) | set(revenue))
    result = pa.table(
        {
            "month": [month] * len(regions),
            "customer_region": regions,
            "new_customers": [new.get(r, 0) for r in regions],
            "active_customers": [active_by_region.get(r, 0) for r in regions],
            "revenue": pa.array([revenue.get(r) or Decimal(0) for r in regions], AMOUNT_TYPE),
        }
    )
    return _conform(result, MONTHLY_CUSTOMERS.schema, MONTHLY_CUSTOMERS.key)


def _by_region(rows: pa.Table, aggregate: tuple[Any, str]) -> dict[str, Any]:
    """region → the one aggregate of its rows (``([], "count_all")``, ``("revenue", "sum")``)."""
    grouped = rows.group_by("customer_region").aggregate([aggregate])
    (value,) = [name for name in grouped.column_names if name != "customer_region"]
    regions, values = grouped.column("customer_region"), grouped.column(value)
    return dict(zip(regions.to_pylist(), values.to_pylist(), strict=True))


def _conform(table: pa.Table, schema: pa.Schema, key: tuple[str, ...]) -> pa.Table:
    return table.select(schema.names).cast(schema).sort_by([(k, "ascending") for k in key])
