"""Task: rebuild the gold months a run touched, from silver."""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger

from ecom_pipeline.gold.build import GoldMonth, rebuild_daily, rebuild_monthly_customers
from ecom_pipeline.gold.tables import DAILY_PAYMENTS, DAILY_REVENUE
from ecom_pipeline.run.resources import Resources
from ecom_pipeline.silver.upsert import GoldPlan
from tasks.policy import pipeline_task


@pipeline_task("build-gold", task_run_name="gold-{run_date}")
def build_gold(resources: Resources, run_date: date, plan: GoldPlan) -> list[GoldMonth]:
    """Rewrite ``gold/{table}/month=…`` for every day and month the run touched."""
    lake = resources.lake
    months = rebuild_daily(lake, DAILY_REVENUE, sorted(plan.order_days))
    months += rebuild_daily(lake, DAILY_PAYMENTS, sorted(plan.payment_days))
    monthly = sorted({d.strftime("%Y-%m") for d in plan.order_days} | plan.customer_months)
    months += rebuild_monthly_customers(lake, monthly)
    get_run_logger().info(
        "gold rebuilt: %s", ", ".join(f"{m.table.name}/{m.month}" for m in months) or "nothing"
    )
    return months
