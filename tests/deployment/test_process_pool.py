"""The project's prefect.yaml deployed to a local `process` pool, and real runs through a worker.

Exactly what deployments/README.md documents for running without AWS: the process-pool variant
of prefect.yaml (deployments/variants.py: no image build, pool swapped, everything else as
written) deployed with `prefect deploy --all`, a `prefect worker start` subprocess whose
environment holds the ECOM_* settings, a local lake and a DuckDB warehouse.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ecom_pipeline.lake.storage import LocalLake

from .conftest import PREFECT, ManagedProcess, PrefectServer, start_process

POOL = "local-process"
FIRST_DAY = date(2026, 11, 17)
DAYS = 4  # the daily run takes the first, the backfill the next three
RUN_TIMEOUT = 240.0
TEST_PII_KEY = "test-pii-key-0123456789abcdef012"  # 32 characters, tests only


@dataclass
class LocalStack:
    lake: Path
    warehouse: Path
    worker: ManagedProcess
    deployments: dict[str, dict[str, Any]]


def _write_raw_days(lake: Path) -> None:
    """Raw exports for DAYS days; the project's generator, or hand-written CSVs without it."""
    try:
        from devtools.generate import GeneratorConfig, generate_day, write_raw_files
    except ImportError:
        _write_tiny_csvs(lake)
        return
    config = GeneratorConfig(orders_per_day=50, clean=True)
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        write_raw_files(LocalLake(lake), generate_day(day, config, first_day=FIRST_DAY))


