"""Crash safety (SPEC §4): a daily run killed with SIGKILL at any step of its silver writes,
then run again, leaves silver and gold exactly as an uninterrupted run does.

Silver commits happen inside delta-rs, so the kills land at our own steps around each merge
(named failpoints: before the merge starts, after its commit) and at timed instants inside the
merges (a timer started as the merge begins), on a local folder and on the S3 API.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import boto3
import pytest
from prefect.settings import PREFECT_API_URL

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.contracts.datasets import INGESTED_AT, RUN_ID, SPECS, Dataset
from ecom_pipeline.lake.failpoints import FAILPOINT_AT_ENV, FAILPOINT_ENV
from ecom_pipeline.lake.storage import Lake, LocalLake, open_lake
from ecom_pipeline.silver.store import SilverStore
from flows.daily import daily
from tests.conftest import BUCKET
from tests.flows.test_daily import warehouse_rows

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

FIRST, MIDDLE, SECOND = date(2026, 11, 17), date(2026, 11, 18), date(2026, 11, 19)
#: Enough late updates that the last day rewrites partitions of the two days before it.
CONFIG = GeneratorConfig(orders_per_day=800, employees=20, seed=5)
#: Every silver step of the run: killed as the merge starts, and after its commit.
NAMED = [
    f"silver:{dataset}:{step}"
    for dataset in ("customers", "orders", "payments", "employees")
    for step in ("before-merge", "after-merge")
]
#: Kills inside delta-rs, this long after a merge begins (tests/silver/test_silver_crash.py sweeps
#: the whole length of a merge; here the whole run must recover).
TIMED = [
    "silver:customers:before-merge@0.05",
    "silver:orders:before-merge@0.05",
    "silver:orders:before-merge@0.2",
    "silver:payments:before-merge@0.1",
]
S3_KILLS = [
    "silver:orders:before-merge",
    "silver:orders:after-merge",
    "silver:orders:before-merge@0.05",
    "silver:payments:before-merge@0.1",
]


def silver_state(lake: Lake) -> dict[str, list[tuple]]:
    """Every committed silver row (lineage of the writing run left out), sorted."""
    state = {}
    for dataset in Dataset:
        rows = SilverStore(lake, SPECS[dataset]).read().drop_columns([INGESTED_AT, RUN_ID])
        state[dataset.value] = sorted(tuple(r.values()) for r in rows.to_pylist())
    return state


def gold_state(lake: Lake) -> dict[str, list[tuple]]:
    return {
        o.key: sorted(tuple(r.values()) for r in lake.read_parquet([o.key]).to_pylist())
        for o in lake.list("gold/")
    }


def use(monkeypatch: pytest.MonkeyPatch, lake_uri: str, warehouse: Path) -> None:
    monkeypatch.setenv("ECOM_LAKE_URI", lake_uri)
    monkeypatch.setenv("ECOM_WAREHOUSE_URL", f"duckdb:///{warehouse}")


#: A kill point written ``write:N:prefix`` kills right after the N-th lake write under prefix.
AFTER_WRITE = "write:"


def run_killed(
    cwd: Path, lake_uri: str, warehouse: Path | str, kill_at: str, **extra_env: str
) -> None:
    """Run the daily flow for SECOND in a subprocess that must die by SIGKILL at ``kill_at``:
    a named failpoint (``name`` or ``name@seconds``) or ``write:N:prefix``. ``warehouse`` is a
    DuckDB file or a SQLAlchemy URL."""
    env = {
        **os.environ,
        "ECOM_LAKE_URI": lake_uri,
        "ECOM_WAREHOUSE_URL": (
            f"duckdb:///{warehouse}" if isinstance(warehouse, Path) else warehouse
        ),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        **extra_env,
    }
    if kill_at.startswith(AFTER_WRITE):
        env[FAILPOINT_ENV] = kill_at.removeprefix(AFTER_WRITE)
    else:
        env[FAILPOINT_AT_ENV] = kill_at
    killed = subprocess.run(
        [sys.executable, "-m", "ecom_pipeline.cli", "run", "--date", SECOND.isoformat()],
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-2000:])


def test_sigkill_at_every_silver_step_then_rerun_equals_an_uninterrupted_run(
    pipeline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = pipeline_env / "base"
    lake = LocalLake(base / "lake")
    for day in (FIRST, MIDDLE, SECOND):
        write_raw_files(lake, generate_day(day, CONFIG, first_day=FIRST))
    use(monkeypatch, str(base / "lake"), base / "warehouse.duckdb")
    daily(run_date=FIRST)
    daily(run_date=MIDDLE)

    reference = pipeline_env / "reference"
    shutil.copytree(base, reference)
    use(monkeypatch, str(reference / "lake"), reference / "warehouse.duckdb")
    daily(run_date=SECOND)
    expected_silver = silver_state(LocalLake(reference / "lake"))
    expected_gold = gold_state(LocalLake(reference / "lake"))
    expected_warehouse = warehouse_rows(f"duckdb:///{reference / 'warehouse.duckdb'}")

    # The killed runs' scratch folders must not outlive them: the next run removes them.
    scratch = pipeline_env / "scratch"
    monkeypatch.setenv("ECOM_SCRATCH_DIR", str(scratch))
    for number, kill_at in enumerate(NAMED + TIMED):
        scenario = pipeline_env / f"kill-{number:02d}"
        shutil.copytree(base, scenario)
        run_killed(pipeline_env, str(scenario / "lake"), scenario / "warehouse.duckdb", kill_at)

        use(monkeypatch, str(scenario / "lake"), scenario / "warehouse.duckdb")
        assert daily(run_date=SECOND).succeeded, kill_at
        assert not any(scratch.iterdir()), kill_at
        assert silver_state(LocalLake(scenario / "lake")) == expected_silver, kill_at
        assert gold_state(LocalLake(scenario / "lake")) == expected_gold, kill_at
        assert warehouse_rows(f"duckdb:///{scenario / 'warehouse.duckdb'}") == expected_warehouse
        shutil.rmtree(scenario)


def copy_prefix(endpoint: str, source: str, target: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    source_prefix = source.removeprefix(f"s3://{BUCKET}/") + "/"
    target_prefix = target.removeprefix(f"s3://{BUCKET}/") + "/"
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=source_prefix
    ):
        for item in page.get("Contents", []):
            client.copy_object(
                Bucket=BUCKET,
                Key=target_prefix + item["Key"][len(source_prefix) :],
                CopySource={"Bucket": BUCKET, "Key": item["Key"]},
            )


def test_sigkill_during_silver_commits_on_the_s3_api_then_rerun_equals_an_uninterrupted_run(
    pipeline_env: Path, monkeypatch: pytest.MonkeyPatch, s3_lake_uri: str, moto_endpoint: str
) -> None:
    monkeypatch.setenv("ECOM_AWS_ENDPOINT_URL", moto_endpoint)
    base_uri = f"{s3_lake_uri}/base"
    lake = open_lake(base_uri, endpoint_url=moto_endpoint)
    for day in (FIRST, MIDDLE, SECOND):
        write_raw_files(lake, generate_day(day, CONFIG, first_day=FIRST))
    base_warehouse = pipeline_env / "base.duckdb"
    use(monkeypatch, base_uri, base_warehouse)
    daily(run_date=FIRST)
    daily(run_date=MIDDLE)

    reference_uri = f"{s3_lake_uri}/reference"
    copy_prefix(moto_endpoint, base_uri, reference_uri)
    shutil.copy(base_warehouse, pipeline_env / "reference.duckdb")
    use(monkeypatch, reference_uri, pipeline_env / "reference.duckdb")
    daily(run_date=SECOND)
    reference = open_lake(reference_uri, endpoint_url=moto_endpoint)
    expected_silver, expected_gold = silver_state(reference), gold_state(reference)
    assert expected_silver["orders"]

    for number, kill_at in enumerate(S3_KILLS):
        scenario_uri = f"{s3_lake_uri}/kill-{number:02d}"
        copy_prefix(moto_endpoint, base_uri, scenario_uri)
        warehouse = pipeline_env / f"kill-{number:02d}.duckdb"
        shutil.copy(base_warehouse, warehouse)
        run_killed(pipeline_env, scenario_uri, warehouse, kill_at)

        use(monkeypatch, scenario_uri, warehouse)
        assert daily(run_date=SECOND).succeeded, kill_at
        scenario = open_lake(scenario_uri, endpoint_url=moto_endpoint)
        assert silver_state(scenario) == expected_silver, kill_at
        assert gold_state(scenario) == expected_gold, kill_at
