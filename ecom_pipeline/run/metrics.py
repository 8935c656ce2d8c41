"""Metrics sinks: where a run's numbers go (CloudWatch in production, the log otherwise).

The names are fixed (dashboards and alarms are built over them): namespace ``EcomPipeline`` by
default; ``RowsRead``, ``RowsWritten``, ``RowsQuarantined``, ``RowsSuperseded`` (Count, per
``Dataset``), ``StageSeconds`` (Seconds, per ``Stage``), ``RunSucceeded`` (1 or 0, per ``Flow``)
and ``FreshnessSeconds`` (age of the end of the newest processed day, no dimension).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

log = logging.getLogger(__name__)

MetricUnit = Literal["Count", "Seconds", "None"]
#: Metrics per PutMetricData request (the API takes up to 1000; small batches keep requests
#: well under its 1 MB payload limit).
BATCH = 100


@dataclass(frozen=True)
class Metric:
    """One data point.

    Attributes:
        name: e.g. ``RowsWritten``.
        value: the number.
        unit: ``Count``, ``Seconds`` or ``None`` (a flag such as ``RunSucceeded``).
        dimensions: e.g. ``{"Dataset": "orders"}``; empty for run-wide values.
        timestamp: when it was measured.
    """

    name: str
    value: float
    unit: MetricUnit
    timestamp: datetime
    dimensions: dict[str, str] = field(default_factory=dict)


class MetricsSink(Protocol):
    def put(self, metrics: list[Metric]) -> None: ...


class LogMetrics:
    """Writes each data point to the log, one line each (local runs)."""

    def put(self, metrics: list[Metric]) -> None:
        for metric in metrics:
            dims = ",".join(f"{k}={v}" for k, v in sorted(metric.dimensions.items()))
            log.info("metric %s[%s] = %s %s", metric.name, dims, metric.value, metric.unit)


class CloudWatchMetrics:
    """Puts the data points into a CloudWatch namespace; a failure to publish is logged, never
    raised, so a monitoring outage cannot fail a run that loaded its data."""

    def __init__(
        self, namespace: str, *, endpoint_url: str | None = None, region: str = "us-east-1"
    ) -> None:
        import boto3

        self.namespace = namespace
        self.client = boto3.client("cloudwatch", endpoint_url=endpoint_url, region_name=region)

    def put(self, metrics: list[Metric]) -> None:
        data = [
            {
                "MetricName": m.name,
                "Value": float(m.value),
                "Unit": m.unit,
                "Timestamp": m.timestamp,
                "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(m.dimensions.items())],
            }
            for m in metrics
        ]
        for start in range(0, len(data), BATCH):
            try:
                self.client.put_metric_data(
                    Namespace=self.namespace, MetricData=data[start : start + BATCH]
                )
            except Exception:
                log.exception("could not put %d metrics into CloudWatch", len(data[start:]))
                return
