"""The CLI (SPEC §8) as users run it, in a subprocess: every failure ends in one paragraph on
stderr and a non-zero exit, never a traceback; configuration is refused before anything runs."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import generate as generator
from ecom_pipeline import cli as ecom_cli
from tests.conftest import TEST_PII_KEY

DAY = "2026-11-21"
SECRET_LINE = "jane.doe@example.com,Jane,Doe,SECRET-FIRST-LINE"


def cli(
    cwd: Path, *args: str, timeout: float = 60, module: str = "ecom_pipeline.cli", **env: str
) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECOM_")}
    environment.update(
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        PREFECT_HOME=str(cwd / ".prefect"),
        ECOM_LAKE_URI=str(cwd / "lake"),
        ECOM_WAREHOUSE_URL=f"duckdb:///{cwd / 'warehouse.duckdb'}",
        ECOM_PII_HASH_KEY=TEST_PII_KEY,
    )
    environment.update(env)
    environment = {k: v for k, v in environment.items() if v != "<unset>"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def generate(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The development generator (``python -m devtools.generate``), keeping the CLI promise."""
    return cli(cwd, *args, module="devtools.generate", **env)


def assert_no_library_noise(result: subprocess.CompletedProcess) -> None:
    """No exit-time report from DuckDB's binding, no warning of any library."""
    assert "nanobind" not in result.stderr, result.stderr[-2000:]
    assert "Warning" not in result.stderr + result.stdout, result.stderr[-2000:]


