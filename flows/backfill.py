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
from datetime import date
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
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from pydantic import Field

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.run.backfill import BackfillSummary, DayOutcome, day_outcome, days_between
from ecom_pipeline.run.report import PROGRESS_LOGGER
from ecom_pipeline.run.resources import build_resources
from ecom_pipeline.settings import load_settings
from flows.alerts import report_outcome
from flows.daily import ALL_DATASETS, BACKFILL_TAG_PREFIX, daily
from tasks.policy import deployment_id
from tasks.report import notify

#: The deployment child runs are started from when the backfill itself runs from a deployment.
DAILY_DEPLOYMENT = "daily/daily"


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
    resources = build_resources(load_settings())
    logger = get_run_logger()
    # Each child carries this tag: find a backfill's days in the UI, and children send no
    # notice of their own (one summary per backfill).
    tag = f"{BACKFILL_TAG_PREFIX}{runtime.flow_run.id}"
    progress = create_progress_artifact(
        0.0, key="backfill-progress", description=f"Days of {_run_name()} finished"
    )
    assert isinstance(progress, UUID)  # called from sync code: the sync variant ran
    if deployment_id() is not None:
        summary = asyncio.run(_run_children(days, datasets, max_parallel, reprocess, tag, progress))
    else:
        summary = BackfillSummary()
        # Days run here as subflows, under the backfill's heartbeat. Their own would cost every
        # day up to a second at its end (Prefect joins a thread that sleeps a second at a time),
        # and no automation watches a run without a deployment.
        with tags(tag), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
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
        markdown=summary.to_markdown(),
        description=f"Backfill {start_date} to {end_date}",
    )
    if not summary.succeeded:
        raise summary.failure()  # the failure alert (automation or hook) carries the days
    notify(
        resources,
        summary.success_alert(_run_name(), str(runtime.flow_run.id), runtime.flow_run.ui_url),
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
