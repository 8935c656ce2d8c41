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
