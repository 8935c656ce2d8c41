"""The daily flow: ingest raw → validate → silver → gold → load warehouse → notify (SPEC §7)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from prefect import flow, runtime
from prefect.context import TagsContext

from ecom_pipeline.contracts.datasets import LANES, PROCESSING_ORDER, Dataset
from ecom_pipeline.contracts.validation import RunContext
from ecom_pipeline.errors import RunFailedError
from ecom_pipeline.lake.lock import lake_lock
from ecom_pipeline.lake.staging import staging_area
from ecom_pipeline.run.report import (
    DatasetReport,
    RunReport,
    StageClock,
    build_report,
    dataset_report,
    processed_sources,
    success_alert,
)
from ecom_pipeline.run.resources import build_resources
from ecom_pipeline.settings import load_settings
from ecom_pipeline.silver.upsert import SilverOutcome
from flows.alerts import report_outcome
from flows.lanes import run_lanes
from tasks.gold import build_gold
from tasks.ingest import ingest_raw_files, record_ingested
from tasks.load import load_warehouse
from tasks.policy import retries_granted
from tasks.report import notify, publish_metrics, publish_report
from tasks.silver import write_silver
from tasks.validate import validate_dataset

ALL_DATASETS = list(PROCESSING_ORDER)
#: A daily run started by a backfill carries the tag ``backfill:{backfill flow run id}``.
BACKFILL_TAG_PREFIX = "backfill:"


def is_backfill_child(tags: list[str]) -> bool:
    return any(tag.startswith(BACKFILL_TAG_PREFIX) for tag in tags)


def _without_backfill_tags(tags: set[str]) -> set[str]:
    return {tag for tag in tags if not tag.startswith(BACKFILL_TAG_PREFIX)}


def default_run_date() -> date:
    """The day before the run's scheduled start (UTC), or before now for an ad-hoc run."""
    scheduled = runtime.flow_run.scheduled_start_time
    start = scheduled if scheduled is not None else datetime.now(UTC)
    return (start.astimezone(UTC) - timedelta(days=1)).date()


def run_name() -> str:
    run_date = runtime.flow_run.parameters.get("run_date") or default_run_date()
    return f"daily-{run_date}"


@flow(
    name="daily",
    flow_run_name=run_name,
    description="Process one day of raw exports into silver, gold and the warehouse.",
    on_completion=[report_outcome],
    on_failure=[report_outcome],
    on_crashed=[report_outcome],
    log_prints=True,
)
def daily(
    run_date: date | None = None,
    datasets: list[Dataset] = ALL_DATASETS,
    reprocess: bool = False,
) -> RunReport:
    """Run the pipeline for one day: ingest → validate → silver → gold → load → notify.

    Fails, after writing what was valid, on any bad file, unbalanced row accounting or a
    dataset over its quarantine threshold.

    Args:
        run_date: Day of the exports to process (their dt= folder). Empty: the day before the
            run's scheduled start, UTC.
        datasets: Datasets to process; all four by default.
        reprocess: Process files again even if they were already ingested unchanged.
    """
    # Task runs leave a backfill's tag to its daily runs: Prefect asks its API for a concurrency
    # slot of every tag a task run carries (a round trip per task, up to 2 s on a busy server)
    # and a backfill's tag never has a limit.
    with TagsContext(current_tags=_without_backfill_tags(TagsContext.get().current_tags)):
        return _run_day(run_date or default_run_date(), datasets, reprocess)


def _run_day(day: date, datasets: list[Dataset], reprocess: bool) -> RunReport:
    settings = load_settings()
    settings.require_pii_key()
    resources = build_resources(settings)
    run = RunContext(run_id=str(runtime.flow_run.id or uuid.uuid4()), ingested_at=datetime.now(UTC))
    clock = StageClock()

    with clock.timed("ingest"):
        inputs = ingest_raw_files(resources, day, datasets, reprocess, run.run_id)

    silver: dict[Dataset, SilverOutcome] = {}
    # Valid rows wait on local disk between validate and silver: memory holds a batch, not a day.
    with staging_area(settings.scratch_dir, run.run_id) as staging:

        def process(dataset: Dataset) -> DatasetReport:
            """Validate, then merge into silver: the dataset's part of the report."""
            files = inputs.files.get(dataset, [])
            with clock.timed(f"validate-{dataset}"):
                validation = validate_dataset(resources, staging, dataset, files, run)
            with clock.timed(f"silver-{dataset}"):
                silver[dataset] = write_silver(resources, dataset, validation, day, run.run_id)
            staging.discard(dataset)  # committed: scratch disk holds only what is in flight
            return dataset_report(dataset, validation, silver[dataset])

        shares = run_lanes(
            process,
            [[d for d in lane if d in datasets] for lane in LANES],
            at_once=inputs.size <= settings.lanes_max_bytes,
        )

    # Gold month files are read, patched and rewritten: one run at a time per lake.
    with lake_lock(resources.lake, "gold"):
        with clock.timed("gold"):
            months = build_gold(resources, day, silver)
        with clock.timed("load"):
            loads = load_warehouse(resources, months)

    report = build_report(
        run,
        day,
        not_processed=inputs.accounts,
        datasets=shares,
        gold=months,
        loads=loads,
        seconds=clock.seconds,
        threshold_for=settings.threshold_for,
        retries={
            "tasks": retries_granted(runtime.flow_run.id),
            "lake_requests": resources.lake.request_retries,
        },
    )
    publish_report(resources, report)
    # The ledger comes last: a file it lists is in silver, gold, the warehouse and a manifest
    # (a kill before it costs a re-run of the day's files, which ties with what they wrote).
    record_ingested(resources, day, inputs, processed_sources(shares), run.run_id)
    publish_metrics(resources, report)
    if report.failures:
        raise RunFailedError(report.failures)
    if not is_backfill_child(runtime.flow_run.tags):  # a backfill sends one notice for its days
        notify(resources, success_alert(report, runtime.flow_run.ui_url))
    return report
