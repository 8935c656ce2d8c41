"""Tasks: find and read the day's delivered files; record them as ingested once loaded."""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.run.ingest import DayInputs, ingest_day, record_processed
from ecom_pipeline.run.resources import Resources
from tasks.policy import pipeline_task


@pipeline_task("ingest", task_run_name="ingest-{day}")
def ingest_raw_files(
    resources: Resources, day: date, datasets: list[Dataset], reprocess: bool, run_id: str
) -> DayInputs:
    """Read ``raw/{dataset}/dt=day/*.csv`` for the chosen datasets (see `ingest_day`)."""
    logger = get_run_logger()
    inputs = ingest_day(
        resources.lake, day, datasets, reprocess=reprocess, run_id=run_id, logger=logger
    )
    logger.info(
        "%s: %d file(s) to process, %d not processed (already ingested or ignored), %d rejected",
        day,
        sum(len(v) for v in inputs.files.values()),
        len(inputs.skipped),
        len(inputs.rejected),
    )
    return inputs


@pipeline_task("record-ingested")
def record_ingested(
    resources: Resources, day: date, inputs: DayInputs, processed: set[str], run_id: str
) -> None:
    """Add the run's processed files to the ledger, once gold is loaded.

    Only then: a run that dies earlier leaves its files unrecorded, so the next run processes
    them again and rebuilds every gold day they touch (all steps before are idempotent).
    """
    record_processed(resources.lake, day, inputs.files, processed, run_id)
