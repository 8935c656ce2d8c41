"""Crash injection for the crash-safety tests: kill the process at a named step or a lake write.

Three switches, all unset in production (then nothing here costs anything):

- ``ECOM_FAILPOINT_KILL_AFTER_WRITE=N:prefix``: the lake sends SIGKILL to its own process right
  after the N-th write (``write_bytes`` or ``put_if_absent``) of a key under ``prefix``.
- ``ECOM_FAILPOINT_KILL_AT=name`` or ``name@seconds``: `failpoint` calls named ``name`` kill the
  process at once, or start a timer that kills it that many seconds later. Silver's Delta
  commits happen inside delta-rs (Rust): named points mark our own steps around them, and a
  timer lands a kill in the middle of a merge or a compaction.
- ``ECOM_FAILPOINT_BARRIER=name:count:folder``: `failpoint` calls named ``name`` wait until
  ``count`` processes have reached it (each leaves a file in ``folder``), so runs started
  together are made to overlap however unevenly their interpreters start.

In-process tests can also run their own code at a named point (`interleave`): another run's
step committed at the worst instant, without replacing any of the pipeline's functions.

A kill from inside the process lands at an exact, repeatable step, which an outside timer
cannot do. The named points, in the order a daily run meets them: ``ingest:listed``,
``ingest:checksummed`` (first file), ``validate:{dataset}:staged`` (first file's valid rows on
scratch disk), ``silver:orders:regions-read`` (customers read, orders' regions decided),
``silver:{dataset}:before-merge|after-merge|before-compact|after-compact``,
``load:{table}:before-commit|after-commit`` and ``ledger:{dataset}:before-write``; the lake
writes (gold files, the gold lock, the ledger, the manifest) are reached by the write counter.
"""

from __future__ import annotations

import builtins
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.fs as pafs

from ecom_pipeline.lake.storage import Lake, LakeObject

FAILPOINT_ENV = "ECOM_FAILPOINT_KILL_AFTER_WRITE"
FAILPOINT_AT_ENV = "ECOM_FAILPOINT_KILL_AT"
FAILPOINT_BARRIER_ENV = "ECOM_FAILPOINT_BARRIER"
BARRIER_TIMEOUT_SECONDS = 300.0
_INTERLEAVED: dict[str, Callable[[], None]] = {}


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _barrier(name: str) -> None:
    target, count, folder = os.environ[FAILPOINT_BARRIER_ENV].split(":", 2)
    if target != name:
        return
    arrivals = Path(folder)
    arrivals.mkdir(parents=True, exist_ok=True)
    (arrivals / str(os.getpid())).touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_SECONDS
    while sum(1 for _ in arrivals.iterdir()) < int(count):
        if time.monotonic() > deadline:
            raise RuntimeError(f"failpoint barrier {name!r}: fewer than {count} arrived")
        time.sleep(0.05)


@contextmanager
def interleave(name: str, step: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first `failpoint` call named ``name`` runs ``step`` first."""
    _INTERLEAVED[name] = step
    try:
        yield
    finally:
        _INTERLEAVED.pop(name, None)


def failpoint(name: str) -> None:
    """Kill this process here (or after a delay) if ``ECOM_FAILPOINT_KILL_AT`` names ``name``;
    wait here for the others if ``ECOM_FAILPOINT_BARRIER`` does; run the step `interleave`
    holds for ``name``."""
    step = _INTERLEAVED.pop(name, None) if _INTERLEAVED else None
    if step is not None:
        step()
    if os.environ.get(FAILPOINT_BARRIER_ENV):
        _barrier(name)
    setting = os.environ.get(FAILPOINT_AT_ENV)
    if not setting:
        return
    target, _, delay = setting.partition("@")
    if target != name:
        return
    if not delay:
        _kill()
    timer = threading.Timer(float(delay), _kill)
    timer.daemon = True
    timer.start()


class KillAfterWrites(Lake):
    """A lake that dies (SIGKILL, no cleanup) after a given number of writes under a prefix."""

    def __init__(self, inner: Lake, writes: int, prefix: str) -> None:
        self.inner = inner
        self.root = inner.root
        self.remaining = writes
        self.prefix = prefix
        self._counting = threading.Lock()  # a run's lanes write from two threads

    def _count(self, key: str) -> None:
        if key.startswith(self.prefix):
            with self._counting:
                self.remaining -= 1
                if self.remaining == 0:
                    _kill()

    def read_bytes(self, key: str) -> bytes:
        return self.inner.read_bytes(key)

    def open_binary(self, key: str) -> BinaryIO:
        return self.inner.open_binary(key)

    def open_random_access(self, key: str) -> Any:
        return self.inner.open_random_access(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self.inner.write_bytes(key, data)
        self._count(key)

    def copy(self, source: str, target: str) -> None:
        self.inner.copy(source, target)
        self._count(target)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        created = self.inner.put_if_absent(key, data)
        self._count(key)
        return created

    def list(self, prefix: str) -> builtins.list[LakeObject]:
        return self.inner.list(prefix)

    def delete(self, keys: Iterable[str]) -> None:
        self.inner.delete(keys)

    def uri(self, key: str) -> str:
        return self.inner.uri(key)

    def table_uri(self, key: str) -> str:
        return self.inner.table_uri(key)

    def delta_storage_options(self) -> dict[str, str]:
        return self.inner.delta_storage_options()

    def arrow_filesystem(self, key: str) -> pafs.FileSystem:
        return self.inner.arrow_filesystem(key)


def with_failpoints(lake: Lake) -> Lake:
    setting = os.environ.get(FAILPOINT_ENV)
    if not setting:
        return lake
    count, _, prefix = setting.partition(":")
    return KillAfterWrites(lake, int(count), prefix)
