"""Runs at the same time over the S3 API (moto's server) and PostgreSQL (issue 14).

- Two runs of the same day started at once (a retry beside a slow run, two workers picking the
  same day): both succeed, each manifest balances, and silver, gold and the warehouse equal a
  single run's.
- Five days at once through the backfill deployment with ``max_parallel`` 4 (served by Prefect's
  runner, each day a process of its own): every manifest balances, every delivered file is
  processed by exactly one run, and silver, gold and the warehouse equal a sequential run's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.settings import PREFECT_API_URL

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.lake.storage import Lake, open_lake
from flows.daily import daily
from tests.conftest import BUCKET
from tests.flows.test_crash_safety import gold_state, silver_state
from tests.flows.test_daily import normalised, warehouse_rows

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIRST = date(2026, 11, 17)
CONFIG = GeneratorConfig(orders_per_day=300, employees=20, seed=21)


def fresh_prefix(endpoint: str) -> str:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/concurrent-{uuid.uuid4().hex[:10]}"


def manifests(lake: Lake) -> list[dict[str, Any]]:
    return [lake.read_json(o.key) for o in lake.list("_runs/dt=") if o.key.endswith(".json")]


def processed_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        f
        for dataset in manifest["datasets"].values()
        for f in dataset["files"]
        if f["status"] == "processed"
    ]


def assert_balanced(manifest: dict[str, Any]) -> None:
    """SPEC §3: for every input file, read = written + quarantined + superseded."""
    assert manifest["succeeded"], manifest["failures"]
    for f in processed_files(manifest):
        parts = f["rows_written"] + f["rows_quarantined"] + f["rows_superseded"]
        assert f["rows_read"] == parts, (manifest["run_id"], f)
        assert min(f["rows_written"], f["rows_quarantined"], f["rows_superseded"]) >= 0, f


def assert_same_results(
    lake: Lake, reference: Lake, postgres_url: str, schema: str, reference_schema: str
) -> None:
    assert silver_state(lake) == silver_state(reference)
    assert gold_state(lake) == gold_state(reference)
    got, want = warehouse_rows(postgres_url, schema), warehouse_rows(postgres_url, reference_schema)
    for table, rows in want.items():
        assert rows, f"{table}: the reference loaded nothing"
        assert normalised(got[table]) == normalised(rows), table


def settings_env(lake_uri: str, endpoint: str, postgres_url: str, schema: str) -> dict[str, str]:
    return {
        "ECOM_LAKE_URI": lake_uri,
        "ECOM_AWS_ENDPOINT_URL": endpoint,
        "ECOM_WAREHOUSE_URL": postgres_url,
        "ECOM_WAREHOUSE_SCHEMA": schema,
    }


def use(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


def test_two_runs_of_the_same_day_at_once_equal_one_run(
    pipeline_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    postgres_url: str,
    pg_schema: str,
    clean_schema: str,
    fault_tally: dict[str, int],
) -> None:
    prefix = fresh_prefix(moto_endpoint)
    reference_uri, twice_uri = f"{prefix}/reference", f"{prefix}/twice"
    for uri in (reference_uri, twice_uri):
        write_raw_files(
            open_lake(uri, endpoint_url=moto_endpoint), generate_day(FIRST, CONFIG, first_day=FIRST)
        )
    use(monkeypatch, settings_env(reference_uri, moto_endpoint, postgres_url, clean_schema))
    assert daily(run_date=FIRST).succeeded

    env = {
        **os.environ,
        **settings_env(twice_uri, moto_endpoint, postgres_url, pg_schema),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        # Interpreters start seconds apart on a loaded machine: both runs wait for each other
        # once they have begun, so they really race for the day's files.
        "ECOM_FAILPOINT_BARRIER": f"ingest:listed:2:{pipeline_env / 'barrier'}",
    }
    command = [sys.executable, "-m", "ecom_pipeline.cli", "run", "--date", FIRST.isoformat()]
    runs = [
        subprocess.Popen(
            command, env=env, cwd=pipeline_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0].decode(errors="replace") for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]

    twice = open_lake(twice_uri, endpoint_url=moto_endpoint)
    documents = manifests(twice)
    assert len(documents) == 2
    for document in documents:
        assert_balanced(document)
    starts = [d["started_at"] for d in documents]
    finishes = [d["finished_at"] for d in documents]
    assert max(starts) < min(finishes), "the two runs did not overlap"
    delivered = {o.key for o in twice.list("raw/")}
    assert set().union(*({f["source"] for f in processed_files(d)} for d in documents)) == delivered
    assert_same_results(
        twice,
        open_lake(reference_uri, endpoint_url=moto_endpoint),
        postgres_url,
        pg_schema,
        clean_schema,
    )
    fault_tally.update(concurrent_runs=2, rows_lost=0)


# -- five days through the backfill deployment, four at a time -----------------------------
DAYS = [FIRST + timedelta(days=i) for i in range(5)]


@contextlib.contextmanager
def served_deployments(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``daily`` and ``backfill`` served by a runner subprocess (its own process group, which
    is stopped on the way out: the runner's flow-run processes with it)."""
    with log.open("wb") as sink:
        runner = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.serve_flows"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield runner
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGTERM)
        try:
            runner.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=10)


