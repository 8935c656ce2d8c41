"""Lanes: work a flow runs side by side, each lane's items in order, in one thread per lane."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

LANE_THREAD_PREFIX = "lane"
#: How Prefect's notice begins that a task with a timeout runs in a worker thread.
_THREAD_TIMEOUT_NOTICE = "Timeout of %s seconds configured for this task, but the task is running"


class _LaneTimeoutNotice(logging.Filter):
    """Drops that notice for lane threads, where it would come with every task of every run.

    A lane's task keeps its timeout, and it works as on the main thread for what a lane blocks
    on: delta-rs and Arrow calls, which neither a signal nor Prefect's thread watcher can
    interrupt (both fail the task once the call returns), and boto3, whose own read timeout ends
    a hung request. The SLA alert fires either way.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            str(record.msg).startswith(_THREAD_TIMEOUT_NOTICE)
            and threading.current_thread().name.startswith(LANE_THREAD_PREFIX)
        )


logging.getLogger("prefect.task_runs").addFilter(_LaneTimeoutNotice())


def run_lanes(step: Callable[[T], R], lanes: Sequence[Sequence[T]], *, at_once: bool) -> list[R]:
    """``step`` of every item, lane after lane or every lane at once; the results in lane order.

    At once, a lane that fails stops there, the others run to their end, and then the first
    failure (in lane order) is raised: what the other lanes committed stays committed, as it
    would have, one lane after the other, up to the failure.
    """
    if not at_once:
        return [step(item) for lane in lanes for item in lane]

    def run(lane: Sequence[T]) -> list[R]:
        return [step(item) for item in lane]

    # Each lane runs in a copy of the caller's context, so its tasks belong to the flow run
    # (as those of Prefect's own thread pool task runner do).
    with ThreadPoolExecutor(
        max_workers=max(len(lanes), 1), thread_name_prefix=LANE_THREAD_PREFIX
    ) as pool:
        futures = [pool.submit(contextvars.copy_context().run, run, lane) for lane in lanes]
    return [result for future in futures for result in future.result()]
