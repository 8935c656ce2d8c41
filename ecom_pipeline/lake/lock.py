"""A lease lock stored in the lake, for the one read-modify-write the pipeline has.

Gold month files are rebuilt by reading the month, replacing the touched days and writing it
back; two runs of the same month at once (a parallel backfill, a backfill beside the daily run)
would otherwise lose one another's days. Silver needs no lock: its commits are optimistic.

Every write of the lock is a create-only write (``Lake.put_if_absent``: ``If-None-Match: *`` on
S3, a hard link locally), so two contenders can never both succeed, and nothing is ever
overwritten or deleted while it still decides anything. Under ``_locks/{name}/`` the lock is a
sequence of *generations*; generation ``N`` is:

- ``N.json``: acquired, by whom, lease expiry (created by the one contender that wins ``N``);
- ``N.renew-K.json``: the holder pushed its expiry forward (renewed every third of the lease);
- ``N.released.json``: the holder is done.

The newest generation decides: released, or past its expiry (plus a grace for clock skew),
means the lock is free and the next contender creates ``N+1``. A holder that was killed leaves
a lease that runs out within ``lease`` (a minute by default), not hours. A holder that could
not renew in time knows it has lost the lock and fails at the end of its block. Older
generations are history, removed by the next holder (the newest is always kept).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ecom_pipeline.errors import LockLostError, LockTimeoutError
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.storage import Lake

log = logging.getLogger(__name__)

#: A lease counts as expired only this long after its expiry (clock skew between machines).
CLOCK_SKEW_GRACE = timedelta(seconds=5)
#: A waiting run repeats what it waits for this often.
WAIT_LOG_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class LockState:
    """The newest generation of a lock, as read from the lake."""

    generation: int
    holder: str
    expires_at: datetime
    released: bool

    def free(self, now: datetime) -> bool:
        return self.released or now > self.expires_at + CLOCK_SKEW_GRACE


def _generation_key(prefix: str, generation: int, suffix: str = "") -> str:
    return f"{prefix}{generation:012d}{suffix}.json"


def read_lock_state(lake: Lake, name: str) -> LockState | None:
    """The newest generation of lock ``name``, or None if it was never taken."""
    prefix = layout.lock_prefix(name)
    objects = [o.key[len(prefix) :] for o in lake.list(prefix)]
    generations = sorted({int(k[:12]) for k in objects if k[:12].isdigit()})
    if not generations:
        return None
    newest = generations[-1]
    try:
        record = json.loads(lake.read_bytes(_generation_key(prefix, newest)))
    except FileNotFoundError:  # removed as history by a newer holder: re-read
        return read_lock_state(lake, name)
    expiry = datetime.fromisoformat(record["expires_at"])
    for key in objects:
        if key.startswith(f"{newest:012d}.renew-"):
            try:
                renewal = json.loads(lake.read_bytes(prefix + key))
            except FileNotFoundError:
                continue
            expiry = max(expiry, datetime.fromisoformat(renewal["expires_at"]))
    released = f"{newest:012d}.released.json" in objects
    return LockState(newest, record["holder"], expiry, released)


class _Lease:
    """This process's hold on one generation; renews it from a background thread."""

    def __init__(self, lake: Lake, name: str, generation: int, lease: timedelta) -> None:
        self.lake = lake
        self.prefix = layout.lock_prefix(name)
        self.generation = generation
        self.lease = lease
        self.expires_at = datetime.now(UTC) + lease
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _renew_loop(self) -> None:
        renewal = 0
        while not self._stop.wait(self.lease.total_seconds() / 3):
            now = datetime.now(UTC)
            if now >= self.expires_at:
                # Too late: a waiter may already hold the next generation.
                self.lost = f"the lease expired at {self.expires_at.isoformat()} before renewal"
                log.error("lock %s: %s", self.prefix, self.lost)
                return
            renewal += 1
            expires = now + self.lease
            key = _generation_key(self.prefix, self.generation, f".renew-{renewal:06d}")
            try:
                self.lake.put_if_absent(
                    key, json.dumps({"expires_at": expires.isoformat()}).encode()
                )
            except Exception:  # a transient storage error: try again at the next tick
                log.warning("lock %s: could not renew the lease", self.prefix, exc_info=True)
                continue
            self.expires_at = expires

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.lost is None and datetime.now(UTC) >= self.expires_at:
            self.lost = f"the lease expired at {self.expires_at.isoformat()} while held"
        if self.lost is None:
            self.lake.put_if_absent(
                _generation_key(self.prefix, self.generation, ".released"), b"{}"
            )


