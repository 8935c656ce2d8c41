"""The backfill flow: one daily run per day of a range (SPEC §7).

The duplicate rule does not depend on processing order (see ``ecom_pipeline.silver.dedup``), so days
may run in any order and in parallel; silver commits are optimistic and retried, so concurrent
days never lose each other's rows. A failed day does not stop the others: the summary lists it
for a re-run and the backfill ends failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated
from uuid import UUID

from prefect import flow, get_run_logger, runtime, tags
from prefect.artifacts import (
    aupdate_progress_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.deployments import arun_deployment
from prefect.states import State
from pydantic import Field

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.errors import ConfigurationError, RunFailedError
from ecom_pipeline.run.notifier import Alert
from ecom_pipeline.run.report import PROGRESS_LOGGER, RunReport, markdown_text
from ecom_pipeline.run.resources import build_resources
from ecom_pipeline.settings import load_settings
from flows.alerts import report_outcome
from flows.daily import ALL_DATASETS, BACKFILL_TAG_PREFIX, daily
from tasks.report import notify

#: The deployment child runs are started from when the backfill itself runs from a deployment.
DAILY_DEPLOYMENT = "daily/daily"
MAX_DAYS = 366


@dataclass
class DayOutcome:
    day: date
    state: str
    message: str = ""
    flow_run_id: str | None = None
    #: Rows read, written and quarantined (when the day's report came back), and wall time.
    rows_read: int | None = None
    rows_written: int | None = None
    rows_quarantined: int | None = None
    rows_superseded: int | None = None
    seconds: float | None = None

    def line(self) -> str:
        """``2026-11-18: COMPLETED, 1136 rows in, 1128 out, 3 quarantined, 5 superseded, 5.2 s``."""
        parts = [f"{self.day}: {self.state}"]
        if self.rows_read is not None:
            parts.append(
                f"{self.rows_read} rows in, {self.rows_written} out, "
                f"{self.rows_quarantined} quarantined, {self.rows_superseded} superseded"
            )
        if self.seconds is not None:
            parts.append(f"{self.seconds:.1f} s")
        return ", ".join(parts) + (f" — {self.message}" if self.message else "")


@dataclass
class BackfillSummary:
    days: list[DayOutcome] = field(default_factory=list)

    @property
    def failed_days(self) -> list[date]:
        return [d.day for d in self.days if d.state != "COMPLETED"]

    @property
    def succeeded(self) -> bool:
        return not self.failed_days

    def lines(self) -> list[str]:
        return [d.line() for d in self.days] + self.rerun_hint()

    def rerun_hint(self) -> list[str]:
        if not self.failed_days:
            return []
        days = " ".join(str(d) for d in self.failed_days)
        return [f"re-run the failed day(s) with: ecom-pipeline run --date <day> ({days})"]

    def closing_lines(self) -> list[str]:
        """The totals over the days, then how to re-run failed days (the days were shown)."""
        failed = len(self.failed_days)
        total = f"{len(self.days)} day(s): {len(self.days) - failed} completed, {failed} failed"
        counted = [d for d in self.days if d.rows_read is not None]
        if counted:
            total += (
                f"; {sum(d.rows_read or 0 for d in counted)} rows in, "
                f"{sum(d.rows_written or 0 for d in counted)} out, "
                f"{sum(d.rows_quarantined or 0 for d in counted)} quarantined, "
                f"{sum(d.rows_superseded or 0 for d in counted)} superseded"
            )
        return [total, *self.rerun_hint()]


def day_outcome(day: date, state: State, seconds: float) -> DayOutcome:
    """What a daily run's final state says of its day (row counts if its report came back)."""
    outcome = DayOutcome(day, state.type.value, state.message or "", seconds=seconds)
    if state.is_completed():
        report = state.result()
        if isinstance(report, RunReport):
            outcome.rows_read = report.total("rows_read")
            outcome.rows_written = report.total("rows_written")
            outcome.rows_quarantined = report.total("rows_quarantined")
            outcome.rows_superseded = report.total("rows_superseded")
    return outcome


def days_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ConfigurationError(f"end_date {end} is before start_date {start}")
    count = (end - start).days + 1
    if count > MAX_DAYS:
        raise ConfigurationError(f"{count} days requested; a backfill covers at most {MAX_DAYS}")
    return [start + timedelta(days=i) for i in range(count)]


