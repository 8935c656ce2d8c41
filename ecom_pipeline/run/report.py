"""Row accounting and the run manifest (SPEC §2 `_runs/`, §3 accounting, §7 artifact).

For every input file: ``rows_read = rows_written + rows_quarantined + rows_superseded``.
The manifest records it per file; a run whose accounting does not balance fails.
"""

from __future__ import annotations

import time as clock
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ecom_pipeline.errors import printable
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.intake import FileAccount
from ecom_pipeline.lake.storage import Lake
from ecom_pipeline.run.metrics import Metric
from ecom_pipeline.run.notifier import Alert

if TYPE_CHECKING:
    from ecom_pipeline.contracts.validation import RunContext
    from ecom_pipeline.gold.build import GoldMonth
    from ecom_pipeline.run.validate import DatasetValidation
    from ecom_pipeline.silver.upsert import SilverOutcome
    from ecom_pipeline.warehouse.engine import LoadResult

#: Characters with a meaning in Markdown, escaped in text from files, errors and names.
_MARKDOWN_SPECIAL = set("\\`*_[]<>|#~")


def markdown_text(text: str) -> str:
    """``text`` shown literally in a Markdown artifact (file names, error messages)."""
    flat = " ".join(text.split())  # a newline would end a table row or a list item
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in flat)


#: Flows log a line per finished day on this logger; the CLI prints those lines on stdout.
PROGRESS_LOGGER = "ecom_pipeline.progress"

#: The manifest lists at most this many dropped column names per file, each cut to this length:
#: a header of a million made-up columns must not make a million-entry manifest.
DROPPED_COLUMNS_LISTED = 20
DROPPED_COLUMN_NAME_CHARS = 64


@dataclass
class DatasetReport:
    """One dataset's share of a run."""

    dataset: str
    files: list[FileAccount] = field(default_factory=list)
    partitions_touched: list[str] = field(default_factory=list)
    partitions_written: list[str] = field(default_factory=list)
    snapshot_version: int | None = None
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def total(self, attribute: str) -> int:
        return sum(int(getattr(f, attribute)) for f in self.files if f.status == "processed")

    @property
    def quarantined_share(self) -> float:
        read = self.total("rows_read")
        return self.total("rows_quarantined") / read if read else 0.0

    @property
    def set_aside_anything(self) -> bool:
        """Whether the run quarantined any row or file of this dataset."""
        return bool(self.total("rows_quarantined")) or any(f.status == "failed" for f in self.files)


