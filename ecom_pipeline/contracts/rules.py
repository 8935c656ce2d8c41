"""pandera contracts of the four source datasets (SPEC §3), one line per column.

The contracts run with pandera's polars backend over whole blocks of a file. They judge the
text of each value, before any conversion, so a failure names the exact value the file holds;
dates, timestamps, integers and decimals are parsed once (`with_parsed`) beside their text, and
the checks and the typed silver rows both use that one parse. Each check is named after the rule
it enforces; these names are the ``rule`` of a quarantined row. A check that needs a well-formed
value (a range, the number of decimals) passes values the format check already rejects, so one
bad value gives one reason. Every check is row-wise (see `passes_every_rule`).

Digits are ASCII digits only: ``\\d`` would also accept other scripts' digits (``٢٠٢٦``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import pandera.polars as pandera
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pandera.api.polars.types import PolarsData

from ecom_pipeline.contracts.datasets import (
    ORDER_STATUSES,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    REGIONS,
    Dataset,
    DatasetSpec,
)

MAX_TEXT_LENGTH = 256
DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
#: Groups: date, hour, minute, second, fraction, offset (``Z``, ``±HH:MM`` or ``±HHMM``).
TIMESTAMP_PATTERN = (
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:?[0-9]{2})?"
)
#: The form nearly every exporter writes, parsed fast.
USUAL_TIMESTAMP_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z"
DECIMAL_PATTERN = r"[+-]?[0-9]{1,16}(?:\.[0-9]+)?"
INTEGER_PATTERN = r"[+-]?[0-9]{1,9}"
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+\.[^@\s]+"

#: No business date lies before this day: older values are typos or placeholders (0000-01-01).
EARLIEST_DATE = date(2000, 1, 1)
#: Hire dates go further back: an employee aged 100 today was hired at 18 around 1944.
EARLIEST_HIRE_DATE = date(1940, 1, 1)
#: A timestamp may lie up to the end of the day after the file's day (exports run after
#: midnight, and offsets shift the UTC day), never later.
TIMESTAMP_SLACK = timedelta(days=2)

#: Rules that check a value's type; when every value of a column fails one, the column's type
#: changed upstream and the whole file is rejected rather than quarantined row by row.
FORMAT_RULES = frozenset({"is_date", "is_timestamp", "is_decimal", "is_integer"})

#: Suffix of the column holding a column's parsed value beside its text.
_PARSED = "::parsed"

TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")


def parsed_name(column: str) -> str:
    """Name of the column that holds ``column``'s parsed value (see `with_parsed`)."""
    return column + _PARSED


def _fullmatch(text: pl.Expr, pattern: str) -> pl.Expr:
    return text.str.contains(f"^(?:{pattern})$")


def parse_date(text: pl.Expr) -> pl.Expr:
    """A real calendar date written ``YYYY-MM-DD``, else null."""
    parsed = text.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    return pl.when(_fullmatch(text, DATE_PATTERN)).then(parsed)


def parse_timestamps(text: pl.Series) -> pl.Series:
    """ISO-8601 timestamps as UTC instants (no offset means UTC, SPEC §3), else null.

    The usual form (``2026-11-20T10:00:00Z``) goes through Arrow's strict ISO cast, four times
    faster than the general parse that takes every other form."""
    usual = text.str.contains(f"^{USUAL_TIMESTAMP_PATTERN}$").fill_null(False)
    result = pl.repeat(None, len(text), dtype=TIMESTAMP_DTYPE, eager=True).alias(text.name)
    for rows, parse in ((usual, _cast_usual), (~usual & text.is_not_null(), _parse_any)):
        if rows.any():
            result = result.scatter(rows.arg_true(), parse(text.filter(rows)))
    return result


def _cast_usual(text: pl.Series) -> pl.Series:
    try:
        parsed = pc.cast(text.to_arrow().cast(pa.string()), pa.timestamp("us", "UTC"))
    except pa.ArrowInvalid:  # an impossible day or time among them: judge each value
        return _parse_any(text)
    return pl.Series(text.name, parsed)


def _parse_any(text: pl.Series) -> pl.Series:
    return text.to_frame("text").select(_parse_timestamp(pl.col("text"))).to_series()


