"""The automations of deployments/automations/ on a real Prefect server, fired by real runs.

`python -m deployments.automations apply` (twice: idempotent) against the session's server;
the project's deployments on a process pool; a worker whose runs publish to an SNS topic on
moto's server, read back through a subscribed SQS queue. A run killed with SIGKILL, a run that
fails, and a task held (by a PostgreSQL lock) past a shortened SLA each give exactly one alert,
sent by the `alert` deployment the automations start.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.server.events.ordering import PRECEDING_EVENT_LOOKBACK

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.lake.storage import LocalLake
from tests.flows.test_alerts import Inbox

from .conftest import PREFECT, PROJECT_ROOT, ManagedProcess, PrefectServer, start_process

pytestmark = pytest.mark.slow

POOL = "automations-process"
#: Short for the test, yet long enough that a loaded machine's event lag (the server sees a
#: task's Completed event late) does not make finished tasks look overdue.
SLA_SECONDS = 45
#: Generous: on a loaded machine the SQLite-backed server answers slowly (503s were seen).
RUN_TIMEOUT = 480.0
#: How long a run's final-state alert may take. The triggers service processes an event that
#: follows another (a run's Crashed follows its Running) only after that one; when a loaded
#: server loses track of the leader, the follower waits Prefect's lookback (15 minutes) and is
#: then evaluated anyway. Once in CI the crash alert took longer than RUN_TIMEOUT.
ALERT_TIMEOUT = PRECEDING_EVENT_LOOKBACK.total_seconds() + 120.0
TEST_PII_KEY = "test-pii-key-0123456789abcdef012"
NAMES = {
    "ecom-pipeline run failed, crashed or late",
    "ecom-pipeline task past its SLA",
    "ecom-pipeline run stopped sending heartbeats",
}


@dataclass
class AlertStack:
    lake: Path
    schema: str
    inbox: Inbox
    worker: ManagedProcess
    deployments: dict[str, dict[str, Any]]


def apply_automations(server: PrefectServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.automations", "apply"],
        cwd=PROJECT_ROOT,
        env={
            **server.client_env,
            "PYTHONPATH": str(PROJECT_ROOT),
            "ECOM_TASK_SLA_SECONDS": str(SLA_SECONDS),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def stack(
    prefect_server: PrefectServer,
    deploy_variant: Callable[..., dict[str, dict[str, Any]]],
    moto_endpoint: str,
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AlertStack]:
    root = tmp_path_factory.mktemp("automations")
    lake = root / "lake"
    schema = f"gold_{uuid.uuid4().hex[:10]}"
    inbox = Inbox(moto_endpoint)
    prefect_server.ensure_pool(POOL, "--type", "process")
    deployed = deploy_variant("process-pool", "--all", pool=POOL)
    assert {"daily", "alert"} <= set(deployed)
    # Every test of the module relies on the automations, so none depends on the order they run in.
    applied = apply_automations(prefect_server)
    assert applied.returncode == 0, applied.stderr
    worker_env = {
        **prefect_server.client_env,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "ECOM_LAKE_URI": str(lake),
        "ECOM_WAREHOUSE_URL": postgres_url,
        "ECOM_WAREHOUSE_SCHEMA": schema,
        "ECOM_PII_HASH_KEY": TEST_PII_KEY,
        "ECOM_SNS_TOPIC_ARN": inbox.topic_arn,
        "ECOM_AWS_ENDPOINT_URL": moto_endpoint,
        "ECOM_TASK_SLA_SECONDS": str(SLA_SECONDS),
    }
    worker = start_process(
        "automations-worker", [PREFECT, "worker", "start", "--pool", POOL], worker_env, root
    )
    try:
        yield AlertStack(lake, schema, inbox, worker, deployed)
    finally:
        worker.stop()
        # For a post-mortem: every alert run and what started it.
        with contextlib.suppress(Exception):
            runs = _alert_runs(prefect_server, deployed["alert"]["id"])
            (root / "alert-runs.json").write_text(
                json.dumps(
                    [(r["name"], r["created"], r["state_name"], r["parameters"]) for r in runs],
                    indent=1,
                )
            )
        prefect_server.delete_automations()
        engine = sa.create_engine(postgres_url)
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_apply_creates_then_updates_one_automation_of_each_name(
    prefect_server: PrefectServer, stack: AlertStack
) -> None:
    first = apply_automations(prefect_server)
    assert first.returncode == 0, first.stderr
    second = apply_automations(prefect_server)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("updated: ") == len(NAMES), second.stdout
    automations = [a for a in prefect_server.post("/automations/filter", {}) if a["name"] in NAMES]
    assert sorted(a["name"] for a in automations) == sorted(NAMES)
    sla = next(a for a in automations if a["name"] == "ecom-pipeline task past its SLA")
    assert sla["trigger"]["posture"] == "Proactive"
    assert sla["trigger"]["within"] == SLA_SECONDS
    alert_id = stack.deployments["alert"]["id"]
    assert all(
        action["deployment_id"] == alert_id
        for a in automations
        for action in a["actions"]
        if action["type"] == "run-deployment"
    )


def _write_day(stack: AlertStack, day: date) -> None:
    write_raw_files(
        LocalLake(stack.lake), generate_day(day, GeneratorConfig(orders_per_day=30, clean=True))
    )


def _run_daily(
    server: PrefectServer, stack: AlertStack, day: date, env: dict[str, str] | None = None
) -> dict[str, Any]:
    return server.post(
        f"/deployments/{stack.deployments['daily']['id']}/create_flow_run",
        {
            "parameters": {"run_date": day.isoformat()},
            "job_variables": {"env": env or {}},
            # The helper retries a busy server: the key makes a retried create one run.
            "idempotency_key": uuid.uuid4().hex,
        },
    )


def _alert_runs(server: PrefectServer, deployment_id: str) -> list[dict[str, Any]]:
    return server.flow_runs(deployments={"id": {"any_": [deployment_id]}})


def _receive(stack: AlertStack, server: PrefectServer, count: int, timeout: float) -> list[dict]:
    """Messages until ``count`` arrived (and a little longer, to catch a duplicate)."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(messages) < count:
        messages += stack.inbox.receive(wait_seconds=2)
    messages += stack.inbox.receive(wait_seconds=6)
    runs = _alert_runs(server, stack.deployments["alert"]["id"])
    assert len(messages) >= count, (
        f"{len(messages)} message(s) in {timeout:.0f} s; alert runs: "
        f"{[(r['name'], r['state_type']) for r in runs]}\n"
        f"{stack.worker.output()}"
    )
    return messages