def _describe_holder() -> str:
    """Who takes the lock: the Prefect flow run when there is one, and the process."""
    try:
        from prefect import runtime

        run = runtime.flow_run.name
        run_id = runtime.flow_run.id
    except Exception:  # outside Prefect
        run, run_id = None, None
    where = f"pid {os.getpid()} on {socket.gethostname()}"
    return f"flow run {run} ({run_id}), {where}" if run else where


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow run's logger when there is one (the wait shows in the Prefect UI), else ours."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow or task run
        return log


@contextmanager
def lake_lock(
    lake: Lake,
    name: str,
    *,
    lease: timedelta = timedelta(seconds=60),
    wait: timedelta = timedelta(hours=3),
    poll_seconds: float = 1.0,
    holder: str | None = None,
) -> Iterator[int]:
    """Hold lock ``name`` in the lake for the duration of the block.

    Note:
        The lease is renewed every ``lease / 3`` while the block runs; if the process dies, the
        lock is free again ``lease`` (+ 5 s) later. A holder that missed its renewal raises
        `LockLostError` when its block ends, so its run fails rather than pass unnoticed.

    Args:
        lake: where the lock lives (the same lake every contender uses).
        name: what is locked, e.g. ``gold``.
        lease: how long the lock outlives a holder that stopped renewing it; 60 s by default.
        wait: how long to wait for it before giving up with `LockTimeoutError`; 3 h by default.
        poll_seconds: mean pause between attempts (randomised ±50 %).
        holder: who is taking it, for the waiters' log; the flow run and process by default.

    Yields:
        The generation this holder took.
    """
    prefix = layout.lock_prefix(name)
    where = lake.uri(layout.lock_folder(name))
    who = holder or _describe_holder()
    token = uuid.uuid4().hex
    started = time.monotonic()
    last_said = -WAIT_LOG_INTERVAL.total_seconds()
    while True:
        state = read_lock_state(lake, name)
        now = datetime.now(UTC)
        if state is None or state.free(now):
            generation = 1 if state is None else state.generation + 1
            record = {
                "holder": who,
                "token": token,
                "acquired_at": now.isoformat(),
                "expires_at": (now + lease).isoformat(),
            }
            if lake.put_if_absent(_generation_key(prefix, generation), json.dumps(record).encode()):
                break
            continue  # another contender won this generation: read the new state
        waited = time.monotonic() - started
        if waited > wait.total_seconds():
            raise LockTimeoutError(
                f"lock {where} still held by {state.holder} after waiting {wait}"
            )
        if waited - last_said >= WAIT_LOG_INTERVAL.total_seconds():
            last_said = waited
            _run_logger().warning(
                "waiting for lock %s: held by %s, lease until %s (waited %.0f s so far)",
                where,
                state.holder,
                state.expires_at.isoformat(timespec="seconds"),
                waited,
            )
        time.sleep(random.uniform(0.5, 1.5) * poll_seconds)  # nosec B311: jitter, not security

    held = _Lease(lake, name, generation, lease)
    held.start()
    _forget_history(lake, prefix, generation)
    try:
        yield generation
    finally:
        held.release()
    if held.lost:
        raise LockLostError(f"lock {where} (generation {generation}): {held.lost}")


def _forget_history(lake: Lake, prefix: str, generation: int) -> None:
    """Remove the records of older generations: only the newest one decides anything."""
    older = [o.key for o in lake.list(prefix) if o.key[len(prefix) :][:12] < f"{generation:012d}"]
    if older:
        lake.delete(older)
