"""pandera contracts of the four source datasets (SPEC §3), one line per column.

The contracts run on the text of each value, before any conversion, so a failure names the exact
value the file holds. Each check is named after the rule it enforces; these names are the
``rule`` of a quarantined row. A check that needs a well-formed value (a range, the number of
decimals) passes values the format check already rejects, so one bad value gives one reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pandas as pd
import pandera.pandas as pa

from ecom_pipeline.datasets import (
    ORDER_STATUSES,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    REGIONS,
    Dataset,
)

MAX_TEXT_LENGTH = 256
DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"
TIMESTAMP_PATTERN = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?"
DECIMAL_PATTERN = r"[+-]?\d{1,16}(\.\d+)?"
TWO_DECIMALS_PATTERN = r"[+-]?\d{1,16}(\.\d{1,2})?"
INTEGER_PATTERN = r"[+-]?\d{1,9}"
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+\.[^@\s]+"

#: Rules that check a value's type; when every value of a column fails one, the column's type
#: changed upstream and the whole file is rejected rather than quarantined row by row.
FORMAT_RULES = frozenset({"is_date", "is_timestamp", "is_decimal", "is_integer"})


def parse_dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, format="%Y-%m-%d", errors="coerce")


def parse_timestamps(values: pd.Series) -> pd.Series:
    """ISO-8601; a value without an offset means UTC (SPEC §3)."""
    return pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")


def _matches(pattern: str) -> Callable[[pd.Series], pd.Series]:
    return lambda values: values.str.fullmatch(pattern).fillna(False).astype(bool)


def _well_formed_and(pattern: str, test: Callable[[pd.Series], pd.Series]) -> Callable:
    """A check that only judges values of the right format; the format check judges the rest."""

    def check(values: pd.Series) -> pd.Series:
        formed = _matches(pattern)(values)
        result = pd.Series(True, index=values.index)
        if formed.any():
            result[formed] = test(values[formed]).fillna(False).astype(bool)
        return result

    return check


def _check(name: str, function: Callable[[pd.Series], pd.Series], meaning: str) -> pa.Check:
    """A named vectorised check; failures report the name, ``meaning`` describes the rule."""
    return pa.Check(function, name=name, description=meaning)


def required_text() -> pa.Column:
    return pa.Column(
        nullable=False,
        checks=[
            _check(
                "max_length",
                lambda s: s.str.len() <= MAX_TEXT_LENGTH,
                f"at most {MAX_TEXT_LENGTH} characters",
            )
        ],
    )


def one_of(values: tuple[str, ...]) -> pa.Column:
    allowed = ", ".join(values)
    return pa.Column(
        nullable=False,
        checks=[_check("one_of", lambda s: s.isin(values), f"one of {allowed}")],
    )


def email() -> pa.Column:
    return pa.Column(
        nullable=False,
        checks=[
            _check("is_email", _matches(EMAIL_PATTERN), "an e-mail address"),
            _check("max_length", lambda s: s.str.len() <= MAX_TEXT_LENGTH, "at most 256 chars"),
        ],
    )


def a_date(*, not_after: date | None = None) -> pa.Column:
    checks = [
        _check("is_date", lambda s: _matches(DATE_PATTERN)(s) & parse_dates(s).notna(), "a date")
    ]
    if not_after is not None:
        limit = pd.Timestamp(not_after)
        checks.append(
            _check(
                "not_in_future",
                _well_formed_and(DATE_PATTERN, lambda s: ~(parse_dates(s) > limit)),
                f"on or before {not_after.isoformat()}",
            )
        )
    return pa.Column(nullable=False, checks=checks)


def a_timestamp() -> pa.Column:
    return pa.Column(
        nullable=False,
        checks=[
            _check(
                "is_timestamp",
                lambda s: _matches(TIMESTAMP_PATTERN)(s) & parse_timestamps(s).notna(),
                "an ISO-8601 timestamp",
            )
        ],
    )


def an_amount(*, inclusive: bool = True) -> pa.Column:
    """A decimal amount with at most 2 places, ≥ 0 (``inclusive``) or > 0.

    The sign is read from the text (a leading ``-``; zero is all zeros), which is exact and
    much faster than converting a million values to numbers.
    """

    def in_range(s: pd.Series) -> pd.Series:
        zero = s.str.fullmatch(r"[+-]?0*(\.0*)?")
        negative = s.str.startswith("-") & ~zero
        return ~negative if inclusive else ~negative & ~zero

    rule, text = ("non_negative", "≥ 0") if inclusive else ("positive", "> 0")
    return pa.Column(
        nullable=False,
        checks=[
            _check("is_decimal", _matches(DECIMAL_PATTERN), "a decimal number"),
            _check(
                "max_2_decimals",
                _well_formed_and(DECIMAL_PATTERN, _matches(TWO_DECIMALS_PATTERN)),
                "at most 2 decimals",
            ),
            _check(rule, _well_formed_and(DECIMAL_PATTERN, in_range), text),
        ],
    )


def an_integer(*, minimum: int, maximum: int) -> pa.Column:
    def in_range(s: pd.Series) -> pd.Series:
        numbers = pd.to_numeric(s, errors="coerce")
        return (numbers >= minimum) & (numbers <= maximum)

    return pa.Column(
        nullable=False,
        checks=[
            _check("is_integer", _matches(INTEGER_PATTERN), "an integer"),
            _check(
                "in_range",
                _well_formed_and(INTEGER_PATTERN, in_range),
                f"between {minimum} and {maximum}",
            ),
        ],
    )


def contract(dataset: Dataset, file_day: date) -> pa.DataFrameSchema:
    """The contract of one dataset for a file delivered under ``dt=file_day``.

    Dates may not lie after the file's day: an export cannot hold tomorrow's orders.
    """
    columns: dict[Dataset, dict[str, pa.Column]] = {
        Dataset.ORDERS: {
            "order_id": required_text(),
            "customer_id": required_text(),
            "order_date": a_date(not_after=file_day),
            "order_status": one_of(ORDER_STATUSES),
            "total_amount": an_amount(),
            "updated_at": a_timestamp(),
        },
        Dataset.CUSTOMERS: {
            "customer_id": required_text(),
            "first_name": required_text(),
            "last_name": required_text(),
            "email": email(),
            "customer_region": one_of(REGIONS),
            "signup_date": a_date(),
            "updated_at": a_timestamp(),
        },
        Dataset.PAYMENTS: {
            "payment_id": required_text(),
            "order_id": required_text(),
            "payment_date": a_date(),
            "payment_method": one_of(PAYMENT_METHODS),
            "payment_status": one_of(PAYMENT_STATUSES),
            "amount": an_amount(),
            "updated_at": a_timestamp(),
        },
        Dataset.EMPLOYEES: {
            "first_name": required_text(),
            "last_name": required_text(),
            "age": an_integer(minimum=18, maximum=100),
            "department": required_text(),
            "job_title": required_text(),
            "hire_date": a_date(not_after=file_day),
            "salary": an_amount(inclusive=False),
        },
    }
    return pa.DataFrameSchema(columns[dataset], name=str(dataset), strict=False, coerce=False)
