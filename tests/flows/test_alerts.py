"""Alerts, retries and the SLA watchdog (SPEC §7), read back from moto's SNS through SQS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from uuid import UUID

import boto3
import pytest
from prefect import flow
from prefect.client.schemas.objects import TaskRun

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.errors import BadFileError, RunFailedError
from ecom_pipeline.lake.storage import LocalLake
from flows.alerts import report_outcome
from flows.daily import daily
from tasks.policy import pipeline_task

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

DAY = date(2026, 11, 20)


class Inbox:
    """An SQS queue subscribed to the alert topic: what an e-mail subscriber would receive."""

    def __init__(self, endpoint: str) -> None:
        self.sns = boto3.client("sns", endpoint_url=endpoint, region_name="us-east-1")
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        stamp = time.time_ns()
        self.topic_arn = self.sns.create_topic(Name=f"ecom-alerts-{stamp}")["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName=f"ecom-inbox-{stamp}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def receive(self, wait_seconds: float = 5.0) -> list[dict]:
        """Every message delivered so far (SNS envelopes: Subject, Message)."""
        messages: list[dict] = []
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            for message in batch:
                messages.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            if messages and not batch:
                break
        return messages


@pytest.fixture
def inbox(
    pipeline_env: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Inbox]:
    box = Inbox(moto_endpoint)
    monkeypatch.setenv("ECOM_SNS_TOPIC_ARN", box.topic_arn)
    monkeypatch.setenv("ECOM_AWS_ENDPOINT_URL", moto_endpoint)
    yield box


def test_a_successful_run_sends_one_short_notice(pipeline_env: Path, inbox: Inbox) -> None:
    lake = LocalLake(pipeline_env / "lake")
    write_raw_files(lake, generate_day(DAY, GeneratorConfig(orders_per_day=50, employees=10)))
    daily(run_date=DAY)
    messages = inbox.receive()
    assert [m["Subject"] for m in messages] == ["[ecom-pipeline] daily-2026-11-20 succeeded"]
    assert "orders:" in messages[0]["Message"]


def test_a_failed_run_alerts_once_with_run_task_and_error(pipeline_env: Path, inbox: Inbox) -> None:
    bad = pipeline_env / "lake" / "raw" / "orders" / f"dt={DAY}" / "orders.csv"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    with pytest.raises(RunFailedError):
        daily(run_date=DAY)
    messages = inbox.receive()
    assert len(messages) == 1
    assert messages[0]["Subject"] == "[ecom-pipeline] daily-2026-11-20 failed"
    body = messages[0]["Message"]
    assert "Flow run daily-2026-11-20 (daily) failed." in body
    assert f"raw/orders/dt={DAY}/orders.csv: the file is empty (0 bytes)" in body


def test_the_sla_alert_arrives_while_the_task_still_runs(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOM_TASK_SLA_SECONDS", "0.5")

    @pipeline_task("slow-step")
    def slow_step() -> list[dict]:
        # Keep running until the SLA alert has been delivered (or give up after 20 s).
        return inbox.receive(wait_seconds=20)

    @flow(name="sla-probe")
    def sla_probe() -> list[dict]:
        return slow_step()

    received_while_running = sla_probe()
    assert len(received_while_running) == 1
    assert received_while_running[0]["Subject"].endswith("slow-step is past its SLA")
    assert "has been running for more than 0 s" in received_while_running[0]["Message"] or (
        "has been running for more than 1 s" in received_while_running[0]["Message"]
    )


def test_a_task_failing_twice_then_succeeding_completes(tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"

    @pipeline_task("flaky-io", retry_delay_seconds=0)
    def flaky_io() -> int:
        count = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(count))
        if count < 3:
            raise ConnectionError(f"attempt {count}: connection reset")
        return count

    @flow(name="flaky-probe")
    def flaky_probe() -> int:
        return flaky_io()

    assert flaky_probe() == 3


def test_a_task_failing_four_times_fails_the_run_and_alerts_once(
    tmp_path: Path, inbox: Inbox
) -> None:
    attempts = tmp_path / "attempts"

    @pipeline_task("broken-io", retry_delay_seconds=0)
    def broken_io() -> None:
        count = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(count))
        raise ConnectionError(f"attempt {count}: connection reset")

    @flow(name="broken-probe", on_failure=[report_outcome])
    def broken_probe() -> None:
        broken_io()

    with pytest.raises(ConnectionError):
        broken_probe()
    assert attempts.read_text() == "4"  # the first try and 3 retries
    messages = inbox.receive()
    assert len(messages) == 1
    assert "broken-io" in messages[0]["Message"]
    assert "connection reset" in messages[0]["Message"]


def test_a_contract_violation_is_not_retried(tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"

    @pipeline_task("contract", retry_delay_seconds=0)
    def contract() -> None:
        count = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(count))
        raise BadFileError("raw/orders/dt=2026-11-20/a.csv", "the file is empty (0 bytes)")

    @flow(name="contract-probe")
    def contract_probe() -> None:
        contract()

    with pytest.raises(BadFileError):
        contract_probe()
    assert attempts.read_text() == "1"


def test_a_backfill_sends_one_summary_notice_and_tags_its_days(
    pipeline_env: Path, inbox: Inbox
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from flows.backfill import backfill

    lake = LocalLake(pipeline_env / "lake")
    days = [DAY, date(2026, 11, 21)]
    for day in days:
        write_raw_files(lake, generate_day(day, GeneratorConfig(orders_per_day=20, employees=5)))
    state = backfill(start_date=days[0], end_date=days[1], return_state=True)
    assert state.is_completed()
    messages = inbox.receive()
    assert [m["Subject"] for m in messages] == [
        "[ecom-pipeline] backfill-2026-11-20-to-2026-11-21 succeeded"
    ]
    assert "2026-11-21: COMPLETED" in messages[0]["Message"]

    parent_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"backfill:{parent_id}"]))
        )
        progress = client.read_artifacts()
    assert sorted(run.name for run in children) == ["daily-2026-11-20", "daily-2026-11-21"]
    (artifact,) = [a for a in progress if a.type == "progress" and a.flow_run_id == parent_id]
    assert artifact.data == 100.0
    # The days' task runs do not carry the tag: Prefect would ask for a concurrency slot of it
    # at every task run.
    tasks = _task_runs_of([run.id for run in children])
    assert {"validate-orders", "silver-orders", "load-warehouse"} <= {t.name for t in tasks}
    assert [t.name for t in tasks if any(tag.startswith("backfill:") for tag in t.tags)] == []
    # Only the backfill sends heartbeats: a day's own would cost it up to a second at its end.
    assert _heartbeat_senders([parent_id, *(run.id for run in children)]) == {parent_id}


def _heartbeat_senders(runs: list[UUID], timeout: float = 60.0) -> set[UUID]:
    """Which of these flow runs have a heartbeat in Prefect's event feed, once the first has
    arrived (events reach the feed a moment after they are sent)."""
    from prefect.client.orchestration import get_client

    ids = [f"prefect.flow-run.{run}" for run in runs]
    wanted = {"event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": ids}}
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            answer = client.request("POST", "/events/filter", json={"filter": wanted, "limit": 50})
            senders = {
                UUID(event["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run."))
                for event in answer.json()["events"]
            }
            if runs[0] in senders or time.monotonic() > deadline:
                return senders
            time.sleep(0.5)


def _task_runs_of(flow_run_ids: list[UUID], timeout: float = 60.0) -> list[TaskRun]:
    """The task runs of these flow runs, once the API has recorded them (task run states reach
    it as events, a moment after the flow run ends)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
            )
            if len(runs) >= 10 * len(flow_run_ids) or time.monotonic() > deadline:
                return runs
            time.sleep(0.5)
