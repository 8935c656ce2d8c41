"""The retention flow: expire bronze, silver, quarantine, run records and gold (SPEC §2, §5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from prefect import flow, get_run_logger

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.gold.tables import GOLD_TABLES
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.retention import Cutoffs, expired_keys, gold_months
from ecom_pipeline.run.resources import Resources, build_resources
from ecom_pipeline.settings import load_settings
from ecom_pipeline.silver.store import SilverStore
from flows.alerts import report_outcome
from tasks.policy import pipeline_task


@dataclass
class RetentionSummary:
    deleted: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [f"{area}: {count} deleted" for area, count in sorted(self.deleted.items())]


@pipeline_task("expire-files", task_run_name="expire-{prefix}")
def expire_files(resources: Resources, prefix: str, cutoff: date) -> int:
    """Delete keys under ``prefix`` whose ``dt=`` day is before ``cutoff``."""
    lake = resources.lake
    doomed = expired_keys([o.key for o in lake.list(prefix)], cutoff)
    lake.delete(doomed)
    return len(doomed)


@pipeline_task("expire-silver", task_run_name="expire-silver-{dataset}")
def expire_silver(resources: Resources, dataset: Dataset, cutoff: date, run_id: str) -> int:
    """Delete date partitions older than the cutoff (one Delta commit), then vacuum: files no
    version of the last week needs go, and the log is checkpointed and trimmed to 30 days."""
    store = SilverStore(resources.lake, SPECS[dataset])
    column = SPECS[dataset].date_column
    dropped = store.expire_before(column, cutoff, run_id) if column is not None else []
    store.vacuum()
    return len(dropped)


@pipeline_task("expire-gold")
def expire_gold(resources: Resources, cutoff_month: str) -> int:
    """Delete gold month files and warehouse rows of months before ``cutoff_month``."""
    lake = resources.lake
    deleted = 0
    warehouse = resources.warehouse()
    try:
        for table in GOLD_TABLES:
            months = gold_months(o.key for o in lake.list(layout.gold_month_prefix(table.name)))
            old = sorted(m for m in months if m < cutoff_month)
            lake.delete(layout.gold_key(table.name, m) for m in old)
            deleted += warehouse.delete_months_before(table, cutoff_month)
    finally:
        warehouse.close()
    return deleted


def _run_name() -> str:
    from prefect import runtime

    today = runtime.flow_run.parameters.get("today") or datetime.now(UTC).date()
    return f"retention-{today}"


@flow(
    name="retention",
    flow_run_name=_run_name,
    description="Expire data past its retention in the lake and the warehouse.",
    on_completion=[report_outcome],
    on_failure=[report_outcome],
    on_crashed=[report_outcome],
)
def retention(today: date | None = None) -> RetentionSummary:
    """Apply every retention rule once (SPEC §2, §5); safe to run any number of times.

    Args:
        today: Day the ages are measured from; empty means today (UTC).
    """
    resources = build_resources(load_settings())
    day = today or datetime.now(UTC).date()
    cutoffs = Cutoffs.for_day(day)
    run_id = f"retention-{day.isoformat()}"
    summary = RetentionSummary()
    summary.deleted[layout.RAW] = expire_files(resources, layout.RAW_PREFIX, cutoffs.bronze)
    summary.deleted[layout.QUARANTINE] = expire_files(
        resources, layout.QUARANTINE_PREFIX, cutoffs.quarantine
    )
    summary.deleted[layout.RUNS] = expire_files(resources, layout.RUNS_PREFIX, cutoffs.run_records)
    for dataset in Dataset:
        summary.deleted[f"{layout.silver_root(dataset)} partitions"] = expire_silver(
            resources, dataset, cutoffs.silver, run_id
        )
    summary.deleted["gold rows"] = expire_gold(resources, cutoffs.gold_month)
    get_run_logger().info("retention: %s", "; ".join(summary.lines()))
    return summary
