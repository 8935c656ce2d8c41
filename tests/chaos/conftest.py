"""Fixtures of the fault-injection suite: a second warehouse schema, fault tallies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa


@pytest.fixture
def clean_schema(postgres_url: str) -> Iterator[str]:
    """A second schema, for the clean run a faulty one is compared with; dropped afterwards."""
    name = f"clean_{uuid.uuid4().hex[:10]}"
    yield name
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture
def fault_tally(request: pytest.FixtureRequest) -> Iterator[dict[str, int]]:
    """Counts a test fills in (faults injected, survived, rows lost); listed under "chaos
    figures" at the end of every run (see ``pytest_terminal_summary`` in tests/conftest.py)."""
    tally: dict[str, int] = {}
    yield tally
    if tally:
        figures = ", ".join(f"{key}={value}" for key, value in sorted(tally.items()))
        request.node.user_properties.append(("chaos", figures))