async def _deployment_id(name: str, runner: subprocess.Popen[bytes], log: Path) -> Any:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 120
    async with get_client() as client:
        while True:
            try:
                return (await client.read_deployment_by_name(name)).id
            except ObjectNotFound:
                if runner.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(log.read_text(errors="replace")[-4000:]) from None
                await asyncio.sleep(1)


async def _children(deployment_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs: list[Any] = []
    async with get_client() as client:
        while True:  # the API answers at most 200 runs a page (a year's backfill has 365)
            page = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                offset=len(runs),
                limit=200,
            )
            runs.extend(page)
            if len(page) < 200:
                return runs


def most_at_once(runs: list[Any]) -> int:
    """The largest number of these runs that were running at one instant."""
    events = sorted(
        [(r.start_time, 1) for r in runs] + [(r.end_time, -1) for r in runs],
        key=lambda e: (e[0], e[1]),
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_backfill_deployment(
    runner: subprocess.Popen[bytes], log: Path, days: list[date], max_parallel: int, timeout: int
) -> list[Any]:
    """Run the served backfill deployment over ``days`` and wait for it. Checks that it
    completed with one child run of ``daily`` per day, 2 to ``max_parallel`` of them at once;
    returns those child runs."""
    import asyncio

    from prefect.deployments import run_deployment

    asyncio.run(_deployment_id("backfill/backfill", runner, log))
    finished = run_deployment(
        "backfill/backfill",
        parameters={
            "start_date": days[0].isoformat(),
            "end_date": days[-1].isoformat(),
            "max_parallel": max_parallel,
        },
        timeout=timeout,
    )
    assert finished.state is not None
    assert finished.state.is_completed(), (
        finished.state.message,
        log.read_text(errors="replace")[-6000:],
    )
    daily_id = asyncio.run(_deployment_id("daily/daily", runner, log))
    children = [r for r in asyncio.run(_children(daily_id)) if r.parent_task_run_id]
    assert sorted(str(r.parameters["run_date"]) for r in children) == [str(d) for d in days]
    assert all(r.state is not None and r.state.is_completed() for r in children)
    peak = most_at_once(children)
    assert 2 <= peak <= max_parallel, f"{peak} days ran at once"
    return children


@pytest.mark.chaos_full
def test_five_days_at_once_through_the_backfill_equal_a_sequential_run(
    pipeline_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    postgres_url: str,
    pg_schema: str,
    clean_schema: str,
    fault_tally: dict[str, int],
) -> None:
    prefix = fresh_prefix(moto_endpoint)
    sequential_uri, parallel_uri = f"{prefix}/sequential", f"{prefix}/parallel"
    for day in DAYS:
        files = generate_day(day, CONFIG, first_day=FIRST)
        for uri in (sequential_uri, parallel_uri):
            write_raw_files(open_lake(uri, endpoint_url=moto_endpoint), files)
    use(monkeypatch, settings_env(sequential_uri, moto_endpoint, postgres_url, clean_schema))
    for day in DAYS:
        assert daily(run_date=day).succeeded

    env = {
        **os.environ,
        **settings_env(parallel_uri, moto_endpoint, postgres_url, pg_schema),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    log = pipeline_env / "runner.log"
    with served_deployments(env, log) as runner:
        children = run_backfill_deployment(runner, log, DAYS, max_parallel=4, timeout=900)
    peak = most_at_once(children)

    parallel = open_lake(parallel_uri, endpoint_url=moto_endpoint)
    documents = manifests(parallel)
    assert len(documents) == len(DAYS)
    for document in documents:
        assert_balanced(document)
    processed = [f["source"] for d in documents for f in processed_files(d)]
    assert sorted(processed) == sorted(o.key for o in parallel.list("raw/"))
    assert_same_results(
        parallel,
        open_lake(sequential_uri, endpoint_url=moto_endpoint),
        postgres_url,
        pg_schema,
        clean_schema,
    )
    fault_tally.update(days=len(DAYS), most_at_once=peak, rows_lost=0)
