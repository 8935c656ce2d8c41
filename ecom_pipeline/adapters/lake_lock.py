"""A lease lock stored in the lake, for the one read-modify-write the pipeline has.

Gold month files are rebuilt by reading the month, replacing the touched days and writing it
back; two runs of the same month at once (a parallel backfill, a backfill beside the daily run)
would otherwise lose one another's days. Silver needs no lock: its commits are optimistic.

The lock is an object created with put-if-absent (``_locks/{name}.json``) holding its owner and
expiry; a holder that died leaves a lease that others break once it has expired.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from ecom_pipeline.adapters.lake import Lake
from ecom_pipeline.errors import PipelineError


class LockTimeoutError(PipelineError):
    """The lock stayed held by another run for longer than we are willing to wait."""


@contextmanager
def lake_lock(
    lake: Lake,
    name: str,
    *,
    lease: timedelta = timedelta(hours=2),
    wait: timedelta = timedelta(hours=2),
    poll_seconds: float = 0.5,
) -> Iterator[str]:
    """Hold ``_locks/{name}.json`` for the duration of the block.

    Args:
        lake: where the lock lives (the same lake every contender uses).
        name: what is locked, e.g. ``gold``.
        lease: how long a holder may keep it before others may break it (longer than the
            work it protects).
        wait: how long to wait for it before giving up.
        poll_seconds: mean pause between attempts (randomised).

    Yields:
        This holder's token.
    """
    key = f"_locks/{name}.json"
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        expires = datetime.now(UTC) + lease
        record = {"owner": token, "expires_at": expires.isoformat()}
        if lake.put_if_absent(key, json.dumps(record).encode()):
            break
        _break_if_expired(lake, key)
        if time.monotonic() > deadline:
            raise LockTimeoutError(f"lock {key} still held after {wait}; is another run stuck?")
        time.sleep(random.uniform(0.5, 1.5) * poll_seconds)
    try:
        yield token
    finally:
        try:
            if json.loads(lake.read_bytes(key)).get("owner") == token:
                lake.delete([key])
        except FileNotFoundError:
            pass


def _break_if_expired(lake: Lake, key: str) -> None:
    try:
        holder = json.loads(lake.read_bytes(key))
    except FileNotFoundError:
        return
    if datetime.fromisoformat(holder["expires_at"]) < datetime.now(UTC):
        lake.delete([key])
