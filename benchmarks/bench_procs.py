"""Subprocesses of the benchmark: the measured workers and the local Prefect server.

Everything measured runs in its own process so that its peak RSS is its own. The parent keeps a
register of the processes it started and ends them (whole process group) on any exit path,
including Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The worker entry point (``python bench_workers.py KIND ARGS.json OUT.json``).
WORKERS = Path(__file__).resolve().with_name("bench_workers.py")
#: Repository root, put on PYTHONPATH of every worker (``flows``, ``tasks``, ``ecom_pipeline``).
REPO = Path(__file__).resolve().parent.parent
#: Seconds between two samples of a worker's resident memory.
SAMPLE_SECONDS = 0.5

_LIVE: set[subprocess.Popen[bytes]] = set()


# ---------------------------------------------------------------------------------------------
# Process bookkeeping
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(
    command: list[str], *, env: Mapping[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (so its whole group can be ended), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    _LIVE.add(process)
    return process


def end_process(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``grace`` seconds."""
    try:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if process.poll() is not None:
                break
            with suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
        # Anything the process left behind in its group goes too.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    finally:
        _LIVE.discard(process)


def end_all() -> None:
    """End every process this benchmark started and that still runs."""
    for process in list(_LIVE):
        end_process(process, grace=5.0)


def _raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit so that ``finally`` blocks clean up."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_system_exit)


# ---------------------------------------------------------------------------------------------
# Memory of a process tree (Linux /proc)
# ---------------------------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    """pid → parent pid of every process visible in /proc."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: parse after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def status_mb(pid: int, field_name: str) -> float:
    """A ``VmRSS``/``VmHWM`` figure of /proc/PID/status in MiB (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_mb(pid: int, field_name: str = "VmRSS") -> float:
    """Sum of ``field_name`` over the process tree of ``pid``, in MiB."""
    return sum(status_mb(p, field_name) for p in tree(pid))


# ---------------------------------------------------------------------------------------------
# Measured workers
# ---------------------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    """How a worker subprocess went, as seen from the parent, and what it reported."""

    kind: str
    exit_code: int | None = None
    wall_seconds: float = 0.0
    sampled_peak_rss_mb: float = 0.0
    aborted: str | None = None
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    log: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.aborted and not self.result.get("error")

    def error(self) -> str | None:
        """One line saying what went wrong, or None."""
        if self.aborted:
            return self.aborted
        if self.result.get("error"):
            return str(self.result["error"])
        if self.exit_code != 0:
            return f"{self.kind} worker exited {self.exit_code}; last lines of {self.log}:\n" + (
                log_tail(Path(self.log))
            )
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.result,
            "exit_code": self.exit_code,
            "process_wall_seconds": round(self.wall_seconds, 3),
            "sampled_peak_rss_mb": round(self.sampled_peak_rss_mb, 1),
            "aborted": self.aborted,
            "load_average_before": [round(x, 2) for x in self.load_average],
            "log": self.log,
        }


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file (empty if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_worker(
    kind: str,
    args: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    workdir: Path,
    rss_limit_mb: float,
    timeout: float | None = None,
) -> WorkerRun:
    """Run one measured part in a fresh interpreter and wait for it, sampling its memory.

    The worker is killed (and the run marked aborted) if its process tree's resident memory
    passes ``rss_limit_mb`` or it outlives ``timeout`` seconds.
    """
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-{args.get('label', '')}".rstrip("-")
    args_file, out_file, log = (
        logs / f"{stem}.args.json",
        logs / f"{stem}.out.json",
        logs / f"{stem}.log",
    )
    args_file.write_text(json.dumps(dict(args), indent=2))
    out_file.unlink(missing_ok=True)
    command = [sys.executable, str(WORKERS), kind, str(args_file), str(out_file)]
    run = WorkerRun(kind=kind, log=str(log), load_average=os.getloadavg())
    start = time.perf_counter()
    process = _spawn(command, env=env, cwd=Path(args.get("cwd", workdir)), log=log)
    try:
        run.sampled_peak_rss_mb, run.aborted = _watch(process, start, rss_limit_mb, timeout)
    finally:
        end_process(process)
    run.wall_seconds = time.perf_counter() - start
    run.exit_code = process.returncode
    if out_file.exists():
        run.result = json.loads(out_file.read_text())
    return run


def _watch(
    process: subprocess.Popen[bytes], start: float, rss_limit_mb: float, timeout: float | None
) -> tuple[float, str | None]:
    """Wait for ``process``; returns (highest sampled tree RSS in MiB, abort reason or None)."""
    peak = 0.0
    while process.poll() is None:
        rss = tree_mb(process.pid)
        peak = max(peak, rss)
        if rss > rss_limit_mb:
            end_process(process, grace=2.0)
            return peak, (
                f"aborted: resident memory reached {rss:,.0f} MiB, over the "
                f"{rss_limit_mb:,.0f} MiB limit (--rss-limit-gb)"
            )
        if timeout is not None and time.perf_counter() - start > timeout:
            end_process(process, grace=2.0)
            return peak, f"aborted: still running after {timeout:,.0f} s (--part-timeout)"
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=SAMPLE_SECONDS)
    return peak, None


# ---------------------------------------------------------------------------------------------
# The local Prefect API
# ---------------------------------------------------------------------------------------------


def prefect_env(base: Mapping[str, str], home: Path) -> dict[str, str]:
    """``base`` without any inherited Prefect or pipeline settings, plus a quiet, private
    Prefect (no telemetry, state under ``home``)."""
    env = {k: v for k, v in base.items() if not k.startswith(("PREFECT_", "ECOM_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), base.get("PYTHONPATH", "")) if p),
    )
    return env


def _prefect_command() -> list[str]:
    """The ``prefect`` CLI of this interpreter's environment."""
    beside = Path(sys.executable).with_name("prefect")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("prefect")
    if found is None:
        raise RuntimeError("the `prefect` command was not found beside the Python interpreter")
    return [found]


