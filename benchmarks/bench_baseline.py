"""The baseline: DuckDB turning the same raw CSVs into the same hive partitions as silver.

What it does, per dataset of one ``dt=`` day (SPEC §4 layout):

* reads every CSV of ``raw/{dataset}/dt=DAY/`` with ``read_csv(all_varchar, union_by_name)``
  (files may order their columns differently), then ``TRY_CAST``s each column to its contract
  type (DATE, TIMESTAMPTZ in UTC, DECIMAL(18,2), INTEGER): the Parquet is typed like silver,
  and a defective value becomes NULL instead of aborting the read;
* writes zstd Parquet (like silver) with ``COPY … TO … (FORMAT parquet, PARTITION_BY (…))``:
  orders by ``order_date/customer_region`` (region joined from the day's customers, latest
  ``updated_at`` per customer so the join cannot multiply orders; ``UNKNOWN`` when none),
  payments by ``payment_date``, customers by ``customer_region``, employees as one file.

What it does not do: no validation or quarantine, no deduplication (duplicate rows are
written as they come), no PII hashing, no lineage columns, no merge with earlier silver, no
atomic partition commit, no gold, no warehouse load, no Prefect.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

#: Contract types of the typed columns; every other column stays VARCHAR.
TYPES = {
    "customers": {"signup_date": "DATE", "updated_at": "TIMESTAMPTZ"},
    "orders": {"order_date": "DATE", "total_amount": "DECIMAL(18,2)", "updated_at": "TIMESTAMPTZ"},
    "payments": {"payment_date": "DATE", "amount": "DECIMAL(18,2)", "updated_at": "TIMESTAMPTZ"},
    "employees": {"age": "INTEGER", "hire_date": "DATE", "salary": "DECIMAL(18,2)"},
}
COLUMNS = {
    "customers": [
        "customer_id", "first_name", "last_name", "email", "customer_region", "signup_date",
        "updated_at",
    ],
    "orders": [
        "order_id", "customer_id", "order_date", "order_status", "total_amount", "updated_at",
    ],
    "payments": [
        "payment_id", "order_id", "payment_date", "payment_method", "payment_status", "amount",
        "updated_at",
    ],
    "employees": [
        "first_name", "last_name", "age", "department", "job_title", "hire_date", "salary",
    ],
}  # fmt: skip
PARQUET = "FORMAT parquet, COMPRESSION zstd"
#: See ``duckdb_baseline``.
DISABLED_OPTIMIZERS = "type_pushdown"


def _literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def typed_select(lake: Path, dataset: str, day: date) -> str:
    """``SELECT`` of one day's raw CSVs of ``dataset`` with contract types (bad values → NULL)."""
    files = lake / "raw" / dataset / f"dt={day.isoformat()}" / "*.csv"
    source = (
        f"read_csv({_literal(str(files))}, header = true, delim = ',', quote = '\"', "
        "all_varchar = true, union_by_name = true)"
    )
    types = TYPES[dataset]
    columns = ", ".join(
        f'TRY_CAST("{c}" AS {types[c]}) AS "{c}"' if c in types else f'"{c}"'
        for c in COLUMNS[dataset]
    )
    return f"SELECT {columns} FROM {source}"


def statements(lake: Path, out: Path, day: date) -> dict[str, list[str]]:
    """The SQL of each dataset, in run order (customers first: orders join them)."""
    target = {name: _literal(str(out / name)) for name in COLUMNS}
    region = (
        "SELECT customer_id, arg_max(customer_region, updated_at) AS customer_region "
        "FROM customers GROUP BY customer_id"
    )
    orders = (
        "SELECT o.*, coalesce(r.customer_region, 'UNKNOWN') AS customer_region "
        f"FROM ({typed_select(lake, 'orders', day)}) AS o "
        f"LEFT JOIN ({region}) AS r USING (customer_id)"
    )
    employees_file = _literal(str(out / "employees" / "employees.parquet"))
    return {
        "customers": [
            f"CREATE TEMP TABLE customers AS {typed_select(lake, 'customers', day)}",
            f"COPY customers TO {target['customers']} "
            f"({PARQUET}, PARTITION_BY (customer_region), OVERWRITE_OR_IGNORE)",
        ],
        "orders": [
            f"COPY ({orders}) TO {target['orders']} "
            f"({PARQUET}, PARTITION_BY (order_date, customer_region), OVERWRITE_OR_IGNORE)",
        ],
        "payments": [
            f"COPY ({typed_select(lake, 'payments', day)}) TO {target['payments']} "
            f"({PARQUET}, PARTITION_BY (payment_date), OVERWRITE_OR_IGNORE)",
        ],
        "employees": [
            f"COPY ({typed_select(lake, 'employees', day)}) TO {employees_file} ({PARQUET})",
        ],
    }


def duckdb_baseline(lake: Path, out: Path, day: date) -> dict[str, Any]:
    """Run the baseline; seconds and rows written per dataset, and the total."""
    import duckdb

    (out / "employees").mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), time.process_time()
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    # DuckDB 2.0's type_pushdown turns the TRY_CASTs into strict casts inside read_csv, and the
    # first defective value then aborts the read ("Could not convert string '2026-11-32' to
    # 'DATE'"). Without it the casts stay TRY_CASTs, as written.
    connection.execute(f"SET disabled_optimizers = '{DISABLED_OPTIMIZERS}'")
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    for dataset, sqls in statements(lake, out, day).items():
        began = time.perf_counter()
        for sql in sqls:
            answer = connection.execute(sql).fetchone()
        rows[dataset] = int(answer[0]) if answer else 0
        seconds[dataset] = round(time.perf_counter() - began, 3)
    setting = connection.execute("SELECT current_setting('threads')").fetchone()
    threads = setting[0] if setting else None
    connection.close()
    total = time.perf_counter() - start
    return {
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "seconds": seconds,
        "total_seconds": round(total, 3),
        "rows_written": rows,
        "threads": threads,
        "disabled_optimizers": DISABLED_OPTIMIZERS,
        "files_written": sum(1 for _ in out.rglob("*.parquet")),
    }
