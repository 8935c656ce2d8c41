"""The two CSV paths (Arrow for plain files, Python's csv for quoted ones) agree exactly."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecom_pipeline.contracts.csv_reader import (
    _read_quoted,
    _read_unquoted,
    iter_records,
    read_records,
)
from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.errors import BadFileError

ORDERS = SPECS[Dataset.ORDERS]
HEADER = "order_id,customer_id,order_date,order_status,total_amount,updated_at"

values = st.text(alphabet="abcXYZ019 .-:é", max_size=6)
lines = st.one_of(
    st.lists(values, min_size=6, max_size=6).map(",".join),  # a well-formed record
    st.lists(values, min_size=1, max_size=9).map(",".join),  # often ragged
    st.just(""),  # a blank line
)


def as_dict(records) -> dict:
    return {
        "rows": [list(row.values()) for row in records.table.to_pylist()],
        "ragged": records.ragged,
        "dropped": records.dropped_columns,
    }


@settings(max_examples=150, deadline=None)
@given(
    body=st.lists(lines, min_size=1, max_size=12),
    ending=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    extra_column=st.booleans(),
)
def test_the_fast_path_gives_what_the_exact_parser_gives(
    body: list[str], ending: str, final_newline: bool, extra_column: bool
) -> None:
    header = HEADER + (",coupon" if extra_column else "")
    if extra_column:
        body = [line + ",x" if line.count(",") == 5 else line for line in body]
    if not any(line for line in body):
        body = [*body, "O1,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00Z"]
    text = ending.join([header, *body]) + (ending if final_newline else "")
    data = text.encode("utf-8")
    fast = _read_unquoted("f.csv", data, ORDERS)
    exact = _read_quoted("f.csv", text, ORDERS)
    assert as_dict(fast) == as_dict(exact)


def test_quoted_files_take_the_exact_path_and_keep_line_numbers() -> None:
    data = (HEADER + '\n"O,1","C\n2",2026-11-20,placed,1.00,x\nO2,C1,d,placed,1.00,x\n').encode()
    records = read_records("f.csv", data, ORDERS)
    assert records.table.column("order_id").to_pylist() == ["O,1", "O2"]
    assert records.table.column("_source_line").to_pylist() == [2, 4]


@settings(max_examples=100, deadline=None)
@given(
    body=st.lists(lines, min_size=1, max_size=30),
    quoted_at=st.one_of(st.none(), st.integers(min_value=0, max_value=29)),
    block_bytes=st.integers(min_value=1, max_value=200),
)
def test_reading_in_blocks_gives_what_reading_whole_gives(
    body: list[str], quoted_at: int | None, block_bytes: int
) -> None:
    """Blocks cut anywhere, and a switch to the exact path mid-file, change nothing."""
    if quoted_at is not None and quoted_at < len(body):
        body[quoted_at] = '"O,9","C\n9",2026-11-20,placed,1.00,x'
    if not any(line for line in body):
        body = [*body, "O1,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00Z"]
    data = "\n".join([HEADER, *body, ""]).encode("utf-8")
    whole = read_records("f.csv", data, ORDERS)
    batches = list(iter_records("f.csv", io.BytesIO(data), ORDERS, block_bytes=block_bytes))
    joined = {
        "rows": [row for b in batches for row in as_dict(b)["rows"]],
        "ragged": [r for b in batches for r in b.ragged],
        "dropped": batches[0].dropped_columns,
    }
    assert joined == as_dict(whole)


def test_a_bad_byte_in_a_later_block_is_reported_at_its_file_line() -> None:
    good = "O1,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00Z\n"
    data = (HEADER + "\n" + good * 50).encode() + b"O2,C\xff,x,x,x,x\n"
    with pytest.raises(BadFileError) as caught:
        list(iter_records("f.csv", io.BytesIO(data), ORDERS, block_bytes=64))
    assert caught.value.line == 52
