"""The measured parts of the benchmark, each run alone in a fresh interpreter.

``python benchmarks/bench_workers.py KIND ARGS.json OUT.json`` runs one part and writes what it
measured to OUT.json, with ``peak_rss_mb`` (``getrusage(RUSAGE_SELF).ru_maxrss``: the peak of
this process alone, imports included). ``run.py`` starts these; they are not meant to be run by
hand, though they can be (the environment then has to name the lake, warehouse and Prefect API).

Kinds:

* ``generate``: raw CSVs of one or more days into a local lake (the project's generator).
* ``pipeline``: the ``daily`` flow for one day, in-process against ``PREFECT_API_URL``.
* ``backfill``: the ``backfill`` flow over a range (days as local subflows).
* ``baseline``: DuckDB, CSV → hive-partitioned Parquet (see ``bench_baseline.py``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

_STARTED = time.perf_counter()

Result = dict[str, Any]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def runqueue_wait_seconds(scope: str = "thread-self") -> float:
    """Seconds the calling thread (``thread-self``) or all live threads of this process
    (``all``) spent runnable but waiting for a CPU (Linux schedstat; 0 where unavailable).

    On a shared machine this is the part of the wall time lost to other processes."""
    paths = (
        [Path("/proc/thread-self/schedstat")]
        if scope == "thread-self"
        else list(Path("/proc/self/task").glob("*/schedstat"))
    )
    total = 0
    for path in paths:
        try:
            total += int(path.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------


def customers_per_day_for(target_rows: int) -> int:
    """Signups a day so that the first day's customers file has about ``target_rows`` rows.

    The first day of a generated range delivers its signups plus a pool of about
    ``_POOL_FACTOR`` (5) times as many earlier customers, so the file holds about
    ``(1 + 5) × customers_per_day`` rows.
    """
    from devtools import generate

    factor = int(getattr(generate, "_POOL_FACTOR", 5))
    return max(1, round(target_rows / (1 + factor)))


def run_generate(args: Result) -> Result:
    """Write ``days`` days of raw exports from ``start`` into the lake at ``lake``.

    Signups a day: ``customers_per_day`` if given, else sized from ``customers`` (the first
    day's file), else the generator's default (``orders // 10``)."""
    from devtools.generate import GeneratorConfig, generate_days, write_raw_files
    from ecom_pipeline.lake.storage import LocalLake

    per_day = args.get("customers_per_day")
    if per_day is None and args.get("customers") is not None:
        per_day = customers_per_day_for(args["customers"])
    config = GeneratorConfig(
        orders_per_day=args["orders"],
        customers_per_day=per_day,
        employees=args["employees"],
        seed=args["seed"],
    )
    lake = LocalLake(args["lake"])
    datasets: dict[str, dict[str, int]] = {}
    start = time.perf_counter()
    for raw in generate_days(date.fromisoformat(args["start"]), args["days"], config):
        write_raw_files(lake, [raw])
        stats = datasets.setdefault(str(raw.dataset), {"files": 0, "rows": 0, "bytes": 0})
        stats["files"] += 1
        stats["rows"] += raw.content.count(b"\n") - 1  # minus the header; lines end in \n
        stats["bytes"] += len(raw.content)
    return {
        "seconds": round(time.perf_counter() - start, 3),
        "customers_per_day": per_day,
        "datasets": datasets,
    }


# ---------------------------------------------------------------------------------------------
# pipeline and backfill
# ---------------------------------------------------------------------------------------------


def manifests(lake: str) -> list[Result]:
    """Every run manifest (``_runs/dt=…/{run_id}.json``) of a local lake, oldest run first."""
    documents = [json.loads(p.read_text()) for p in Path(lake, "_runs").glob("dt=*/*.json")]
    return sorted(documents, key=lambda d: str(d.get("started_at")))


def dataset_rows(report: Result) -> dict[str, dict[str, int]]:
    """Per dataset of a RunReport document: rows read/written/quarantined/superseded (processed
    files only, like ``DatasetReport.total``) and partitions written."""
    rows = {}
    for name, dataset in report.get("datasets", {}).items():
        processed = [f for f in dataset["files"] if f["status"] == "processed"]
        counts = {
            attribute: sum(int(f[attribute]) for f in processed)
            for attribute in ("rows_read", "rows_written", "rows_quarantined", "rows_superseded")
        }
        counts["files"] = len(processed)
        counts["partitions_written"] = len(dataset.get("partitions_written", []))
        rows[name] = counts
    return rows


def _flow_seconds(report: Result) -> float | None:
    """finished_at − started_at of a manifest (the flow body up to the report), if both set."""
    if not report.get("finished_at"):
        return None
    started = datetime.fromisoformat(str(report["started_at"]))
    return (datetime.fromisoformat(str(report["finished_at"])) - started).total_seconds()


def _profiler(path: str | None) -> Any:
    """A started pyinstrument profiler when ``path`` is set, else None."""
    if not path:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    return profiler


def run_pipeline(args: Result) -> Result:
    """Run ``daily(run_date=day)`` once, in this process, against the Prefect API of the env."""
    imports = time.perf_counter()
    from flows.daily import daily

    import_seconds = time.perf_counter() - imports
    day = date.fromisoformat(args["day"])
    profiler = _profiler(args.get("profile"))
    error = None
    start, cpu, waited = time.perf_counter(), cpu_seconds(), runqueue_wait_seconds()
    try:
        report: Result | None = daily(run_date=day).to_json()
    except Exception as exc:  # the flow failed: its manifest still tells what happened
        error, report = f"{type(exc).__name__}: {exc}", None
    flow_seconds, flow_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    waited = runqueue_wait_seconds() - waited
    profile = _save_profile(profiler, args["profile"]) if profiler is not None else None
    if report is None:
        found = [m for m in manifests(args["lake"]) if m.get("run_date") == day.isoformat()]
        report = found[-1] if found else {}
    stages = {k: round(v, 3) for k, v in report.get("seconds", {}).items()}
    return {
        "error": error,
        "import_seconds": round(import_seconds, 3),
        "flow_seconds": round(flow_seconds, 3),
        "flow_cpu_seconds": round(flow_cpu, 3),
        "flow_runqueue_wait_seconds": round(waited, 3),
        "stages": stages,
        "stage_sum_seconds": round(sum(stages.values()), 3),
        "flow_body_seconds": _flow_seconds(report),
        "datasets": dataset_rows(report),
        "failures": report.get("failures", []),
        "warehouse_rows": report.get("warehouse_rows", {}),
        "profiled": profiler is not None,
        "profile": profile,
    }


def run_backfill(args: Result) -> Result:
    """Run ``backfill`` over ``days`` days from ``start`` (local subflows, one day at a time)."""
    from flows.backfill import backfill

    start_day = date.fromisoformat(args["start"])
    end_day = start_day + timedelta(days=args["days"] - 1)
    error = None
    profiler = _profiler(args.get("profile"))
    start, cpu, waited = time.perf_counter(), cpu_seconds(), runqueue_wait_seconds()
    try:
        backfill(start_date=start_day, end_date=end_day, max_parallel=1)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    total, total_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    profile = _save_profile(profiler, args["profile"]) if profiler is not None else None
    waited = runqueue_wait_seconds() - waited
    runs = manifests(args["lake"])
    stages: dict[str, float] = {}
    rows: dict[str, dict[str, int]] = {}
    for report in runs:
        for stage, seconds in report.get("seconds", {}).items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        for name, counts in dataset_rows(report).items():
            into = rows.setdefault(name, dict.fromkeys(counts, 0))
            for key, value in counts.items():
                into[key] += value
    stage_sum = sum(stages.values())
    in_flow = sum(s for s in (_flow_seconds(r) for r in runs) if s is not None)
    return {
        "error": error,
        "days": args["days"],
        "runs": len(runs),
        "failed_days": sorted(str(r["run_date"]) for r in runs if r.get("failures")),
        "total_seconds": round(total, 3),
        "cpu_seconds": round(total_cpu, 3),
        "runqueue_wait_seconds": round(waited, 3),
        "stage_sum_seconds": round(stage_sum, 3),
        "stages": {k: round(v, 3) for k, v in stages.items()},
        "daily_flow_body_seconds": round(in_flow, 3),
        # Stages of a small day overlap (two lanes at once): the overhead is what lies outside
        # the daily flow bodies, not outside the stages.
        "overhead_seconds": round(total - in_flow, 3),
        "overhead_pct": round(100 * (total - in_flow) / total, 1) if total else None,
        "datasets": rows,
        "profile": profile,
    }


# ---------------------------------------------------------------------------------------------
# profile summary
# ---------------------------------------------------------------------------------------------

#: Folders of the project's own code (a profile charges library time to their functions).
PROJECT_PACKAGES = ("ecom_pipeline", "tasks", "flows")
#: Frames that mark a stage of the daily flow in a profile: the task functions.
STAGE_FUNCTIONS = {
    "ingest_raw_files": "ingest",
    "validate_dataset": "validate",
    "write_silver": "silver",
    "build_gold": "gold",
    "load_warehouse": "load",
    "record_ingested": "record-ingested",
    "publish_report": "publish-report",
    "notify": "notify",
}


def _save_profile(profiler: Any, path: str) -> Result:
    """Write the profile (text, HTML, and the session for `pyinstrument --load`, which can
    render library frames the text hides) and summarize it: time per stage and the functions
    with the most self time."""
    session = profiler.stop()
    Path(path).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    Path(path).with_suffix(".html").write_text(profiler.output_html())
    session.save(str(Path(path).with_suffix(".pyisession")))
    root = session.root_frame()
    if root is None:
        return {"duration_seconds": round(session.duration, 3), "text": path}
    totals = _Totals()
    _walk(root, None, None, totals)
    top = sorted(totals.own.items(), key=lambda item: -item[1])[:25]
    mine = sorted(totals.project.items(), key=lambda item: -item[1])[:25]
    return {
        "duration_seconds": round(session.duration, 3),
        "text": path,
        "stages": {
            stage: {
                "seconds": round(sum(functions.values()), 3),
                "top": [
                    [name, round(t, 3)]
                    for name, t in sorted(functions.items(), key=lambda i: -i[1])[:8]
                ],
            }
            for stage, functions in totals.per_stage.items()
        },
        "top_self_time": [[name, round(t, 3)] for name, t in top],
        "top_project_functions": [[name, round(t, 3)] for name, t in mine],
    }


@dataclass
class _Totals:
    """Self time per function, per stage and function, and per innermost project function (the
    project's own code that called into libraries, so pyarrow or pandas time lands on the
    pipeline function that asked for it)."""

    own: dict[str, float] = field(default_factory=dict)
    per_stage: dict[str, dict[str, float]] = field(default_factory=dict)
    project: dict[str, float] = field(default_factory=dict)


def _add(into: dict[str, float], key: str, seconds: float) -> None:
    into[key] = into.get(key, 0.0) + seconds


def _is_project(frame: Any) -> bool:
    path = frame.file_path or ""
    return any(f"{os.sep}{part}{os.sep}" in path for part in PROJECT_PACKAGES) and (
        "site-packages" not in path
    )


def _walk(frame: Any, stage: str | None, owner: str | None, totals: _Totals) -> None:
    """Add each frame's self time to its function, its stage and its project owner."""
    if frame.is_synthetic:  # "[self]"/"[await]" leaves: already in the parent's self time
        return
    stage = STAGE_FUNCTIONS.get(frame.function, stage)
    name = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
    if _is_project(frame):
        owner = name
    spent = frame.total_self_time
    if spent > 0:
        _add(totals.own, name, spent)
        if stage is not None:
            _add(totals.per_stage.setdefault(stage, {}), name, spent)
        _add(totals.project, owner or "(outside the project's code)", spent)
    for child in frame.children:
        _walk(child, stage, owner, totals)


# ---------------------------------------------------------------------------------------------
# baseline and entry point
# ---------------------------------------------------------------------------------------------


def run_baseline(args: Result) -> Result:
    """DuckDB's CSV → partitioned Parquet over the same raw files (see ``bench_baseline.py``)."""
    from bench_baseline import duckdb_baseline

    return duckdb_baseline(Path(args["lake"]), Path(args["out"]), date.fromisoformat(args["day"]))


KINDS: dict[str, Callable[[Result], Result]] = {
    "generate": run_generate,
    "pipeline": run_pipeline,
    "backfill": run_backfill,
    "baseline": run_baseline,
}


def main(argv: list[str]) -> int:
    """``KIND ARGS.json OUT.json``: run the part, write its result (or error) to OUT.json."""
    kind, args_file, out_file = argv
    args = json.loads(Path(args_file).read_text())
    try:
        result = KINDS[kind](args)
        code = 0
    except Exception as exc:
        traceback.print_exc()
        result, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["process_cpu_seconds"] = round(cpu_seconds(), 3)
    result["process_runqueue_wait_seconds"] = round(runqueue_wait_seconds("all"), 3)
    result["worker_seconds"] = round(time.perf_counter() - _STARTED, 3)
    result["pid"] = os.getpid()
    temporary = Path(out_file).with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=2, default=str))
    temporary.replace(out_file)
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
