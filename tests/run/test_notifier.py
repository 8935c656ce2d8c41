"""An alert that cannot be delivered is never lost: it stays whole in the log (SPEC §7)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ecom_pipeline.lake.storage import LocalLake
from ecom_pipeline.run.notifier import Alert, LakeNotifier, SnsNotifier

ALERT = Alert(
    kind="failure",
    subject="[ecom-pipeline] daily-2026-11-21 failed",
    body="Flow run daily-2026-11-21 failed.\nError: raw/orders/dt=2026-11-21/a.csv: not UTF-8",
)


def test_a_lake_that_cannot_be_written_leaves_the_alert_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "lake"
    root.write_text("a file where the lake folder should be: every write fails")
    with caplog.at_level(logging.INFO, logger="ecom_pipeline.run.notifier"):
        LakeNotifier(LocalLake(root)).send(ALERT)  # does not raise
    text = caplog.text
    assert ALERT.subject in text and "not UTF-8" in text
    assert "could not write the failure alert to the lake" in text


def test_an_sns_outage_leaves_the_whole_alert_in_the_log(
    moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    notifier = SnsNotifier(topic, endpoint_url=moto_endpoint)
    with caplog.at_level(logging.INFO, logger="ecom_pipeline.run.notifier"):
        notifier.send(ALERT)  # the topic does not exist: publishing fails, the run does not
    assert "could not publish the failure alert to SNS" in caplog.text
    assert ALERT.subject in caplog.text and "not UTF-8" in caplog.text
