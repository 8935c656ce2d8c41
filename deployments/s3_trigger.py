"""AWS Lambda handler: a raw file landed in S3 → a Prefect event → the daily run for its day.

SPEC §7: "a new file landing under raw/ can also trigger the daily run for its day". The design
notes gave that role to S3 → EventBridge → Lambda. This handler is the Lambda; the `daily`
deployment's trigger in prefect.yaml turns the event into a flow run with ``run_date`` = the day.

What it accepts (one handler for all the ways S3 can reach a Lambda):

* an S3 event notification (``{"Records": [{"eventSource": "aws:s3", "s3": {…}}]}``);
* an EventBridge event from S3 (``{"source": "aws.s3", "detail-type": "Object Created", …}``);
* either of those inside SQS messages (``{"Records": [{"eventSource": "aws:sqs", "body": …}]}``),
  which is how to batch: an SQS event source mapping with a batching window collects the files
  of a delivery into one invocation, so a day whose four exports land together gives one run;
* S3's ``s3:TestEvent`` (ignored).

What it does: keeps ``ObjectCreated`` keys of the form ``raw/{dataset}/dt=YYYY-MM-DD/<file>``
(anything else is counted as ignored), groups them by day, and POSTs one event per day to the
Prefect API's ``/events`` endpoint::

    event:    ecom.raw.file-landed
    resource: {"prefect.resource.id": "ecom.raw.day.2026-11-20", "ecom.day": "2026-11-20"}
    related:  one resource per dataset seen (role "dataset") and the bucket (role "bucket")
    payload:  {"day": "2026-11-20", "bucket": …, "datasets": […], "keys": […], "key_count": n}

The event id is derived from the objects' keys and sequencers, so a retried invocation sends
the same ids and Prefect's triggers do not act twice.

Configuration (Lambda environment): ``PREFECT_API_URL`` (required, e.g.
``https://api.prefect.cloud/api/accounts/…/workspaces/…`` or ``https://prefect.internal/api``),
and ``PREFECT_API_KEY`` (sent as a Bearer token) or ``PREFECT_API_AUTH_STRING`` (``user:pass``
for a self-hosted server with basic auth), only if set. Neither is ever logged. The module uses
the standard library only, so the deployment package is this one file.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

EVENT_NAME = "ecom.raw.file-landed"
RESOURCE_PREFIX = "ecom.raw.day."
#: Datasets of SPEC §3; a file of any other dataset is left to the pipeline to quarantine, but
#: still triggers its day (the run then reports the unknown dataset).
KNOWN_DATASETS = frozenset({"orders", "customers", "payments", "employees"})
RAW_KEY = re.compile(r"^raw/(?P<dataset>[^/]+)/dt=(?P<day>\d{4}-\d{2}-\d{2})/(?P<file>[^/]+)$")
#: At most this many keys travel in one event's payload (Prefect caps event sizes).
MAX_KEYS_IN_PAYLOAD = 100
HTTP_TIMEOUT_SECONDS = 10.0
#: Namespace of the deterministic event ids (any fixed UUID would do).
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c52-6a4e-4f57-9a57-2f1c0f0b6e11")


@dataclass(frozen=True)
class LandedObject:
    """One object-created notice: where, what, and S3's ordering token for it."""

    bucket: str
    key: str
    sequencer: str = ""


@dataclass
class DayBatch:
    """The raw files of one day seen in one invocation."""

    day: date
    bucket: str
    keys: list[str] = field(default_factory=list)
    datasets: set[str] = field(default_factory=set)
    sequencers: list[str] = field(default_factory=list)


class ConfigurationError(RuntimeError):
    """The Lambda's environment lacks what it needs; the message says what."""


def landed_objects(event: Mapping[str, Any]) -> Iterator[LandedObject]:
    """Every object-created notice in ``event``, whatever shape carried it."""
    if event.get("source") == "aws.s3" and "detail" in event:
        if event.get("detail-type") == "Object Created":
            detail = event["detail"]
            yield LandedObject(
                bucket=detail["bucket"]["name"],
                # EventBridge carries the key as stored, not URL-encoded.
                key=detail["object"]["key"],
                sequencer=str(detail["object"].get("sequencer", "")),
            )
        return
    for record in event.get("Records") or []:
        source = record.get("eventSource") or record.get("EventSource")
        if source == "aws:sqs":
            body = json.loads(record.get("body") or "{}")
            yield from landed_objects(body)
        elif source == "aws:s3" and str(record.get("eventName", "")).startswith("ObjectCreated:"):
            s3 = record["s3"]
            yield LandedObject(
                bucket=s3["bucket"]["name"],
                # S3 notifications URL-encode keys (a space arrives as '+', '=' as '%3D').
                key=urllib.parse.unquote_plus(s3["object"]["key"]),
                sequencer=str(s3["object"].get("sequencer", "")),
            )