@dataclass
class PrefectServer:
    """``prefect server start`` on 127.0.0.1 (SQLite under PREFECT_HOME), ended on exit."""

    home: Path
    log: Path
    port: int = 0
    #: ``PREFECT_API_DATABASE_CONNECTION_URL`` of the server; None: SQLite under ``home``.
    database_url: str | None = None
    startup_timeout: float = 180.0
    startup_seconds: float = 0.0
    process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        """Start the server and wait until ``/api/health`` answers; times the start-up."""
        self.port = self.port or free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        env = prefect_env(os.environ, self.home)
        env["PREFECT_SERVER_UI_ENABLED"] = "false"
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        command = [*_prefect_command(), "server", "start", "--host", "127.0.0.1"]
        start = time.perf_counter()
        self.process = _spawn(
            [*command, "--port", str(self.port)], env=env, cwd=self.home, log=self.log
        )
        self._wait_healthy(start)
        self.startup_seconds = time.perf_counter() - start

    def _wait_healthy(self, start: float) -> None:
        assert self.process is not None
        while time.perf_counter() - start < self.startup_timeout:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Prefect server exited with code {self.process.returncode} while "
                    f"starting; last lines of {self.log}:\n{log_tail(self.log)}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"the Prefect server did not answer {self.api_url}/health within "
            f"{self.startup_timeout:.0f} s; last lines of {self.log}:\n{log_tail(self.log)}"
        )

    def peak_rss_mb(self) -> float:
        """High-water resident memory of the server's processes so far (sum over the tree)."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        return tree_mb(self.process.pid, "VmHWM")

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process)


@contextmanager
def prefect_server(
    home: Path, log: Path, port: int = 0, database_url: str | None = None
) -> Iterator[PrefectServer]:
    """A running local Prefect API for the ``with`` block; always stopped afterwards."""
    server = PrefectServer(home=home, log=log, port=port, database_url=database_url)
    try:
        server.start()
        yield server
    finally:
        server.stop()
