"""The warehouse load survives a PostgreSQL connection cut at every step (issue 14).

A `CuttingPostgresProxy` sits between `Warehouse` and the real server and kills the connection
at one statement of `Warehouse.upsert_months`: while staging, at the DELETE, at the INSERT, just
before COMMIT, and after COMMIT ran but before its reply arrived (the ambiguous case). The load is
then retried as the load task retries it (any error that is not a `PipelineError`, same months,
same rows, a new ``_loaded_at``), and the table must end exactly as after a clean load: same
rows, no month missing or doubled, ``_loaded_at`` only moving forward.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from ecom_pipeline.errors import PipelineError
from ecom_pipeline.gold.tables import DAILY_REVENUE, LOADED_AT, MONTH
from ecom_pipeline.warehouse.engine import Warehouse
from tests.chaos.pg_proxy import Cut, CuttingPostgresProxy, CutWhen
from tests.warehouse.test_warehouse import revenue_rows, sorted_rows

pytestmark = pytest.mark.chaos

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
#: Before: October and November. The load replaces November (corrected) and adds December.
BEFORE = pa.concat_tables([revenue_rows("2026-10"), revenue_rows("2026-11", days=4)])
LOAD = pa.concat_tables([revenue_rows("2026-11", days=3, bump=5), revenue_rows("2026-12")])
LOAD_MONTHS = ["2026-11", "2026-12"]
MAX_ATTEMPTS = 4  # the task's first try and its 3 retries

#: Every step of a load at which a connection can die, as (statement, where to cut).
CUT_POINTS: list[tuple[str, str, CutWhen]] = [
    ("create-staging", r"^CREATE TEMP TABLE", "before"),
    ("mid-copy", r"^COPY ", "after"),
    ("staging-check", r"^SELECT COUNT\(\*\)", "reply"),
    ("delete", r"^DELETE FROM", "before"),
    ("delete-reply", r"^DELETE FROM", "reply"),
    ("insert", r"^INSERT INTO", "before"),
    ("insert-reply", r"^INSERT INTO", "reply"),
    ("before-commit", r"^COMMIT", "before"),
    ("commit-reply-lost", r"^COMMIT", "reply"),
]


def load_with_retries(load: Callable[[], object]) -> int:
    """Run ``load`` as the load task does: retry anything but a `PipelineError`; attempts used."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            load()
        except PipelineError:
            raise
        except Exception:
            if attempt == MAX_ATTEMPTS:
                raise
            continue
        return attempt
    raise AssertionError("unreachable")


def clean_result(postgres_url: str, schema: str) -> pa.Table:
    """The table after the same two loads with no fault."""
    with Warehouse(postgres_url, schema) as clean:
        clean.upsert_months(DAILY_REVENUE, BEFORE, ["2026-10", "2026-11"], loaded_at=T0)
        clean.upsert_months(DAILY_REVENUE, LOAD, LOAD_MONTHS)
        return clean.read_table(DAILY_REVENUE)


def assert_same_as_clean(stored: pa.Table, clean: pa.Table, started: datetime) -> None:
    gold = stored.drop_columns([LOADED_AT])
    assert gold.equals(clean.drop_columns([LOADED_AT])), "rows differ from a clean load"
    assert gold.equals(sorted_rows(pa.concat_tables([revenue_rows("2026-10"), LOAD])))
    per_month = pc.value_counts(stored[MONTH]).to_pylist()
    expected = pc.value_counts(clean[MONTH]).to_pylist()
    assert sorted(per_month, key=str) == sorted(expected, key=str), "a month missing or doubled"
    october = stored.filter(pc.equal(stored[MONTH], "2026-10"))
    loaded = stored.filter(pc.not_equal(stored[MONTH], "2026-10"))
    assert set(october[LOADED_AT].to_pylist()) == {T0}, "an untouched month was rewritten"
    stamps = set(loaded[LOADED_AT].to_pylist())
    assert len(stamps) == 1, "the loaded months come from more than one load"
    assert min(stamps) >= started > T0, "_loaded_at went backwards"


