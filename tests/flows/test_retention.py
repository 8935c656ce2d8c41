"""The retention flow (SPEC §2, §5): each layer expires by the day in its keys."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.lake.layout import day_in_key
from ecom_pipeline.lake.retention import Cutoffs, expired_keys
from ecom_pipeline.lake.storage import LocalLake
from ecom_pipeline.settings import load_settings
from ecom_pipeline.silver.store import SilverStore
from flows.daily import daily
from flows.retention import retention
from tests.flows.test_daily import warehouse_rows

OLD, RECENT = date(2020, 11, 2), date(2026, 11, 20)
TODAY = date(2026, 11, 22)


def test_cutoffs_follow_the_spec() -> None:
    cutoffs = Cutoffs.for_day(TODAY)
    assert cutoffs.bronze == date(2026, 10, 23)
    assert cutoffs.silver == cutoffs.quarantine == cutoffs.run_records == date(2025, 11, 22)
    assert cutoffs.gold_month == "2021-11"


def test_keys_expire_by_their_day_not_their_age_on_disk() -> None:
    keys = [
        "raw/orders/dt=2026-10-01/a.csv",
        "raw/orders/dt=2026-11-01/a.csv",
        "_runs/ledger/orders/dt=2026-10-01.json",
        "_runs/alerts/20261001T000000Z-failure.json",
    ]
    assert day_in_key(keys[0]) == date(2026, 10, 1)
    assert expired_keys(keys, date(2026, 10, 23)) == [keys[0], keys[2], keys[3]]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_retention_expires_old_data_everywhere_and_keeps_recent(pipeline_env: Path) -> None:
    lake_root = pipeline_env / "lake"
    lake = LocalLake(lake_root)
    config = GeneratorConfig(orders_per_day=60, employees=5, clean=True)
    for day in (OLD, RECENT):
        write_raw_files(lake, generate_day(day, config))
        assert daily(run_date=day).succeeded

    summary = retention(today=TODAY)

    assert summary.deleted["raw"] > 0
    assert not (lake_root / "raw" / "orders" / f"dt={OLD}").exists()
    assert list((lake_root / "raw" / "orders" / f"dt={RECENT}").glob("*.csv"))
    orders = SilverStore(lake, SPECS[Dataset.ORDERS]).current()
    assert not [p for p in orders.partitions if p.startswith(f"order_date={OLD}")]
    assert [p for p in orders.partitions if p.startswith(f"order_date={RECENT}")]
    payments = SilverStore(lake, SPECS[Dataset.PAYMENTS]).current()
    assert list(payments.partitions) == [f"payment_date={RECENT}"]
    # the deleted rows' files stay for a week of time travel, then vacuum removes them
    assert (lake_root / "processed" / "payments" / f"payment_date={OLD}").exists()
    assert payments.table is not None and payments.table.get_add_actions().num_rows == 1
    assert list((lake_root / "processed" / "payments" / "_delta_log").glob("*.checkpoint.parquet"))
    assert not (lake_root / "gold" / "daily_revenue" / "month=2020-11").exists()
    assert (lake_root / "gold" / "daily_revenue" / "month=2026-11").exists()
    rows = warehouse_rows(load_settings().warehouse_url.get_secret_value())
    for table in ("daily_revenue", "daily_payments", "monthly_customers"):
        assert rows[table], table
        assert all(r["month"] >= "2021-11" for r in rows[table]), table
    assert not list((lake_root / "_runs").glob(f"dt={OLD}"))

    again = retention(today=TODAY)  # idempotent: nothing left to expire
    assert again.deleted["raw"] == 0 and again.deleted["gold rows"] == 0
