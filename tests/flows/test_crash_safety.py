"""Crash safety (SPEC §4): a daily run killed with SIGKILL at any step of its silver writes,
then run again, leaves silver and gold exactly as an uninterrupted run does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.settings import PREFECT_API_URL

from ecom_pipeline.adapters.failpoints import FAILPOINT_ENV
from ecom_pipeline.adapters.lake import LocalLake
from ecom_pipeline.datasets import INGESTED_AT, RUN_ID, SPECS, Dataset
from ecom_pipeline.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.silver_store import SilverStore
from flows.daily import daily
from tests.flows.test_daily import warehouse_rows

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

FIRST, MIDDLE, SECOND = date(2026, 11, 17), date(2026, 11, 18), date(2026, 11, 19)
#: Enough late updates that the last day rewrites partitions of the two days before it.
CONFIG = GeneratorConfig(orders_per_day=800, employees=20, seed=5)
MIN_KILL_POINTS = 20


def silver_state(lake_root: Path) -> dict[str, list[tuple]]:
    """Every committed silver row (lineage of the writing run left out), sorted."""
    lake = LocalLake(lake_root)
    state = {}
    for dataset in Dataset:
        rows = SilverStore(lake, SPECS[dataset]).read().drop_columns([INGESTED_AT, RUN_ID])
        state[dataset.value] = sorted(tuple(r.values()) for r in rows.to_pylist())
    return state


def gold_files(lake_root: Path) -> dict[str, list[tuple]]:
    return {
        path.relative_to(lake_root).as_posix(): sorted(
            tuple(r.values()) for r in pq.read_table(path).to_pylist()
        )
        for path in sorted((lake_root / "gold").rglob("*.parquet"))
    }


def use(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_LAKE_URI", str(folder / "lake"))
    monkeypatch.setenv("ECOM_WAREHOUSE_URL", f"duckdb:///{folder / 'warehouse.duckdb'}")


def test_sigkill_at_every_silver_write_then_rerun_equals_an_uninterrupted_run(
    pipeline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = pipeline_env / "base"
    lake = LocalLake(base / "lake")
    for day in (FIRST, MIDDLE, SECOND):
        write_raw_files(lake, generate_day(day, CONFIG, first_day=FIRST))
    use(base, monkeypatch)
    daily(run_date=FIRST)
    daily(run_date=MIDDLE)

    reference = pipeline_env / "reference"
    shutil.copytree(base, reference)
    use(reference, monkeypatch)
    daily(run_date=SECOND)
    expected_silver = silver_state(reference / "lake")
    expected_gold = gold_files(reference / "lake")
    expected_warehouse = warehouse_rows(f"duckdb:///{reference / 'warehouse.duckdb'}")
    before = {p for p in (base / "lake" / "processed").rglob("*") if p.is_file()}
    after = {p for p in (reference / "lake" / "processed").rglob("*") if p.is_file()}
    silver_writes = len(
        {p.relative_to(reference) for p in after} - {p.relative_to(base) for p in before}
    )
    assert silver_writes >= MIN_KILL_POINTS, "the second day must rewrite enough partitions"

    # The killed runs' scratch folders must not outlive them: the next run removes them.
    scratch = pipeline_env / "scratch"
    monkeypatch.setenv("ECOM_SCRATCH_DIR", str(scratch))
    for kill_after in range(1, silver_writes + 1):
        scenario = pipeline_env / f"kill-{kill_after:02d}"
        shutil.copytree(base, scenario)
        env = {
            **os.environ,
            "ECOM_LAKE_URI": str(scenario / "lake"),
            "ECOM_WAREHOUSE_URL": f"duckdb:///{scenario / 'warehouse.duckdb'}",
            "PREFECT_API_URL": PREFECT_API_URL.value(),
            FAILPOINT_ENV: f"{kill_after}:processed/",
        }
        killed = subprocess.run(
            [sys.executable, "-m", "ecom_pipeline.cli", "run", "--date", SECOND.isoformat()],
            env=env,
            cwd=pipeline_env,
            capture_output=True,
            timeout=300,
        )
        assert killed.returncode == -signal.SIGKILL, (kill_after, killed.stderr[-2000:])
        assert any(scratch.iterdir()), "a run killed in its silver step leaves its scratch"

        use(scenario, monkeypatch)
        assert daily(run_date=SECOND).succeeded
        assert not any(scratch.iterdir()), kill_after
        assert silver_state(scenario / "lake") == expected_silver, kill_after
        assert gold_files(scenario / "lake") == expected_gold, kill_after
        assert warehouse_rows(f"duckdb:///{scenario / 'warehouse.duckdb'}") == expected_warehouse
        shutil.rmtree(scenario)
