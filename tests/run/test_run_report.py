"""The run manifest stays bounded and its names stay on one line."""

from __future__ import annotations

from ecom_pipeline.run.report import (
    DROPPED_COLUMN_NAME_CHARS,
    DROPPED_COLUMNS_LISTED,
    capped_columns,
)


def test_a_header_of_many_unknown_columns_is_listed_capped() -> None:
    names = [f"extra_{i}" for i in range(100_000)]
    listed = capped_columns(names)
    assert listed[:DROPPED_COLUMNS_LISTED] == names[:DROPPED_COLUMNS_LISTED]
    assert listed[-1] == f"… and {100_000 - DROPPED_COLUMNS_LISTED} more"
    assert len(listed) == DROPPED_COLUMNS_LISTED + 1


def test_long_and_multi_line_column_names_are_cut_and_escaped() -> None:
    [long, forged] = capped_columns(["x" * 10_000, "a\nERROR | forged line"])
    assert long == "x" * DROPPED_COLUMN_NAME_CHARS + "…"
    assert forged == "a\\nERROR | forged line"
    assert capped_columns(["a", "b"]) == ["a", "b"]
