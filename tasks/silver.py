"""Task: merge a dataset's validated rows into silver, accounting for every row."""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.run.resources import Resources
from ecom_pipeline.run.validate import DatasetValidation
from ecom_pipeline.silver.upsert import SilverOutcome, merge_into_silver
from tasks.policy import pipeline_task


@pipeline_task("write-silver", task_run_name="silver-{dataset}")
def write_silver(
    resources: Resources,
    dataset: Dataset,
    validation: DatasetValidation,
    day: date,
    run_id: str,
) -> SilverOutcome:
    """Upsert into ``processed/{dataset}/``; safe to retry (the merge is idempotent: a
    re-run of committed rows writes nothing)."""
    outcome = merge_into_silver(
        resources.lake,
        dataset,
        validation.validated,
        validation.accounts,
        day=day,
        run_id=run_id,
    )
    get_run_logger().info(
        "%s: %d partition(s) touched, %d rewritten, %d compacted, Delta version %d",
        dataset,
        len(outcome.touched),
        len(outcome.rewritten),
        len(outcome.compacted),
        outcome.version,
    )
    return outcome
