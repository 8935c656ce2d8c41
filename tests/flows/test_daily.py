"""The daily flow end to end through a real Prefect API (SPEC §7), checked against an
independent computation of gold."""

from __future__ import annotations

import json
import logging
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet
import pytest

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.contracts.datasets import PROCESSING_ORDER, SPECS, Dataset
from ecom_pipeline.errors import RunFailedError
from ecom_pipeline.gold.tables import GOLD_TABLES, LOADED_AT
from ecom_pipeline.lake.failpoints import interleave
from ecom_pipeline.lake.storage import LocalLake, open_lake
from ecom_pipeline.settings import load_settings
from ecom_pipeline.silver.store import SilverStore
from ecom_pipeline.warehouse.engine import Warehouse
from flows.daily import daily
from tests.conftest import TEST_PII_KEY
from tests.independent_gold import expected_gold

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

FIRST = date(2026, 11, 18)
DAYS = [FIRST + timedelta(days=i) for i in range(3)]
CONFIG = GeneratorConfig(orders_per_day=300, employees=50, seed=11)


def generate(lake_root: Path, days: list[date], config: GeneratorConfig = CONFIG) -> None:
    lake = LocalLake(lake_root)
    for day in days:
        write_raw_files(lake, generate_day(day, config, first_day=FIRST))


def warehouse_rows(settings_url: str, schema: str = "gold") -> dict[str, list[dict]]:
    warehouse = Warehouse(settings_url, schema)
    try:
        return {
            table.name: [
                {k: v for k, v in row.items() if k != LOADED_AT}
                for row in warehouse.read_table(table).to_pylist()
            ]
            for table in GOLD_TABLES
        }
    finally:
        warehouse.close()


def normalised(rows: list[dict]) -> list[tuple]:
    """Rows as comparable tuples (Decimal('10.5') == Decimal('10.50') already)."""
    return sorted(tuple(row.values()) for row in rows)


def assert_gold_matches(actual: dict[str, list[dict]], expected: dict[str, list[dict]]) -> None:
    for table in GOLD_TABLES:
        names = list(table.column_names)
        got = [{n: row[n] for n in names} for row in actual[table.name]]
        want = [{n: row[n] for n in names} for row in expected[table.name]]
        assert normalised(got) == normalised(want), table.name


@pytest.mark.parametrize("batches", ["default", "small"])
def test_embedded_default_runs_days_and_gold_matches_an_independent_computation(
    pipeline_env: Path, monkeypatch: pytest.MonkeyPatch, batches: str
) -> None:
    if batches == "small":  # files read in many blocks
        monkeypatch.setenv("ECOM_READ_BLOCK_BYTES", "2048")
    lake_root = pipeline_env / "lake"
    generate(lake_root, DAYS)
    for day in DAYS:
        report = daily(run_date=day)
        assert report.succeeded
        assert not report.unbalanced_files()

    # silver partitions exactly as SPEC §4
    lake = LocalLake(lake_root)
    orders = SilverStore(lake, SPECS[Dataset.ORDERS]).current()
    assert all(p.startswith("order_date=") and "/customer_region=" in p for p in orders.partitions)
    assert {p.split("/")[0] for p in orders.partitions} >= {f"order_date={d}" for d in DAYS}
    assert (lake_root / "processed" / "orders" / "_delta_log").is_dir()  # a Delta table
    payments = SilverStore(lake, SPECS[Dataset.PAYMENTS]).current()
    assert {p for p in payments.partitions} >= {f"payment_date={d}" for d in DAYS}
    customers = SilverStore(lake, SPECS[Dataset.CUSTOMERS]).current()
    assert all(p.startswith("customer_region=") for p in customers.partitions)
    assert list(SilverStore(lake, SPECS[Dataset.EMPLOYEES]).current().partitions) == [""]

    expected = expected_gold(lake_root, DAYS)
    url = load_settings().warehouse_url.get_secret_value()
    assert_gold_matches(warehouse_rows(url), expected)
    # the lake's gold files hold the same rows as the warehouse
    for table in GOLD_TABLES:
        files = sorted((lake_root / "gold" / table.name).glob("month=*/*.parquet"))
        assert files, table.name
        lake_rows = pa.concat_tables([pa.parquet.read_table(f) for f in files]).to_pylist()
        assert normalised(lake_rows) == normalised(
            [{n: r[n] for n in table.column_names} for r in expected[table.name]]
        )