def raw_days(objects: Iterable[LandedObject]) -> tuple[list[DayBatch], int]:
    """Group raw-file keys by day (deduplicated); also return how many objects were ignored."""
    batches: dict[date, DayBatch] = {}
    ignored = 0
    for obj in objects:
        match = RAW_KEY.match(obj.key)
        day = _parse_day(match.group("day")) if match else None
        if match is None or day is None:
            ignored += 1
            continue
        batch = batches.setdefault(day, DayBatch(day=day, bucket=obj.bucket))
        if obj.key not in batch.keys:
            batch.keys.append(obj.key)
            batch.sequencers.append(obj.sequencer)
        batch.datasets.add(match.group("dataset"))
    return [batches[day] for day in sorted(batches)], ignored


def prefect_event(batch: DayBatch, occurred: datetime) -> dict[str, Any]:
    """The Prefect event announcing ``batch`` (JSON-ready)."""
    day = batch.day.isoformat()
    identity = "\n".join(
        [
            batch.bucket,
            day,
            *sorted(f"{k}@{s}" for k, s in zip(batch.keys, batch.sequencers, strict=True)),
        ]
    )
    keys = sorted(batch.keys)
    return {
        "id": str(uuid.uuid5(EVENT_ID_NAMESPACE, identity)),
        "occurred": occurred.astimezone(UTC).isoformat(),
        "event": EVENT_NAME,
        "resource": {
            "prefect.resource.id": f"{RESOURCE_PREFIX}{day}",
            "prefect.resource.name": f"raw files of {day}",
            "ecom.day": day,
        },
        "related": [
            {
                "prefect.resource.id": f"ecom.dataset.{dataset}",
                "prefect.resource.role": "dataset",
                "prefect.resource.name": dataset,
            }
            for dataset in sorted(batch.datasets)
        ]
        + [
            {
                "prefect.resource.id": f"aws.s3.bucket.{batch.bucket}",
                "prefect.resource.role": "bucket",
            }
        ],
        "payload": {
            "day": day,
            "bucket": batch.bucket,
            "datasets": sorted(batch.datasets),
            "unknown_datasets": sorted(batch.datasets - KNOWN_DATASETS),
            "keys": keys[:MAX_KEYS_IN_PAYLOAD],
            "key_count": len(keys),
        },
    }


def emit_events(events: list[dict[str, Any]], environ: Mapping[str, str] | None = None) -> None:
    """POST ``events`` to ``$PREFECT_API_URL/events``; raises on any non-2xx answer so that
    Lambda's retry policy (or the SQS redrive) delivers them again."""
    env = os.environ if environ is None else environ
    api_url = (env.get("PREFECT_API_URL") or "").rstrip("/")
    if not api_url:
        raise ConfigurationError(
            "PREFECT_API_URL is not set: set it in the Lambda's environment to the Prefect API "
            "(…/api of a self-hosted server, or the Prefect Cloud workspace API URL)"
        )
    if urllib.parse.urlsplit(api_url).scheme not in ("http", "https"):
        raise ConfigurationError("PREFECT_API_URL must be an http:// or https:// URL")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if env.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {env['PREFECT_API_KEY']}"
    elif env.get("PREFECT_API_AUTH_STRING"):
        token = base64.b64encode(env["PREFECT_API_AUTH_STRING"].encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(
        f"{api_url}/events",
        data=json.dumps(events).encode("utf-8"),
        headers=headers,
        method="POST",
    )
    try:
        # The scheme was checked above (http or https only), hence nosec.
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # nosec B310
            status = response.status
    except urllib.error.HTTPError as exc:
        # The body explains a 4xx (a malformed event); never echo the request (it has the key).
        detail = exc.read(2000).decode("utf-8", "replace")
        raise RuntimeError(
            f"Prefect API refused the events: HTTP {exc.code} from {api_url}/events: {detail}"
        ) from None
    if not 200 <= status < 300:
        raise RuntimeError(f"Prefect API answered HTTP {status} to POST {api_url}/events")


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (``s3_trigger.handler``). Returns what it did, for the logs."""
    batches, ignored = raw_days(landed_objects(event))
    now = datetime.now(UTC)
    events = [prefect_event(batch, now) for batch in batches]
    if events:
        emit_events(events)
    summary = {
        "days": [b.day.isoformat() for b in batches],
        "events": len(events),
        "files": sum(len(b.keys) for b in batches),
        "ignored": ignored,
    }
    log.info("raw files landed: %s", json.dumps(summary))
    return summary


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:  # dt=2026-13-45: not a day, not ours to trigger
        return None
