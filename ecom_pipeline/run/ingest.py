"""The ingest stage of a run: the day's delivered files, sorted into processed, not processed
and rejected, each with its account for the run report.

The decisions about one object (what is a delivery, what was already ingested, how a bad file
is quarantined) are ``lake.intake``'s; this gathers them for a run's chosen datasets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.errors import BadFileError, printable
from ecom_pipeline.lake import intake
from ecom_pipeline.lake.intake import FileAccount
from ecom_pipeline.lake.storage import Lake

log = logging.getLogger(__name__)


@dataclass
class DayInputs:
    """The day's files: to process (by dataset), not processed, rejected whole.

    ``skipped`` holds every object not processed that is no failure: files already ingested
    (status ``skipped``) and objects that are no delivery (status ``ignored``, with the reason).
    """

    files: dict[Dataset, list[intake.RawInput]] = field(default_factory=dict)
    skipped: list[FileAccount] = field(default_factory=list)
    rejected: list[FileAccount] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes of the files to process."""
        return sum(raw.size for files in self.files.values() for raw in files)

    @property
    def accounts(self) -> list[FileAccount]:
        """The accounts of every file not processed, skipped ones first."""
        return self.skipped + self.rejected


def ingest_day(
    lake: Lake,
    day: date,
    datasets: list[Dataset],
    *,
    reprocess: bool,
    run_id: str,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
) -> DayInputs:
    """Read ``raw/{dataset}/dt=day/*.csv`` for the chosen datasets and checksum every file.

    Files under an unknown dataset folder, links and unusable keys are rejected (the run fails
    naming them) and quarantined whole; other objects under the day's folders are listed as
    ignored with the reason; files already ingested unchanged are skipped unless
    ``reprocess``.

    Args:
        lake: the lake.
        day: the ``dt=`` day.
        datasets: the datasets the run processes (unknown folders are always looked at).
        reprocess: process files again even if the ledger holds them unchanged.
        run_id: recorded with each quarantined file.
        logger: where each rejected or ignored object is logged as it is met.
    """
    listing = intake.discover(lake, day)
    inputs = DayInputs()

    def reject(dataset: str, key: str, sha256: str, size: int, reason: str) -> None:
        logger.error("file rejected: %s: %s", printable(key), reason)
        error = str(BadFileError(key, reason))
        inputs.rejected.append(FileAccount(key, dataset, sha256, size, "failed", error=error))

    def selected(dataset: str) -> bool:
        return not intake.is_known_dataset(dataset) or Dataset(dataset) in datasets

    for unread in listing.unread:
        if not selected(unread.dataset):
            continue
        if unread.rejected:
            item = intake.RawInput(unread.dataset, unread.key, day, "", unread.size)
            if intake.is_plain_key(unread.key):
                intake.quarantine_whole_file(lake, item, unread.reason, run_id, readable=False)
            reject(unread.dataset, unread.key, "", unread.size, unread.reason)
        else:
            logger.warning("ignored: %s: %s", printable(unread.key), unread.reason)
            inputs.skipped.append(
                FileAccount(
                    unread.key, unread.dataset, "", unread.size, "ignored", reason=unread.reason
                )
            )
    for folder, keys in listing.files.items():
        if not selected(folder):
            continue
        known = intake.is_known_dataset(folder)
        ledger = intake.read_ledger(lake, folder, day) if known else {}
        for key in keys:
            try:
                item = intake.read_input(lake, folder, key, day)
            except BadFileError as exc:
                unreadable = intake.RawInput(folder, key, day, "", 0)
                intake.quarantine_whole_file(lake, unreadable, exc.reason, run_id, readable=False)
                reject(folder, key, "", 0, exc.reason)
                continue
            if not known:
                reason = f"unknown dataset folder {folder!r} (known: {', '.join(Dataset)})"
                intake.quarantine_whole_file(lake, item, reason, run_id)
                reject(folder, key, item.sha256, item.size, reason)
                continue
            if not reprocess and intake.already_ingested(ledger, item):
                inputs.skipped.append(FileAccount(key, folder, item.sha256, item.size, "skipped"))
                continue
            inputs.files.setdefault(Dataset(folder), []).append(item)
    return inputs


def record_processed(
    lake: Lake,
    day: date,
    files: dict[Dataset, list[intake.RawInput]],
    processed: set[str],
    run_id: str,
) -> None:
    """Add the run's processed files (keys in ``processed``) to the day's ledgers."""
    for dataset, items in files.items():
        intake.record_ingested(lake, dataset, day, [f for f in items if f.key in processed], run_id)
