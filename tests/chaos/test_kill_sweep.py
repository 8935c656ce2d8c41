"""SIGKILL at every step of a whole daily run, then a re-run: the result equals a clean run's
(issue 14).

`tests/flows/test_crash_safety.py` kills the silver step; this sweep kills the run everywhere
it writes or decides anything: ingest (after listing, after the first checksum), each dataset's
validate (its first file staged on scratch disk), the quarantine write, each silver commit
(before the merge and after its commit), the gold lock, each gold table's month file, each
warehouse load (before and after COMMIT), the ledger (before and after its first write, after
its last) and the manifest. Each point is one subprocess (``ecom-pipeline run``) that must die
by SIGKILL there; then:

- the ledger is never ahead of the data: every file it lists as ingested has all its rows in
  silver (those a clean run keeps), and once any file of the day is listed, gold and the
  warehouse already equal the clean run's;
- a re-run without the kill succeeds, removes the killed run's scratch folder, and leaves
  silver, the gold files and the warehouse equal to an uninterrupted run's.

A kill inside the gold lock leaves the lock's lease to run out (60 s + 5 s grace). One point
(`LEASE_WAIT_POINT`) waits for it for real; for the others the test moves the dead holder's
expiry into the past, as that wait would, so the sweep does not spend a minute per point.

Local lake + DuckDB for every point (``chaos_full``) and a bounded subset by default (marker
``chaos``); the S3 API (moto's server) + PostgreSQL for a handful of points (``chaos_full``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from devtools.generate import generate_day, write_raw_files
from ecom_pipeline.contracts.datasets import INGESTED_AT, RUN_ID, SOURCE_FILE, SPECS, Dataset
from ecom_pipeline.gold.tables import GOLD_TABLES
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.intake import read_ledger
from ecom_pipeline.lake.storage import Lake, LocalLake, open_lake
from ecom_pipeline.silver.store import SilverStore
from flows.daily import daily
from tests.conftest import BUCKET, TEST_PII_KEY
from tests.flows.test_crash_safety import (
    CONFIG,
    FIRST,
    MIDDLE,
    SECOND,
    copy_prefix,
    gold_state,
    run_killed,
    silver_state,
)
from tests.flows.test_daily import normalised, warehouse_rows

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

DATASETS = [d.value for d in Dataset]
TABLES = [t.name for t in GOLD_TABLES]
#: Every kill point of a daily run, in the order the run meets them, and whether the run
#: holds the gold lock there.
POINTS: list[tuple[str, bool]] = [
    ("ingest:listed", False),
    ("ingest:checksummed", False),
    *[(f"validate:{d}:staged", False) for d in ("customers", "orders", "payments", "employees")],
    ("write:1:quarantine/", False),
    *[
        (f"silver:{d}:{step}", False)
        for d in ("customers", "orders", "payments", "employees")
        for step in ("before-merge", "after-merge")
    ],
    ("write:1:_locks/gold/", True),
    *[(f"write:1:gold/{t}/", True) for t in TABLES],
    *[(f"load:{t}:{step}", True) for t in TABLES for step in ("before-commit", "after-commit")],
    ("write:1:_runs/dt=", False),  # the manifest written, the ledger not yet
    ("ledger:customers:before-write", False),
    ("write:1:_runs/ledger/", False),
    ("write:4:_runs/ledger/", False),  # all four recorded, metrics and notice not yet
]
#: The bounded subset that runs by default: one point per stage family.
DEFAULT_POINTS = {
    "validate:orders:staged",
    "load:daily_revenue:before-commit",
    "write:1:_runs/ledger/",
}
#: The point whose re-run waits for the dead holder's lease for real.
LEASE_WAIT_POINT = "write:1:_locks/gold/"
S3_POINTS = [
    ("ingest:checksummed", False),
    ("validate:payments:staged", False),
    ("silver:orders:after-merge", False),
    ("write:1:gold/daily_payments/", True),
    ("load:monthly_customers:before-commit", True),
    ("write:2:_runs/ledger/", False),
    ("write:1:_runs/dt=", False),
]

assert len(POINTS) >= 20


def sweep_params(points: list[tuple[str, bool]], default: set[str]) -> list:
    return [
        pytest.param(
            name, in_lock, id=name, marks=[] if name in default else [pytest.mark.chaos_full]
        )
        for name, in_lock in points
    ]


@dataclass
class Clean:
    """The state every scenario starts from, and what an uninterrupted run makes of it."""

    root: Path
    scratch: Path
    silver: dict[str, list[tuple]]
    gold: dict[str, list[tuple]]
    warehouse: dict[str, list[dict]]
    #: Per dataset, each source file's rows in clean silver (lineage of the run left out).
    by_source: dict[str, dict[str, set[tuple]]]


def silver_by_source(lake: Lake) -> dict[str, dict[str, set[tuple]]]:
    result: dict[str, dict[str, set[tuple]]] = {}
    for dataset in Dataset:
        rows = SilverStore(lake, SPECS[dataset]).read().drop_columns([INGESTED_AT, RUN_ID])
        sources = rows.column(SOURCE_FILE).to_pylist()
        per: dict[str, set[tuple]] = result.setdefault(dataset.value, {})
        for source, row in zip(sources, rows.to_pylist(), strict=True):
            per.setdefault(source, set()).add(tuple(row.values()))
    return result


@pytest.fixture(scope="module")
def env() -> Iterator[pytest.MonkeyPatch]:
    """The embedded default's settings for the whole module (like `pipeline_env`)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("ECOM_"):
                patch.delenv(name)
        patch.setenv("ECOM_PII_HASH_KEY", TEST_PII_KEY)
        yield patch