def test_late_customers_move_their_orders_out_of_unknown(pipeline_env: Path) -> None:
    generate(pipeline_env / "lake", DAYS[:2])
    daily(run_date=DAYS[0])
    store = SilverStore(LocalLake(pipeline_env / "lake"), SPECS[Dataset.ORDERS])
    unknown_before = store.read(
        partitions=[p for p in store.current().partitions if p.endswith("=UNKNOWN")]
    )
    daily(run_date=DAYS[1])
    unknown_after = store.read(
        partitions=[p for p in store.current().partitions if p.endswith("=UNKNOWN")]
    )
    moved = set(unknown_before.column("order_id").to_pylist()) - set(
        unknown_after.column("order_id").to_pylist()
    )
    assert moved, "the generator delivers some customers a day late"
    all_rows = store.read().to_pylist()
    assert len({r["order_id"] for r in all_rows}) == len(all_rows)  # moved, not copied


@pytest.mark.parametrize("at_once", [True, False], ids=["small-day", "lanes-max-bytes-0"])
def test_a_small_day_runs_its_lanes_at_once_and_a_large_one_a_dataset_at_a_time(
    pipeline_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    at_once: bool,
) -> None:
    if not at_once:
        monkeypatch.setenv("ECOM_LANES_MAX_BYTES", "0")  # every day counts as large
    generate(pipeline_env / "lake", DAYS[:1])
    payments = SilverStore(LocalLake(pipeline_env / "lake"), SPECS[Dataset.PAYMENTS])
    seen: list[int] = []

    def customers_about_to_merge() -> None:
        # Lanes at once: while the customers lane waits here, the payments lane goes on to
        # create its table (version 0) and commit its rows (version 1).
        deadline = time.monotonic() + (60 if at_once else 0)
        while payments.current().version < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(payments.current().version)

    with interleave("silver:customers:before-merge", customers_about_to_merge):
        report = daily(run_date=DAYS[0])

    assert report.succeeded
    assert seen == ([1] if at_once else [-1])
    assert list(report.datasets) == [d.value for d in PROCESSING_ORDER]  # reported in order
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "worker thread" in w]  # see flows/lanes.py


def test_running_a_day_twice_changes_nothing_but_loaded_at(pipeline_env: Path) -> None:
    generate(pipeline_env / "lake", DAYS[:1])
    daily(run_date=DAYS[0])
    lake = LocalLake(pipeline_env / "lake")
    silver_before = {d: SilverStore(lake, SPECS[d]).current().version for d in Dataset}
    url = load_settings().warehouse_url.get_secret_value()
    gold_before = warehouse_rows(url)

    skipped = daily(run_date=DAYS[0])  # files already ingested: nothing to do
    assert all(f.status == "skipped" for r in skipped.datasets.values() for f in r.files)
    again = daily(run_date=DAYS[0], reprocess=True)  # forced: same rows again
    assert again.succeeded

    # nothing new to commit: no Delta version was added
    assert {d: SilverStore(lake, SPECS[d]).current().version for d in Dataset} == silver_before
    assert warehouse_rows(url) == gold_before


