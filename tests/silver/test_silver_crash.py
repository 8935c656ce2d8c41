"""SIGKILL inside a Delta merge (SPEC §4): at any instant the table is at the old version or at
the new one, and merging again gives exactly what an uninterrupted merge gives.

delta-rs writes a merge's data files at the end of the merge and commits right after, so the
kills come from a timer started as the merge begins, swept across the merge's whole length.
Whether a kill lands in the short gap between the data files and the commit depends on the
machine's timing: the outcomes are printed (``-s``), the guarantees are asserted at every kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from ecom_pipeline.lake.failpoints import FAILPOINT_AT_ENV
from ecom_pipeline.lake.storage import Lake, open_lake
from ecom_pipeline.silver.store import SilverStore
from tests.silver.test_silver_store import ORDERS, day_of_orders

ROOT = Path(__file__).resolve().parents[2]
ROWS = 20_000
#: Steps of the kill delay after the merge begins, until the merge ends before the timer does.
#: Shorter than the merge: an S3 merge of this size takes 0.1–0.2 s, and a 0.1-s step once
#: landed its only kill after the commit.
STEPS = {"local": 0.04, "s3": 0.03}


def merge_second_day(lake_uri: str, endpoint: str | None) -> None:
    """The merge under test (run in a child process that the timer kills)."""
    store = SilverStore(open_lake(lake_uri, endpoint_url=endpoint), ORDERS)
    store.merge(day_of_orders(seed=4, day=2, count=ROWS), "second")


def seeded(lake_uri: str, endpoint: str | None) -> SilverStore:
    store = SilverStore(open_lake(lake_uri, endpoint_url=endpoint), ORDERS)
    store.merge(day_of_orders(seed=4, day=1, count=ROWS), "first")
    return store


def rows(store: SilverStore) -> list[tuple]:
    table = store.read().drop_columns(["_ingested_at", "_run_id"])
    return sorted(tuple(r.values()) for r in table.to_pylist())


def data_files(lake: Lake) -> set[str]:
    return {o.key for o in lake.list("processed/orders/order_date=")}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_sigkill_at_any_instant_of_a_merge_then_rerun_equals_an_uninterrupted_merge(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if where == "local":
        endpoint = None
        new_uri = lambda: str(tmp_path / uuid.uuid4().hex[:8])  # noqa: E731
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket_uri = request.getfixturevalue("s3_lake_uri")
        new_uri = lambda: f"{bucket_uri}/{uuid.uuid4().hex[:8]}"  # noqa: E731

    reference = seeded(new_uri(), endpoint)
    before = rows(reference)
    reference.merge(day_of_orders(seed=4, day=2, count=ROWS), "second")
    after = rows(reference)

    outcomes = []
    for delay in (round(STEPS[where] * n, 2) for n in range(1, 100)):
        uri = new_uri()
        store = seeded(uri, endpoint)
        files_before = data_files(store.lake)
        killed = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from tests.silver.test_silver_crash import merge_second_day as m; "
                "m(sys.argv[1], sys.argv[2] or None)",
                uri,
                endpoint or "",
            ],
            env={**os.environ, FAILPOINT_AT_ENV: f"silver:orders:before-merge@{delay}"},
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )
        if killed.returncode == 0:
            break  # the merge now ends before the timer: the sweep has covered it
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        state = rows(store)
        assert state in (before, after), delay  # never a half-written merge
        committed = state == after
        orphans = bool(data_files(store.lake) - files_before) and not committed
        outcomes.append((delay, "committed" if committed else "orphans" if orphans else "none"))

        store.merge(day_of_orders(seed=4, day=2, count=ROWS), "second")  # the re-run
        assert rows(store) == after, delay
        assert len(set(store.read(columns=["order_id"]).column(0).to_pylist())) == len(after)

    print(where, outcomes)
    assert "none" in {kind for _, kind in outcomes}, outcomes  # killed inside, before the commit


def test_the_merge_under_test_changes_both_old_and_new_partitions(tmp_path: Path) -> None:
    store = seeded(str(tmp_path), None)
    result = store.merge(day_of_orders(seed=4, day=2, count=ROWS), "second")
    old_day = [p for p in result.rewritten if p.startswith("order_date=2026-11-01/")]
    assert old_day and result.metrics["num_target_rows_updated"] > 0
    assert isinstance(store.read(), pa.Table)
