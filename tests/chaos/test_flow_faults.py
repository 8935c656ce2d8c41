"""The daily flow with S3 and SNS behind a faulty network equals a clean run (issue 14).

The same raw files land in two prefixes of moto's bucket. One run reaches S3 and SNS directly;
the other through a `FaultyHttpProxy` that answers a seeded share of requests with throttling,
server errors, resets, lost replies, slow and truncated replies. Both must succeed, and silver
(read through the project's reader), the gold files and the warehouse tables must be equal.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import date
from pathlib import Path

import boto3
import pytest

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.contracts.datasets import INGESTED_AT, RUN_ID, SPECS, Dataset
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.storage import Lake, open_lake
from ecom_pipeline.silver.store import SilverStore
from flows.daily import daily
from tests.chaos.http_faults import BOTOCORE_RETRIED, FaultyHttpProxy
from tests.conftest import BUCKET
from tests.flows.test_daily import normalised, warehouse_rows

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

FIRST = date(2026, 11, 18)
CONFIG = GeneratorConfig(orders_per_day=200, employees=20, seed=14)


def silver_rows(lake: Lake) -> dict[str, list[tuple]]:
    """Every committed silver row, without the lineage that names the writing run."""
    state = {}
    for dataset in Dataset:
        rows = SilverStore(lake, SPECS[dataset]).read().drop_columns([INGESTED_AT, RUN_ID])
        state[dataset.value] = sorted(tuple(r.values()) for r in rows.to_pylist())
    return state


def gold_files(lake: Lake) -> dict[str, list[tuple]]:
    """Each gold object's rows, by key: an object doubled or lost changes the keys."""
    return {
        obj.key: sorted(tuple(r.values()) for r in lake.read_parquet([obj.key]).to_pylist())
        for obj in lake.list("gold/")
    }


def run_days(
    monkeypatch: pytest.MonkeyPatch, lake_uri: str, endpoint: str, schema: str, days: list[date]
) -> None:
    monkeypatch.setenv("ECOM_LAKE_URI", lake_uri)
    monkeypatch.setenv("ECOM_AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("ECOM_WAREHOUSE_SCHEMA", schema)
    for day in days:
        assert daily(run_date=day).succeeded


def faulty_daily_equals_clean(
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    postgres_url: str,
    schemas: tuple[str, str],
    days: list[date],
    rate: float,
    seed: int,
) -> FaultyHttpProxy:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    sns = boto3.client("sns", endpoint_url=moto_endpoint, region_name="us-east-1")
    topic = sns.create_topic(Name=f"chaos-{uuid.uuid4().hex[:8]}")["TopicArn"]
    base = f"s3://{BUCKET}/flow-{uuid.uuid4().hex[:10]}"
    clean_uri, faulty_uri = f"{base}/clean", f"{base}/faulty"
    clean = open_lake(clean_uri, endpoint_url=moto_endpoint)
    for day in days:
        files = generate_day(day, CONFIG, first_day=days[0])
        write_raw_files(clean, files)
        write_raw_files(open_lake(faulty_uri, endpoint_url=moto_endpoint), files)
    monkeypatch.setenv("ECOM_WAREHOUSE_URL", postgres_url)
    monkeypatch.setenv("ECOM_SNS_TOPIC_ARN", topic)

    run_days(monkeypatch, clean_uri, moto_endpoint, schemas[0], days)
    with FaultyHttpProxy(moto_endpoint, rate=rate, seed=seed) as proxy:
        # Which client meets a drawn fault depends on how the lanes' threads interleave; one
        # fault on boto3's first request makes sure the retries it reports are recorded.
        proxy.queue("internal", client="Boto3")
        run_days(monkeypatch, faulty_uri, proxy.endpoint, schemas[1], days)

    faulty = open_lake(faulty_uri, endpoint_url=moto_endpoint)
    assert silver_rows(faulty) == silver_rows(clean)
    assert gold_files(faulty) == gold_files(clean)
    clean_wh, faulty_wh = (warehouse_rows(postgres_url, schema) for schema in schemas)
    for table, rows in clean_wh.items():
        assert rows, f"{table}: the clean run loaded nothing"
        assert normalised(faulty_wh[table]) == normalised(rows), table
    # The manifests count what was tried again: nothing in the clean run; under faults, at
    # least each lake request boto3 sent again (Arrow and delta-rs retry without telling us).
    assert retries_recorded(clean) == 0
    resent_by_boto3 = proxy.faults_met_by("Boto3", BUCKET, BOTOCORE_RETRIED)
    assert resent_by_boto3 >= 1, proxy.log
    assert retries_recorded(faulty) >= resent_by_boto3, proxy.log
    return proxy


def retries_recorded(lake: Lake) -> int:
    """Task retries plus repeated storage requests, over the manifests of a lake's runs."""
    total = 0
    for item in lake.list(layout.RUNS_PREFIX):
        parsed = layout.parse_key(item.key)
        if parsed is not None and parsed.kind == "manifest":
            retries = json.loads(lake.read_bytes(item.key))["retries"]
            total += retries["lake_requests"] + sum(retries["tasks"].values())
    return total


def test_daily_through_s3_and_sns_faults_equals_a_clean_run(
    pipeline_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    postgres_url: str,
    pg_schema: str,
    clean_schema: str,
    fault_tally: dict[str, int],
) -> None:
    proxy = faulty_daily_equals_clean(
        monkeypatch, moto_endpoint, postgres_url, (clean_schema, pg_schema), [FIRST], 0.05, 1
    )
    assert proxy.faults >= 5, (proxy.requests, proxy.injected)
    fault_tally.update(
        requests=proxy.requests, faults_injected=proxy.faults, survived=proxy.faults, rows_lost=0
    )


@pytest.mark.chaos_full
@pytest.mark.parametrize("seed", [2, 3])
def test_three_days_through_more_faults_equal_a_clean_run(
    seed: int,
    pipeline_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    postgres_url: str,
    pg_schema: str,
    clean_schema: str,
    fault_tally: dict[str, int],
) -> None:
    days = [date(2026, 11, 18 + i) for i in range(3)]
    proxy = faulty_daily_equals_clean(
        monkeypatch, moto_endpoint, postgres_url, (clean_schema, pg_schema), days, 0.15, seed
    )
    fault_tally.update(
        requests=proxy.requests, faults_injected=proxy.faults, survived=proxy.faults, rows_lost=0
    )
