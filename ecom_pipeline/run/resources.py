"""The one place that turns settings into adapters (lake, warehouse, notifier, metrics).

Like Dagster's per-environment resource sets: flows and tasks ask for a role, this module picks
the implementation from configuration, and tests select local stand-ins here by settings alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecom_pipeline.lake.storage import Lake, open_lake
from ecom_pipeline.run.metrics import CloudWatchMetrics, LogMetrics, MetricsSink
from ecom_pipeline.run.notifier import LakeNotifier, Notifier, SnsNotifier
from ecom_pipeline.settings import Settings
from ecom_pipeline.warehouse.engine import Warehouse, open_warehouse


@dataclass
class Resources:
    settings: Settings
    lake: Lake
    notifier: Notifier
    metrics: MetricsSink

    def warehouse(self) -> Warehouse:
        """A warehouse connection; the caller closes it (connections do not cross threads)."""
        return open_warehouse(self.settings)


def build_resources(settings: Settings) -> Resources:
    lake = open_lake(
        settings.lake_uri, endpoint_url=settings.aws_endpoint_url, region=settings.aws_region
    )
    notifier: Notifier
    if settings.sns_topic_arn:
        notifier = SnsNotifier(
            settings.sns_topic_arn,
            endpoint_url=settings.aws_endpoint_url,
            region=settings.aws_region,
        )
    else:
        notifier = LakeNotifier(lake)
    metrics: MetricsSink
    if settings.metrics_sink == "cloudwatch":
        metrics = CloudWatchMetrics(
            settings.metrics_namespace,
            endpoint_url=settings.aws_endpoint_url,
            region=settings.aws_region,
        )
    else:
        metrics = LogMetrics()
    return Resources(settings=settings, lake=lake, notifier=notifier, metrics=metrics)