@dataclass
class RunReport:
    """Everything a run read, wrote and decided; saved as ``_runs/dt=…/{run_id}.json``."""

    run_id: str
    run_date: date
    started_at: datetime
    finished_at: datetime | None = None
    datasets: dict[str, DatasetReport] = field(default_factory=dict)
    gold_months: dict[str, list[str]] = field(default_factory=dict)
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    #: What was tried again on the way: ``tasks`` (task name → retries) and
    #: ``lake_requests`` (storage requests the client repeated, see `Lake.request_retries`).
    retries: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest_key(self) -> str:
        return layout.manifest_key(self.run_date, self.run_id)

    @property
    def succeeded(self) -> bool:
        return not self.failures

    def dataset(self, name: str) -> DatasetReport:
        return self.datasets.setdefault(name, DatasetReport(dataset=name))

    def total(self, attribute: str) -> int:
        """``attribute`` (``rows_read``, ``rows_written``, …) summed over every dataset."""
        return sum(dataset.total(attribute) for dataset in self.datasets.values())

    def unbalanced_files(self) -> list[FileAccount]:
        return [
            f
            for report in self.datasets.values()
            for f in report.files
            if f.status == "processed" and not f.balanced
        ]

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["succeeded"] = self.succeeded
        return document

    def file_rows(self) -> list[dict[str, Any]]:
        """One row per input file for the run's table artifact: what became of its rows."""
        return [
            {
                "dataset": name,
                "file": f.source,
                "status": f.status,
                "rows_read": f.rows_read,
                "rows_written": f.rows_written,
                "rows_quarantined": f.rows_quarantined,
                "rows_superseded": f.rows_superseded,
                "error": f.error or "",
            }
            for name, report in sorted(self.datasets.items())
            for f in report.files
        ]

    def to_markdown(self, links: Sequence[tuple[str, str]] = ()) -> str:
        """The run's Prefect artifact: per dataset, files, rows, partitions, reasons, timings,
        and ``links`` (text, URL: the manifest, the quarantine folders) at the end."""
        lines = [
            f"# Daily run {self.run_date.isoformat()} — "
            f"{'succeeded' if self.succeeded else 'FAILED'}",
            "",
            f"Run `{self.run_id}`; manifest `{self.manifest_key}`.",
            "",
            "| dataset | files | rows read | written | quarantined | superseded "
            "| partitions written | seconds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, report in sorted(self.datasets.items()):
            processed = [f for f in report.files if f.status == "processed"]
            seconds = self.seconds.get(f"validate-{name}", 0.0) + self.seconds.get(
                f"silver-{name}", 0.0
            )
            lines.append(
                f"| {name} | {len(processed)} "
                f"(+{len(report.files) - len(processed)} not processed) "
                f"| {report.total('rows_read')} | {report.total('rows_written')} "
                f"| {report.total('rows_quarantined')} | {report.total('rows_superseded')} "
                f"| {len(report.partitions_written)} | {seconds:.2f} |"
            )
        reasons = [
            f"- {name}: {markdown_text(reason)} × {count}"
            for name, report in sorted(self.datasets.items())
            for reason, count in report.quarantine_reasons.items()
        ]
        if reasons:
            lines += ["", "## Quarantine reasons", *reasons]
        warnings = [w for report in self.datasets.values() for w in report.warnings]
        if warnings:
            lines += ["", "## Warnings", *(f"- {markdown_text(w)}" for w in warnings)]
        if self.gold_months:
            lines += [
                "",
                "## Gold",
                *(f"- {t}: {', '.join(m)}" for t, m in self.gold_months.items()),
            ]
        if self.failures:
            lines += ["", "## Failures", *(f"- {markdown_text(f)}" for f in self.failures)]
        if self.seconds:
            lines += ["", "## Timings (s)", *(f"- {k}: {v:.2f}" for k, v in self.seconds.items())]
        if links:
            lines += ["", "## Links", *(f"- [{markdown_text(t)}]({url})" for t, url in links)]
        return "\n".join(lines) + "\n"


def browser_link(lake: Lake, aws_region: str, key: str) -> str:
    """Where a person opens a lake object or folder (``key`` ending in ``/``): the S3 console
    for an S3 lake, a ``file://`` URL for a local one."""
    uri = lake.uri(key.rstrip("/") or ".")
    if not uri.startswith("s3://"):
        return f"file://{quote(uri)}{'/' if key.endswith('/') else ''}"
    bucket, _, path = uri.removeprefix("s3://").partition("/")
    kind = "buckets" if key.endswith("/") else "object"
    prefix = f"{path}/" if key.endswith("/") else path
    return (
        f"https://{aws_region}.console.aws.amazon.com/s3/{kind}/{bucket}"
        f"?region={aws_region}&prefix={quote(prefix, safe='')}"
    )


def capped_columns(names: list[str]) -> list[str]:
    """Column names for a manifest or a message: at most `DROPPED_COLUMNS_LISTED`, each cut
    to `DROPPED_COLUMN_NAME_CHARS` characters and escaped, with a count of the rest."""
    listed = [
        printable(
            name
            if len(name) <= DROPPED_COLUMN_NAME_CHARS
            else name[:DROPPED_COLUMN_NAME_CHARS] + "…"
        )
        for name in names[:DROPPED_COLUMNS_LISTED]
    ]
    if len(names) > DROPPED_COLUMNS_LISTED:
        listed.append(f"… and {len(names) - DROPPED_COLUMNS_LISTED} more")
    return listed


def run_failures(report: RunReport, threshold_for: Callable[[str], float]) -> list[str]:
    """Every reason the run must end failed, each naming the file or dataset concerned.

    Args:
        report: the run so far.
        threshold_for: the quarantined share above which a dataset fails.
    """
    failures = [
        f.error or f"{printable(f.source)}: rejected"
        for dataset in report.datasets.values()
        for f in dataset.files
        if f.status == "failed"
    ]
    for f in report.unbalanced_files():
        failures.append(
            f"{printable(f.source)}: rows do not balance: read {f.rows_read} "
            f"!= written {f.rows_written} + quarantined {f.rows_quarantined} "
            f"+ superseded {f.rows_superseded}"
        )
    for name, dataset in sorted(report.datasets.items()):
        share, threshold = dataset.quarantined_share, threshold_for(name)
        if share > threshold:
            failures.append(
                f"{name}: {share:.1%} of rows quarantined, over the {threshold:.1%} "
                f"threshold (see {layout.quarantine_folder(name, report.run_date)})"
            )
    return failures


class StageClock:
    """Wall time per stage of a run (``ingest``, ``validate-orders``, ``gold``…), in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the block to ``seconds[stage]``."""
        start = clock.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + clock.perf_counter() - start


def dataset_report(
    dataset: str, validation: DatasetValidation, silver: SilverOutcome
) -> DatasetReport:
    """One dataset's share of the run, from its validate and silver outcomes: its processed and
    rejected files, partitions, quarantine reasons and schema-drift warnings."""
    report = DatasetReport(
        dataset=dataset,
        files=[
            replace(account, dropped_columns=capped_columns(account.dropped_columns))
            for account in silver.accounts + validation.rejected
        ],
        partitions_touched=silver.touched,
        partitions_written=silver.rewritten,
        snapshot_version=silver.version,
    )
    for item in validation.validated:
        for reason, count in item.quarantine_reasons().items():
            report.quarantine_reasons[reason] = report.quarantine_reasons.get(reason, 0) + count
        if item.dropped_columns:
            report.warnings.append(
                f"{printable(item.source)}: schema drift, unknown column(s) dropped: "
                + ", ".join(capped_columns(item.dropped_columns))
            )
    return report


def processed_sources(datasets: list[DatasetReport]) -> set[str]:
    """Keys of the input files whose rows were processed."""
    return {f.source for report in datasets for f in report.files if f.status == "processed"}


def build_report(
    run: RunContext,
    run_date: date,
    *,
    not_processed: list[FileAccount],
    datasets: list[DatasetReport],
    gold: list[GoldMonth],
    loads: list[LoadResult],
    seconds: dict[str, float],
    threshold_for: Callable[[str], float],
    retries: dict[str, Any] | None = None,
) -> RunReport:
    """The run's report from its stages' results, with every reason it must end failed.

    Args:
        run: the run's id and start.
        run_date: the day it processed.
        not_processed: accounts of the files ingest skipped, ignored or rejected.
        datasets: each processed dataset's share (see `dataset_report`), in processing order.
        gold: the gold months rebuilt.
        loads: the warehouse loads.
        seconds: wall time per stage.
        threshold_for: the quarantined share above which a dataset fails.
        retries: what was tried again (see `RunReport.retries`).
    """
    report = RunReport(
        run_id=run.run_id,
        run_date=run_date,
        started_at=run.ingested_at,
        seconds=dict(seconds),
        retries=dict(retries or {}),
    )
    for account in not_processed:
        report.dataset(account.dataset).files.append(account)
    for part in datasets:
        whole = report.dataset(part.dataset)
        report.datasets[part.dataset] = replace(
            part, dataset=whole.dataset, files=whole.files + part.files
        )
    for month in gold:
        report.gold_months.setdefault(month.table.name, []).append(month.month)
    report.warehouse_rows = {load.table: load.rows_inserted for load in loads}
    report.failures = run_failures(report, threshold_for)
    report.finished_at = datetime.now(UTC)
    return report


def success_alert(report: RunReport, flow_run_url: str | None) -> Alert:
    """The short notice of a run that succeeded: rows per dataset and the manifest."""
    lines = [f"Daily run for {report.run_date} succeeded."]
    for name, dataset in sorted(report.datasets.items()):
        lines.append(
            f"- {name}: {dataset.total('rows_read')} read, {dataset.total('rows_written')} "
            f"written, {dataset.total('rows_quarantined')} quarantined, "
            f"{dataset.total('rows_superseded')} superseded"
        )
    lines.append(f"Manifest: {report.manifest_key}")
    return Alert(
        kind="success",
        subject=f"[ecom-pipeline] daily-{report.run_date} succeeded",
        body="\n".join(lines),
        flow_run_url=flow_run_url,
        details={"run_id": report.run_id, "manifest": report.manifest_key},
    )


ROW_METRICS = {
    "rows_read": "RowsRead",
    "rows_written": "RowsWritten",
    "rows_quarantined": "RowsQuarantined",
    "rows_superseded": "RowsSuperseded",
}


def run_metrics(report: RunReport, now: datetime) -> list[Metric]:
    """The run's data points (names in ``ecom_pipeline.run.metrics``).

    Rows per dataset count processed files only; ``StageSeconds`` has one point per timed stage
    (``ingest``, ``validate-orders``, ``silver-orders``, ``gold``, ``load``…);
    ``FreshnessSeconds``, sent only when the run succeeded, is the age of the end of the day it
    processed (alarm on its minimum: a backfill of old days sends large values beside the daily
    run's small ones). ``RunSucceeded`` comes from the flow's outcome hook, which also sees runs
    that failed before they had a report.
    """
    points = [
        Metric(name, float(dataset.total(attribute)), "Count", now, {"Dataset": dataset_name})
        for dataset_name, dataset in sorted(report.datasets.items())
        for attribute, name in ROW_METRICS.items()
    ]
    points += [
        Metric("StageSeconds", round(seconds, 3), "Seconds", now, {"Stage": stage})
        for stage, seconds in report.seconds.items()
    ]
    if report.succeeded:
        day_end = datetime.combine(report.run_date + timedelta(days=1), time(0), tzinfo=UTC)
        points.append(
            Metric("FreshnessSeconds", max(0.0, (now - day_end).total_seconds()), "Seconds", now)
        )
    return points
