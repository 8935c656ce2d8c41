"""Task: validate one dataset's files against its contract (pure work; retried only on I/O)."""

from __future__ import annotations

from prefect import get_run_logger

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.contracts.validation import RunContext
from ecom_pipeline.lake.intake import RawInput
from ecom_pipeline.lake.staging import Staging
from ecom_pipeline.run.resources import Resources
from ecom_pipeline.run.validate import DatasetValidation, validate_files
from tasks.policy import pipeline_task


@pipeline_task("validate", task_run_name="validate-{dataset}")
def validate_dataset(
    resources: Resources,
    staging: Staging,
    dataset: Dataset,
    files: list[RawInput],
    run: RunContext,
) -> DatasetValidation:
    """Check every file of the dataset, staging its valid rows (see `validate_files`)."""
    return validate_files(
        resources.lake,
        staging,
        dataset,
        files,
        run,
        pii_key=resources.settings.require_pii_key(),
        block_bytes=resources.settings.read_block_bytes,
        logger=get_run_logger(),
    )
