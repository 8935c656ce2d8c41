"""Gold aggregates of SPEC §5: pure functions from silver rows to gold rows.

Amounts stay exact decimals throughout (Arrow decimal128 sums, Python `Decimal` for the one
division); each function returns a table with exactly its `GoldTable` schema.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

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


def customer_activity(orders: pa.Table) -> pa.Table:
    """One row per (customer_region, customer_id) with orders, and their revenue.

    Activity of different sets of orders can be concatenated and passed on together: it is
    what `monthly_customers` needs of a month's orders, a fraction of their size.

    Args:
        orders: silver orders (customer_id, customer_region, order_status, total_amount).
    """
    counts_as_revenue = pc.is_in(
        orders.column("order_status"), value_set=pa.array(REVENUE_STATUSES)
    )
    work = pa.table(
        {
            "customer_region": orders.column("customer_region"),
            "customer_id": orders.column("customer_id"),
            "revenue": _amount_where(counts_as_revenue, orders.column("total_amount")),
        }
    )
    return _activity_sum(work)


def _activity_sum(activity: pa.Table) -> pa.Table:
    grouped = activity.group_by(["customer_region", "customer_id"]).aggregate([("revenue", "sum")])
    return pa.table(
        {
            "customer_region": grouped.column("customer_region"),
            "customer_id": grouped.column("customer_id"),
            "revenue": pc.cast(grouped.column("revenue_sum"), AMOUNT_TYPE),
        }
    )


class ActivityTotal:
    """The customer activity of many sets of orders, added one set at a time.

    New parts wait until they hold as many rows as the merged total, then are merged into it:
    each row is re-aggregated O(log parts) times, not once per part, and memory stays within
    about twice the result.
    """

    def __init__(self) -> None:
        self._merged = customer_activity_schema().empty_table()
        self._waiting: list[pa.Table] = []
        self._waiting_rows = 0

    def add(self, orders: pa.Table) -> None:
        part = customer_activity(orders)
        self._waiting.append(part)
        self._waiting_rows += part.num_rows
        if self._waiting_rows >= self._merged.num_rows:
            self._merged = _activity_sum(pa.concat_tables([self._merged, *self._waiting]))
            self._waiting, self._waiting_rows = [], 0

    def result(self) -> pa.Table:
        return _activity_sum(pa.concat_tables([self._merged, *self._waiting]))


def customer_activity_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field("customer_region", pa.string()),
            pa.field("customer_id", pa.string()),
            pa.field("revenue", AMOUNT_TYPE),
        ]
    )


def monthly_customers(month: str, customers: pa.Table, activity: pa.Table) -> pa.Table:
    """One row per region with new or active customers or revenue in the month.

    Args:
        month: ``YYYY-MM``.
        customers: silver customers (customer_id, customer_region, signup_date), all of them.
        activity: `customer_activity` of the orders whose order_date falls in the month (of
            all of them at once, or of parts of them concatenated).

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
    signed_up = customers.filter(in_month)
    new = signed_up.group_by("customer_region").aggregate([([], "count_all")])
    by_region = activity.group_by("customer_region").aggregate(
        [("customer_id", "count_distinct"), ("revenue", "sum")]
    )
    new_by_region = dict(
        zip(
            new.column("customer_region").to_pylist(),
            new.column("count_all").to_pylist(),
            strict=True,
        )
    )
    active_by_region = {
        region: (active, revenue)
        for region, active, revenue in zip(
            by_region.column("customer_region").to_pylist(),
            by_region.column("customer_id_count_distinct").to_pylist(),
            by_region.column("revenue_sum").to_pylist(),
            strict=True,
        )
    }
    regions = sorted(set(new_by_region) | set(active_by_region))
    result = pa.table(
        {
            "month": [month] * len(regions),
            "customer_region": regions,
            "new_customers": [new_by_region.get(r, 0) for r in regions],
            "active_customers": [active_by_region.get(r, (0, None))[0] for r in regions],
            "revenue": pa.array(
                [active_by_region.get(r, (0, Decimal(0)))[1] or Decimal(0) for r in regions],
                AMOUNT_TYPE,
            ),
        }
    )
    return _conform(result, MONTHLY_CUSTOMERS.schema, MONTHLY_CUSTOMERS.key)


def _conform(table: pa.Table, schema: pa.Schema, key: tuple[str, ...]) -> pa.Table:
    return table.select(schema.names).cast(schema).sort_by([(k, "ascending") for k in key])
