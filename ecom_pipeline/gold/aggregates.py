"""Gold aggregates of SPEC §5: pure functions from silver rows to gold rows.

Amounts stay exact decimals throughout (Arrow decimal128 sums, Python `Decimal` for the one
division); each function returns a table with exactly its `GoldTable` schema.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.acero as ac
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import AMOUNT_TYPE, REVENUE_STATUSES
from ecom_pipeline.gold.tables import DAILY_PAYMENTS, DAILY_REVENUE, MONTHLY_CUSTOMERS

CENT = Decimal("0.01")
ZERO = pa.scalar(Decimal("0.00"), AMOUNT_TYPE)


def month_of(dates: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``YYYY-MM`` of each date."""
    return pc.strftime(dates, format="%Y-%m")


#: Rows an aggregate reads: a table, or a stream of record batches (a silver scan) that the
#: aggregation consumes as it comes, so memory holds its groups, not the rows.
Rows: TypeAlias = pa.Table | pa.RecordBatchReader


def _aggregate(
    rows: Rows,
    columns: dict[str, pc.Expression],
    keys: list[str],
    aggregates: list[tuple[Any, str, Any, str]],
) -> pa.Table:
    """``rows`` projected to ``columns``, then grouped by ``keys`` (one Acero plan, streamed)."""
    if isinstance(rows, pa.Table):
        source = ac.Declaration("table_source", ac.TableSourceNodeOptions(rows))
    else:
        options = ac.RecordBatchReaderSourceNodeOptions(rows)
        source = ac.Declaration("record_batch_reader_source", options)
    plan = ac.Declaration.from_sequence(
        [
            source,
            ac.Declaration("project", ac.ProjectNodeOptions(list(columns.values()), list(columns))),
            ac.Declaration("aggregate", ac.AggregateNodeOptions(aggregates, keys=keys)),
        ]
    )
    return plan.to_table(use_threads=True)


def _amount_where(condition: pc.Expression, amount: str) -> pc.Expression:
    return pc.if_else(condition, pc.field(amount), ZERO)


def _as_int(condition: pc.Expression) -> pc.Expression:
    return condition.cast(pa.int64())


def daily_revenue(orders: Rows) -> pa.Table:
    """One row per (order_date, customer_region) that has orders.

    Args:
        orders: silver orders (needs order_date, customer_region, order_status, total_amount,
            customer_id), one row per order.

    Returns:
        Rows of ``gold.daily_revenue``: order counts, cancellations, revenue over placed,
        shipped and delivered orders, their average value (null when none), distinct customers.
    """
    status = pc.field("order_status")
    counts_as_revenue = status.isin(REVENUE_STATUSES)
    grouped = _aggregate(
        orders,
        {
            "order_date": pc.field("order_date"),
            "customer_region": pc.field("customer_region"),
            "customer_id": pc.field("customer_id"),
            "cancelled": _as_int(status == "cancelled"),
            "revenue_order": _as_int(counts_as_revenue),
            "revenue": _amount_where(counts_as_revenue, "total_amount"),
        },
        ["order_date", "customer_region"],
        [
            ([], "hash_count_all", None, "orders"),
            ("cancelled", "hash_sum", None, "cancelled_orders"),
            ("revenue", "hash_sum", None, "revenue"),
            ("revenue_order", "hash_sum", None, "revenue_orders"),
            ("customer_id", "hash_count_distinct", None, "customers"),
        ],
    )
    revenue = pc.cast(grouped.column("revenue"), AMOUNT_TYPE)
    revenue_orders = grouped.column("revenue_orders")
    average = [
        None if n == 0 else (total / n).quantize(CENT, rounding=ROUND_HALF_UP)
        for total, n in zip(revenue.to_pylist(), revenue_orders.to_pylist(), strict=True)
    ]
    result = pa.table(
        {
            "order_date": grouped.column("order_date"),
            "customer_region": grouped.column("customer_region"),
            "orders": grouped.column("orders"),
            "cancelled_orders": grouped.column("cancelled_orders"),
            "revenue": revenue,
            "avg_order_value": pa.array(average, AMOUNT_TYPE),
            "customers": grouped.column("customers"),
            "month": month_of(grouped.column("order_date")),
        }
    )
    return _conform(result, DAILY_REVENUE.schema, DAILY_REVENUE.key)


def daily_payments(payments: Rows) -> pa.Table:
    """One row per (payment_date, payment_method) that has payments.

    Args:
        payments: silver payments, one row per payment.
    """
    status = pc.field("payment_status")
    grouped = _aggregate(
        payments,
        {
            "payment_date": pc.field("payment_date"),
            "payment_method": pc.field("payment_method"),
            "failed": _as_int(status == "failed"),
            "succeeded_amount": _amount_where(status == "succeeded", "amount"),
            "refunded_amount": _amount_where(status == "refunded", "amount"),
        },
        ["payment_date", "payment_method"],
        [
            ([], "hash_count_all", None, "payments"),
            ("failed", "hash_sum", None, "failed_payments"),
            ("succeeded_amount", "hash_sum", None, "succeeded_amount"),
            ("refunded_amount", "hash_sum", None, "refunded_amount"),
        ],
    )
    result = pa.table(
        {
            "payment_date": grouped.column("payment_date"),
            "payment_method": grouped.column("payment_method"),
            "payments": grouped.column("payments"),
            "failed_payments": grouped.column("failed_payments"),
            "succeeded_amount": pc.cast(grouped.column("succeeded_amount"), AMOUNT_TYPE),
            "refunded_amount": pc.cast(grouped.column("refunded_amount"), AMOUNT_TYPE),
            "month": month_of(grouped.column("payment_date")),
        }
    )
    return _conform(result, DAILY_PAYMENTS.schema, DAILY_PAYMENTS.key)


def active_customers(orders: Rows) -> pa.Table:
    """How many distinct customers ordered, by the order's region: (customer_region,
    active_customers). It is what `monthly_customers` needs of a month's orders; streamed, it
    holds the distinct customers, not the orders."""
    return _aggregate(
        orders,
        {"customer_region": pc.field("customer_region"), "customer_id": pc.field("customer_id")},
        ["customer_region"],
        [("customer_id", "hash_count_distinct", None, "active_customers")],
    )


def monthly_customers(
    month: str, customers: pa.Table, active: pa.Table, daily_revenue: pa.Table
) -> pa.Table:
    """One row per region with new or active customers or revenue in the month.

    Args:
        month: ``YYYY-MM``.
        customers: silver customers (customer_id, customer_region, signup_date), all of them.
        active: `active_customers` of the orders whose order_date falls in the month.
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
    active_by_region = dict(
        zip(
            active.column("customer_region").to_pylist(),
            active.column("active_customers").to_pylist(),
            strict=True,
        )
    )
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