def _run_name() -> str:
    params = runtime.flow_run.parameters
    return f"backfill-{params.get('start_date')}-to-{params.get('end_date')}"


@flow(
    name="backfill",
    flow_run_name=_run_name,
    description="Run the daily pipeline for every day of a range.",
    on_completion=[report_outcome],
    on_failure=[report_outcome],
    on_crashed=[report_outcome],
)
def backfill(
    start_date: date,
    end_date: date,
    datasets: list[Dataset] = ALL_DATASETS,
    max_parallel: Annotated[int, Field(ge=1, le=16)] = 1,
    reprocess: bool = False,
) -> BackfillSummary:
    """Run the daily pipeline for every day of a range, listing failed days for a re-run.

    Args:
        start_date: First day (dt=) to process.
        end_date: Last day (dt=) to process, inclusive.
        datasets: Datasets to process; all four by default.
        max_parallel: Days processed at once, as child runs of the daily deployment (1 to 16).
            Run outside a deployment, days run one after another as subflows.
        reprocess: Process files again even if they were already ingested unchanged.
    """
    days = days_between(start_date, end_date)
    logger = get_run_logger()
    # Each child carries this tag: find a backfill's days in the UI, and children send no
    # notice of their own (one summary per backfill).
    tag = f"{BACKFILL_TAG_PREFIX}{runtime.flow_run.id}"
    progress = create_progress_artifact(
        0.0, key="backfill-progress", description=f"Days of {_run_name()} finished"
    )
    assert isinstance(progress, UUID)  # called from sync code: the sync variant ran
    if runtime.deployment.id is not None:
        summary = asyncio.run(_run_children(days, datasets, max_parallel, reprocess, tag, progress))
    else:
        summary = BackfillSummary()
        with tags(tag):
            for done, day in enumerate(days, start=1):
                started = time.perf_counter()
                state = daily(
                    run_date=day, datasets=datasets, reprocess=reprocess, return_state=True
                )
                outcome = day_outcome(day, state, time.perf_counter() - started)
                summary.days.append(outcome)
                logging.getLogger(PROGRESS_LOGGER).info(outcome.line())
                update_progress_artifact(progress, 100.0 * done / len(days))
    for line in summary.lines():
        logger.info(line)
    create_markdown_artifact(
        key="backfill-summary",
        markdown="\n".join(
            ["# Backfill", "", *(f"- {markdown_text(line)}" for line in summary.lines())]
        ),
        description=f"Backfill {start_date} to {end_date}",
    )
    if not summary.succeeded:
        # The failure alert (automation or hook) carries this message: the failed days.
        raise RunFailedError(
            [
                f"{len(summary.failed_days)} of {len(days)} day(s) failed: "
                + ", ".join(str(d) for d in summary.failed_days)
            ]
        )
    notify(
        build_resources(load_settings()),
        Alert(
            kind="success",
            subject=f"[ecom-pipeline] {_run_name()} succeeded",
            body="\n".join([f"All {len(days)} day(s) succeeded.", *summary.lines()]),
            flow_run_url=runtime.flow_run.ui_url,
            details={"flow_run_id": str(runtime.flow_run.id), "days": len(days)},
        ),
    )
    return summary


async def _run_children(
    days: list[date],
    datasets: list[Dataset],
    max_parallel: int,
    reprocess: bool,
    tag: str,
    progress: UUID,
) -> BackfillSummary:
    """One child run of the daily deployment per day, at most ``max_parallel`` at a time."""
    gate = asyncio.Semaphore(max_parallel)
    finished = 0

    async def one(day: date) -> DayOutcome:
        async with gate:
            child = await arun_deployment(
                name=DAILY_DEPLOYMENT,
                parameters={
                    "run_date": day.isoformat(),
                    "datasets": [d.value for d in datasets],
                    "reprocess": reprocess,
                },
                timeout=None,
                as_subflow=True,
                tags=[tag],
            )
            nonlocal finished
            finished += 1
            await aupdate_progress_artifact(progress, 100.0 * finished / len(days))
            state = child.state
            return DayOutcome(
                day,
                state.type.value if state else "UNKNOWN",
                (state.message or "") if state else "",
                str(child.id),
            )

    outcomes = await asyncio.gather(*(one(day) for day in days))
    return BackfillSummary(days=list(outcomes))