@pytest.mark.parametrize(("name", "pattern", "when"), CUT_POINTS, ids=[c[0] for c in CUT_POINTS])
def test_cut_at_each_step_then_retry_equals_a_clean_load(
    name: str,
    pattern: str,
    when: CutWhen,
    postgres_url: str,
    pg_schema: str,
    clean_schema: str,
    fault_tally: dict[str, int],
) -> None:
    clean = clean_result(postgres_url, clean_schema)
    # One long-lived adapter, as a worst case: the task opens a new one per attempt.
    with CuttingPostgresProxy() as proxy, Warehouse(proxy.url(postgres_url), pg_schema) as wh:
        wh.upsert_months(DAILY_REVENUE, BEFORE, ["2026-10", "2026-11"], loaded_at=T0)
        cut = proxy.add(Cut(pattern, when))
        started = datetime.now(UTC)

        attempts = load_with_retries(lambda: wh.upsert_months(DAILY_REVENUE, LOAD, LOAD_MONTHS))

        stored = wh.read_table(DAILY_REVENUE)
    assert cut.fired == 1, f"the cut at {name} never fired: {proxy.statements[-5:]}"
    assert attempts == 2, "one cut should cost exactly one retry"
    assert_same_as_clean(stored, clean, started)
    lost = clean.num_rows - stored.num_rows
    fault_tally.update(faults_injected=cut.fired, survived=cut.fired, rows_lost=lost)


def test_every_connection_dropped_while_idle_costs_no_attempt(
    postgres_url: str, pg_schema: str, clean_schema: str, fault_tally: dict[str, int]
) -> None:
    """A pooled connection killed while idle (server restart, NAT timeout, failover) is noticed
    when it is checked out, not by failing the next load."""
    clean = clean_result(postgres_url, clean_schema)
    with CuttingPostgresProxy() as proxy, Warehouse(proxy.url(postgres_url), pg_schema) as wh:
        wh.upsert_months(DAILY_REVENUE, BEFORE, ["2026-10", "2026-11"], loaded_at=T0)
        killed = proxy.kill_sessions()
        started = datetime.now(UTC)

        attempts = load_with_retries(lambda: wh.upsert_months(DAILY_REVENUE, LOAD, LOAD_MONTHS))

        stored = wh.read_table(DAILY_REVENUE)
    assert killed >= 1
    assert attempts == 1
    assert_same_as_clean(stored, clean, started)
    fault_tally.update(faults_injected=killed, survived=killed, rows_lost=0)


def test_a_cut_at_every_attempt_fails_loudly_and_changes_nothing(
    postgres_url: str, pg_schema: str
) -> None:
    with CuttingPostgresProxy() as proxy, Warehouse(proxy.url(postgres_url), pg_schema) as wh:
        wh.upsert_months(DAILY_REVENUE, BEFORE, ["2026-10", "2026-11"], loaded_at=T0)
        proxy.add(Cut(r"^COMMIT", "before", times=MAX_ATTEMPTS))

        with pytest.raises(sa.exc.OperationalError):
            load_with_retries(lambda: wh.upsert_months(DAILY_REVENUE, LOAD, LOAD_MONTHS))

        stored = wh.read_table(DAILY_REVENUE)
    assert stored.drop_columns([LOADED_AT]).equals(sorted_rows(BEFORE))
    assert set(stored[LOADED_AT].to_pylist()) == {T0}


def test_a_commit_whose_reply_was_lost_did_commit_and_its_retry_only_moves_loaded_at(
    postgres_url: str, pg_schema: str
) -> None:
    """The ambiguous case: the client sees an error, the server has committed. The retry
    replaces the same months with the same rows, so the table is right either way, and
    ``_loaded_at`` moves forward."""
    with CuttingPostgresProxy() as proxy, Warehouse(proxy.url(postgres_url), pg_schema) as wh:
        wh.upsert_months(DAILY_REVENUE, BEFORE, ["2026-10", "2026-11"], loaded_at=T0)
        proxy.add(Cut(r"^COMMIT", "reply"))
        first_stamp = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)

        with pytest.raises(sa.exc.OperationalError):
            wh.upsert_months(DAILY_REVENUE, LOAD, LOAD_MONTHS, loaded_at=first_stamp)

        with Warehouse(postgres_url, pg_schema) as direct:
            committed = direct.read_table(DAILY_REVENUE)
        expected = sorted_rows(pa.concat_tables([revenue_rows("2026-10"), LOAD]))
        assert committed.drop_columns([LOADED_AT]).equals(expected), "the commit did not happen"
        loaded = committed.filter(pc.not_equal(committed[MONTH], "2026-10"))
        assert set(loaded[LOADED_AT].to_pylist()) == {first_stamp}

        retry_stamp = datetime.now(UTC)
        wh.upsert_months(DAILY_REVENUE, LOAD, LOAD_MONTHS, loaded_at=retry_stamp)
        stored = wh.read_table(DAILY_REVENUE)
    assert stored.drop_columns([LOADED_AT]).equals(expected)
    loaded = stored.filter(pc.not_equal(stored[MONTH], "2026-10"))
    assert set(loaded[LOADED_AT].to_pylist()) == {retry_stamp}
    assert retry_stamp > first_stamp
