"""Task: upsert the rebuilt gold months into the warehouse, one transaction per table."""

from __future__ import annotations

from prefect import get_run_logger

from ecom_pipeline.gold.build import GoldMonth
from ecom_pipeline.run.load import load_gold_months
from ecom_pipeline.run.resources import Resources
from ecom_pipeline.warehouse.engine import LoadResult
from tasks.policy import pipeline_task


@pipeline_task("load-warehouse")
def load_warehouse(resources: Resources, months: list[GoldMonth]) -> list[LoadResult]:
    """Replace the touched months of each gold table; a retry repeats the same replacement."""
    warehouse = resources.warehouse()
    try:
        return load_gold_months(warehouse, months, resources.lake.uri, logger=get_run_logger())
    finally:
        warehouse.close()
