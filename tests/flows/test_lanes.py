"""`run_lanes`: lanes side by side or one after another, results and failures in lane order."""

from __future__ import annotations

import threading
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
