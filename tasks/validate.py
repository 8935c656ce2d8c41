"""Task: validate one dataset's files against its contract (pure work; retried only on I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import get_run_logger

from ecom_pipeline.contracts.datasets import SPECS, Dataset, validated_schema
from ecom_pipeline.contracts.validation import FileValidation, RunContext, ValidatedFile
from ecom_pipeline.errors import BadFileError, printable
from ecom_pipeline.lake import intake as ingest
from ecom_pipeline.lake.staging import Staging
from ecom_pipeline.run.report import FileAccount, capped_columns
from ecom_pipeline.run.resources import Resources
from tasks.policy import pipeline_task


@dataclass
class DatasetValidation:
    """Validated files with their accounts (same order), and files rejected whole."""

    validated: list[ValidatedFile] = field(default_factory=list)
    accounts: list[FileAccount] = field(default_factory=list)
    rejected: list[FileAccount] = field(default_factory=list)


@pipeline_task("validate", task_run_name="validate-{dataset}")
def validate_dataset(
    resources: Resources,
    staging: Staging,
    dataset: Dataset,
    files: list[ingest.RawInput],
    run: RunContext,
) -> DatasetValidation:
    """Check every file of the dataset; a bad file is quarantined whole, the others proceed.

    Files are streamed from the lake block by block and their valid rows staged on local disk.
    """
    logger = get_run_logger()
    pii_key = resources.settings.require_pii_key()
    spec = SPECS[dataset]
    outcome = DatasetValidation()
    for number, item in enumerate(files):
        account = FileAccount(item.key, dataset, item.sha256, item.size)
        try:
            with resources.lake.open_binary(item.key) as stream:
                validation = FileValidation(
                    item.key,
                    stream,
                    spec,
                    file_day=item.day,
                    pii_key=pii_key,
                    run=run,
                    block_bytes=resources.settings.read_block_bytes,
                )
                staged = staging.write(
                    dataset, f"{number:05d}", validated_schema(spec), validation.valid_batches()
                )
            validated = validation.result(staged)
        except BadFileError as exc:
            ingest.quarantine_whole_file(resources.lake, item, exc.reason, run.run_id)
            account.status, account.error = "failed", str(exc)
            outcome.rejected.append(account)
            logger.error("file rejected: %s", exc)
            continue
        if validated.dropped_columns:
            logger.warning(
                "%s: unknown column(s) dropped: %s",
                printable(item.key),
                ", ".join(capped_columns(validated.dropped_columns)),
            )
        logger.info(
            "%s: %d row(s), %d valid, %d quarantined",
            printable(item.key),
            validated.rows_read,
            validated.valid.num_rows,
            validated.quarantine.num_rows,
        )
        outcome.validated.append(validated)
        outcome.accounts.append(account)
    return outcome
