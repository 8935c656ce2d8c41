"""The gold lock (local and S3): one holder at a time, short renewed leases, a killed holder's
lease runs out within a minute, waiters say what they wait for."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from ecom_pipeline.contracts.datasets import SPECS, Dataset, silver_schema
from ecom_pipeline.errors import LockTimeoutError
from ecom_pipeline.gold.build import read_gold_month, rebuild_daily
from ecom_pipeline.gold.tables import DAILY_REVENUE
from ecom_pipeline.lake.lock import CLOCK_SKEW_GRACE, lake_lock, read_lock_state
from ecom_pipeline.lake.storage import Lake, LocalLake, S3Lake
from ecom_pipeline.silver.store import SilverStore


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


def test_two_racing_waiters_never_hold_it_together(lake: Lake) -> None:
    """Two contenders, each with its own client, take the lock 15 times each as fast as they
    can; an overlap would show as two holders inside at once."""
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    taken: list[int] = []

    def contender(name: str, own_lake: Lake) -> None:
        for _ in range(15):
            with lake_lock(own_lake, "gold", poll_seconds=0.005, holder=name) as generation:
                inside.append(name)
                if len(inside) > 1:
                    overlaps.append(tuple(inside))
                taken.append(generation)
                time.sleep(0.005)
                inside.remove(name)

    threads = [
        threading.Thread(target=contender, args=(name, _same_lake(lake))) for name in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlaps
    assert sorted(taken) == list(range(1, 31))  # every generation taken exactly once
    state = read_lock_state(lake, "gold")
    assert state is not None and state.released and state.generation == 30
    # History is cleaned up by each new holder: only the newest generation is left.
    assert {o.key.split("/")[2][:12] for o in lake.list("_locks/gold/")} == {f"{30:012d}"}


def _same_lake(lake: Lake) -> Lake:
    """A second client of the same lake (as another run's process would have)."""
    if isinstance(lake, LocalLake):
        return LocalLake(lake.root)
    assert isinstance(lake, S3Lake)
    return S3Lake(lake.root, endpoint_url=lake.endpoint_url)


def test_a_held_lease_is_renewed_and_others_wait_then_give_up(lake: Lake) -> None:
    # Long enough that a loaded CI machine's thread and moto latency (a renewal was seen 0.3 s
    # late) cannot outlast it; the hold below spans two leases, so only renewals keep it.
    lease = timedelta(seconds=3)
    with lake_lock(lake, "gold", lease=lease, poll_seconds=0.05, holder="long run"):
        time.sleep(lease.total_seconds() * 2)
        state = read_lock_state(lake, "gold")
        assert state is not None and not state.released
        assert state.expires_at > datetime.now(UTC)
        with (
            pytest.raises(LockTimeoutError, match="still held by long run"),
            lake_lock(lake, "gold", wait=timedelta(seconds=0.3), poll_seconds=0.05),
        ):
            pass
    with lake_lock(lake, "gold", wait=timedelta(seconds=1), poll_seconds=0.05):
        pass  # released: free at once


HOLD_AND_DIE = """
import os, signal, sys
from datetime import timedelta
from ecom_pipeline.lake.storage import open_lake
from ecom_pipeline.lake.lock import lake_lock
lake = open_lake(sys.argv[1], endpoint_url=sys.argv[2] or None)
with lake_lock(lake, "gold", lease=timedelta(seconds=2), holder="doomed run"):
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_holders_lease_runs_out_and_the_waiter_says_what_it_waits_for(
    lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = lake.endpoint_url if isinstance(lake, S3Lake) else None
    child = subprocess.run(
        [sys.executable, "-c", HOLD_AND_DIE, lake.root, endpoint or ""],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -9 and "held" in child.stdout, child.stderr
    caplog.set_level(logging.WARNING, logger="ecom_pipeline.lake.lock")
    start = time.monotonic()
    with lake_lock(lake, "gold", poll_seconds=0.1, wait=timedelta(seconds=30)) as generation:
        waited = time.monotonic() - start
    assert generation == 2
    # The dead holder's 2 s lease (+ the skew grace) ran out; nobody waits for hours.
    assert waited < 2 + CLOCK_SKEW_GRACE.total_seconds() + 3
    assert any(
        "waiting for lock" in r.getMessage() and "held by doomed run" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


def test_concurrent_gold_rebuilds_of_one_month_keep_every_day(lake: Lake) -> None:
    days = [date(2026, 11, d) for d in range(1, 7)]
    store = SilverStore(lake, SPECS[Dataset.ORDERS])
    rows = [order(f"O{i}", day) for i, day in enumerate(days)]
    store.merge(pa.Table.from_pylist(rows, schema=silver_schema(SPECS[Dataset.ORDERS])), "seed")

    errors: list[BaseException] = []

    def rebuild(day: date) -> None:
        try:
            with lake_lock(_same_lake(lake), "gold", poll_seconds=0.01):
                rebuild_daily(lake, DAILY_REVENUE, store.current(), [day])
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