def test_a_bad_file_fails_the_run_after_the_rest_is_written(pipeline_env: Path) -> None:
    lake_root = pipeline_env / "lake"
    generate(lake_root, DAYS[:1])
    bad = lake_root / "raw" / "payments" / f"dt={DAYS[0]}" / "broken.csv"
    bad.write_bytes(b"payment_id,order_id\nP1,O1\n")
    stray = lake_root / "raw" / "refunds" / f"dt={DAYS[0]}" / "refunds.csv"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"refund_id\nR1\n")

    with pytest.raises(RunFailedError) as failure:
        daily(run_date=DAYS[0])
    message = str(failure.value)
    assert f"raw/payments/dt={DAYS[0]}/broken.csv, line 1: required column(s) missing" in message
    assert "unknown dataset folder 'refunds'" in message
    # the other files and datasets went through
    lake = LocalLake(lake_root)
    assert SilverStore(lake, SPECS[Dataset.ORDERS]).current().version == 1  # create + merge
    assert SilverStore(lake, SPECS[Dataset.PAYMENTS]).current().version == 1
    quarantined = lake_root / "quarantine" / "payments" / f"dt={DAYS[0]}" / "files"
    assert (quarantined / "broken.csv").read_bytes() == bad.read_bytes()
    reason = json.loads((quarantined / "broken.csv.reason.json").read_text())
    assert "total_amount" not in reason["reason"] and "payment_date" in reason["reason"]
    manifest = json.loads(next((lake_root / "_runs" / f"dt={DAYS[0]}").glob("*.json")).read_text())
    assert manifest["succeeded"] is False


