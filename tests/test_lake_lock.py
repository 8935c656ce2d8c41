"""The gold lock: concurrent rebuilds of one month keep every day (local and S3)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from ecom_pipeline.adapters.lake import Lake
from ecom_pipeline.adapters.lake_lock import LockTimeoutError, lake_lock
from ecom_pipeline.datasets import SPECS, Dataset, silver_schema
from ecom_pipeline.gold_build import read_gold_month, rebuild_daily
from ecom_pipeline.gold_tables import DAILY_REVENUE
from ecom_pipeline.silver_store import SilverStore


def order(order_id: str, day: date) -> dict:
    stamp = datetime(2026, 11, 1, tzinfo=UTC)
    return {
        "order_id": order_id,
        "customer_id": "C1",
        "order_date": day,
        "order_status": "placed",
        "total_amount": Decimal("1.00"),
        "updated_at": stamp,
        "customer_region": "EU",
        "_source_file": f"raw/orders/dt={day}/o.csv",
        "_source_line": 2,
        "_ingested_at": stamp,
        "_run_id": "t",
    }


def test_only_one_holder_at_a_time_and_release_frees_it(lake: Lake) -> None:
    held: list[int] = []
    overlaps: list[int] = []

    def worker(index: int) -> None:
        with lake_lock(lake, "gold", poll_seconds=0.01):
            held.append(index)
            if len(held) > 1:
                overlaps.append(index)
            time.sleep(0.02)
            held.remove(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlaps
    assert not lake.list("_locks/")


def test_an_expired_lease_of_a_dead_holder_is_broken(lake: Lake) -> None:
    stale = {"owner": "dead", "expires_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
    lake.write_bytes("_locks/gold.json", json.dumps(stale).encode())
    with lake_lock(lake, "gold", poll_seconds=0.01) as token:
        assert json.loads(lake.read_bytes("_locks/gold.json"))["owner"] == token


def test_a_live_lease_makes_others_wait_then_give_up(lake: Lake) -> None:
    with (
        lake_lock(lake, "gold"),
        pytest.raises(LockTimeoutError),
        lake_lock(lake, "gold", wait=timedelta(seconds=0.2), poll_seconds=0.01),
    ):
        pass


def test_concurrent_gold_rebuilds_of_one_month_keep_every_day(lake: Lake) -> None:
    days = [date(2026, 11, d) for d in range(1, 7)]
    store = SilverStore(lake, SPECS[Dataset.ORDERS])
    rows = [order(f"O{i}", day) for i, day in enumerate(days)]
    store.merge(pa.Table.from_pylist(rows, schema=silver_schema(SPECS[Dataset.ORDERS])), "seed")

    errors: list[BaseException] = []

    def rebuild(day: date) -> None:
        try:
            with lake_lock(lake, "gold", poll_seconds=0.01):
                rebuild_daily(lake, DAILY_REVENUE, [day])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=rebuild, args=(day,)) for day in days]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    month = read_gold_month(lake, DAILY_REVENUE, "2026-11")
    assert month.column("order_date").to_pylist() == days
