"""The backfill flow: one daily run per day of a range (SPEC §7).

The duplicate rule does not depend on processing order (see ``ecom_pipeline.dedup``), so days
may run in any order and in parallel; silver commits are optimistic and retried, so concurrent
days never lose each other's rows. A failed day does not stop the others: the summary lists it
for a re-run and the backfill ends failed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import arun_deployment
from pydantic import Field

from ecom_pipeline.datasets import Dataset
from ecom_pipeline.errors import ConfigurationError, RunFailedError
from flows.alerts import alert_on_failure
from flows.daily import ALL_DATASETS, daily

#: The deployment child runs are started from when the backfill itself runs from a deployment.
DAILY_DEPLOYMENT = "daily/daily"
MAX_DAYS = 366


@dataclass
class DayOutcome:
    day: date
    state: str
    message: str = ""
    flow_run_id: str | None = None


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
        lines = [f"{d.day}: {d.state}{' — ' + d.message if d.message else ''}" for d in self.days]
        if self.failed_days:
            days = " ".join(str(d) for d in self.failed_days)
            lines.append(f"re-run the failed day(s) with: ecom-pipeline run --date <day> ({days})")
        return lines


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
    on_failure=[alert_on_failure],
    on_crashed=[alert_on_failure],
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
    if runtime.deployment.id is not None:
        summary = asyncio.run(_run_children(days, datasets, max_parallel, reprocess))
    else:
        summary = BackfillSummary()
        for day in days:
            state = daily(run_date=day, datasets=datasets, reprocess=reprocess, return_state=True)
            summary.days.append(DayOutcome(day, state.type.value, state.message or ""))
    for line in summary.lines():
        logger.info(line)
    create_markdown_artifact(
        key="backfill-summary",
        markdown="\n".join(["# Backfill", "", *(f"- {line}" for line in summary.lines())]),
        description=f"Backfill {start_date} to {end_date}",
    )
    if not summary.succeeded:
        raise RunFailedError(
            [
                f"{len(summary.failed_days)} of {len(days)} day(s) failed: "
                + ", ".join(str(d) for d in summary.failed_days)
            ]
        )
    return summary


async def _run_children(
    days: list[date], datasets: list[Dataset], max_parallel: int, reprocess: bool
) -> BackfillSummary:
    """One child run of the daily deployment per day, at most ``max_parallel`` at a time."""
    gate = asyncio.Semaphore(max_parallel)

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
            )
            state = child.state
            return DayOutcome(
                day,
                state.type.value if state else "UNKNOWN",
                (state.message or "") if state else "",
                str(child.id),
            )

    outcomes = await asyncio.gather(*(one(day) for day in days))
    return BackfillSummary(days=list(outcomes))
