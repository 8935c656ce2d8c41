"""Tasks: publish the run manifest, Prefect artifacts and metrics, and send notices."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from ecom_pipeline.lake import layout
from ecom_pipeline.run.notifier import Alert
from ecom_pipeline.run.report import RunReport, browser_link, run_metrics
from ecom_pipeline.run.resources import Resources
from tasks.policy import pipeline_task

ARTIFACT_KEY = "daily-run-report"


@pipeline_task("publish-report")
def publish_report(resources: Resources, report: RunReport) -> str:
    """Write ``_runs/dt=…/{run_id}.json`` and the run's artifacts; returns the manifest key.

    Artifacts: the summary (markdown, ending in links to the manifest and to each dataset's
    quarantine folder of the day when it set anything aside) and one table row per input file.
    Two, not one per link: on a backfill, each artifact is another write the Prefect API queues
    behind the runs' own (about 40 ms each on a SQLite-backed server).
    """
    resources.lake.write_json(report.manifest_key, report.to_json())
    day, region = report.run_date.isoformat(), resources.settings.aws_region
    links = [
        (
            f"run manifest: {resources.lake.uri(report.manifest_key)}",
            browser_link(resources.lake, region, report.manifest_key),
        )
    ]
    for name, dataset in sorted(report.datasets.items()):
        if dataset.set_aside_anything:
            folder = layout.quarantine_folder(name, report.run_date)
            links.append(
                (
                    f"{name} set aside: {resources.lake.uri(folder.rstrip('/'))}",
                    browser_link(resources.lake, region, folder),
                )
            )
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=report.to_markdown(links),
        description=f"Daily run {day}: files, rows, partitions, timings, links",
    )
    create_table_artifact(
        key=f"{ARTIFACT_KEY}-files",
        table=report.file_rows(),
        description=f"Daily run {day}: one row per input file",
    )
    get_run_logger().info("run manifest: %s", resources.lake.uri(report.manifest_key))
    return report.manifest_key


@pipeline_task("notify")
def notify(resources: Resources, alert: Alert) -> None:
    resources.notifier.send(alert)


@pipeline_task("publish-metrics")
def publish_metrics(resources: Resources, report: RunReport) -> None:
    """Rows per dataset, seconds per stage and, on success, freshness (CloudWatch or the log)."""
    resources.metrics.put(run_metrics(report, datetime.now(UTC)))
