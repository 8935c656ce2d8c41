"""Shared test fixtures: a real S3 API (moto's server over HTTP), a real PostgreSQL, local lakes.

Nothing here patches the project's own I/O: tests reach S3 and PostgreSQL through the same
boto3 / SQLAlchemy code paths production uses.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "ECOM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BUCKET = "ecommerce-data"

# Tests must never reach real AWS: dummy credentials, a fixed region.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every chaos test's figures (faults injected and survived, kill points, rows lost) at the
    end of any run, CI's included: the ``fault_tally`` fixture records them on the report."""
    figures: dict[str, str] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", []):
                if name == "chaos":
                    figures[report.nodeid] = str(value)
    if figures:
        terminalreporter.section("chaos figures")
        for nodeid, value in sorted(figures.items()):
            terminalreporter.write_line(f"{nodeid}: {value}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on 127.0.0.1: S3, SNS, SQS, ECS… over real HTTP."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_lake_uri(moto_endpoint: str) -> str:
    """A fresh bucket prefix on the moto server for one test."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def local_lake_uri(tmp_path: Path) -> str:
    return str(tmp_path / "lake")


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest):
    """The same test on a local folder and on the S3 API."""
    from ecom_pipeline.lake.storage import open_lake

    if request.param == "local":
        return open_lake(request.getfixturevalue("local_lake_uri"))
    return open_lake(
        request.getfixturevalue("s3_lake_uri"),
        endpoint_url=request.getfixturevalue("moto_endpoint"),
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The machine's PostgreSQL; an unreachable server fails the test with a clear message."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({type(exc).__name__}: {exc}). "
            "The suite needs a real PostgreSQL 15: start it (pg_ctlcluster 15 main start) or "
            "point ECOM_TEST_POSTGRES_URL at one.",
            pytrace=False,
        )
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A unique warehouse schema name for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"gold_{uuid.uuid4().hex[:10]}"
    yield name
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


TEST_PII_KEY = "test-pii-key-0123456789abcdef"


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API (SQLite) for the whole session: flows run for real."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def pipeline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Settings of the embedded default, in a fresh folder: local lake, DuckDB warehouse."""
    monkeypatch.chdir(tmp_path)  # no stray .env or key file from the checkout
    for name in list(os.environ):
        if name.startswith("ECOM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ECOM_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("ECOM_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    monkeypatch.setenv("ECOM_PII_HASH_KEY", TEST_PII_KEY)
    return tmp_path
