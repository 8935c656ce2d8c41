"""Tasks: publish the run manifest and Prefect artifact, and send notices."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from ecom_pipeline.adapters.notifier import Alert
from ecom_pipeline.resources import Resources
from ecom_pipeline.run_report import RunReport
from tasks.policy import pipeline_task

ARTIFACT_KEY = "daily-run-report"


@pipeline_task("publish-report")
def publish_report(resources: Resources, report: RunReport) -> str:
    """Write ``_runs/dt=…/{run_id}.json`` and the run's markdown artifact; returns the key."""
    resources.lake.write_json(report.manifest_key, report.to_json())
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=report.to_markdown(),
        description=f"Daily run {report.run_date.isoformat()}: files, rows, partitions, timings",
    )
    get_run_logger().info("run manifest: %s", resources.lake.uri(report.manifest_key))
    return report.manifest_key


@pipeline_task("notify")
def notify(resources: Resources, alert: Alert) -> None:
    resources.notifier.send(alert)
