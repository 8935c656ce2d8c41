"""The validate stage of a run: one dataset's files checked against its contract, valid rows
staged on local disk, bad files quarantined whole."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ecom_pipeline.contracts.datasets import SPECS, Dataset, validated_schema
from ecom_pipeline.contracts.validation import FileValidation, RunContext, ValidatedFile
from ecom_pipeline.errors import BadFileError, printable
from ecom_pipeline.lake import intake
from ecom_pipeline.lake.intake import FileAccount
from ecom_pipeline.lake.staging import Staging
from ecom_pipeline.lake.storage import Lake
from ecom_pipeline.run.report import capped_columns

log = logging.getLogger(__name__)


@dataclass
class DatasetValidation:
    """Validated files with their accounts (same order), and files rejected whole."""

    validated: list[ValidatedFile] = field(default_factory=list)
    accounts: list[FileAccount] = field(default_factory=list)
    rejected: list[FileAccount] = field(default_factory=list)


def validate_files(
    lake: Lake,
    staging: Staging,
    dataset: Dataset,
    files: list[intake.RawInput],
    run: RunContext,
    *,
    pii_key: bytes,
    block_bytes: int,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
) -> DatasetValidation:
    """Check every file of the dataset; a bad file is quarantined whole, the others proceed.

    Files are streamed from the lake block by block and their valid rows staged on local disk
    (``staging``, group ``dataset``).

    Args:
        lake: the lake the files are read from and bad files quarantined to.
        staging: the run's scratch space.
        dataset: the dataset of every file.
        files: the dataset's files to process.
        run: lineage stamped on every valid row.
        pii_key: the key of the PII hash.
        block_bytes: bytes read per block.
        logger: where each file's outcome is logged as it is validated.
    """
    spec = SPECS[dataset]
    outcome = DatasetValidation()
    for number, item in enumerate(files):
        account = FileAccount(item.key, dataset, item.sha256, item.size)
        try:
            with lake.open_binary(item.key) as stream:
                validation = FileValidation(
                    item.key,
                    stream,
                    spec,
                    file_day=item.day,
                    pii_key=pii_key,
                    run=run,
                    block_bytes=block_bytes,
                )
                staged = staging.write(
                    dataset, f"{number:05d}", validated_schema(spec), validation.valid_batches()
                )
            validated = validation.result(staged)
        except BadFileError as exc:
            intake.quarantine_whole_file(lake, item, exc.reason, run.run_id)
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