def _write_tiny_csvs(lake: Path) -> None:
    """A few valid rows per dataset and day, columns as SPEC §3."""
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        stamp = f"{day}T08:00:00Z"
        files = {
            "customers": "customer_id,first_name,last_name,email,customer_region,signup_date,"
            f"updated_at\nC{offset},Ada,Lovelace,ada{offset}@example.com,EU,{day},{stamp}\n",
            "orders": "order_id,customer_id,order_date,order_status,total_amount,updated_at\n"
            f"O{offset},C{offset},{day},placed,12.50,{stamp}\n",
            "payments": "payment_id,order_id,payment_date,payment_method,payment_status,amount,"
            f"updated_at\nP{offset},O{offset},{day},card,succeeded,12.50,{stamp}\n",
            "employees": "first_name,last_name,age,department,job_title,hire_date,salary\n"
            "Grace,Hopper,40,IT,Engineer,2020-01-01,1000.00\n",
        }
        for dataset, text in files.items():
            path = lake / "raw" / dataset / f"dt={day}" / f"{dataset}-0001.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def local_stack(
    prefect_server: PrefectServer,
    deploy_variant: Callable[..., dict[str, dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("process-pool")
    lake, warehouse = root / "lake", root / "wh.duckdb"
    _write_raw_days(lake)
    prefect_server.ensure_pool(POOL, "--type", "process")
    deployed = deploy_variant("process-pool", "--all", pool=POOL)
    assert set(deployed) == {"daily", "backfill", "retention", "alert"}
    worker_env = {
        **prefect_server.client_env,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        # The flows read their settings from the environment the worker passes on.
        "ECOM_LAKE_URI": str(lake),
        "ECOM_WAREHOUSE_URL": f"duckdb:///{warehouse}",
        "ECOM_PII_HASH_KEY": TEST_PII_KEY,
    }
    worker = start_process(
        "process-worker", [PREFECT, "worker", "start", "--pool", POOL], worker_env, root
    )
    try:
        yield LocalStack(lake, warehouse, worker, deployed)
    finally:
        worker.stop()


@pytest.mark.slow
def test_daily_schedule_is_0200_utc(prefect_server: PrefectServer, local_stack: LocalStack) -> None:
    """The schedule from prefect.yaml, and the runs the server's scheduler made from it."""
    daily_id = local_stack.deployments["daily"]["id"]
    (schedule,) = prefect_server.get(f"/deployments/{daily_id}/schedules")
    assert schedule["slug"] == "daily-0200-utc"
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "UTC"
    assert schedule["active"]

    deadline = time.monotonic() + 90
    scheduled: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(scheduled) < 3:
        scheduled = prefect_server.flow_runs(
            deployments={"id": {"any_": [daily_id]}},
            flow_runs={"state": {"type": {"any_": ["SCHEDULED"]}}},
        )
        scheduled = [r for r in scheduled if r["auto_scheduled"]]
        time.sleep(1.0)
    assert len(scheduled) >= 3, f"the scheduler made {len(scheduled)} runs of daily in 90 s"
    starts = [datetime.fromisoformat(r["expected_start_time"]) for r in scheduled[:3]]
    for start in starts:
        assert (start.utcoffset(), start.hour, start.minute, start.second) == (
            timedelta(0),
            2,
            0,
            0,
        ), start
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(days=1)] * 2

    # Switch the schedules off for the rest of the module: a worker polling across 02:00 UTC
    # would otherwise also run the scheduled day. (The server deletes the pending runs.)
    for name in ("daily", "retention"):
        deployment_id = local_stack.deployments[name]["id"]
        for item in prefect_server.get(f"/deployments/{deployment_id}/schedules"):
            response = prefect_server.http.patch(
                f"{prefect_server.api_url}/deployments/{deployment_id}/schedules/{item['id']}",
                json={"active": False},
            )
            assert response.status_code == 204, response.text


def _files(lake: Path, prefix: str, suffix: str) -> list[Path]:
    return sorted(p for p in (lake / prefix).rglob(f"*{suffix}") if p.is_file())


@pytest.mark.slow
def test_daily_deployment_runs_on_the_worker(
    prefect_server: PrefectServer, local_stack: LocalStack
) -> None:
    day = FIRST_DAY
    run = prefect_server.create_run(
        local_stack.deployments["daily"]["id"], {"run_date": day.isoformat()}
    )
    finished = prefect_server.wait_for_run(run["id"], RUN_TIMEOUT, watch=[local_stack.worker])
    assert finished["state_type"] == "COMPLETED", (
        f"{finished['state']}\n{local_stack.worker.output()}"
    )
    assert finished["name"] == f"daily-{day}"

    lake = local_stack.lake
    for dataset in ("orders", "customers", "payments", "employees"):
        assert _files(lake, f"processed/{dataset}", ".parquet"), f"no silver {dataset}"
    assert any(f"order_date={day}" in str(p) for p in _files(lake, "processed/orders", ".parquet"))
    for table in ("daily_revenue", "daily_payments", "monthly_customers"):
        assert _files(lake, f"gold/{table}", ".parquet"), f"no gold {table}"
    assert _files(lake, "gold/daily_revenue/month=2026-11", ".parquet")
    (manifest,) = _files(lake, f"_runs/dt={day}", ".json")
    assert run["id"] in manifest.name
    assert local_stack.warehouse.exists()


@pytest.mark.slow
def test_backfill_deployment_fans_out_to_daily_runs(
    prefect_server: PrefectServer, local_stack: LocalStack
) -> None:
    start, end = FIRST_DAY + timedelta(days=1), FIRST_DAY + timedelta(days=DAYS - 1)
    run = prefect_server.create_run(
        local_stack.deployments["backfill"]["id"],
        {"start_date": start.isoformat(), "end_date": end.isoformat(), "max_parallel": 2},
    )
    finished = prefect_server.wait_for_run(run["id"], RUN_TIMEOUT, watch=[local_stack.worker])
    daily_id = local_stack.deployments["daily"]["id"]
    children = [
        r
        for r in prefect_server.flow_runs(deployments={"id": {"any_": [daily_id]}})
        if r["parent_task_run_id"] is not None
    ]
    summary = json.dumps(
        [(r["name"], r["state_type"], r["parameters"].get("run_date")) for r in children]
    )
    assert finished["state_type"] == "COMPLETED", (
        f"{finished['state']}\nchildren: {summary}\n{local_stack.worker.output()}"
    )
    days = [(start + timedelta(days=i)).isoformat() for i in range(DAYS - 1)]
    assert sorted(r["parameters"]["run_date"] for r in children) == days, summary
    assert all(r["state_type"] == "COMPLETED" for r in children), summary
    for day in days:
        assert _files(local_stack.lake, f"_runs/dt={day}", ".json"), f"no manifest for {day}"
