"""The S3 lake and the SNS notifier through the faults real AWS gives (issue 14).

A `FaultyHttpProxy` sits between the adapters and moto's server. Every operation must complete
through the client's retries, or fail with a clear error; the bucket must then hold exactly what
a clean run leaves (checked with a client that bypasses the proxy): no object doubled or lost,
no false conflict from ``put_if_absent`` when the reply to a create that succeeded was lost.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator

import boto3
import pytest

from ecom_pipeline.lake.storage import S3Lake
from ecom_pipeline.run.notifier import Alert, SnsNotifier
from tests.chaos.http_faults import ALL_FAULTS, FaultKind, FaultyHttpProxy
from tests.conftest import BUCKET
from tests.flows.test_alerts import Inbox

pytestmark = pytest.mark.chaos


@pytest.fixture
def direct_s3(moto_endpoint: str):
    """A client straight to moto: the ground truth the faulty runs are checked against."""
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultyHttpProxy]:
    with FaultyHttpProxy(moto_endpoint, seed=14) as running:
        yield running


def lake_behind(proxy: FaultyHttpProxy) -> S3Lake:
    return S3Lake(f"s3://{BUCKET}/chaos-{uuid.uuid4().hex[:10]}", endpoint_url=proxy.endpoint)


def stored(direct_s3, lake: S3Lake) -> dict[str, bytes]:
    """Every object under the lake's prefix, read past the proxy."""
    objects = {}
    paginator = direct_s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=lake.bucket, Prefix=lake.prefix):
        for item in page.get("Contents", []):
            body = direct_s3.get_object(Bucket=lake.bucket, Key=item["Key"])["Body"].read()
            objects[item["Key"][len(lake.prefix) :]] = body
    return objects


@pytest.mark.parametrize("kind", ALL_FAULTS)
def test_each_fault_on_each_operation_is_survived(
    kind: FaultKind, proxy: FaultyHttpProxy, direct_s3, fault_tally: dict[str, int]
) -> None:
    lake = lake_behind(proxy)
    data = b"payload " * 4096  # large enough that a truncated reply is visibly short

    proxy.queue(kind)
    lake.write_bytes("a/one.bin", data)
    proxy.queue(kind)
    created = lake.put_if_absent("a/two.bin", data)
    proxy.queue(kind)
    conflict = lake.put_if_absent("a/two.bin", b"other")
    proxy.queue(kind)
    read = lake.read_bytes("a/one.bin")
    proxy.queue(kind)
    listed = [o.key for o in lake.list("a/")]
    proxy.queue(kind)
    lake.delete(["a/one.bin"])

    assert (created, conflict) == (True, False)
    assert read == data
    assert listed == ["a/one.bin", "a/two.bin"]
    assert stored(direct_s3, lake) == {"a/two.bin": data}
    assert proxy.injected[kind] == 6
    # Each request sent again is counted for the run's manifest: all six after a failed
    # request; after a truncated reply, the read, the list and the refused create (the
    # write's and the delete's replies have no body to cut); none after a slow reply.
    assert lake.request_retries == {"slow": 0, "truncated": 3}.get(kind, 6)
    fault_tally.update(faults_injected=proxy.faults, survived=proxy.faults, rows_lost=0)


def test_put_if_absent_whose_reply_was_lost_is_not_a_false_conflict(
    proxy: FaultyHttpProxy, direct_s3
) -> None:
    """The create ran, its reply was lost, the client retried and got 412 from its own object:
    that is a success, or a lock would never be taken and a commit would report a conflict."""
    lake = lake_behind(proxy)
    proxy.queue("lost_reply")

    assert lake.put_if_absent("_locks/gold.json", b'{"owner": "me"}') is True

    assert proxy.injected["lost_reply"] == 1
    assert stored(direct_s3, lake) == {"_locks/gold.json": b'{"owner": "me"}'}
    # Someone else's object under the key is still a conflict, even after a lost reply.
    proxy.queue("lost_reply")
    assert lake.put_if_absent("_locks/gold.json", b'{"owner": "you"}') is False
    assert stored(direct_s3, lake) == {"_locks/gold.json": b'{"owner": "me"}'}


def test_a_missing_object_whose_error_reply_is_cut_short_is_still_missing(
    proxy: FaultyHttpProxy,
) -> None:
    """A truncated 404 body carries no error code: the status alone says "no such object"."""
    lake = lake_behind(proxy)
    proxy.queue("truncated")

    with pytest.raises(FileNotFoundError):
        lake.read_bytes("raw/orders/dt=2026-11-18/absent.csv")

    assert proxy.injected["truncated"] == 1
    assert lake.exists("raw/orders/dt=2026-11-18/absent.csv") is False


