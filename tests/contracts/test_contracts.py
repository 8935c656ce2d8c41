"""The vectorised date and timestamp parsers agree with Python's calendar, value by value."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ecom_pipeline.contracts.rules import TIMESTAMP_PATTERN, parse_date, parse_timestamps


def reference_timestamp(text: str) -> datetime | None:
    """SPEC §3 read plainly: the ISO-8601 forms of the contract, a real instant, else None."""
    match = re.fullmatch(TIMESTAMP_PATTERN, text)
    if match is None:
        return None
    day, hour, minute, second, fraction, offset = match.groups()
    try:
        local = datetime(
            int(day[:4]),
            int(day[5:7]),
            int(day[8:10]),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
        )
    except ValueError:
        return None
    minutes = 0
    if offset and offset != "Z":
        digits = offset[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:])
        if minutes >= 24 * 60:
            return None
        minutes = -minutes if offset[0] == "-" else minutes
    return (local - timedelta(minutes=minutes)).replace(tzinfo=UTC)


def two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


timestamps = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off: f"{y:04d}-{mo}-{d}{sep}{h}:{mi}{s}{frac}{off}",
    st.integers(1900, 2100),
    two(0, 13),
    two(0, 32),
    st.sampled_from(["T", " ", "t"]),
    two(0, 24),
    two(0, 60),
    st.one_of(st.just(""), two(0, 60).map(lambda s: ":" + s)),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,9}", fullmatch=True)),
    st.one_of(
        st.sampled_from(["", "Z", "z"]),
        st.builds(
            lambda sign, h, colon, m: f"{sign}{h}{colon}{m}",
            st.sampled_from("+-"),
            two(0, 25),
            st.sampled_from(["", ":"]),
            two(0, 59),
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(timestamps, st.text(max_size=25)), min_size=1, max_size=40))
def test_timestamps_parse_as_python_reads_them(texts: list[str]) -> None:
    parsed = parse_timestamps(pl.Series("t", texts, dtype=pl.String)).to_list()
    assert parsed == [reference_timestamp(text) for text in texts]


def reference_date(text: str) -> date | None:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


dates = st.builds(lambda y, m, d: f"{y:04d}-{m}-{d}", st.integers(1, 9999), two(0, 13), two(0, 32))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(dates, st.text(max_size=12)), min_size=1, max_size=40))
def test_dates_parse_as_python_reads_them(texts: list[str]) -> None:
    frame = pl.DataFrame({"d": texts}, schema={"d": pl.String})
    parsed = frame.select(parse_date(pl.col("d"))).to_series().to_list()
    assert parsed == [reference_date(text) for text in texts]
