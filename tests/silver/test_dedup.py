"""The duplicate rule (SPEC §3): any shuffle or split of the same versions gives the same rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ecom_pipeline.contracts.datasets import SPECS, Dataset, validated_schema
from ecom_pipeline.silver.dedup import latest_per_key, precedence_columns, winners_mask
from ecom_pipeline.silver.incoming import IncomingRows, with_accounted, working_schema

ORDERS = SPECS[Dataset.ORDERS]
EMPLOYEES = SPECS[Dataset.EMPLOYEES]
BASE = datetime(2026, 11, 1, tzinfo=UTC)
INGESTED = datetime(2026, 11, 21, tzinfo=UTC)


def order(key: str, minute: int, day: int, line: int, status: str = "placed") -> dict:
    return {
        "order_id": key,
        "customer_id": "C1",
        "order_date": (BASE + timedelta(days=day)).date(),
        "order_status": status,
        "total_amount": None,
        "updated_at": BASE + timedelta(minutes=minute),
        "_source_file": f"raw/orders/dt=2026-11-{day + 1:02d}/orders.csv",
        "_source_line": line,
        "_ingested_at": INGESTED,
        "_run_id": "r",
    }


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=validated_schema(ORDERS))


def survivors(rows: list[dict]) -> set[tuple]:
    result = latest_per_key(table(rows), ORDERS)
    return {(r["order_id"], r["_source_file"], r["_source_line"]) for r in result.to_pylist()}


def test_latest_updated_at_wins() -> None:
    rows = [order("A", 5, 0, 2), order("A", 9, 0, 3), order("A", 7, 0, 4)]
    assert survivors(rows) == {("A", "raw/orders/dt=2026-11-01/orders.csv", 3)}


def test_tie_goes_to_later_file_then_later_line() -> None:
    rows = [order("A", 5, 1, 2), order("A", 5, 0, 9), order("A", 5, 1, 7)]
    assert survivors(rows) == {("A", "raw/orders/dt=2026-11-02/orders.csv", 7)}


def test_an_older_version_delivered_later_never_wins() -> None:
    rows = [order("A", 50, 0, 2), order("A", 10, 5, 2)]  # day-6 file holds the older version
    assert survivors(rows) == {("A", "raw/orders/dt=2026-11-01/orders.csv", 2)}


def test_employees_keep_the_last_row_seen_per_composite_key() -> None:
    def employee(first: str, age: int, day: int, line: int) -> dict:
        return {
            "first_name": first,
            "last_name": "Park",
            "age": age,
            "department": "Sales",
            "job_title": f"Rep {day}-{line}",
            "hire_date": BASE.date(),
            "salary": None,
            "_source_file": f"raw/employees/dt=2026-11-{day + 1:02d}/e.csv",
            "_source_line": line,
            "_ingested_at": INGESTED,
            "_run_id": "r",
        }

    rows = [employee("Eve", 30, 1, 2), employee("Eve", 30, 0, 5), employee("Eve", 31, 0, 6)]
    result = latest_per_key(
        pa.Table.from_pylist(rows, schema=validated_schema(EMPLOYEES)), EMPLOYEES
    )
    assert sorted((r["age"], r["job_title"]) for r in result.to_pylist()) == [
        (30, "Rep 1-2"),
        (31, "Rep 0-6"),
    ]


versions = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C", "D"]),  # key
        st.integers(0, 5),  # updated_at minute: ties are likely
        st.integers(0, 3),  # delivery day
        st.integers(2, 6),  # line
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda v: (v[2], v[3]),  # one row per file line
)


@settings(max_examples=200, deadline=None)
@given(rows=versions, data=st.data())
def test_any_shuffle_or_split_gives_the_same_survivors(
    rows: list[tuple], data: st.DataObject
) -> None:
    records = [order(k, m, d, line) for k, m, d, line in rows]
    expected = survivors(records)

    shuffled = data.draw(st.permutations(records))
    assert survivors(shuffled) == expected

    # Split into batches processed one after another, each merged onto what came before:
    # the result must not depend on the order of the batches.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=4)))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    held: list[dict] = []
    for batch in batches:
        merged = latest_per_key(table(held + batch), ORDERS).to_pylist()
        held = merged
    assert {(r["order_id"], r["_source_file"], r["_source_line"]) for r in held} == expected
    assert len(held) == len({k for k, *_ in rows})


@settings(max_examples=100, deadline=None)
@given(rows=versions, data=st.data())
def test_the_key_columns_read_from_scratch_rank_source_files_like_the_rows_do(
    rows: list[tuple], data: st.DataObject
) -> None:
    """`IncomingRows.columns` hands the rule its source files dictionary-encoded, one
    dictionary per staged block (each in its own order): the survivors stay the same."""
    records = data.draw(st.permutations([order(k, m, d, line) for k, m, d, line in rows]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(records)), max_size=4)))
    blocks = [table(records[a:b]) for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    incoming = IncomingRows(
        working_schema(validated_schema(ORDERS)),
        lambda: [with_accounted(block, True) for block in blocks],
    )
    keys = incoming.columns([*ORDERS.key, *precedence_columns(ORDERS)])
    assert pa.types.is_dictionary(keys.schema.field("_source_file").type)
    won = winners_mask(keys, ORDERS).to_numpy(zero_copy_only=False)
    kept = [r for r, w in zip(records, won, strict=True) if w]
    assert {(r["order_id"], r["_source_file"], r["_source_line"]) for r in kept} == survivors(
        records
    )