def assert_one_paragraph_failure(result: subprocess.CompletedProcess, command: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert_no_library_noise(result)
    last = result.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith(f"ecom-pipeline {command} failed: "), result.stderr
    return last


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ECOM_LAKE_URI": "s3:///prefix"}, "ECOM_LAKE_URI: names no bucket"),
        ({"ECOM_LAKE_URI": "s3://Bad_Bucket/x"}, "invalid S3 bucket name"),
        (
            {"ECOM_WAREHOUSE_URL": "mysql://admin:hunter2@db:3306/x"},
            "unsupported warehouse 'mysql'",
        ),
        (
            {"ECOM_WAREHOUSE_URL": "postgresql+asyncpg://admin:hunter2@db/x"},
            "use postgresql+psycopg://",
        ),
        ({"ECOM_WAREHOUSE_URL": "this is :// not a url"}, "not a valid SQLAlchemy URL"),
        ({"ECOM_PII_HASH_KEY": "short"}, "at least 16 characters"),
        ({"ECOM_PII_HASH_KEY": " " * 16}, "starts or ends with whitespace"),
        ({"ECOM_PII_HASH_KEY": "<unset>"}, "ECOM_PII_HASH_KEY is not set"),
    ],
)
def test_bad_configuration_is_one_paragraph_before_anything_runs(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = cli(tmp_path, "run", "--date", DAY, **env)
    last = assert_one_paragraph_failure(result, "run")
    assert expected in last
    assert result.stderr.count("\n") == 1  # nothing else: Prefect was never started
    assert "hunter2" not in result.stderr
    assert not (tmp_path / "lake").exists() and not (tmp_path / "warehouse.duckdb").exists()


def test_a_short_local_key_file_is_refused_like_an_environment_key(tmp_path: Path) -> None:
    (tmp_path / ".ecom-pii-key").write_text("\n")
    result = generate(tmp_path, "--start-date", DAY, ECOM_PII_HASH_KEY="<unset>")
    assert ".ecom-pii-key: the PII key must be" in assert_one_paragraph_failure(result, "generate")


def test_an_os_error_is_one_paragraph_too(tmp_path: Path) -> None:
    (tmp_path / "lake").write_text("a file where the lake folder should be")
    result = generate(tmp_path, "--start-date", DAY, "--orders-per-day", "5")
    last = assert_one_paragraph_failure(result, "generate")
    assert "NotADirectoryError: Not a directory" in last


@pytest.mark.slow
def test_a_link_out_of_the_lake_fails_the_run_by_key_without_quoting_the_file(
    tmp_path: Path,
) -> None:
    """Issue 16: a symlink under raw/ to a file outside the lake is rejected by its key; no
    message, log line, alert or manifest quotes the file; stray objects are listed, not fatal."""
    secret = tmp_path / "outside.csv"
    secret.write_text(SECRET_LINE + "\n")
    generated = generate(tmp_path, "--start-date", DAY, "--orders-per-day", "20", "--clean")
    assert generated.returncode == 0, generated.stderr
    day_folder = tmp_path / "lake" / "raw" / "orders" / f"dt={DAY}"
    (day_folder / "evil.csv").symlink_to(secret)
    (day_folder / "_SUCCESS").write_bytes(b"")

    result = cli(tmp_path, "run", "--date", DAY, timeout=300)

    last = assert_one_paragraph_failure(result, "run")
    assert f"raw/orders/dt={DAY}/evil.csv: a symbolic link" in last
    assert "SECRET-FIRST-LINE" not in result.stderr + result.stdout
    assert "jane.doe" not in result.stderr + result.stdout
    lake = tmp_path / "lake"
    for path in lake.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"SECRET-FIRST-LINE" not in path.read_bytes(), path
    manifest = json.loads(next((lake / "_runs" / f"dt={DAY}").glob("*.json")).read_text())
    files = {f["source"]: f for f in manifest["datasets"]["orders"]["files"]}
    assert files[f"raw/orders/dt={DAY}/evil.csv"]["status"] == "failed"
    assert files[f"raw/orders/dt={DAY}/_SUCCESS"]["status"] == "ignored"
    assert "not a .csv file" in files[f"raw/orders/dt={DAY}/_SUCCESS"]["reason"]
    assert manifest["datasets"]["orders"]["snapshot_version"] == 1  # the good file went through
    alerts = list((lake / "_runs" / "alerts").glob("*-failure.json"))
    assert alerts and "evil.csv: a symbolic link" in alerts[0].read_text()


@pytest.mark.slow
def test_a_local_run_and_backfill_print_progress_and_the_gold_tables_and_nothing_else(
    tmp_path: Path,
) -> None:
    """Issue 15: after a run on DuckDB the process ends quietly (no nanobind report, no
    warnings); a backfill prints a line per day, both end with the gold tables and where they
    are, the warehouse password never shown."""
    first, second = "2026-11-18", "2026-11-19"
    generated = generate(tmp_path, "--start-date", first, "--days", "2", "--orders-per-day", "20")
    assert generated.returncode == 0, generated.stderr
    assert_no_library_noise(generated)

    run = cli(tmp_path, "run", "--date", first, timeout=300)
    assert run.returncode == 0, run.stderr
    assert_no_library_noise(run)
    assert f"gold tables in duckdb:///{tmp_path / 'warehouse.duckdb'} (schema gold):" in run.stdout
    assert "month 2026-11" in run.stdout

    backfill = cli(tmp_path, "backfill", "--start-date", first, "--end-date", second, timeout=300)
    assert backfill.returncode == 0, backfill.stderr
    assert_no_library_noise(backfill)
    lines = backfill.stdout.splitlines()
    assert lines[0].startswith(f"{first}: COMPLETED, ") and lines[0].endswith(" s"), lines
    assert lines[1].startswith(f"{second}: COMPLETED, ") and " rows in, " in lines[1], lines
    assert lines[2].startswith("2 day(s): 2 completed, 0 failed; "), lines
    assert lines[3] == f"gold tables in duckdb:///{tmp_path / 'warehouse.duckdb'} (schema gold):"
    names = [line.split()[0] for line in lines[4:7]]
    assert names == ["daily_revenue", "daily_payments", "monthly_customers"]
    assert all(" rows  month" in line for line in lines[4:7]), lines
    assert lines[7].strip().startswith("query them with SQL"), lines


def test_the_gold_summary_names_rows_months_and_where() -> None:
    lines = ecom_cli.gold_summary_lines(
        {"daily_revenue": {"2026-11": 2, "2026-10": 1}, "monthly_customers": {}},
        "postgresql+psycopg://etl:***@db/analytics (schema gold)",
        "gold",
    )
    assert lines == [
        "gold tables in postgresql+psycopg://etl:***@db/analytics (schema gold):",
        "  daily_revenue            3 rows  months 2026-10..2026-11 (2)",
        "  monthly_customers        0 rows  no months",
        "  query them with SQL as gold.<table>, e.g. gold.daily_revenue",
    ]


def _actions(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        yield f"{path} {'/'.join(action.option_strings) or action.dest}", action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")


@pytest.mark.parametrize(
    "parser",
    [ecom_cli.build_parser(), generator.build_parser()],
    ids=["ecom-pipeline", "devtools.generate"],
)
def test_every_option_and_positional_has_help(parser: argparse.ArgumentParser) -> None:
    missing = [where for where, action in _actions(parser, parser.prog) if not action.help]
    assert not missing, f"options without help text: {missing}"
    for commands in [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]:
        described = {c.dest for c in commands._choices_actions if c.help}
        assert described == set(commands.choices), "every command has a help line"


@pytest.fixture
def fake_prefect_api() -> Iterator[int]:
    """An HTTP server that answers ``/api/health`` like a running Prefect server."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_with_ui_points_the_run_at_a_running_server_and_says_where_to_look(
    fake_prefect_api: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere/api")
    started = []
    monkeypatch.setattr(ecom_cli.subprocess, "Popen", lambda *a, **k: started.append(a))

    with ecom_cli.prefect_ui(port=fake_prefect_api) as url:
        assert url == f"http://127.0.0.1:{fake_prefect_api}"
        assert os.environ["PREFECT_API_URL"] == f"{url}/api"

    assert os.environ["PREFECT_API_URL"] == "http://elsewhere/api"  # restored after the run
    assert not started  # a server answered: none was started
    assert f"Prefect UI: http://127.0.0.1:{fake_prefect_api}/runs" in capsys.readouterr().out


def test_with_ui_is_an_option_of_run_and_backfill() -> None:
    parser = ecom_cli.build_parser()
    run = parser.parse_args(["run", "--date", DAY, "--with-ui"])
    assert run.with_ui and not run.keep_ui
    backfill = parser.parse_args(
        ["backfill", "--start-date", DAY, "--end-date", DAY, "--with-ui", "--keep-ui"]
    )
    assert backfill.with_ui and backfill.keep_ui


def test_with_ui_fails_in_one_paragraph_when_the_server_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setattr(ecom_cli.sys, "executable", "/bin/false")  # the server exits at once

    with (
        pytest.raises(ecom_cli.ConfigurationError, match="did not start"),
        ecom_cli.prefect_ui(port=port),
    ):
        pass
    assert os.environ.get("PREFECT_API_URL") != f"http://127.0.0.1:{port}/api"