def _parse_timestamp(text: pl.Expr) -> pl.Expr:
    """The general parse of `parse_timestamps`; fractions finer than a microsecond are
    truncated (silver keeps microseconds)."""
    parts = text.str.extract_groups(f"^{TIMESTAMP_PATTERN}$")
    day, hour, minute = parts.struct.field("1"), parts.struct.field("2"), parts.struct.field("3")
    second = parts.struct.field("4").fill_null("00")
    fraction = (
        parts.struct.field("5").str.pad_end(6, "0").str.slice(0, 6).cast(pl.Int64, strict=False)
    )
    offset = parts.struct.field("6").str.replace(":", "", literal=True)
    offset_minutes = (
        pl.when(offset == "Z")
        .then(0)
        .otherwise(
            offset.str.slice(1, 2).cast(pl.Int64, strict=False) * 60
            + offset.str.slice(3, 2).cast(pl.Int64, strict=False)
        )
    )
    signed = pl.when(offset.str.starts_with("-")).then(-offset_minutes).otherwise(offset_minutes)
    naive = pl.concat_str([day, pl.lit(" "), hour, pl.lit(":"), minute, pl.lit(":"), second])
    local = naive.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
    instant = (
        local
        + pl.duration(microseconds=fraction.fill_null(0))
        - pl.duration(minutes=signed.fill_null(0))
    ).dt.replace_time_zone("UTC")
    # chrono reads second 60 as a leap second; offsets stop at ±23:59
    plausible = (second.cast(pl.Int64, strict=False) <= 59) & (
        offset_minutes.fill_null(0) < 24 * 60
    )
    return pl.when(plausible).then(instant)


def parse_integer(text: pl.Expr) -> pl.Expr:
    return pl.when(_fullmatch(text, INTEGER_PATTERN)).then(text.cast(pl.Int64, strict=False))


def well_formed_decimal(text: pl.Expr) -> pl.Expr:
    """The text of a well-formed decimal, else null (converted exactly once valid)."""
    return pl.when(_fullmatch(text, DECIMAL_PATTERN)).then(text)


_PARSERS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "date": parse_date,
    "integer": parse_integer,
    "decimal": well_formed_decimal,
}


