"""Which gold rows a run must rebuild: the days and months its silver changes reach."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.silver.partitioning import parse_partition_path
from ecom_pipeline.silver.upsert import SilverOutcome


@dataclass(frozen=True)
class GoldPlan:
    """The days and months whose gold rows a run must rebuild.

    Attributes:
        order_days: days of ``daily_revenue`` (the order days whose silver partitions changed).
        payment_days: days of ``daily_payments`` (likewise for payments).
        customer_months: months of ``monthly_customers`` touched by new or changed customers
            (their signup months); the months of ``order_days`` are rebuilt as well.
    """

    order_days: set[date] = field(default_factory=set)
    payment_days: set[date] = field(default_factory=set)
    customer_months: set[str] = field(default_factory=set)

    @property
    def monthly_months(self) -> list[str]:
        """Months of ``monthly_customers`` to rebuild: the order days' and the customers'."""
        return sorted({d.strftime("%Y-%m") for d in self.order_days} | self.customer_months)


def plan_gold(silver: Mapping[Dataset, SilverOutcome]) -> GoldPlan:
    """The gold rows the silver step's outcomes (one per dataset processed) reach.

    Orders and payments: the days of the date partitions their merge touched (rows written to
    or moved from). Customers: the signup months of the rows the run brought.
    """
    return GoldPlan(
        order_days=_touched_days(silver, Dataset.ORDERS),
        payment_days=_touched_days(silver, Dataset.PAYMENTS),
        customer_months=_months(silver.get(Dataset.CUSTOMERS), "signup_date"),
    )


def _touched_days(silver: Mapping[Dataset, SilverOutcome], dataset: Dataset) -> set[date]:
    outcome, column = silver.get(dataset), SPECS[dataset].date_column
    if outcome is None or column is None:
        return set()
    return {date.fromisoformat(parse_partition_path(p)[column]) for p in outcome.touched}


def _months(outcome: SilverOutcome | None, column: str) -> set[str]:
    if outcome is None:
        return set()
    return {d.strftime("%Y-%m") for d in outcome.dates.get(column, [])}
