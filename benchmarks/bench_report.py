"""What a benchmark result records besides timings (commit, machine, versions), and its table."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pyarrow", "pandas", "pandera", "duckdb", "prefect", "numpy", "sqlalchemy")


def git_info() -> dict[str, Any]:
    """The checkout's commit and whether it has local changes (None where git is unavailable)."""

    def git(*args: str) -> str | None:
        try:
            answer = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return answer.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": None if status is None else bool(status),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """CPUs usable by this process, memory, CPU model, OS and Python."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that matter for the figures (without importing them)."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


#: Stages in the order the daily flow runs them.
STAGE_ORDER = (
    ["ingest"]
    + [
        f"{step}-{dataset}"
        for dataset in ("customers", "orders", "payments", "employees")
        for step in ("validate", "silver")
    ]
    + ["gold", "load"]
)


def ordered(stages: dict[str, float]) -> list[tuple[str, float]]:
    """Stage seconds in run order (unknown stages last, by name)."""
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    return sorted(stages.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def first_line(text: Any, limit: int = 160) -> str:
    """The first line of an error message, shortened for a table (the JSON has it whole)."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _rows(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A plain text table, first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])]


def day_table(title: str, part: dict[str, Any]) -> list[str]:
    """The table of one measured day: rows, stage seconds, totals, baseline, ratio, memory."""
    lines = [title, ""]
    generate = part.get("generate", {})
    pipeline = part.get("pipeline", {})
    baseline = part.get("baseline", {})
    raw = generate.get("datasets", {})
    done = pipeline.get("datasets", {})
    written = baseline.get("rows_written", {})
    names = [n for n in ("customers", "orders", "payments", "employees") if n in raw or n in done]
    rows = []
    for name in names:
        ours = done.get(name, {})
        rows.append(
            [
                name,
                _num(raw.get(name, {}).get("rows")),
                _num(ours.get("rows_read")),
                _num(ours.get("rows_written")),
                _num(ours.get("rows_quarantined")),
                _num(ours.get("rows_superseded")),
                _num(ours.get("partitions_written")),
                _num(written.get(name)),
                _num(baseline.get("seconds", {}).get(name)),
            ]
        )
    headers = ["dataset", "raw rows", "read", "written", "quarantined", "superseded",
               "partitions", "baseline rows", "baseline s"]  # fmt: skip
    lines += [*_rows(headers, rows), ""]

    stages = [[stage, _num(s)] for stage, s in ordered(pipeline.get("stages", {}))]
    ratio = part.get("ratio", {})
    stages += [
        ["sum of stages (lanes overlap)", _num(pipeline.get("stage_sum_seconds"))],
        ["daily() wall (pipeline total)", _num(pipeline.get("flow_seconds"))],
        ["  of which outside the flow body", _num(ratio.get("flow_overhead_seconds"))],
        ["daily() CPU seconds (all threads)", _num(pipeline.get("flow_cpu_seconds"))],
        [
            "daily() waiting for a CPU (main thread)",
            _num(pipeline.get("flow_runqueue_wait_seconds")),
        ],
        ["worker process wall (incl. imports)", _num(pipeline.get("process_wall_seconds"))],
        ["DuckDB baseline total", _num(baseline.get("total_seconds"))],
        ["DuckDB baseline CPU seconds", _num(baseline.get("cpu_seconds"))],
        [
            "DuckDB waiting for a CPU (all threads)",
            _num(baseline.get("process_runqueue_wait_seconds")),
        ],
        ["ratio pipeline / baseline", _num(ratio.get("pipeline_vs_baseline"), 1) + "×"],
        ["ratio ingest+validate+silver / baseline", _num(ratio.get("silver_vs_baseline"), 1) + "×"],
        ["generator (not measured against)", _num(generate.get("seconds"))],
    ]
    lines += [*_rows(["stage", "seconds"], stages), ""]
    memory = [
        [who, _num(data.get("peak_rss_mb"), 0), _num(data.get("sampled_peak_rss_mb"), 0)]
        for who, data in (("pipeline", pipeline), ("DuckDB baseline", baseline),
                          ("generator", generate))
    ]  # fmt: skip
    lines += _rows(["peak RSS", "ru_maxrss MiB", "sampled MiB"], memory)
    for who, data in (("generator", generate), ("pipeline", pipeline), ("baseline", baseline)):
        problem = data.get("aborted") or data.get("error")
        if problem:
            lines.append(f"!! {who}: {first_line(problem)}")
    for failure in pipeline.get("failures", []):
        lines.append(f"!! pipeline run failure: {first_line(failure)}")
    if pipeline.get("profile"):
        lines += ["", *profile_lines(pipeline["profile"])]
    return [*lines, ""]


def profile_lines(profile: dict[str, Any], top: int = 15) -> list[str]:
    """The profile summary: seconds under each stage's task, then the top self-time functions.
    The timings above include the profiler's overhead."""
    stages = [[stage, _num(data["seconds"])] for stage, data in profile.get("stages", {}).items()]
    functions = [[name, _num(t)] for name, t in profile.get("top_self_time", [])[:top]]
    project = [[name, _num(t)] for name, t in profile.get("top_project_functions", [])[:top]]
    return [
        f"pyinstrument profile ({profile.get('text')}; timings above include its overhead)",
        "",
        *_rows(["stage (time under the task)", "seconds"], stages),
        "",
        *_rows(["project function (own + library time it called)", "seconds"], project),
        "",
        *_rows(["function (self time)", "seconds"], functions),
    ]


def backfill_table(part: dict[str, Any]) -> list[str]:
    """The backfill figures: total wall, stage sum, flow bodies, orchestration overhead."""
    run = part.get("backfill", {})
    config = part.get("config", {})
    title = (
        f"Backfill: {config.get('days')} days × {config.get('orders'):,} orders "
        f"(generator {_num(part.get('generate', {}).get('seconds'))} s)"
    )
    rows = [
        ["backfill() wall", _num(run.get("total_seconds"))],
        ["sum of stage seconds (lanes overlap)", _num(run.get("stage_sum_seconds"))],
        ["sum of daily flow bodies (manifests)", _num(run.get("daily_flow_body_seconds"))],
        ["orchestration overhead (wall - bodies)", _num(run.get("overhead_seconds"))],
        ["overhead % of total", _num(run.get("overhead_pct"), 1)],
        ["backfill() CPU seconds", _num(run.get("cpu_seconds"))],
        ["backfill() waiting for a CPU (main thread)", _num(run.get("runqueue_wait_seconds"))],
        ["peak RSS MiB (ru_maxrss)", _num(run.get("peak_rss_mb"), 0)],
        *([f"  stage {k}", _num(v)] for k, v in ordered(run.get("stages", {}))),
    ]
    lines = [title, "", *_rows(["backfill", "seconds"], rows)]
    problem = run.get("aborted") or run.get("error")
    if problem:
        lines.append(f"!! backfill: {first_line(problem)}")
    return [*lines, ""]


def render(result: dict[str, Any]) -> str:
    """The whole printed report."""
    machine, git = result["machine"], result["git"]
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    server = result.get("prefect_server", {})
    lines = [
        f"ecom-pipeline benchmark — {result['started_at']} — commit {commit}",
        f"{machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
        f"load average at start {machine['load_average']}, at end {result.get('load_average_end')}",
        f"Prefect server start-up: {_num(server.get('startup_seconds'))} s "
        f"(peak RSS {_num(server.get('peak_rss_mb'), 0)} MiB)",
        "",
    ]
    for key, title in (("main", "Day"), ("scale_day", "Scale day")):
        part = result.get(key)
        if part:
            config = part["config"]
            lines += day_table(
                f"{title}: {config['orders']:,} orders, ~{config['customers']:,} customers, "
                f"{config['employees']:,} employees (dt={config['day']})",
                part,
            )
    if result.get("backfill"):
        lines += backfill_table(result["backfill"])
    for failure in result.get("failures", []):
        lines.append(f"FAILED: {first_line(failure)}")
    return "\n".join(lines)
