"""Retention rules of SPEC §2 and §5, for stores where S3 lifecycle rules cannot apply them.

Bronze 30 days, silver, quarantine and run records 365 days, gold 5 years. Ages are measured by
the day in the key (``dt=``, a partition date, ``month=``), not by file timestamps, so a
backfill that re-delivers old files does not make them young.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from ecom_pipeline.lake.layout import day_in_key, parse_key

BRONZE_DAYS = 30
SILVER_DAYS = 365
QUARANTINE_DAYS = 365
RUN_RECORD_DAYS = 365
GOLD_YEARS = 5


@dataclass(frozen=True)
class Cutoffs:
    """Data dated before these is expired."""

    bronze: date
    silver: date
    quarantine: date
    run_records: date
    gold_month: str

    @classmethod
    def for_day(cls, today: date) -> Cutoffs:
        gold_year = today.year - GOLD_YEARS
        return cls(
            bronze=today - timedelta(days=BRONZE_DAYS),
            silver=today - timedelta(days=SILVER_DAYS),
            quarantine=today - timedelta(days=QUARANTINE_DAYS),
            run_records=today - timedelta(days=RUN_RECORD_DAYS),
            gold_month=f"{gold_year:04d}-{today.month:02d}",
        )


def expired_keys(keys: list[str], cutoff: date) -> list[str]:
    """Keys whose ``dt=`` day is before the cutoff (keys without a day are kept)."""
    return [k for k in keys if (day := day_in_key(k)) is not None and day < cutoff]


def gold_months(keys: Iterable[str]) -> set[str]:
    """The months of the gold month files among ``keys`` (other keys are ignored)."""
    return {k.month for k in map(parse_key, keys) if k is not None and k.kind == "gold"}
