"""Task: rebuild the gold months a run touched, from silver."""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger

from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.gold.build import GoldMonth, rebuild
from ecom_pipeline.gold.plan import plan_gold
from ecom_pipeline.run.resources import Resources
from ecom_pipeline.silver.upsert import SilverOutcome
from tasks.policy import pipeline_task


@pipeline_task("build-gold", task_run_name="gold-{run_date}")
def build_gold(
    resources: Resources, run_date: date, silver: dict[Dataset, SilverOutcome]
) -> list[GoldMonth]:
    """Rewrite ``gold/{table}/month=…`` for every day and month the silver outcomes reach."""
    months = rebuild(resources.lake, plan_gold(silver))
    get_run_logger().info(
        "gold rebuilt: %s", ", ".join(f"{m.table.name}/{m.month}" for m in months) or "nothing"
    )
    return months
