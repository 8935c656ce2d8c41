"""``ecom-pipeline``: the local way in (SPEC §8).

Each command exits 0 on success and non-zero with a one-paragraph reason on failure: the
configuration is checked before anything runs or is written, and whatever goes wrong later ends
in one paragraph on stderr, never a traceback (the Prefect log keeps those).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import secrets
import subprocess  # nosec B404 - only to start our own Prefect server, fixed arguments
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.errors import ConfigurationError, PipelineError, printable
from ecom_pipeline.settings import LOCAL_KEY_FILE, Settings, load_settings

if TYPE_CHECKING:
    from ecom_pipeline.run.report import RunReport

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: An unexpected error's own message is cut to this length in the one-paragraph reason.
UNEXPECTED_MESSAGE_CHARS = 300
#: Where ``--with-ui`` serves the Prefect UI and API (Prefect's own default address).
UI_HOST = "127.0.0.1"
UI_PORT = 4200
#: How long ``--with-ui`` waits for a starting Prefect server to answer (a cold start is slow).
UI_START_SECONDS = 120.0


def _quiet_prefect_defaults() -> None:
    """Sensible local defaults, set only where the user has not chosen otherwise."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _datasets(text: str) -> list[Dataset]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {d.value for d in Dataset}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown dataset(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(sorted(known))}"
        )
    return [Dataset(n) for n in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecom-pipeline",
        description="E-commerce analytics pipeline: raw CSV → silver Parquet → gold → warehouse.",
    )
    commands = parser.add_subparsers(dest="command", required=True, help="the command to run")

    init = commands.add_parser("init-local", help="create a local PII key file for try-outs")
    init.set_defaults(handler=cmd_init_local)

    run = commands.add_parser("run", help="run the daily flow for one day")
    run.add_argument(
        "--date",
        type=iso_date,
        required=True,
        help="the delivery day to process (its raw folders), YYYY-MM-DD",
    )
    _add_run_options(run)
    run.set_defaults(handler=cmd_run)

    backfill = commands.add_parser("backfill", help="run the backfill flow over a date range")
    backfill.add_argument(
        "--start-date", type=iso_date, required=True, help="first day to process, YYYY-MM-DD"
    )
    backfill.add_argument(
        "--end-date", type=iso_date, required=True, help="last day to process (inclusive)"
    )
    _add_run_options(backfill)
    backfill.set_defaults(handler=cmd_backfill)

    retention = commands.add_parser("retention", help="apply the retention rules")
    retention.set_defaults(handler=cmd_retention)

    files = commands.add_parser(
        "silver-files", help="print a silver Delta table's address and its committed files"
    )
    files.add_argument(
        "dataset", type=Dataset, choices=list(Dataset), help="the silver table (a dataset)"
    )
    files.set_defaults(handler=cmd_silver_files)

    migrate = commands.add_parser(
        "migrate-silver", help="convert silver of the earlier snapshot format to Delta tables"
    )
    migrate.set_defaults(handler=cmd_migrate_silver)
    return parser


def _add_run_options(command: argparse.ArgumentParser) -> None:
    """The options `run` and `backfill` share: what to process, and where to watch it."""
    command.add_argument(
        "--datasets",
        type=_datasets,
        default=None,
        help="comma-separated datasets to process (default: all four)",
    )
    command.add_argument(
        "--reprocess", action="store_true", help="process files already ingested unchanged again"
    )
    command.add_argument(
        "--with-ui",
        action="store_true",
        help=f"run against a local Prefect server with its UI on http://{UI_HOST}:{UI_PORT} "
        "(started if none answers there, stopped at the end)",
    )
    command.add_argument(
        "--keep-ui",
        action="store_true",
        help="with --with-ui: leave the Prefect server running after the command",
    )


