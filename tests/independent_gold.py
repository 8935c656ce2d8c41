"""An independent computation of the gold tables, straight from the raw CSV files, in DuckDB SQL.

It shares no code with the pipeline: Python's csv module reads the files, and the contract,
the duplicate rule, the region lookup and the aggregates of SPEC §3–§5 are written again as
SQL. The flow tests assert that the pipeline's gold equals this.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb

COLUMNS = {
    "orders": [
        "order_id",
        "customer_id",
        "order_date",
        "order_status",
        "total_amount",
        "updated_at",
    ],
    "customers": [
        "customer_id",
        "first_name",
        "last_name",
        "email",
        "customer_region",
        "signup_date",
        "updated_at",
    ],
    "payments": [
        "payment_id",
        "order_id",
        "payment_date",
        "payment_method",
        "payment_status",
        "amount",
        "updated_at",
    ],
}

SQL = r"""
CREATE MACRO ts(x) AS TRY_STRPTIME(x, '%Y-%m-%dT%H:%M:%SZ');
CREATE MACRO day(x) AS TRY_STRPTIME(x, '%Y-%m-%d')::DATE;
CREATE MACRO money_ok(x) AS regexp_full_match(x, '\d{1,16}(\.\d{1,2})?');

CREATE TABLE customers AS
SELECT customer_id, customer_region, day(signup_date) AS signup_date
FROM raw_customers
WHERE customer_id <> '' AND first_name <> '' AND last_name <> ''
  AND regexp_full_match(email, '[^@\s]+@[^@\s]+\.[^@\s]+')
  AND customer_region IN ('NA', 'LATAM', 'EU', 'MEA', 'APAC')
  AND day(signup_date) IS NOT NULL AND ts(updated_at) IS NOT NULL
QUALIFY row_number() OVER (
    PARTITION BY customer_id ORDER BY ts(updated_at) DESC, file DESC, line DESC) = 1;

CREATE TABLE orders AS
SELECT o.order_id, o.customer_id, day(o.order_date) AS order_date, o.order_status,
       o.total_amount::DECIMAL(18, 2) AS total_amount,
       coalesce(c.customer_region, 'UNKNOWN') AS customer_region
FROM (
    SELECT * FROM raw_orders
    WHERE order_id <> '' AND customer_id <> ''
      AND order_status IN ('placed', 'shipped', 'delivered', 'cancelled', 'returned')
      AND money_ok(total_amount)
      AND day(order_date) IS NOT NULL AND day(order_date) <= file_day
      AND ts(updated_at) IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY order_id ORDER BY ts(updated_at) DESC, file DESC, line DESC) = 1
) o LEFT JOIN customers c USING (customer_id);

CREATE TABLE payments AS
SELECT payment_id, day(payment_date) AS payment_date, payment_method, payment_status,
       amount::DECIMAL(18, 2) AS amount
FROM raw_payments
WHERE payment_id <> '' AND order_id <> ''
  AND payment_method IN ('card', 'paypal', 'bank_transfer', 'gift_card', 'cash_on_delivery')
  AND payment_status IN ('succeeded', 'failed', 'refunded')
  AND money_ok(amount) AND day(payment_date) IS NOT NULL AND ts(updated_at) IS NOT NULL
QUALIFY row_number() OVER (
    PARTITION BY payment_id ORDER BY ts(updated_at) DESC, file DESC, line DESC) = 1;
"""

DAILY_REVENUE = """
SELECT order_date, customer_region,
       count(*) AS orders,
       count(*) FILTER (WHERE order_status = 'cancelled') AS cancelled_orders,
       coalesce(sum(total_amount) FILTER (
           WHERE order_status IN ('placed', 'shipped', 'delivered')), 0) AS revenue,
       count(*) FILTER (WHERE order_status IN ('placed', 'shipped', 'delivered')) AS n,
       count(DISTINCT customer_id) AS customers,
       strftime(order_date, '%Y-%m') AS month
FROM orders GROUP BY ALL ORDER BY order_date, customer_region
"""

DAILY_PAYMENTS = """
SELECT payment_date, payment_method,
       count(*) AS payments,
       count(*) FILTER (WHERE payment_status = 'failed') AS failed_payments,
       coalesce(sum(amount) FILTER (WHERE payment_status = 'succeeded'), 0) AS succeeded_amount,
       coalesce(sum(amount) FILTER (WHERE payment_status = 'refunded'), 0) AS refunded_amount,
       strftime(payment_date, '%Y-%m') AS month
FROM payments GROUP BY ALL ORDER BY payment_date, payment_method
"""

MONTHLY_CUSTOMERS = """
WITH new AS (
    SELECT strftime(signup_date, '%Y-%m') AS month, customer_region, count(*) AS new_customers
    FROM customers GROUP BY ALL
), active AS (
    SELECT strftime(order_date, '%Y-%m') AS month, customer_region,
           count(DISTINCT customer_id) AS active_customers,
           coalesce(sum(total_amount) FILTER (
               WHERE order_status IN ('placed', 'shipped', 'delivered')), 0) AS revenue
    FROM orders GROUP BY ALL
)
SELECT month, customer_region,
       coalesce(new_customers, 0) AS new_customers,
       coalesce(active_customers, 0) AS active_customers,
       coalesce(revenue, 0)::DECIMAL(18, 2) AS revenue
FROM new FULL OUTER JOIN active USING (month, customer_region)
ORDER BY month, customer_region
"""


def _raw_rows(lake_root: Path, dataset: str, days: list[date]) -> list[tuple]:
    rows = []
    for day in days:
        folder = lake_root / "raw" / dataset / f"dt={day.isoformat()}"
        for path in sorted(folder.glob("*.csv")):
            key = path.relative_to(lake_root).as_posix()
            text = path.read_text(encoding="utf-8-sig")
            reader = csv.DictReader(io.StringIO(text, newline=""))
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
            for number, record in enumerate(reader, start=2):
                values = [record.get(column) or "" for column in COLUMNS[dataset]]
                rows.append((key, number, day, *values))
    return rows


def expected_gold(lake_root: Path, days: list[date]) -> dict[str, list[dict]]:
    """Gold rows (keyed by table name) for the raw files of these days under ``lake_root``."""
    con = duckdb.connect()
    for dataset, columns in COLUMNS.items():
        column_sql = ", ".join(f"{c} VARCHAR" for c in columns)
        con.execute(
            f"CREATE TABLE raw_{dataset} (file VARCHAR, line INTEGER, file_day DATE, {column_sql})"
        )
        rows = _raw_rows(lake_root, dataset, days)
        if rows:
            marks = ", ".join("?" * (3 + len(columns)))
            con.executemany(f"INSERT INTO raw_{dataset} VALUES ({marks})", rows)
    con.execute(SQL)
    revenue = _records(con, DAILY_REVENUE)
    for row in revenue:
        # average = revenue / orders counted in it, rounded half up to the cent, in integers
        count = row.pop("n")
        cents = int(row["revenue"] * 100)
        row["avg_order_value"] = (
            None if count == 0 else Decimal((2 * cents + count) // (2 * count)) / 100
        )
    return {
        "daily_revenue": revenue,
        "daily_payments": _records(con, DAILY_PAYMENTS),
        "monthly_customers": _records(con, MONTHLY_CUSTOMERS),
    }


def _records(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
