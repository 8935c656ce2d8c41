"""Task: find and read the day's delivered files, skipping those already ingested."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from prefect import get_run_logger

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.errors import BadFileError, printable
from ecom_pipeline.lake import intake as ingest
from ecom_pipeline.run.report import FileAccount
from ecom_pipeline.run.resources import Resources
from tasks.policy import pipeline_task


@dataclass
class DayInputs:
    """The day's files: to process (by dataset), not processed, rejected whole.

    ``skipped`` holds every object not processed that is no failure: files already ingested
    (status ``skipped``) and objects that are no delivery (status ``ignored``, with the reason).
    """

    files: dict[Dataset, list[ingest.RawInput]] = field(default_factory=dict)
    skipped: list[FileAccount] = field(default_factory=list)
    rejected: list[FileAccount] = field(default_factory=list)


@pipeline_task("ingest", task_run_name="ingest-{day}")
def ingest_raw_files(
    resources: Resources, day: date, datasets: list[Dataset], reprocess: bool, run_id: str
) -> DayInputs:
    """Read ``raw/{dataset}/dt=day/*.csv`` for the chosen datasets and checksum every file.

    Files under an unknown dataset folder, links and unusable keys are rejected (the run fails
    naming them); other objects under the day's folders are listed as ignored with the reason.
    """
    logger = get_run_logger()
    lake = resources.lake
    listing = ingest.discover(lake, day)
    inputs = DayInputs()

    def reject(dataset: str, key: str, sha256: str, size: int, reason: str) -> None:
        logger.error("file rejected: %s: %s", printable(key), reason)
        error = str(BadFileError(key, reason))
        inputs.rejected.append(FileAccount(key, dataset, sha256, size, "failed", error=error))

    def selected(dataset: str) -> bool:
        return not ingest.is_known_dataset(dataset) or Dataset(dataset) in datasets

    for unread in listing.unread:
        if not selected(unread.dataset):
            continue
        if unread.rejected:
            item = ingest.RawInput(unread.dataset, unread.key, day, "", unread.size)
            if ingest.is_plain_key(unread.key):
                ingest.quarantine_whole_file(lake, item, unread.reason, run_id, readable=False)
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
        known = ingest.is_known_dataset(folder)
        ledger = ingest.read_ledger(lake, folder, day) if known else {}
        for key in keys:
            try:
                item = ingest.read_input(lake, folder, key, day)
            except BadFileError as exc:
                unreadable = ingest.RawInput(folder, key, day, "", 0)
                ingest.quarantine_whole_file(lake, unreadable, exc.reason, run_id, readable=False)
                reject(folder, key, "", 0, exc.reason)
                continue
            if not known:
                reason = f"unknown dataset folder {folder!r} (known: {', '.join(Dataset)})"
                ingest.quarantine_whole_file(lake, item, reason, run_id)
                reject(folder, key, item.sha256, item.size, reason)
                continue
            if not reprocess and ingest.already_ingested(ledger, item):
                inputs.skipped.append(FileAccount(key, folder, item.sha256, item.size, "skipped"))
                continue
            inputs.files.setdefault(Dataset(folder), []).append(item)
    count = sum(len(v) for v in inputs.files.values())
    logger.info(
        "%s: %d file(s) to process, %d not processed (already ingested or ignored), %d rejected",
        day,
        count,
        len(inputs.skipped),
        len(inputs.rejected),
    )
    return inputs


@pipeline_task("record-ingested")
def record_ingested(
    resources: Resources, day: date, files: dict[Dataset, list[ingest.RawInput]], run_id: str
) -> None:
    """Add the run's processed files to the ledger, once gold is loaded.

    Only then: a run that dies earlier leaves its files unrecorded, so the next run processes
    them again and rebuilds every gold day they touch (all steps before are idempotent).
    """
    for dataset, items in files.items():
        ingest.record_ingested(resources.lake, dataset, day, items, run_id)
