"""Lanes: work a flow runs side by side, each lane's items in order, in one thread per lane;
an item may wait for items of another lane."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
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


def run_lanes(
    step: Callable[[T], R],
    lanes: Sequence[Sequence[T]],
    *,
    after: Mapping[T, Collection[T]] | None = None,
    at_once: bool,
) -> list[R]:
    """``step`` of every item, every lane at once or one item at a time; the results in lane
    order.

    ``after[item]`` names items, of any lane, that must have succeeded before ``item`` starts
    (items in no lane are ignored). One at a time, items run in `_sequential_order`.

    A lane that fails stops there, and so does a lane whose next item waits for an item that
    failed or never ran; the others run to their end, then the first failure (in lane order) is
    raised: what they committed stays committed, as it would have, one item after the other,
    up to the failure. One at a time, the first failure stops everything.

    Raises:
        ValueError: items wait for each other in a circle (the lanes would never end).
    """
    needs = _needs(lanes, after or {})
    order = _sequential_order(lanes, needs)
    if not at_once:
        results = {item: step(item) for item in order}
        return [results[item] for lane in lanes for item in lane]

    ended = {item: threading.Event() for lane in lanes for item in lane}
    succeeded: set[T] = set()

    def run(lane: Sequence[T]) -> list[R]:
        results = []
        try:
            for item in lane:
                for need in needs[item]:
                    ended[need].wait()
                if not needs[item] <= succeeded:
                    break  # what it waits for failed or never ran: the failure is raised there
                results.append(step(item))
                succeeded.add(item)
                ended[item].set()
            return results
        finally:
            for item in lane:  # also those never run: nothing waits for them forever
                ended[item].set()

    # Each lane runs in a copy of the caller's context, so its tasks belong to the flow run
    # (as those of Prefect's own thread pool task runner do).
    with ThreadPoolExecutor(
        max_workers=max(len(lanes), 1), thread_name_prefix=LANE_THREAD_PREFIX
    ) as pool:
        futures = [pool.submit(contextvars.copy_context().run, run, lane) for lane in lanes]
    return [result for future in futures for result in future.result()]


def _sequential_order(lanes: Sequence[Sequence[T]], needs: Mapping[T, set[T]]) -> list[T]:
    """The items one at a time: each time, the next item of the first lane whose next item
    waits for nothing still to come."""
    heads = [0] * len(lanes)
    done: set[T] = set()
    order: list[T] = []
    while len(order) < sum(len(lane) for lane in lanes):
        for number, lane in enumerate(lanes):
            if heads[number] < len(lane) and needs[lane[heads[number]]] <= done:
                item = lane[heads[number]]
                heads[number] += 1
                done.add(item)
                order.append(item)
                break
        else:
            raise ValueError(f"lane items wait for each other in a circle: {lanes}")
    return order


def _needs(lanes: Sequence[Sequence[T]], after: Mapping[T, Collection[T]]) -> dict[T, set[T]]:
    """What each item of the lanes waits for, among the items of the lanes."""
    items = {item for lane in lanes for item in lane}
    return {item: set(after.get(item, ())) & items for item in items}
