"""The load stage of a run: the rebuilt gold months into the warehouse, one transaction per
table."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa

from ecom_pipeline.gold.build import GoldMonth
from ecom_pipeline.gold.tables import GOLD_TABLES
from ecom_pipeline.warehouse.engine import LoadResult, Warehouse

log = logging.getLogger(__name__)


def load_gold_months(
    warehouse: Warehouse,
    months: list[GoldMonth],
    uri_of: Callable[[str], str],
    *,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
) -> list[LoadResult]:
    """Replace the touched months of each gold table; loading again repeats the same
    replacement.

    Args:
        warehouse: an open warehouse connection (the caller closes it).
        months: the complete month files the gold step wrote.
        uri_of: the URI of a lake key (Redshift copies the month files from there).
        logger: where each table's load is logged.
    """
    results = []
    for table in GOLD_TABLES:
        mine = [m for m in months if m.table.name == table.name]
        if not mine:
            continue
        result = warehouse.upsert_months(
            table,
            pa.concat_tables([m.rows for m in mine]),
            [m.month for m in mine],
            source_uris=[uri_of(m.key) for m in mine],
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
    return results
