"""Task: upsert the rebuilt gold months into the warehouse, one transaction per table."""

from __future__ import annotations

import pyarrow as pa
from prefect import get_run_logger

from ecom_pipeline.gold.build import GoldMonth
from ecom_pipeline.gold.tables import GOLD_TABLES
from ecom_pipeline.run.resources import Resources
from ecom_pipeline.warehouse.engine import LoadResult
from tasks.policy import pipeline_task


@pipeline_task("load-warehouse")
def load_warehouse(resources: Resources, months: list[GoldMonth]) -> list[LoadResult]:
    """Replace the touched months of each gold table; a retry repeats the same replacement."""
    logger = get_run_logger()
    results = []
    warehouse = resources.warehouse()
    try:
        for table in GOLD_TABLES:
            mine = [m for m in months if m.table.name == table.name]
            if not mine:
                continue
            rows = pa.concat_tables([m.rows for m in mine])
            result = warehouse.upsert_months(
                table,
                rows,
                [m.month for m in mine],
                source_uris=[resources.lake.uri(m.key) for m in mine],
            )
            logger.info(
                "%s: months %s replaced (%d row(s) out, %d in) in %.2f s",
                table.name,
                ", ".join(result.months),
                result.rows_deleted,
                result.rows_inserted,
                result.seconds,
            )
            results.append(result)
    finally:
        warehouse.close()
    return results