def test_s3_lake_and_postgresql_warehouse(
    monkeypatch: pytest.MonkeyPatch,
    pipeline_env: Path,
    s3_lake_uri: str,
    moto_endpoint: str,
    postgres_url: str,
    pg_schema: str,
) -> None:
    # The same files land in S3 (for the run) and in a local folder (for the expectation).
    local_copy = pipeline_env / "expected-lake"
    s3 = open_lake(s3_lake_uri, endpoint_url=moto_endpoint)
    for day in DAYS[:2]:
        files = generate_day(day, CONFIG, first_day=FIRST)
        write_raw_files(s3, files)
        write_raw_files(LocalLake(local_copy), files)
    monkeypatch.setenv("ECOM_LAKE_URI", s3_lake_uri)
    monkeypatch.setenv("ECOM_AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("ECOM_WAREHOUSE_URL", postgres_url)
    monkeypatch.setenv("ECOM_WAREHOUSE_SCHEMA", pg_schema)
    # S3 objects are streamed: read them in several blocks.
    monkeypatch.setenv("ECOM_READ_BLOCK_BYTES", "4096")

    for day in DAYS[:2]:
        assert daily(run_date=day).succeeded

    assert_gold_matches(
        warehouse_rows(postgres_url, pg_schema), expected_gold(local_copy, DAYS[:2])
    )
    keys = [o.key for o in s3.list("processed/orders/")]
    assert any(k.endswith(".parquet") and "/customer_region=" in k for k in keys)
    assert "processed/orders/_delta_log/00000000000000000001.json" in keys
    assert s3.list("gold/daily_revenue/month=2026-11/")


def readable(path: Path) -> str:
    """A lake file as text: Parquet decoded (it is compressed), anything else as bytes."""
    if path.suffix == ".parquet":
        return str(pa.parquet.read_table(path).to_pylist())
    return path.read_bytes().decode("latin-1")


def test_pii_never_leaves_bronze(pipeline_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    lake_root = pipeline_env / "lake"
    generate(lake_root, DAYS[:1])
    daily(run_date=DAYS[0])
    raw = (lake_root / "raw" / "customers" / f"dt={DAYS[0]}").glob("*.csv")
    clear_values = set()
    for path in raw:
        for line in path.read_text().splitlines()[1:]:
            fields = line.split(",")
            clear_values.update(v for v in fields[1:4] if len(v) > 3)  # names and e-mails
    assert clear_values
    text_outside_bronze = [
        readable(p) for p in lake_root.rglob("*") if p.is_file() and p.parts[-4:-3] != ("raw",)
    ]
    text_outside_bronze.append(caplog.text)
    leaks = {v for v in clear_values for text in text_outside_bronze if v in text}
    assert not leaks, sorted(leaks)[:5]
    assert TEST_PII_KEY not in "".join(text_outside_bronze)


def test_a_run_without_a_pii_key_fails_at_start(pipeline_env: Path, monkeypatch) -> None:
    monkeypatch.delenv("ECOM_PII_HASH_KEY")
    with pytest.raises(Exception, match="ECOM_PII_HASH_KEY is not set"):
        daily(run_date=DAYS[0])
    assert not (pipeline_env / "lake" / "processed").exists()


def test_amounts_stay_exact(pipeline_env: Path) -> None:
    generate(pipeline_env / "lake", DAYS[:1])
    daily(run_date=DAYS[0])
    rows = warehouse_rows(load_settings().warehouse_url.get_secret_value())["daily_revenue"]
    assert all(isinstance(r["revenue"], Decimal) for r in rows)
    assert all(r["revenue"] == r["revenue"].quantize(Decimal("0.01")) for r in rows)


def test_a_day_whose_orders_all_moved_leaves_no_stale_gold(pipeline_env: Path) -> None:
    lake_root = pipeline_env / "lake"
    header = "order_id,customer_id,order_date,order_status,total_amount,updated_at\n"
    first = lake_root / "raw" / "orders" / "dt=2026-11-18" / "orders.csv"
    first.parent.mkdir(parents=True)
    first.write_text(
        header
        + "O1,C1,2026-11-18,placed,10.00,2026-11-18T10:00:00Z\n"
        + "O2,C2,2026-11-18,placed,5.00,2026-11-18T11:00:00Z\n"
    )
    daily(run_date=date(2026, 11, 18), datasets=[Dataset.ORDERS])
    url = load_settings().warehouse_url.get_secret_value()
    days = {r["order_date"] for r in warehouse_rows(url)["daily_revenue"]}
    assert days == {date(2026, 11, 18)}

    # Both orders are corrected to the next day: 2026-11-18 must disappear from gold.
    second = lake_root / "raw" / "orders" / "dt=2026-11-19" / "orders.csv"
    second.parent.mkdir(parents=True)
    second.write_text(
        header
        + "O1,C1,2026-11-19,placed,12.00,2026-11-19T10:00:00Z\n"
        + "O2,C2,2026-11-19,cancelled,5.00,2026-11-19T11:00:00Z\n"
    )
    daily(run_date=date(2026, 11, 19), datasets=[Dataset.ORDERS])
    rows = warehouse_rows(url)["daily_revenue"]
    assert [(r["order_date"], r["orders"], r["revenue"]) for r in rows] == [
        (date(2026, 11, 19), 2, Decimal("12.00"))
    ]
    gold_file = lake_root / "gold" / "daily_revenue" / "month=2026-11" / "daily_revenue.parquet"
    assert pa.parquet.read_table(gold_file).column("order_date").to_pylist() == [date(2026, 11, 19)]


def test_a_dataset_over_its_threshold_fails_the_run_after_writing_the_valid_rows(
    pipeline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake_root = pipeline_env / "lake"
    generate(lake_root, DAYS[:1], GeneratorConfig(orders_per_day=100, employees=20, clean=True))
    employees = next((lake_root / "raw" / "employees" / f"dt={DAYS[0]}").glob("*.csv"))
    lines = employees.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[2], "17", 1)  # one age out of range: 5 %
    employees.write_text("\n".join(lines) + "\n")

    assert daily(run_date=DAYS[0]).succeeded  # 1 of 20 = 5 %, not over the default 5 %

    monkeypatch.setenv("ECOM_QUARANTINE_THRESHOLDS", '{"employees": 0.01}')
    with pytest.raises(RunFailedError, match=r"employees: 5.0% of rows quarantined, over the 1.0%"):
        daily(run_date=DAYS[0], reprocess=True)
    rows = SilverStore(LocalLake(lake_root), SPECS[Dataset.EMPLOYEES]).read()
    assert rows.num_rows == 19  # the valid rows were written all the same


def test_the_run_artifact_accounts_for_every_row_and_holds_no_pii(pipeline_env: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    generate(pipeline_env / "lake", DAYS[:1])
    report = daily(run_date=DAYS[0])
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["daily-run-report"]))
        )
    markdown = next(a.data for a in artifacts if report.run_id in str(a.data))
    for name in report.datasets:
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
        read, written, quarantined, superseded = (int(v) for v in row.split("|")[3:7])
        assert read == written + quarantined + superseded > 0
    assert TEST_PII_KEY not in markdown
    assert "@example" not in markdown
