"""What a daily run leaves for the people who watch it: CloudWatch metrics (read back from moto's
CloudWatch over HTTP), and its Prefect artifacts (table, links)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.lake.storage import LocalLake
from ecom_pipeline.run.report import markdown_text
from flows.daily import daily

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

DAY = date(2026, 11, 20)
CONFIG = GeneratorConfig(orders_per_day=200, employees=20, seed=5)  # with defects: quarantine


def _sum(cloudwatch, namespace: str, name: str, dimensions: dict[str, str]) -> float | None:
    now = datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=5),
        Period=3600,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(p["Sum"] for p in points) if points else None


@pytest.fixture
def namespace(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A CloudWatch namespace of this test's own, on moto's server, for the run's metrics."""
    name = f"EcomPipelineTest{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("ECOM_METRICS", "cloudwatch")
    monkeypatch.setenv("ECOM_METRICS_NAMESPACE", name)
    monkeypatch.setenv("ECOM_AWS_ENDPOINT_URL", moto_endpoint)
    return name


def test_a_daily_run_puts_its_metrics_into_cloudwatch(
    pipeline_env: Path, moto_endpoint: str, namespace: str
) -> None:
    write_raw_files(LocalLake(pipeline_env / "lake"), generate_day(DAY, CONFIG))

    report = daily(run_date=DAY)

    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name="us-east-1")
    for name, dataset in report.datasets.items():
        for metric, attribute in [
            ("RowsRead", "rows_read"),
            ("RowsWritten", "rows_written"),
            ("RowsQuarantined", "rows_quarantined"),
            ("RowsSuperseded", "rows_superseded"),
        ]:
            assert _sum(cloudwatch, namespace, metric, {"Dataset": name}) == dataset.total(
                attribute
            ), (metric, name)
    assert sum(d.total("rows_quarantined") for d in report.datasets.values()) > 0
    for stage in ("ingest", "validate-orders", "silver-orders", "gold", "load"):
        seconds = _sum(cloudwatch, namespace, "StageSeconds", {"Stage": stage})
        assert seconds is not None and seconds == pytest.approx(report.seconds[stage], abs=0.01)
    assert _sum(cloudwatch, namespace, "RunSucceeded", {"Flow": "daily"}) == 1.0
    freshness = _sum(cloudwatch, namespace, "FreshnessSeconds", {})
    expected = (datetime.now(UTC) - datetime(2026, 11, 21, tzinfo=UTC)).total_seconds()
    assert freshness is not None and abs(freshness - expected) < 600
    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    assert {m["MetricName"] for m in listed} == {
        "RowsRead",
        "RowsWritten",
        "RowsQuarantined",
        "RowsSuperseded",
        "StageSeconds",
        "RunSucceeded",
        "FreshnessSeconds",
    }


def test_a_failed_run_reports_run_succeeded_zero_and_no_freshness(
    pipeline_env: Path, moto_endpoint: str, namespace: str
) -> None:
    bad = pipeline_env / "lake" / "raw" / "orders" / f"dt={DAY}" / "orders.csv"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")

    state = daily(run_date=DAY, return_state=True)

    assert state.is_failed()
    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert _sum(cloudwatch, namespace, "RunSucceeded", {"Flow": "daily"}) == 0.0
    assert _sum(cloudwatch, namespace, "FreshnessSeconds", {}) is None


def test_the_run_has_a_table_of_its_files_and_a_summary_linking_manifest_and_quarantine(
    pipeline_env: Path,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    write_raw_files(LocalLake(pipeline_env / "lake"), generate_day(DAY, CONFIG))
    state = daily(run_date=DAY, return_state=True)
    report = state.result()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_key = {a.key: a for a in artifacts}
    table = by_key["daily-run-report-files"]
    assert table.type == "table"
    rows = __import__("json").loads(table.data)
    files = [f for d in report.datasets.values() for f in d.files]
    assert sorted(r["file"] for r in rows) == sorted(f.source for f in files)
    for row in rows:
        assert row["rows_read"] == (
            row["rows_written"] + row["rows_quarantined"] + row["rows_superseded"]
        )
    assert set(by_key) == {"daily-run-report", "daily-run-report-files"}  # two a run
    summary = by_key["daily-run-report"].data
    links = summary[summary.index("## Links") :].splitlines()[1:]
    assert "run manifest: " in links[0]
    assert report.manifest_key.split("/")[-1] in links[0]
    assert (pipeline_env / "lake" / report.manifest_key).is_file()
    quarantined = [n for n, d in report.datasets.items() if d.total("rows_quarantined")]
    assert quarantined
    for name, link in zip(quarantined, links[1:], strict=True):
        assert f"{name} set aside: " in link
        assert f"quarantine/{name}/dt={DAY}" in link
        assert link.startswith("- [") and link.endswith(")")


def test_markdown_text_shows_file_names_literally() -> None:
    assert markdown_text("raw/orders/dt=2026-11-20/a_b*c|d[e](f).csv") == (
        "raw/orders/dt=2026-11-20/a\\_b\\*c\\|d\\[e\\](f).csv"
    )
    assert markdown_text("line one\nline two") == "line one line two"
