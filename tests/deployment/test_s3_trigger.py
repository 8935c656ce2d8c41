"""The S3 → Prefect Lambda (deployments/s3_trigger.py).

Unit tests for the event shapes, then the whole chain against a real Prefect server: the
handler POSTs events to /api/events, the `daily` deployment's trigger from prefect.yaml (deployed
with the CLI) turns each into a flow run with ``run_date`` = the day.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from deployments import s3_trigger

from .conftest import PrefectServer

BUCKET = "ecommerce-data"


def s3_notification(*keys: str, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """An S3 event notification as Lambda receives it (keys URL-encoded, as S3 sends them)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-21T00:15:00.000Z",
                "eventName": event_name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                    "object": {
                        "key": urllib.parse.quote_plus(key, safe="/"),
                        "size": 1024,
                        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                        "sequencer": f"0055AED6DCD9028{i}",
                    },
                },
            }
            for i, key in enumerate(keys)
        ]
    }


def eventbridge_event(key: str) -> dict[str, Any]:
    """An S3 "Object Created" event as EventBridge delivers it to a Lambda target."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-21T00:15:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": BUCKET},
            "object": {"key": key, "size": 5, "etag": "b1946ac9", "sequencer": "617f08299329d189"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def test_s3_notification_keys_are_decoded_grouped_by_day_and_deduplicated() -> None:
    event = s3_notification(
        "raw/orders/dt=2026-11-20/orders-0001.csv",
        "raw/orders/dt=2026-11-20/orders-0002.csv",
        "raw/customers/dt=2026-11-20/customers export.csv",  # space → '+' on the wire
        "raw/orders/dt=2026-11-19/orders-0001.csv",
        "processed/orders/order_date=2026-11-20/part-0.parquet",  # not raw: ignored
        "raw/orders/2026-11-20/orders.csv",  # no dt=: ignored
        "raw/orders/dt=2026-13-45/orders.csv",  # not a day: ignored
    )
    assert "customers+export.csv" in json.dumps(event)
    batches, ignored = s3_trigger.raw_days(s3_trigger.landed_objects(event))
    assert [b.day for b in batches] == [date(2026, 11, 19), date(2026, 11, 20)]
    assert ignored == 3
    assert batches[1].keys == [
        "raw/orders/dt=2026-11-20/orders-0001.csv",
        "raw/orders/dt=2026-11-20/orders-0002.csv",
        "raw/customers/dt=2026-11-20/customers export.csv",
    ]
    assert batches[1].datasets == {"orders", "customers"}


def test_eventbridge_and_sqs_wrapped_shapes() -> None:
    bridge = eventbridge_event("raw/payments/dt=2026-11-18/payments-0001.csv")
    (obj,) = s3_trigger.landed_objects(bridge)
    assert obj.key == "raw/payments/dt=2026-11-18/payments-0001.csv" and obj.bucket == BUCKET

    sqs = {
        "Records": [
            {"eventSource": "aws:sqs", "body": json.dumps(bridge)},
            {
                "eventSource": "aws:sqs",
                "body": json.dumps(s3_notification("raw/orders/dt=2026-11-18/orders.csv")),
            },
            {"eventSource": "aws:sqs", "body": json.dumps({"Event": "s3:TestEvent"})},
        ]
    }
    batches, ignored = s3_trigger.raw_days(s3_trigger.landed_objects(sqs))
    assert [(b.day, sorted(b.datasets)) for b in batches] == [
        (date(2026, 11, 18), ["orders", "payments"])
    ]
    assert ignored == 0


def test_only_object_created_counts() -> None:
    removed = s3_notification("raw/orders/dt=2026-11-20/a.csv", event_name="ObjectRemoved:Delete")
    assert list(s3_trigger.landed_objects(removed)) == []
    bridge = eventbridge_event("raw/orders/dt=2026-11-20/a.csv")
    bridge["detail-type"] = "Object Deleted"
    assert list(s3_trigger.landed_objects(bridge)) == []
    assert s3_trigger.handler({"Service": "Amazon S3", "Event": "s3:TestEvent"})["events"] == 0


def test_event_shape_and_deterministic_id() -> None:
    event = s3_notification("raw/orders/dt=2026-11-20/orders-0001.csv")
    (batch,), _ = s3_trigger.raw_days(s3_trigger.landed_objects(event))
    first = s3_trigger.prefect_event(batch, s3_trigger.datetime.now(s3_trigger.UTC))
    again = s3_trigger.prefect_event(batch, s3_trigger.datetime.now(s3_trigger.UTC))
    assert first["id"] == again["id"]  # a retried invocation is recognised as the same event
    assert first["event"] == "ecom.raw.file-landed"
    assert first["resource"]["prefect.resource.id"] == "ecom.raw.day.2026-11-20"
    assert first["payload"]["day"] == "2026-11-20"
    assert first["payload"]["datasets"] == ["orders"]
    roles = {r["prefect.resource.role"] for r in first["related"]}
    assert roles == {"dataset", "bucket"}


class _Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, dict[str, str], Any]]] = []
    status: ClassVar[int] = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()
        if type(self).status >= 400:
            self.wfile.write(b'{"detail": "bad event"}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.requests = []
    _Recorder.status = 204
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_api_key_is_sent_as_bearer_and_never_logged(
    recorder: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", recorder + "/")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_secret_value_123")
    caplog.set_level(logging.DEBUG)
    summary = s3_trigger.handler(s3_notification("raw/orders/dt=2026-11-20/orders-0001.csv"))
    assert summary == {"days": ["2026-11-20"], "events": 1, "files": 1, "ignored": 0}
    ((path, headers, body),) = _Recorder.requests
    assert path == "/api/events"
    assert headers["Authorization"] == "Bearer pnu_secret_value_123"
    assert body[0]["payload"]["day"] == "2026-11-20"
    assert "pnu_secret_value_123" not in caplog.text


def test_no_key_no_authorization_header(recorder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", recorder)
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    s3_trigger.handler(s3_notification("raw/orders/dt=2026-11-20/orders-0001.csv"))
    ((_, headers, _),) = _Recorder.requests
    assert "Authorization" not in headers


def test_refused_events_raise_so_lambda_retries(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", recorder)
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_secret_value_123")
    _Recorder.status = 422
    with pytest.raises(RuntimeError, match="HTTP 422") as raised:
        s3_trigger.handler(s3_notification("raw/orders/dt=2026-11-20/orders-0001.csv"))
    assert "pnu_secret_value_123" not in str(raised.value)


def test_missing_api_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(s3_trigger.ConfigurationError, match="PREFECT_API_URL"):
        s3_trigger.handler(s3_notification("raw/orders/dt=2026-11-20/orders-0001.csv"))


# -- end to end: handler → Prefect events → prefect.yaml trigger → flow runs -------------------

TRIGGER_POOL = "s3-trigger-test"


def _runs_for(server: PrefectServer, deployment_id: str, day: str) -> list[dict[str, Any]]:
    """Runs of daily/daily for ``day`` that an automation created (days no other test uses)."""
    runs = server.flow_runs(deployments={"id": {"any_": [deployment_id]}})
    return [
        r
        for r in runs
        if r["parameters"].get("run_date") == day
        and (r.get("created_by") or {}).get("type") == "AUTOMATION"
    ]


def _wait_for_runs(
    server: PrefectServer, deployment_id: str, day: str, timeout: float = 60.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs_for(server, deployment_id, day)
        if runs:
            return runs
        time.sleep(0.5)
    pytest.fail(
        f"no flow run of daily/daily with run_date={day} {timeout:.0f} s after the event; "
        f"automations: {json.dumps(server.post('/automations/filter'))[:2000]}\n"
        f"server log:\n{server.process.output()}",
        pytrace=False,
    )


@pytest.mark.slow
def test_landed_files_trigger_daily_runs_through_the_prefect_yaml_trigger(
    prefect_server: PrefectServer, deploy_variant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The project's prefect.yaml (trigger included) on a pool no worker serves: the runs the
    # trigger creates stay Scheduled, where the test can read their parameters.
    prefect_server.ensure_pool(TRIGGER_POOL, "--type", "process")
    deployed = deploy_variant("process-pool", "--name", "daily", pool=TRIGGER_POOL)
    daily_id = deployed["daily"]["id"]
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.api_url)
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    created: list[str] = []
    try:
        # S3 notification shape: two days in one batch, several files of one day.
        notification = s3_notification(
            "raw/orders/dt=2026-10-05/orders-0001.csv",
            "raw/customers/dt=2026-10-05/customers-0001.csv",
            "raw/orders/dt=2026-10-04/orders-0002.csv",
            "gold/daily_revenue/month=2026-11/part-0.parquet",
        )
        summary = s3_trigger.handler(notification)
        assert summary == {
            "days": ["2026-10-04", "2026-10-05"],
            "events": 2,
            "files": 3,
            "ignored": 1,
        }
        # EventBridge shape, another day.
        assert s3_trigger.handler(eventbridge_event("raw/payments/dt=2026-10-03/p.csv"))[
            "days"
        ] == ["2026-10-03"]

        for day in ("2026-10-03", "2026-10-04", "2026-10-05"):
            runs = _wait_for_runs(prefect_server, daily_id, day)
            created += [r["id"] for r in runs]
            assert len(runs) == 1, f"{day}: {len(runs)} runs"
            (run,) = runs
            assert run["parameters"] == {"run_date": day}
            assert run["deployment_id"] == daily_id
            assert run["work_pool_name"] == TRIGGER_POOL
            assert run["state_type"] == "SCHEDULED"

        # Lambda retries the same invocation after a timeout: same event ids, no second run.
        s3_trigger.handler(notification)
        time.sleep(5.0)
        for day in ("2026-10-04", "2026-10-05"):
            assert len(_runs_for(prefect_server, daily_id, day)) == 1

        # The events themselves are in Prefect's event feed, with the day as payload.
        events = prefect_server.post(
            "/events/filter",
            {"filter": {"event": {"name": ["ecom.raw.file-landed"]}}, "limit": 50},
        )["events"]
        assert {e["payload"]["day"] for e in events} >= {"2026-10-03", "2026-10-04", "2026-10-05"}
    finally:
        for run_id in created:  # no later worker of this session may pick them up
            prefect_server.delete(f"/flow_runs/{run_id}")
