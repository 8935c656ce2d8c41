"""Task: find and read the day's delivered files, skipping those already ingested."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from prefect import get_run_logger

from ecom_pipeline import ingest
from ecom_pipeline.datasets import Dataset
from ecom_pipeline.resources import Resources
from ecom_pipeline.run_report import FileAccount
from tasks.policy import pipeline_task


@dataclass
class DayInputs:
    """The day's files: to process (by dataset), skipped as already ingested, rejected whole."""

    files: dict[Dataset, list[ingest.RawInput]] = field(default_factory=dict)
    skipped: list[FileAccount] = field(default_factory=list)
    rejected: list[FileAccount] = field(default_factory=list)


@pipeline_task("ingest", task_run_name="ingest-{day}")
def ingest_raw_files(
    resources: Resources, day: date, datasets: list[Dataset], reprocess: bool, run_id: str
) -> DayInputs:
    """Read ``raw/{dataset}/dt=day/*`` for the chosen datasets and checksum every file.

    Files under an unknown dataset folder are quarantined whole and reported as failed.
    """
    logger = get_run_logger()
    lake = resources.lake
    found = ingest.discover(lake, day)
    inputs = DayInputs()
    for folder, keys in found.items():
        if not ingest.is_known_dataset(folder):
            for key in keys:
                item = ingest.read_input(lake, folder, key, day)
                reason = f"unknown dataset folder {folder!r} (known: {', '.join(Dataset)})"
                ingest.quarantine_whole_file(lake, item, reason, run_id)
                logger.error("%s: %s", key, reason)
                inputs.rejected.append(
                    FileAccount(key, folder, item.sha256, item.size, "failed", error=reason)
                )
            continue
        dataset = Dataset(folder)
        if dataset not in datasets:
            continue
        ledger = ingest.read_ledger(lake, dataset, day)
        for key in keys:
            item = ingest.read_input(lake, dataset, key, day)
            if not reprocess and ingest.already_ingested(ledger, item):
                inputs.skipped.append(FileAccount(key, dataset, item.sha256, item.size, "skipped"))
                continue
            inputs.files.setdefault(dataset, []).append(item)
    count = sum(len(v) for v in inputs.files.values())
    logger.info(
        "%s: %d file(s) to process, %d already ingested, %d rejected",
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
