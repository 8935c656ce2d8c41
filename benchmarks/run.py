"""Benchmark the daily pipeline against a plain DuckDB CSV → Parquet baseline.

    python benchmarks/run.py [--orders N] [--scale] [--backfill-days N --backfill-orders N]
                             [--json out.json] [--profile prof.txt] [--workdir DIR]

One invocation: start a local Prefect API (``prefect server start``, timed on its own), then for
each measured day generate its raw CSVs, run the DuckDB baseline and the ``daily`` flow over
them, each in its own subprocess (so each peak RSS is that part's own), and print one table
(``--json`` also writes it). ``--scale`` adds a 10 M-order day and a 30-day backfill at 100 k
orders a day; every size is a flag. See ``benchmarks/README.md``.

This parent process stays small on purpose (standard library only): the workers it forks
inherit its memory high-water mark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench_procs import WorkerRun, end_all, install_signal_handlers, prefect_env, prefect_server
from bench_report import git_info, machine_info, render, versions

#: A fixed, obviously non-production key: silver hashes PII with it.
PII_KEY = "benchmark-only-pii-key-0123456789"
DEFAULT_DAY = date(2026, 11, 20)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (sizes, scale mode, output, limits)."""
    parser = argparse.ArgumentParser(
        description="Benchmark the daily flow against DuckDB (see benchmarks/README.md)."
    )
    size = parser.add_argument_group("the measured day")
    size.add_argument("--orders", type=int, default=1_000_000, help="orders (0: skip this day)")
    size.add_argument(
        "--customers",
        type=int,
        default=None,
        help="rows wanted in the customers file (default orders/10); the generator's first-day "
        "pool is counted in: signups a day = customers / 6",
    )
    size.add_argument(
        "--customers-per-day",
        type=int,
        default=None,
        help="pass the generator's customers_per_day as is (the file then holds ~6× as many)",
    )
    size.add_argument("--employees", type=int, default=1000)
    size.add_argument("--seed", type=int, default=7)
    size.add_argument("--day", type=date.fromisoformat, default=DEFAULT_DAY, help="dt of the day")
    scale = parser.add_argument_group("scale mode")
    scale.add_argument(
        "--scale", action="store_true", help="also run the scale day and the backfill"
    )
    scale.add_argument("--scale-orders", type=int, default=10_000_000, help="0: no scale day")
    scale.add_argument(
        "--backfill-days",
        type=int,
        default=None,
        help="days of the backfill (default 30 with --scale; giving it runs the backfill)",
    )
    scale.add_argument("--backfill-orders", type=int, default=100_000, help="orders a day")
    out = parser.add_argument_group("output and limits")
    out.add_argument("--json", type=Path, default=None, help="also write the result here")
    out.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="pyinstrument the day's flow (the backfill's with --orders 0)",
    )
    out.add_argument("--workdir", type=Path, default=None, help="keep all data here")
    out.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    out.add_argument("--rss-limit-gb", type=float, default=12.0, help="abort a part above this")
    out.add_argument("--part-timeout", type=float, default=None, help="seconds per part")
    out.add_argument("--prefect-port", type=int, default=0, help="default: a free port")
    out.add_argument(
        "--prefect-database",
        metavar="URL",
        help="database of the Prefect server (postgresql+asyncpg://…, an empty database); "
        "default: SQLite under the workdir",
    )
    args = parser.parse_args(argv)
    if args.backfill_days is None and args.scale:
        args.backfill_days = 30
    for name in ("orders", "scale_orders", "backfill_orders", "employees"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.backfill_days is not None and args.backfill_days < 1:
        parser.error("--backfill-days must be at least 1")
    return args


@dataclass
class Bench:
    """Where the parts run and how they are watched; collects failures."""

    workdir: Path
    env: dict[str, str]
    rss_limit_mb: float
    timeout: float | None
    keep: bool
    failures: list[str] = field(default_factory=list)

    def run(self, kind: str, label: str, args: dict[str, Any], folder: Path) -> WorkerRun:
        """Run one measured part with the pipeline's settings pointing into ``folder``."""
        from bench_procs import run_worker

        env = dict(self.env)
        env.update(
            ECOM_LAKE_URI=str(folder / "lake"),
            ECOM_WAREHOUSE_URL=f"duckdb:///{folder / 'warehouse.duckdb'}",
            ECOM_PII_HASH_KEY=PII_KEY,
            ECOM_ENVIRONMENT="local",
        )
        folder.mkdir(parents=True, exist_ok=True)
        run = run_worker(
            kind,
            {**args, "label": label, "lake": str(folder / "lake"), "cwd": str(folder)},
            env=env,
            workdir=self.workdir,
            rss_limit_mb=self.rss_limit_mb,
            timeout=self.timeout,
        )
        problem = run.error()
        if problem:
            self.failures.append(f"{label} {kind}: {problem}")
        print(f"  {label} {kind}: {run.wall_seconds:.1f} s{' — ' + problem if problem else ''}")
        return run

    def done_with(self, folder: Path) -> None:
        """Free the disk of a finished part unless the data is to be kept."""
        if not self.keep:
            shutil.rmtree(folder, ignore_errors=True)


def ratios(pipeline: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """Pipeline vs baseline: whole flow, and only the stages the baseline also does."""
    flow: float = pipeline.get("flow_seconds") or 0.0
    base: float = baseline.get("total_seconds") or 0.0
    stages: dict[str, float] = pipeline.get("stages", {})
    silver = sum(
        v for k, v in stages.items() if k == "ingest" or k.startswith(("validate-", "silver-"))
    )
    both = bool(flow and base and not pipeline.get("aborted") and not baseline.get("error"))
    return {
        "pipeline_vs_baseline": round(flow / base, 2) if both else None,
        "silver_vs_baseline": round(silver / base, 2) if both else None,
        # Outside the flow body (its manifest's started_at to finished_at): stage seconds
        # overlap when the day runs its datasets in lanes.
        "flow_overhead_seconds": (
            round(flow - pipeline["flow_body_seconds"], 3)
            if flow and pipeline.get("flow_body_seconds")
            else None
        ),
    }


def measure_day(bench: Bench, label: str, orders: int, args: argparse.Namespace) -> dict[str, Any]:
    """Generate one day of ``orders`` orders, then run the baseline and the daily flow on it."""
    folder = bench.workdir / label
    customers = args.customers if args.customers is not None else max(1, orders // 10)
    day = args.day.isoformat()
    config = {
        "day": day,
        "orders": orders,
        "customers": customers,
        "customers_per_day": args.customers_per_day,
        "employees": args.employees,
        "seed": args.seed,
    }
    part: dict[str, Any] = {"config": config}
    generate = bench.run("generate", label, {**config, "start": day, "days": 1}, folder)
    part["generate"] = generate.to_json()
    if not generate.ok:
        return part
    baseline = bench.run("baseline", label, {"day": day, "out": str(folder / "baseline")}, folder)
    part["baseline"] = baseline.to_json()
    profile = str(args.profile.resolve()) if args.profile and label == "main" else None
    pipeline = bench.run("pipeline", label, {"day": day, "profile": profile}, folder)
    part["pipeline"] = pipeline.to_json()
    part["ratio"] = ratios(part["pipeline"], part["baseline"])
    bench.done_with(folder)
    return part


def measure_backfill(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Generate ``--backfill-days`` days and run the backfill flow over them."""
    folder = bench.workdir / "backfill"
    orders = args.backfill_orders
    config = {
        "start": args.day.isoformat(),
        "days": args.backfill_days,
        "orders": orders,
        # The generator's default: orders / 10 signups a day (plus the pool on the first day).
        "customers": None,
        "customers_per_day": None,
        "employees": args.employees,
        "seed": args.seed,
    }
    part: dict[str, Any] = {"config": config}
    generate = bench.run("generate", "backfill", config, folder)
    part["generate"] = generate.to_json()
    if generate.ok:
        # ``--profile`` with ``--orders 0`` profiles the backfill (there is no day to profile).
        profile = str(args.profile.resolve()) if args.profile and not args.orders else None
        run = bench.run("backfill", "backfill", {**config, "profile": profile}, folder)
        part["backfill"] = run.to_json()
    bench.done_with(folder)
    return part


def measure(bench: Bench, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Start the Prefect API and run every requested part against it."""
    home = bench.workdir / "prefect-home"
    log = bench.workdir / "logs" / "prefect-server.log"
    print(f"starting the Prefect server (log: {log}) …")
    with prefect_server(
        home, log, port=args.prefect_port, database_url=args.prefect_database
    ) as server:
        result["prefect_server"] = {"startup_seconds": round(server.startup_seconds, 3)}
        print(f"  Prefect API at {server.api_url} after {server.startup_seconds:.1f} s")
        bench.env = prefect_env(os.environ, home) | {"PREFECT_API_URL": server.api_url}
        try:
            if args.orders:
                result["main"] = measure_day(bench, "main", args.orders, args)
            if args.scale and args.scale_orders:
                result["scale_day"] = measure_day(bench, "scale", args.scale_orders, args)
            if args.backfill_days:
                result["backfill"] = measure_backfill(bench, args)
        finally:
            result["prefect_server"]["peak_rss_mb"] = round(server.peak_rss_mb(), 1)


def new_result(args: argparse.Namespace) -> dict[str, Any]:
    """The result document before anything is measured."""
    options = {k: (str(v) if isinstance(v, Path | date) else v) for k, v in vars(args).items()}
    return {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine_info(),
        "versions": versions(),
        "options": options,
        "prefect_server": {},
        "main": None,
        "scale_day": None,
        "backfill": None,
        "failures": [],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every part ran and the pipeline runs succeeded."""
    args = parse_args(argv)
    install_signal_handlers()
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="ecom-bench-")) if temporary else args.workdir
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(
        workdir, {}, args.rss_limit_gb * 1024, args.part_timeout, args.keep or not temporary
    )
    result = new_result(args)
    print(f"workdir: {workdir}")
    try:
        measure(bench, args, result)
    except Exception as exc:
        bench.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        end_all()
        result["failures"] = bench.failures
        result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        if temporary and not args.keep and not bench.failures:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(render(result))
    if bench.failures and temporary and not args.keep:
        print(f"\nlogs kept for the failures: {workdir / 'logs'}")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