def with_parsed(frame: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """The frame of text columns with, beside each date, timestamp, integer and decimal column,
    its parsed value (null where the text is not one; a decimal stays text): the frame the
    contract validates."""
    return frame.with_columns(
        *(
            _PARSERS[column.kind](pl.col(column.name)).alias(parsed_name(column.name))
            for column in spec.columns
            if column.kind in _PARSERS
        ),
        *(
            parse_timestamps(frame.get_column(column.name)).alias(parsed_name(column.name))
            for column in spec.columns
            if column.kind == "timestamp"
        ),
    )


#: A rule over a column: (its text, its parsed value) → passes (null passes too).
Rule = Callable[[pl.Expr, pl.Expr], pl.Expr]


def _run(data: PolarsData, *, rule: Rule) -> pl.LazyFrame:
    return data.lazyframe.select(rule(pl.col(data.key), pl.col(parsed_name(data.key))))


def _check(name: str, rule: Rule, meaning: str) -> pandera.Check:
    """A named row-wise check; failures report the name, ``meaning`` describes the rule.

    The rule is also the check's ``statistics["rule"]``, for `passes_every_rule`."""
    return pandera.Check(_run, name=name, description=meaning, rule=rule)


def passes_every_rule(schema: pandera.DataFrameSchema) -> pl.Expr:
    """Per row: true when the row breaks none of the schema's rules (its non-nullable columns
    and every check), as one expression that polars evaluates in one parallel pass.

    Every check of these contracts judges a value on its own row, so the rows this marks as
    failing are exactly the rows for which the schema reports failure cases.
    """
    tests = []
    for name, column in schema.columns.items():
        if not column.nullable:
            tests.append(pl.col(name).is_not_null())
        for check in column.checks:
            rule: Rule = check.statistics["rule"]
            # a null outcome passes, as in pandera (``ignore_na``)
            tests.append(rule(pl.col(name), pl.col(parsed_name(name))).fill_null(True))
    return pl.all_horizontal(tests)


def _max_length() -> pandera.Check:
    return _check(
        "max_length",
        lambda text, _: text.str.len_chars() <= MAX_TEXT_LENGTH,
        f"at most {MAX_TEXT_LENGTH} characters",
    )


def required_text() -> pandera.Column:
    return pandera.Column(nullable=False, checks=[_max_length()])


def one_of(values: tuple[str, ...]) -> pandera.Column:
    allowed = ", ".join(values)
    return pandera.Column(
        nullable=False,
        checks=[_check("one_of", lambda text, _: text.is_in(values), f"one of {allowed}")],
    )


def email() -> pandera.Column:
    return pandera.Column(
        nullable=False,
        checks=[
            _check("is_email", lambda text, _: _fullmatch(text, EMAIL_PATTERN), "an e-mail"),
            _max_length(),
        ],
    )


def _range_checks(earliest: date, latest: date, what: str) -> list[pandera.Check]:
    return [
        _check("not_too_old", lambda _, value: value >= earliest, f"{what} {earliest} or later"),
        _check("not_in_future", lambda _, value: value <= latest, f"{what} {latest} or earlier"),
    ]


def a_date(file_day: date, *, earliest: date = EARLIEST_DATE) -> pandera.Column:
    """A real calendar date from ``earliest`` up to the file's day."""
    return pandera.Column(
        nullable=False,
        checks=[
            _check("is_date", lambda text, value: text.is_null() | value.is_not_null(), "a date"),
            *_range_checks(earliest, file_day, "on"),
        ],
    )


def a_timestamp(file_day: date) -> pandera.Column:
    """An ISO-8601 instant from `EARLIEST_DATE` to the end of the day after the file's day."""
    earliest = datetime.combine(EARLIEST_DATE, time(), tzinfo=UTC)
    latest = datetime.combine(file_day + TIMESTAMP_SLACK, time(), tzinfo=UTC) - timedelta(
        microseconds=1
    )
    return pandera.Column(
        nullable=False,
        checks=[
            _check(
                "is_timestamp",
                lambda text, value: text.is_null() | value.is_not_null(),
                "an ISO-8601 timestamp",
            ),
            *_range_checks(earliest, latest, "at"),
        ],
    )


def an_amount(*, inclusive: bool = True) -> pandera.Column:
    """A decimal amount with at most 2 places, ≥ 0 (``inclusive``) or > 0.

    Decimals and sign are read from the well-formed text (a leading ``-``; zero is nothing but
    signs, zeros and the point), which is exact and much faster than converting a million
    values to numbers, or than more regular expressions.
    """

    def two_decimals(text: pl.Expr) -> pl.Expr:
        point = text.str.find(".", literal=True)
        return point.is_null() | (text.str.len_bytes() - point <= 3)

    def in_range(text: pl.Expr) -> pl.Expr:
        zero = text.str.strip_chars("+-0.") == ""
        negative = text.str.starts_with("-") & ~zero
        return ~negative if inclusive else ~negative & ~zero

    rule, meaning = ("non_negative", "≥ 0") if inclusive else ("positive", "> 0")
    return pandera.Column(
        nullable=False,
        checks=[
            _check(
                "is_decimal",
                lambda text, formed: text.is_null() | formed.is_not_null(),
                "a decimal",
            ),
            _check("max_2_decimals", lambda _, formed: two_decimals(formed), "at most 2 decimals"),
            _check(rule, lambda _, formed: in_range(formed), meaning),
        ],
    )


def an_integer(*, minimum: int, maximum: int) -> pandera.Column:
    return pandera.Column(
        nullable=False,
        checks=[
            _check(
                "is_integer", lambda text, value: text.is_null() | value.is_not_null(), "an integer"
            ),
            _check(
                "in_range",
                lambda _, value: value.is_between(minimum, maximum),
                f"between {minimum} and {maximum}",
            ),
        ],
    )


@functools.lru_cache(maxsize=64)
def contract(dataset: Dataset, file_day: date) -> pandera.DataFrameSchema:
    """The contract of one dataset for a file delivered under ``dt=file_day``.

    It validates a frame of the dataset's text columns plus `parsed_columns`. Dates may not lie
    after the file's day (an export cannot hold tomorrow's orders) nor before `EARLIEST_DATE`.
    """
    columns: dict[Dataset, dict[str, pandera.Column]] = {
        Dataset.ORDERS: {
            "order_id": required_text(),
            "customer_id": required_text(),
            "order_date": a_date(file_day),
            "order_status": one_of(ORDER_STATUSES),
            "total_amount": an_amount(),
            "updated_at": a_timestamp(file_day),
        },
        Dataset.CUSTOMERS: {
            "customer_id": required_text(),
            "first_name": required_text(),
            "last_name": required_text(),
            "email": email(),
            "customer_region": one_of(REGIONS),
            "signup_date": a_date(file_day),
            "updated_at": a_timestamp(file_day),
        },
        Dataset.PAYMENTS: {
            "payment_id": required_text(),
            "order_id": required_text(),
            "payment_date": a_date(file_day),
            "payment_method": one_of(PAYMENT_METHODS),
            "payment_status": one_of(PAYMENT_STATUSES),
            "amount": an_amount(),
            "updated_at": a_timestamp(file_day),
        },
        Dataset.EMPLOYEES: {
            "first_name": required_text(),
            "last_name": required_text(),
            "age": an_integer(minimum=18, maximum=100),
            "department": required_text(),
            "job_title": required_text(),
            "hire_date": a_date(file_day, earliest=EARLIEST_HIRE_DATE),
            "salary": an_amount(inclusive=False),
        },
    }
    return pandera.DataFrameSchema(columns[dataset], name=str(dataset), strict=False, coerce=False)