def run_mixed_workload(lake: S3Lake, objects: int) -> dict[str, bytes]:
    """Writes, creates, conflicting creates, reads, lists and deletes; returns what should be
    left. Asserts each answer on the way."""
    expected: dict[str, bytes] = {}
    for i in range(objects):
        key, data = f"w/{i:03d}.json", json.dumps({"i": i, "pad": "x" * (i * 37)}).encode()
        lake.write_bytes(key, data)
        expected[key] = data
        token = f"{i}-{uuid.uuid4().hex}".encode()
        assert lake.put_if_absent(f"c/{i:03d}", token) is True
        assert lake.put_if_absent(f"c/{i:03d}", b"late") is False
        expected[f"c/{i:03d}"] = token
        assert lake.read_bytes(key) == data
        if i % 3 == 0:
            lake.delete([key])
            del expected[key]
    assert [o.key for o in lake.list("")] == sorted(expected)
    return expected


def test_seeded_mixed_faults_leave_exactly_a_clean_runs_objects(
    proxy: FaultyHttpProxy, direct_s3, fault_tally: dict[str, int]
) -> None:
    lake = lake_behind(proxy)
    proxy.rate = 0.2

    expected = run_mixed_workload(lake, objects=12)

    assert stored(direct_s3, lake) == expected
    assert proxy.faults >= 10, proxy.injected
    fault_tally.update(
        requests=proxy.requests, faults_injected=proxy.faults, survived=proxy.faults, rows_lost=0
    )


@pytest.mark.chaos_full
def test_long_seeded_mixed_faults(
    moto_endpoint: str, direct_s3, fault_tally: dict[str, int]
) -> None:
    total_faults = total_requests = 0
    for seed in range(5):
        # 5 attempts per request (botocore's legacy mode): at 10 % faults one operation in
        # 100 000 exhausts them; a higher rate is the task retries' job (the flow tests).
        with FaultyHttpProxy(moto_endpoint, rate=0.1, seed=seed) as faulty:
            lake = lake_behind(faulty)
            expected = run_mixed_workload(lake, objects=60)
            assert stored(direct_s3, lake) == expected
            total_faults += faulty.faults
            total_requests += faulty.requests
    fault_tally.update(
        requests=total_requests, faults_injected=total_faults, survived=total_faults, rows_lost=0
    )


def test_sns_alerts_arrive_through_faults(
    moto_endpoint: str, proxy: FaultyHttpProxy, fault_tally: dict[str, int]
) -> None:
    """Every alert reaches the topic's subscribers at least once. SNS delivery is at least once
    anyway: only a publish whose reply was lost or cut short may arrive twice."""
    inbox = Inbox(moto_endpoint)
    notifier = SnsNotifier(inbox.topic_arn, endpoint_url=proxy.endpoint)
    proxy.rate = 0.3
    sent = [f"[ecom-pipeline] alert {i}" for i in range(15)]

    for subject in sent:
        notifier.send(Alert(kind="failure", subject=subject, body="body"))

    received = [m["Subject"] for m in inbox.receive(wait_seconds=5)]
    assert set(received) == set(sent), "an alert was lost"
    # Only a publish SNS may have done before its reply was lost or cut short is sent again.
    assert len(received) - len(sent) <= proxy.injected["lost_reply"] + proxy.injected["truncated"]
    assert proxy.faults >= 3, proxy.injected
    fault_tally.update(
        faults_injected=proxy.faults,
        survived=proxy.faults,
        alerts_lost=0,
        alerts_doubled=len(received) - len(sent),
    )


@pytest.mark.parametrize("fault", ALL_FAULTS)
def test_an_alert_reaches_its_subscribers_through_any_one_fault(
    fault: FaultKind, moto_endpoint: str
) -> None:
    """Each fault once on the publish: the alert arrives (a second copy is allowed where SNS
    may have published before the reply was lost); found at 15 % faults, a success notice whose
    reply came back cut short was dropped: botocore does not retry an unreadable reply."""
    inbox = Inbox(moto_endpoint)
    with FaultyHttpProxy(moto_endpoint) as proxy:
        proxy.queue(fault)
        SnsNotifier(inbox.topic_arn, endpoint_url=proxy.endpoint).send(
            Alert(kind="success", subject=f"[ecom-pipeline] {fault}", body="all good")
        )
        assert proxy.injected[fault] == 1
    subjects = [m["Subject"] for m in inbox.receive(wait_seconds=3)]
    assert subjects and set(subjects) == {f"[ecom-pipeline] {fault}"}
    assert len(subjects) <= 2