def point_env(patch: pytest.MonkeyPatch, lake_uri: str, warehouse_url: str) -> None:
    patch.setenv("ECOM_LAKE_URI", lake_uri)
    patch.setenv("ECOM_WAREHOUSE_URL", warehouse_url)


def duckdb_url(path: Path) -> str:
    return f"duckdb:///{path}"


@pytest.fixture(scope="module")
def clean_local(env: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Clean:
    """Two days run into ``base/``; a copy of it runs the third day uninterrupted."""
    root = tmp_path_factory.mktemp("sweep")
    env.chdir(root)
    scratch = root / "scratch"
    env.setenv("ECOM_SCRATCH_DIR", str(scratch))
    base = root / "base"
    lake = LocalLake(base / "lake")
    for day in (FIRST, MIDDLE, SECOND):
        write_raw_files(lake, generate_day(day, CONFIG, first_day=FIRST))
    point_env(env, str(base / "lake"), duckdb_url(base / "warehouse.duckdb"))
    assert daily(run_date=FIRST).succeeded
    assert daily(run_date=MIDDLE).succeeded

    reference = root / "reference"
    shutil.copytree(base, reference)
    point_env(env, str(reference / "lake"), duckdb_url(reference / "warehouse.duckdb"))
    assert daily(run_date=SECOND).succeeded
    done = LocalLake(reference / "lake")
    return Clean(
        root,
        scratch,
        silver_state(done),
        gold_state(done),
        warehouse_rows(duckdb_url(reference / "warehouse.duckdb")),
        silver_by_source(done),
    )


def assert_ledger_not_ahead(
    lake: Lake, clean: Clean, warehouse: dict[str, list[dict]], point: str
) -> int:
    """Every file the ledger lists for the day has its rows in silver and is accounted for in
    a manifest of the day; once it lists any, gold and the warehouse are complete. Returns the
    number of files listed."""
    landed = silver_by_source(lake)
    in_manifests = manifested_sources(lake)
    listed = 0
    for dataset in DATASETS:
        for key in read_ledger(lake, dataset, SECOND):
            listed += 1
            want = clean.by_source[dataset].get(key, set())
            missing = want - landed[dataset].get(key, set())
            assert not missing, f"{point}: ledger lists {key}, {len(missing)} row(s) not in silver"
            assert key in in_manifests, f"{point}: ledger lists {key}, which no manifest accounts"
    if listed:
        assert gold_state(lake) == clean.gold, f"{point}: ledger written before gold"
        assert same_tables(warehouse, clean.warehouse), f"{point}: ledger written before the load"
    return listed


def manifested_sources(lake: Lake) -> set[str]:
    """The files that a manifest of the day reports as processed."""
    sources = set()
    for item in lake.list(layout.RUNS_PREFIX):
        parsed = layout.parse_key(item.key)
        if parsed is not None and parsed.kind == "manifest":
            for dataset in json.loads(lake.read_bytes(item.key))["datasets"].values():
                sources.update(f["source"] for f in dataset["files"] if f["status"] == "processed")
    return sources


def same_tables(actual: dict[str, list[dict]], expected: dict[str, list[dict]]) -> bool:
    """The same rows in every warehouse table, in any order."""
    return {t: normalised(r) for t, r in actual.items()} == {
        t: normalised(r) for t, r in expected.items()
    }


def expire_gold_lock(lake: Lake) -> None:
    """What waiting out the killed holder's lease would do: its expiry is in the past."""
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    for item in lake.list("_locks/gold/"):
        if item.key.endswith(".json") and not item.key.endswith(".released.json"):
            record = json.loads(lake.read_bytes(item.key))
            if "expires_at" in record:
                lake.write_json(item.key, {**record, "expires_at": past})


def heal_and_compare(
    patch: pytest.MonkeyPatch,
    clean: Clean,
    lake: Lake,
    lake_uri: str,
    warehouse_url: str,
    schema: str,
    point: str,
    in_lock: bool,
) -> float:
    """After the kill: check the ledger, re-run, compare with the clean run. Returns the
    re-run's seconds."""
    assert_ledger_not_ahead(lake, clean, warehouse_rows(warehouse_url, schema), point)
    if in_lock and point != LEASE_WAIT_POINT:
        expire_gold_lock(lake)
    point_env(patch, lake_uri, warehouse_url)
    started = time.monotonic()
    report = daily(run_date=SECOND)
    assert report.succeeded, point
    assert not report.unbalanced_files(), point
    seconds = time.monotonic() - started
    assert silver_state(lake) == clean.silver, point
    assert gold_state(lake) == clean.gold, point
    assert same_tables(warehouse_rows(warehouse_url, schema), clean.warehouse), point
    return seconds


@pytest.mark.parametrize(("point", "in_lock"), sweep_params(POINTS, DEFAULT_POINTS))
def test_sigkill_anywhere_in_the_daily_run_then_rerun_equals_a_clean_run(
    clean_local: Clean,
    monkeypatch: pytest.MonkeyPatch,
    fault_tally: dict[str, int],
    point: str,
    in_lock: bool,
) -> None:
    name = point.replace(":", "_").replace("/", "_")
    scenario = clean_local.root / f"kill-{name}"
    shutil.copytree(clean_local.root / "base", scenario)
    warehouse = duckdb_url(scenario / "warehouse.duckdb")
    run_killed(clean_local.root, str(scenario / "lake"), scenario / "warehouse.duckdb", point)
    lake = LocalLake(scenario / "lake")
    seconds = heal_and_compare(
        monkeypatch, clean_local, lake, str(scenario / "lake"), warehouse, "gold", point, in_lock
    )
    assert not any(clean_local.scratch.iterdir()), f"{point}: a scratch folder outlived its run"
    if point == LEASE_WAIT_POINT:
        assert seconds > 50, "the re-run should have waited out the dead holder's lease"
    fault_tally.update(kills=1, healed=1, rows_lost=0)
    shutil.rmtree(scenario)


# -- the S3 API + PostgreSQL ---------------------------------------------------------------
def copy_schema(url: str, source: str, target: str) -> None:
    """A copy of a warehouse schema's gold tables (PostgreSQL)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{target}"'))
        for table in TABLES:
            conn.execute(
                sa.text(
                    f'CREATE TABLE "{target}"."{table}" (LIKE "{source}"."{table}" INCLUDING ALL)'
                )
            )
            conn.execute(
                sa.text(f'INSERT INTO "{target}"."{table}" SELECT * FROM "{source}"."{table}"')
            )
    engine.dispose()


def drop_schemas(url: str, schemas: list[str]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for schema in schemas:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@dataclass
class CleanS3:
    clean: Clean
    base_uri: str
    base_schema: str
    endpoint: str
    postgres_url: str
    schemas: list[str]


@pytest.fixture(scope="module")
def clean_s3(
    env: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    moto_endpoint: str,
    postgres_url: str,
) -> Iterator[CleanS3]:
    root = tmp_path_factory.mktemp("sweep-s3")
    env.chdir(root)
    scratch = root / "scratch"
    env.setenv("ECOM_SCRATCH_DIR", str(scratch))
    env.setenv("ECOM_AWS_ENDPOINT_URL", moto_endpoint)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    tag = uuid.uuid4().hex[:8]
    prefix = f"s3://{BUCKET}/sweep-{tag}"
    base_uri, base_schema = f"{prefix}/base", f"sweep_{tag}_base"
    schemas = [base_schema]
    lake = open_lake(base_uri, endpoint_url=moto_endpoint)
    for day in (FIRST, MIDDLE, SECOND):
        write_raw_files(lake, generate_day(day, CONFIG, first_day=FIRST))
    env.setenv("ECOM_WAREHOUSE_SCHEMA", base_schema)
    point_env(env, base_uri, postgres_url)
    assert daily(run_date=FIRST).succeeded
    assert daily(run_date=MIDDLE).succeeded

    reference_uri, reference_schema = f"{prefix}/reference", f"sweep_{tag}_reference"
    schemas.append(reference_schema)
    copy_prefix(moto_endpoint, base_uri, reference_uri)
    copy_schema(postgres_url, base_schema, reference_schema)
    env.setenv("ECOM_WAREHOUSE_SCHEMA", reference_schema)
    point_env(env, reference_uri, postgres_url)
    assert daily(run_date=SECOND).succeeded
    done = open_lake(reference_uri, endpoint_url=moto_endpoint)
    clean = Clean(
        root,
        scratch,
        silver_state(done),
        gold_state(done),
        warehouse_rows(postgres_url, reference_schema),
        silver_by_source(done),
    )
    state = CleanS3(clean, base_uri, base_schema, moto_endpoint, postgres_url, schemas)
    try:
        yield state
    finally:
        drop_schemas(postgres_url, state.schemas)


@pytest.mark.chaos_full
@pytest.mark.parametrize(("point", "in_lock"), sweep_params(S3_POINTS, set()))
def test_sigkill_on_the_s3_api_with_postgresql_then_rerun_equals_a_clean_run(
    clean_s3: CleanS3,
    monkeypatch: pytest.MonkeyPatch,
    fault_tally: dict[str, int],
    point: str,
    in_lock: bool,
) -> None:
    number = [p for p, _ in S3_POINTS].index(point)
    scenario_uri = clean_s3.base_uri.replace("/base", f"/kill-{number:02d}")
    schema = clean_s3.base_schema.replace("_base", f"_kill{number:02d}")
    clean_s3.schemas.append(schema)
    copy_prefix(clean_s3.endpoint, clean_s3.base_uri, scenario_uri)
    copy_schema(clean_s3.postgres_url, clean_s3.base_schema, schema)
    monkeypatch.setenv("ECOM_WAREHOUSE_SCHEMA", schema)
    run_killed(
        clean_s3.clean.root,
        scenario_uri,
        clean_s3.postgres_url,
        point,
        ECOM_WAREHOUSE_SCHEMA=schema,
    )
    lake = open_lake(scenario_uri, endpoint_url=clean_s3.endpoint)
    heal_and_compare(
        monkeypatch,
        clean_s3.clean,
        lake,
        scenario_uri,
        clean_s3.postgres_url,
        schema,
        point,
        in_lock,
    )
    fault_tally.update(kills=1, healed=1, rows_lost=0)
