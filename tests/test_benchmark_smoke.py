"""Smoke test of ``benchmarks/run.py`` at a tiny size: it runs end to end and writes its JSON.

It starts a real ``prefect server`` (a cold SQLite start is most of its time), so it is slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.mark.slow
def test_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    """Every part runs (day and backfill), exit 0, and the JSON has what it promises."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ECOM_"))}
    command = [
        sys.executable,
        str(SCRIPT),
        "--orders", "200",
        "--backfill-days", "2", "--backfill-orders", "100",
        "--workdir", str(tmp_path / "work"),
        "--json", str(out),
    ]  # fmt: skip
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "ratio pipeline / baseline" in finished.stdout

    result = json.loads(out.read_text())
    assert {"git", "machine", "versions", "prefect_server", "main", "scale_day", "backfill"} <= set(
        result
    )
    assert result["scale_day"] is None  # no --scale
    assert result["failures"] == []
    assert result["machine"]["nproc"] >= 1
    assert {"pyarrow", "pandas", "pandera", "duckdb", "prefect"} <= set(result["versions"])
    assert result["prefect_server"]["startup_seconds"] > 0

    day = result["main"]
    pipeline, baseline = day["pipeline"], day["baseline"]
    assert {"ingest", "gold", "load"} <= set(pipeline["stages"])
    assert pipeline["flow_seconds"] > 0 and pipeline["peak_rss_mb"] > 0
    assert set(pipeline["datasets"]) == {"customers", "orders", "payments", "employees"}
    for name, rows in pipeline["datasets"].items():
        assert rows["rows_read"] == day["generate"]["datasets"][name]["rows"]
        assert rows["rows_read"] == (
            rows["rows_written"] + rows["rows_quarantined"] + rows["rows_superseded"]
        )
        # The baseline writes every raw row (no validation, no dedup).
        assert baseline["rows_written"][name] == rows["rows_read"]
    assert baseline["total_seconds"] > 0 and baseline["peak_rss_mb"] > 0
    assert day["ratio"]["pipeline_vs_baseline"] > 0

    backfill = result["backfill"]["backfill"]
    assert backfill["runs"] == 2 and backfill["failed_days"] == []
    assert 0 < backfill["stage_sum_seconds"] < backfill["total_seconds"]
    assert backfill["overhead_pct"] is not None


@pytest.mark.slow
def test_benchmark_runs_its_prefect_server_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """``--prefect-database``: the server keeps its runs in that database, not in SQLite."""
    import sqlalchemy as sa

    name = f"prefect_bench_{os.getpid()}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database = sa.make_url(postgres_url).set(drivername="postgresql+asyncpg", database=name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ECOM_"))}
    command = [
        sys.executable, str(SCRIPT),
        "--orders", "0", "--backfill-days", "2", "--backfill-orders", "100",
        "--workdir", str(tmp_path / "work"),
        "--prefect-database", database.render_as_string(hide_password=False),
    ]  # fmt: skip
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
        )
        assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
        runs = sa.create_engine(database.set(drivername="postgresql+psycopg"))
        with runs.connect() as connection:
            names = connection.execute(sa.text("SELECT name FROM flow_run")).scalars().all()
        runs.dispose()
        assert sorted(n for n in names if n.startswith("daily-")) == [
            "daily-2026-11-20",
            "daily-2026-11-21",
        ]
        assert not list((tmp_path / "work").rglob("prefect.db"))
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