def test_a_run_killed_with_sigkill_alerts_once(
    prefect_server: PrefectServer, stack: AlertStack
) -> None:
    day = date(2026, 11, 10)
    _write_day(stack, day)
    stack.inbox.receive(wait_seconds=1)  # start from an empty inbox
    # The failpoint kills the flow's own process (SIGKILL) once its first silver merge committed.
    run = _run_daily(
        prefect_server, stack, day, {"ECOM_FAILPOINT_KILL_AT": "silver:customers:after-merge"}
    )
    finished = prefect_server.wait_for_run(run["id"], RUN_TIMEOUT, watch=[stack.worker])
    assert finished["state_type"] == "CRASHED", finished["state"]
    messages = _receive(stack, prefect_server, 1, ALERT_TIMEOUT)
    assert [m["Subject"] for m in messages] == [f"[ecom-pipeline] daily-{day} crashed"]
    body = messages[0]["Message"]
    assert f"Flow run daily-{day} (daily) crashed." in body
    assert "-9" in body  # the worker's report: the process exited on signal 9


def test_a_failed_run_alerts_once_with_the_failing_task_and_error(
    prefect_server: PrefectServer, stack: AlertStack
) -> None:
    day = date(2026, 11, 11)
    _write_day(stack, day)
    bad = stack.lake / "raw" / "orders" / f"dt={day}" / "zz-empty.csv"
    bad.write_bytes(b"")
    stack.inbox.receive(wait_seconds=1)
    run = _run_daily(prefect_server, stack, day)
    finished = prefect_server.wait_for_run(run["id"], RUN_TIMEOUT, watch=[stack.worker])
    assert finished["state_type"] == "FAILED", finished["state"]
    messages = _receive(stack, prefect_server, 1, ALERT_TIMEOUT)
    assert [m["Subject"] for m in messages] == [f"[ecom-pipeline] daily-{day} failed"]
    assert (
        f"raw/orders/dt={day}/zz-empty.csv: the file is empty (0 bytes)" in (messages[0]["Message"])
    )


def test_a_task_held_past_the_sla_alerts_once_while_it_runs(
    prefect_server: PrefectServer, stack: AlertStack, postgres_url: str
) -> None:
    day = date(2026, 11, 12)
    _write_day(stack, day)
    stack.inbox.receive(wait_seconds=1)
    schema = f"{stack.schema}_held"
    engine = sa.create_engine(postgres_url)
    holder = engine.connect()
    try:
        # The load task's CREATE SCHEMA IF NOT EXISTS waits for this uncommitted one.
        holder.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        run = _run_daily(prefect_server, stack, day, {"ECOM_WAREHOUSE_SCHEMA": schema})
        messages = _receive(stack, prefect_server, 1, RUN_TIMEOUT)
        still = prefect_server.get(f"/flow_runs/{run['id']}")
        assert still["state_type"] == "RUNNING"  # the alert came while the task was held
    finally:
        holder.rollback()
        holder.close()
    finished = prefect_server.wait_for_run(run["id"], RUN_TIMEOUT, watch=[stack.worker])
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()
    assert finished["state_type"] == "COMPLETED", finished["state"]
    subjects = [m["Subject"] for m in messages + stack.inbox.receive(wait_seconds=3)]
    assert subjects.count(f"[ecom-pipeline] daily-{day}: load-warehouse is past its SLA") == 1
    # Nothing else: the other tasks finished within the SLA, the success notice comes once.
    assert sorted(subjects) == sorted(
        [
            f"[ecom-pipeline] daily-{day}: load-warehouse is past its SLA",
            f"[ecom-pipeline] daily-{day} succeeded",
        ]
    ), subjects
    assert f"more than {SLA_SECONDS} s" in messages[0]["Message"]
