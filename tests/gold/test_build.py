"""Gold rebuilt from silver Delta tables on a lake: a partial rebuild equals a full one."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa

from ecom_pipeline.contracts.datasets import SPECS, Dataset, silver_schema
from ecom_pipeline.gold.build import read_gold_month, rebuild
from ecom_pipeline.gold.plan import GoldPlan
from ecom_pipeline.gold.tables import MONTHLY_CUSTOMERS
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.storage import LocalLake
from ecom_pipeline.silver.store import SilverStore

STAMP = datetime(2026, 11, 1, tzinfo=UTC)
OCTOBER = [date(2026, 10, d) for d in (3, 17, 30)]
NOVEMBER = [date(2026, 11, d) for d in (2, 20)]


def _lineage(source: str) -> dict:
    return {"_source_file": source, "_source_line": 2, "_ingested_at": STAMP, "_run_id": "t"}


def _customer(customer_id: str, region: str, signup: date) -> dict:
    return {
        "customer_id": customer_id,
        "email": f"hash-{customer_id}",
        "first_name": f"hash-first-{customer_id}",
        "last_name": f"hash-last-{customer_id}",
        "customer_region": region,
        "signup_date": signup,
        "updated_at": STAMP,
        **_lineage("raw/customers/dt=2026-11-20/c.csv"),
    }


def _order(order_id: str, customer_id: str, region: str, day: date) -> dict:
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "order_date": day,
        "order_status": "placed",
        "total_amount": Decimal("2.50"),
        "updated_at": STAMP,
        "customer_region": region,
        **_lineage(f"raw/orders/dt={day}/o.csv"),
    }


def _merge(lake: LocalLake, dataset: Dataset, rows: list[dict]) -> None:
    spec = SPECS[dataset]
    table = pa.Table.from_pylist(rows, schema=silver_schema(spec))
    SilverStore(lake, spec).merge(table, "t")


def _full_plan() -> GoldPlan:
    return GoldPlan(order_days=set(OCTOBER + NOVEMBER), customer_months={"2026-10", "2026-11"})


def test_a_month_rebuilt_for_its_signups_alone_equals_a_full_rebuild(tmp_path) -> None:
    lake = LocalLake(tmp_path / "lake")
    _merge(
        lake,
        Dataset.CUSTOMERS,
        [_customer(f"C{n}", ["EU", "NA"][n % 2], OCTOBER[n % 3]) for n in range(6)],
    )
    _merge(
        lake,
        Dataset.ORDERS,
        [
            _order(f"O{n}", f"C{n % 3}", ["EU", "NA"][n % 3 % 2], (OCTOBER + NOVEMBER)[n % 5])
            for n in range(40)
        ],
    )
    rebuild(lake, _full_plan())
    october = read_gold_month(lake, MONTHLY_CUSTOMERS, "2026-10")
    assert october.column("new_customers").to_pylist() == [3, 3]
    assert october.column("active_customers").to_pylist() == [2, 1]  # C0, C2 in EU; C1 in NA

    # A customer signs up in October and places no order: only October's signups change.
    _merge(lake, Dataset.CUSTOMERS, [_customer("C9", "NA", OCTOBER[0])])
    rebuild(lake, GoldPlan(customer_months={"2026-10"}))
    partial = read_gold_month(lake, MONTHLY_CUSTOMERS, "2026-10")
    assert partial.column("new_customers").to_pylist() == [3, 4]
    rebuild(lake, _full_plan())
    assert partial.equals(read_gold_month(lake, MONTHLY_CUSTOMERS, "2026-10"))

    # Without a month file to take the active customers from, they are counted.
    lake.delete([layout.gold_key(MONTHLY_CUSTOMERS.name, "2026-10")])
    rebuild(lake, GoldPlan(customer_months={"2026-10"}))
    assert read_gold_month(lake, MONTHLY_CUSTOMERS, "2026-10").equals(partial)