def cmd_init_local(args: argparse.Namespace) -> int:
    key_file = Path(LOCAL_KEY_FILE)
    if key_file.exists():
        print(f"{key_file} exists; keeping it")
        return 0
    key_file.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    print(f"wrote a local PII key to {key_file} (for try-outs; production uses a secret store)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _check_run_settings()
    with _prefect_api(args):
        _console_logs_without_tracebacks()
        from flows.daily import ALL_DATASETS, daily

        report = daily(
            run_date=args.date, datasets=args.datasets or ALL_DATASETS, reprocess=args.reprocess
        )
        _print_report(report, settings)
        if args.with_ui:
            print(f"flow run: {ui_url()}/runs/flow-run/{report.run_id}")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    settings = _check_run_settings()
    with _prefect_api(args):
        _console_logs_without_tracebacks()
        _print_progress()
        from flows.backfill import backfill
        from flows.daily import ALL_DATASETS

        summary = backfill(
            start_date=args.start_date,
            end_date=args.end_date,
            datasets=args.datasets or ALL_DATASETS,
            reprocess=args.reprocess,
        )
        for line in summary.closing_lines():
            print(line)
        _print_gold_summary(settings)
    return 0 if summary.succeeded else EXIT_FAILED


def cmd_retention(args: argparse.Namespace) -> int:
    load_settings()
    _console_logs_without_tracebacks()
    from flows.retention import retention

    summary = retention()
    for line in summary.lines():
        print(line)
    return 0


def cmd_silver_files(args: argparse.Namespace) -> int:
    from ecom_pipeline.contracts.datasets import SPECS
    from ecom_pipeline.run.resources import build_resources
    from ecom_pipeline.silver.store import SilverStore

    store = SilverStore(build_resources(load_settings()).lake, SPECS[args.dataset])
    snapshot = store.current()
    print(f"# {store.uri} (Delta version {snapshot.version})", file=sys.stderr)
    for paths in snapshot.files_by_partition().values():
        for path in paths:
            print(store.lake.uri(f"{store.root}/{path}"))
    return 0


def cmd_migrate_silver(args: argparse.Namespace) -> int:
    from ecom_pipeline.run.resources import build_resources
    from ecom_pipeline.silver.migrate import migrate_lake

    done = migrate_lake(build_resources(load_settings()).lake)
    for item in done:
        print(
            f"{item.dataset}: snapshot {item.snapshot_version} → Delta table, {item.rows} rows, "
            f"{item.old_files_removed} old file(s) removed"
        )
    if not done:
        print("no silver in the snapshot format: nothing to convert")
    return 0


def _print_report(report: RunReport, settings: Settings) -> None:
    for name, dataset in sorted(report.datasets.items()):
        print(
            f"{name:>9}: {dataset.total('rows_read')} read, "
            f"{dataset.total('rows_written')} written, "
            f"{dataset.total('rows_quarantined')} quarantined, "
            f"{dataset.total('rows_superseded')} superseded, "
            f"{len(dataset.partitions_written)} partition(s) written"
        )
    print(f"lake: {settings.lake_uri}  manifest: {report.manifest_key}")
    _print_gold_summary(settings)


def _print_gold_summary(settings: Settings) -> None:
    """The gold tables in the warehouse: rows, months covered, and where to query them."""
    from ecom_pipeline.gold.tables import GOLD_TABLES
    from ecom_pipeline.warehouse.engine import open_warehouse

    with open_warehouse(settings) as warehouse:
        tables = {table.name: warehouse.rows_by_month(table) for table in GOLD_TABLES}
        where = f"{warehouse.display_url} (schema {warehouse.schema})"
    for line in gold_summary_lines(tables, where, settings.warehouse_schema):
        print(line)


def gold_summary_lines(tables: dict[str, dict[str, int]], where: str, schema: str) -> list[str]:
    """Plain lines naming each gold table with its rows and months, then where to query them.

    Args:
        tables: per table name, its row count per month (``YYYY-MM``).
        where: the warehouse, password hidden, and its schema.
        schema: the schema, for the example query.
    """
    lines = [f"gold tables in {where}:"]
    for name, rows_by_month in tables.items():
        rows = sum(rows_by_month.values())
        lines.append(f"  {name:<18} {rows:>7} rows  {_months_text(sorted(rows_by_month))}")
    first = next(iter(tables), "daily_revenue")
    lines.append(f"  query them with SQL as {schema}.<table>, e.g. {schema}.{first}")
    return lines


def _months_text(months: list[str]) -> str:
    if not months:
        return "no months"
    if len(months) == 1:
        return f"month {months[0]}"
    return f"months {months[0]}..{months[-1]} ({len(months)})"


def _check_run_settings() -> Settings:
    """Everything a run needs from configuration, checked before Prefect starts a flow run."""
    settings = load_settings()
    settings.require_pii_key()
    return settings


class _WithoutTraceback(logging.Formatter):
    """Formats a record as ``inner`` does, minus its traceback (kept by the API log handler)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _console_logs_without_tracebacks() -> None:
    """Prefect logs a task's or flow's failure with its traceback on the console; the CLI shows
    the log lines and its own closing paragraph, and leaves tracebacks to the Prefect UI/API."""
    from prefect.logging.configuration import setup_logging

    setup_logging()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler.formatter, _WithoutTraceback
        ):
            handler.setFormatter(_WithoutTraceback(handler.formatter))


def _print_progress() -> None:
    """Lines the flows log on `PROGRESS_LOGGER` (a finished day) are printed plainly on stdout."""
    from ecom_pipeline.run.report import PROGRESS_LOGGER

    progress = logging.getLogger(PROGRESS_LOGGER)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False


def ui_url(host: str = UI_HOST, port: int = UI_PORT) -> str:
    """The address of the Prefect UI that ``--with-ui`` uses."""
    return f"http://{host}:{port}"


def _api_answers(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as reply:  # nosec B310
            return bool(reply.status == 200)
    except OSError:
        return False


@contextmanager
def _prefect_api(args: argparse.Namespace) -> Iterator[None]:
    """With ``--with-ui``: the command runs against a local Prefect server and its UI."""
    if not args.with_ui:
        yield
        return
    with prefect_ui(keep=args.keep_ui):
        yield


@contextmanager
def prefect_ui(host: str = UI_HOST, port: int = UI_PORT, *, keep: bool = False) -> Iterator[str]:
    """Point this process at a Prefect server on ``host:port``, starting one if none answers.

    Sets ``PREFECT_API_URL`` for the block (before Prefect is imported, which reads it once) and
    prints where to look. A server started here is stopped at the end unless ``keep``; its log
    goes to ``$PREFECT_HOME/ui-server.log``.

    Yields:
        The UI's address, e.g. ``http://127.0.0.1:4200``.
    """
    url = ui_url(host, port)
    api_url = f"{url}/api"
    server: subprocess.Popen[bytes] | None = None
    if not _api_answers(api_url):
        log_path = Path(os.environ.get("PREFECT_HOME", ".prefect")) / "ui-server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "prefect", "server", "start"]
        with log_path.open("ab") as log:
            server = subprocess.Popen(  # nosec B603 - our own interpreter, fixed arguments
                [*command, "--host", host, "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        print(f"starting a Prefect server on {url} (log: {log_path})", flush=True)
        deadline = time.monotonic() + UI_START_SECONDS
        while not _api_answers(api_url):
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise ConfigurationError(
                    f"the Prefect server on {url} did not start within {UI_START_SECONDS:.0f} s "
                    f"(exit code {server.poll()}); see {log_path}"
                )
            time.sleep(0.5)
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    print(f"Prefect UI: {url}/runs (flow runs of this command)", flush=True)
    try:
        yield url
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
        if server is not None:
            if keep:
                print(f"the Prefect server keeps running on {url} (stop it: kill {server.pid})")
            else:
                _drain_prefect_workers()
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()


def _drain_prefect_workers() -> None:
    """Send the log lines and events Prefect still holds before its server goes away."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    EventsWorker.drain_all()


def _quiet_console() -> None:
    """Only warnings and errors reach the console from now on: the closing paragraph stays the
    last thing said, not Prefect's "stopping temporary server" at exit."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(max(handler.level, logging.WARNING))


def failure_paragraph(command: str, exc: BaseException) -> str:
    """One paragraph saying why ``command`` failed: our own errors verbatim (they name file,
    line and column, never raw content), anything else by type and a short, escaped message."""
    if isinstance(exc, PipelineError):
        reason = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        where = f" ({printable(str(exc.filename))})" if exc.filename else ""
        reason = f"{type(exc).__name__}: {exc.strerror}{where}"
    else:
        message = str(exc)
        if len(message) > UNEXPECTED_MESSAGE_CHARS:
            message = message[:UNEXPECTED_MESSAGE_CHARS] + "…"
        reason = f"unexpected {type(exc).__name__}: {message}" if message else type(exc).__name__
    return " ".join(f"ecom-pipeline {command} failed: {printable(reason)}".split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv``; without ``argv`` (the program itself) the process ends here.

    As the program, the process ends through `_end_process`, which skips the interpreter's
    final teardown; called with ``argv`` (tests, other code) it returns the exit code.
    """
    _quiet_prefect_defaults()
    args = build_parser().parse_args(argv)
    code = run_command(args.command, lambda: int(args.handler(args)))
    if argv is None:
        _end_process(code)
    return code


def _end_process(code: int) -> NoReturn:
    """Run the exit handlers (Prefect stops its temporary server and flushes its logs), flush
    stdout and stderr, and end the process without the interpreter's final module teardown.

    That teardown is where DuckDB's binding printed pages of ``nanobind: leaked ...``: no
    connection or engine is open by then, but when CPython's last clearing pass frees the
    ``duckdb.value.constant`` module after its final garbage collection, the module's globals
    are left in a reference cycle with its classes and nothing collects it, so nanobind's exit
    check finds DuckDB's type constants still alive.
    """
    # Send the run's last log lines while a temporary Prefect server still runs: its exit
    # handler may stop it before the log worker's own exit drain ("Error logging to API").
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    # DuckDB 2.0's nanobind check misreports an uncollected cycle at teardown: skip teardown.
    os._exit(code)


def run_command(command: str, handler: Callable[[], int]) -> int:
    """Run a command's handler with the CLI's promise: one closing paragraph, no traceback."""
    try:
        return handler()
    except KeyboardInterrupt:
        _quiet_console()
        print(f"ecom-pipeline {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the CLI's promise: one paragraph, never a traceback
        _quiet_console()
        print(failure_paragraph(command, exc), file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
