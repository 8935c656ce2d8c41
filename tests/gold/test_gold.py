"""Gold aggregates (SPEC §5) on small tables whose answers are worked out by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pyarrow as pa

from ecom_pipeline.contracts.datasets import AMOUNT_TYPE
from ecom_pipeline.gold import aggregates as gold
from ecom_pipeline.gold.tables import DAILY_PAYMENTS, DAILY_REVENUE, MONTHLY_CUSTOMERS

D1, D2 = date(2026, 11, 20), date(2026, 12, 1)


def orders(*rows: tuple[str, str, date, str, str, str]) -> pa.Table:
    """(order_id, customer_id, order_date, region, status, amount)."""
    return pa.table(
        {
            "order_id": pa.array([r[0] for r in rows], pa.string()),
            "customer_id": pa.array([r[1] for r in rows], pa.string()),
            "order_date": pa.array([r[2] for r in rows], pa.date32()),
            "customer_region": pa.array([r[3] for r in rows], pa.string()),
            "order_status": pa.array([r[4] for r in rows], pa.string()),
            "total_amount": pa.array([Decimal(r[5]) for r in rows], AMOUNT_TYPE),
        }
    )


def test_daily_revenue_counts_cancellations_and_averages_only_revenue_orders() -> None:
    table = orders(
        ("O1", "C1", D1, "EU", "placed", "10.00"),
        ("O2", "C1", D1, "EU", "delivered", "0.01"),
        ("O3", "C2", D1, "EU", "cancelled", "99.99"),
        ("O4", "C3", D1, "EU", "returned", "5.00"),
        ("O5", "C4", D1, "NA", "cancelled", "1.00"),
    )
    result = gold.daily_revenue(table)
    assert result.schema == DAILY_REVENUE.schema
    assert result.to_pylist() == [
        {
            "order_date": D1,
            "customer_region": "EU",
            "orders": 4,
            "cancelled_orders": 1,
            "revenue": Decimal("10.01"),
            "avg_order_value": Decimal("5.01"),  # 10.01 / 2 = 5.005, half up
            "customers": 3,
            "month": "2026-11",
        },
        {
            "order_date": D1,
            "customer_region": "NA",
            "orders": 1,
            "cancelled_orders": 1,
            "revenue": Decimal("0.00"),
            "avg_order_value": None,  # no revenue orders
            "customers": 1,
            "month": "2026-11",
        },
    ]


def test_revenue_is_exact_where_floats_drift() -> None:
    table = orders(*[(f"O{i}", "C1", D1, "EU", "placed", "0.10") for i in range(10)])
    assert gold.daily_revenue(table).column("revenue").to_pylist() == [Decimal("1.00")]


def test_daily_payments_sums_by_status() -> None:
    payments = pa.table(
        {
            "payment_date": pa.array([D1, D1, D1, D1], pa.date32()),
            "payment_method": ["card", "card", "card", "paypal"],
            "payment_status": ["succeeded", "failed", "refunded", "succeeded"],
            "amount": pa.array(
                [Decimal("1.10"), Decimal("2.00"), Decimal("0.55"), Decimal("3")], AMOUNT_TYPE
            ),
        }
    )
    result = gold.daily_payments(payments)
    assert result.schema == DAILY_PAYMENTS.schema
    assert [
        (
            r["payment_method"],
            r["payments"],
            r["failed_payments"],
            r["succeeded_amount"],
            r["refunded_amount"],
        )
        for r in result.to_pylist()
    ] == [
        ("card", 3, 1, Decimal("1.10"), Decimal("0.55")),
        ("paypal", 1, 0, Decimal("3.00"), Decimal("0.00")),
    ]


def test_monthly_customers_joins_signups_activity_and_revenue_by_region() -> None:
    customers = pa.table(
        {
            "customer_id": ["C1", "C2", "C3"],
            "customer_region": ["EU", "NA", "APAC"],
            "signup_date": pa.array([D1, D1, D2], pa.date32()),
        }
    )
    month_orders = orders(
        ("O1", "C1", D1, "EU", "placed", "10.00"),
        ("O2", "C1", D1, "EU", "cancelled", "3.00"),
        ("O3", "C9", D1, "UNKNOWN", "shipped", "2.50"),
    )
    result = gold.monthly_customers(
        "2026-11",
        customers,
        gold.active_customers(month_orders),
        gold.daily_revenue(month_orders),
    )
    assert result.schema == MONTHLY_CUSTOMERS.schema
    assert [tuple(r.values()) for r in result.to_pylist()] == [
        ("2026-11", "EU", 1, 1, Decimal("10.00")),
        ("2026-11", "NA", 1, 0, Decimal("0.00")),
        ("2026-11", "UNKNOWN", 0, 1, Decimal("2.50")),
    ]


def test_empty_inputs_give_empty_tables_of_the_right_schema() -> None:
    assert gold.daily_revenue(orders()).schema == DAILY_REVENUE.schema
    empty_customers = pa.table(
        {
            "customer_id": pa.array([], pa.string()),
            "customer_region": pa.array([], pa.string()),
            "signup_date": pa.array([], pa.date32()),
        }
    )
    assert (
        gold.monthly_customers(
            "2026-11",
            empty_customers,
            gold.active_customers(orders()),
            gold.daily_revenue(orders()),
        ).num_rows
        == 0
    )


def _streamed(table: pa.Table, sizes: tuple[int, ...]) -> pa.RecordBatchReader:
    """The table as a stream of record batches of these sizes (the rest in the last)."""
    batches, start = [], 0
    for size in sizes:
        batches.extend(table.slice(start, size).to_batches())
        start += size
    batches.extend(table.slice(start).to_batches())
    return pa.RecordBatchReader.from_batches(table.schema, batches)


def test_aggregating_a_stream_of_batches_gives_the_whole_answer() -> None:
    """Gold streams a silver scan through its aggregates: uneven batches, a group's rows spread
    over several of them, and empty batches must add up to the whole table's answer."""
    statuses = ["placed", "shipped", "cancelled", "delivered", "succeeded", "failed", "refunded"]
    rows = [
        (f"O{n}", f"C{n % 7}", D1 if n % 3 else D2, ["EU", "NA"][n % 2], statuses[n % 7], f"{n}.05")
        for n in range(60)
    ]
    whole = orders(*rows)
    sizes = (1, 0, 1, 2, 3, 5, 8, 13)
    customers = pa.table(
        {
            "customer_id": pa.array([], pa.string()),
            "customer_region": pa.array([], pa.string()),
            "signup_date": pa.array([], pa.date32()),
        }
    )
    whole_revenue = gold.daily_revenue(whole)
    expected = gold.monthly_customers(
        "2026-11", customers, gold.active_customers(whole), whole_revenue
    )
    assert expected.column("active_customers").to_pylist() == [7, 7]  # C0..C6 in both regions
    assert gold.daily_revenue(_streamed(whole, sizes)).equals(whole_revenue)
    active = gold.active_customers(_streamed(whole, sizes))
    assert gold.monthly_customers("2026-11", customers, active, whole_revenue).equals(expected)

    payments = pa.table(
        {
            "payment_date": whole.column("order_date"),
            "payment_method": whole.column("customer_region"),
            "payment_status": whole.column("order_status"),
            "amount": whole.column("total_amount"),
        }
    )
    streamed = gold.daily_payments(_streamed(payments, sizes))
    assert streamed.equals(gold.daily_payments(payments))
    assert streamed.column("payments").to_pylist() == [
        len([r for r in rows if r[2] == day and r[3] == method])
        for day, method in zip(
            streamed.column("payment_date").to_pylist(),
            streamed.column("payment_method").to_pylist(),
            strict=True,
        )
    ]
