"""Notifiers: where run outcomes and alerts go (SPEC §7).

Production publishes to an SNS topic (e-mail subscribers); with no topic configured, alerts go to
the log and to ``_runs/alerts/`` in the lake, so a local run leaves the same trail.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from botocore.parsers import ResponseParserError

from ecom_pipeline.lake import layout
from ecom_pipeline.lake.storage import Lake

log = logging.getLogger(__name__)

AlertKind = Literal["failure", "sla", "success"]
#: SNS rejects longer subjects.
SNS_SUBJECT_LIMIT = 100
#: Tries of one publish whose reply came back unreadable (see `SnsNotifier.send`).
PUBLISH_ATTEMPTS = 3


@dataclass(frozen=True)
class Alert:
    """One message to the people who operate the pipeline.

    Attributes:
        kind: ``failure`` (failed or crashed run or task), ``sla`` (a task ran past its SLA)
            or ``success``.
        subject: one line, e.g. ``[ecom-pipeline] daily-2026-11-21 failed``.
        body: what happened, the failing task, the error, and where to look.
        flow_run_url: link to the run in the Prefect UI, when known.
        details: machine-readable fields (flow run id, task, counts).
    """

    kind: AlertKind
    subject: str
    body: str
    flow_run_url: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        link = f"\n\nRun: {self.flow_run_url}" if self.flow_run_url else ""
        return f"{self.body}{link}"


class Notifier(Protocol):
    def send(self, alert: Alert) -> None: ...


class LakeNotifier:
    """Writes each alert to the log and to ``_runs/alerts/`` in the lake."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def send(self, alert: Alert) -> None:
        level = logging.INFO if alert.kind == "success" else logging.ERROR
        log.log(level, "%s\n%s", alert.subject, alert.text())
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        try:
            self.lake.write_json(layout.alert_key(stamp, alert.kind), asdict(alert))
        except Exception:  # the alert is in the log above; a lake outage must not lose it
            log.exception(
                "could not write the %s alert to the lake (it is logged above)", alert.kind
            )


class SnsNotifier:
    """Publishes each alert to an SNS topic; a failure to publish is logged, never raised,
    so an alerting outage cannot fail a run that loaded its data."""

    def __init__(
        self, topic_arn: str, *, endpoint_url: str | None = None, region: str = "us-east-1"
    ) -> None:
        import boto3

        self.topic_arn = topic_arn
        self.client = boto3.client("sns", endpoint_url=endpoint_url, region_name=region)

    def send(self, alert: Alert) -> None:
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                self.client.publish(
                    TopicArn=self.topic_arn,
                    Subject=alert.subject[:SNS_SUBJECT_LIMIT],
                    Message=alert.text(),
                    MessageAttributes={"kind": {"DataType": "String", "StringValue": alert.kind}},
                )
                return
            except ResponseParserError:
                # botocore retries a reset or a 5xx, not a reply cut short. SNS may have
                # published already; a second copy is better than no alert (SNS is
                # at-least-once to its subscribers anyway).
                if attempt < PUBLISH_ATTEMPTS:
                    continue
                self._log_unsent(alert)
            except Exception:
                self._log_unsent(alert)
                return

    @staticmethod
    def _log_unsent(alert: Alert) -> None:
        """The alert goes to the log instead, whole."""
        log.exception(
            "could not publish the %s alert to SNS; the alert was:\n%s\n%s",
            alert.kind,
            alert.subject,
            alert.text(),
        )
