"""`run_lanes`: lanes side by side or one after another, results and failures in lane order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from flows.lanes import run_lanes

LANES = [["customers", "orders"], ["payments", "employees"]]


@pytest.mark.parametrize("at_once", [True, False])
def test_results_come_in_lane_order(at_once: bool) -> None:
    assert run_lanes(str.upper, LANES, at_once=at_once) == [
        "CUSTOMERS",
        "ORDERS",
        "PAYMENTS",
        "EMPLOYEES",
    ]


def test_at_once_the_lanes_overlap_and_each_keeps_its_order() -> None:
    both_started = threading.Barrier(2, timeout=10)  # broken unless both lanes run together
    done: list[str] = []

    def step(item: str) -> str:
        if item in ("customers", "payments"):
            both_started.wait()
        done.append(item)
        return item

    run_lanes(step, LANES, at_once=True)
    assert done.index("customers") < done.index("orders")
    assert done.index("payments") < done.index("employees")


def failing_at(failure: str, done: list[str]) -> Callable[[str], str]:
    """A step that fails on ``failure`` and notes every other item in ``done``."""

    def step(item: str) -> str:
        if item == failure:
            raise ValueError(f"{item} failed")
        done.append(item)
        return item

    return step


def test_a_failed_lane_stops_there_while_the_other_runs_to_its_end() -> None:
    done: list[str] = []
    with pytest.raises(ValueError, match="customers failed"):
        run_lanes(failing_at("customers", done), LANES, at_once=True)
    assert sorted(done) == ["employees", "payments"]


def test_one_at_a_time_a_failure_stops_everything_after_it() -> None:
    done: list[str] = []
    with pytest.raises(ValueError, match="orders failed"):
        run_lanes(failing_at("orders", done), LANES, at_once=False)
    assert done == ["customers"]


def test_the_first_failure_in_lane_order_is_raised() -> None:
    def step(item: str) -> str:
        if item in ("orders", "payments"):
            raise ValueError(f"{item} failed")
        return item

    with pytest.raises(ValueError, match="orders failed"):
        run_lanes(step, LANES, at_once=True)


# A day's shape: orders are validated beside customers, and merged after them.
STEPS = [["validate-c", "merge-c", "validate-p"], ["validate-o", "merge-o"]]
AFTER = {"merge-c": ["validate-c"], "merge-o": ["validate-o", "merge-c"]}


@pytest.mark.parametrize("at_once", [True, False])
def test_an_item_waits_for_what_it_comes_after_in_another_lane(at_once: bool) -> None:
    done: list[str] = []

    def step(item: str) -> str:
        if item == "merge-c":
            time.sleep(0.2)  # the other lane reaches merge-o long before
        done.append(item)
        return item

    results = run_lanes(step, STEPS, after=AFTER, at_once=at_once)
    assert results == ["validate-c", "merge-c", "validate-p", "validate-o", "merge-o"]
    assert done.index("merge-c") < done.index("merge-o")
    if not at_once:  # one at a time: the first lane until it would wait, then the other
        assert done == ["validate-c", "merge-c", "validate-p", "validate-o", "merge-o"]


@pytest.mark.parametrize("at_once", [True, False])
def test_what_comes_after_a_failure_in_another_lane_does_not_run(at_once: bool) -> None:
    done: list[str] = []
    with pytest.raises(ValueError, match="merge-c failed"):
        run_lanes(failing_at("merge-c", done), STEPS, after=AFTER, at_once=at_once)
    assert "merge-o" not in done
    if at_once:  # the failed lane stops; the waiting one stops at what waits
        assert sorted(done) == ["validate-c", "validate-o"]


def test_items_waiting_for_each_other_in_a_circle_are_refused() -> None:
    with pytest.raises(ValueError, match="circle"):
        run_lanes(str.upper, [["a", "b"], ["c"]], after={"a": ["c"], "c": ["b"]}, at_once=True)


def test_what_it_waits_for_outside_the_lanes_is_ignored() -> None:
    assert run_lanes(str.upper, [["merge-o"]], after=AFTER, at_once=True) == ["MERGE-O"]
