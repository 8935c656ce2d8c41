"""A catalogue of malformed inputs and the exact outcome of each (SPEC §3).

Each case is a file a real export could deliver. It either fails whole with a message naming
the file, line and column, or proceeds with exactly the listed rows quarantined (line, column,
rule) — and every row is accounted for.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from ecom_pipeline.contracts import validation
from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.contracts.pii import MASK, hash_value
from ecom_pipeline.contracts.validation import FileValidation, RunContext, validate_file
from ecom_pipeline.errors import BadFileError

DAY = date(2026, 11, 20)
KEY = b"test-key-0123456789abcdef"
RUN = RunContext(run_id="run-1", ingested_at=datetime(2026, 11, 21, 2, 0, tzinfo=UTC))
SOURCE = "raw/{dataset}/dt=2026-11-20/export.csv"

ORDERS_HEADER = "order_id,customer_id,order_date,order_status,total_amount,updated_at"
ORDER = "O1,C1,2026-11-20,placed,10.50,2026-11-20T10:00:00Z"
CUSTOMERS_HEADER = "customer_id,first_name,last_name,email,customer_region,signup_date,updated_at"
CUSTOMER = "C1,Ann,Lee,ann.lee@example.com,EU,2026-11-01,2026-11-20T01:00:00Z"
PAYMENTS_HEADER = "payment_id,order_id,payment_date,payment_method,payment_status,amount,updated_at"
PAYMENT = "P1,O1,2026-11-20,card,succeeded,10.50,2026-11-20T10:00:00Z"
EMPLOYEES_HEADER = "first_name,last_name,age,department,job_title,hire_date,salary"
EMPLOYEE = "Eve,Park,30,Sales,Rep,2020-01-01,50000.00"


def lines(*rows: str, end: str = "\n") -> bytes:
    return (end.join(rows) + end).encode("utf-8")


@dataclass
class Case:
    id: str
    data: bytes
    dataset: Dataset = Dataset.ORDERS
    #: (line, column, rule) of each quarantined row, in line order.
    quarantined: list[tuple[int, str | None, str]] = field(default_factory=list)
    valid: int | None = None
    dropped: list[str] = field(default_factory=list)
    #: For a whole-file failure: text the message must contain, and the line / column named.
    file_error: str | None = None
    error_line: int | None = None
    error_column: str | None = None


CASES = [
    # -- files that fail whole ----------------------------------------------------------
    Case("zero-bytes", b"", file_error="empty (0 bytes)"),
    Case("only-blank-lines", b"\n\n\n", file_error="only blank lines"),
    Case("header-only", lines(ORDERS_HEADER), file_error="header but no records"),
    Case(
        "latin1-encoding",
        lines(ORDERS_HEADER, ORDER, "O2,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00Z")
        + "O3,Ren\u00e9e,2026-11-20,placed,1.00,2026-11-20T10:00:00Z\n".encode("latin-1"),
        file_error="not UTF-8",
        error_line=4,
    ),
    Case(
        "utf16-encoding",
        (ORDERS_HEADER + "\n" + ORDER + "\n").encode("utf-16"),
        file_error="not UTF-8",
        error_line=1,
    ),
    Case(
        "missing-required-column",
        lines(
            "order_id,customer_id,order_date,order_status,updated_at", "O1,C1,2026-11-20,placed,x"
        ),
        file_error="required column(s) missing from the header: total_amount",
        error_line=1,
    ),
    Case(
        "duplicated-header",
        lines(ORDERS_HEADER + ",order_id", ORDER + ",O1"),
        file_error="names this column twice",
        error_line=1,
        error_column="order_id",
    ),
    Case(
        "empty-header-name",
        lines(ORDERS_HEADER + ",", ORDER + ",x"),
        file_error="header column 7 has no name",
        error_line=1,
    ),
    Case(
        "amounts-retyped-with-currency-sign",
        lines(
            ORDERS_HEADER,
            "O1,C1,2026-11-20,placed,$10.50,2026-11-20T10:00:00Z",
            "O2,C1,2026-11-20,placed,$3.00,2026-11-20T10:00:00Z",
        ),
        file_error="type changed upstream",
        error_line=2,
        error_column="total_amount",
    ),
    Case(
        "dates-retyped-as-us-format",
        lines(
            ORDERS_HEADER,
            "O1,C1,11/20/2026,placed,1.00,2026-11-20T10:00:00Z",
            "O2,C1,11/19/2026,placed,1.00,2026-11-20T10:00:00Z",
        ),
        file_error="type changed upstream",
        error_column="order_date",
    ),
    Case(
        "unterminated-quote-swallows-file",
        lines(ORDERS_HEADER, 'O1,C1,2026-11-20,placed,"10.50,2026-11-20T10:00:00Z')
        + b"x" * (1 << 20),
        file_error="unreadable CSV",
    ),
    Case(
        "header-larger-than-the-read-block",  # issue 16: 2 million columns, one line
        lines(",".join(f"c{i}" for i in range(2_000_000)), ORDER),
        file_error="header too long",
        error_line=1,
    ),
    Case(
        "one-line-without-end-larger-than-any-header",
        b"x" * (1 << 20),
        file_error="header too long",
        error_line=1,
    ),
    Case(
        "unquoted-field-over-the-field-limit",  # a quoted one failed the file, this one not
        lines(
            ORDERS_HEADER,
            ORDER,
            "O2,C1,2026-11-20,placed," + "9" * (2 << 20) + ",2026-11-20T10:00:00Z",
            ORDER,
        ),
        file_error="unreadable CSV",
    ),
    Case(
        "file-without-header-row",
        lines(ORDER, ORDER.replace("O1", "O2")),
        file_error="required column(s) missing from the header",
        error_line=1,
    ),
    Case(
        "nul-byte",
        lines(ORDERS_HEADER, "O1,C1\x00,2026-11-20,placed,1.00,2026-11-20T10:00:00Z"),
        file_error="NUL byte",
        error_line=2,
    ),
    # -- files that proceed with rows quarantined --------------------------------------
    Case("clean", lines(ORDERS_HEADER, ORDER), valid=1),
    Case("utf8-bom", b"\xef\xbb\xbf" + lines(ORDERS_HEADER, ORDER), valid=1),
    Case(
        "crlf-line-endings",
        lines(ORDERS_HEADER, ORDER, ORDER.replace("O1", "O2"), end="\r\n"),
        valid=2,
    ),
    Case("no-final-newline", (ORDERS_HEADER + "\n" + ORDER).encode(), valid=1),
    Case(
        "columns-reordered-and-padded-header",
        lines(
            " updated_at ,total_amount,order_status,order_date,customer_id,order_id",
            "2026-11-20T10:00:00Z,10.50,placed,2026-11-20,C1,O1",
        ),
        valid=1,
    ),
    Case(
        "extra-unknown-columns",
        lines(ORDERS_HEADER + ",coupon,channel", ORDER + ",X1,web"),
        valid=1,
        dropped=["coupon", "channel"],
    ),
    Case(
        "quoted-comma-and-newline-in-values",
        lines(
            ORDERS_HEADER,
            '"O,1","C1\nsecond line",2026-11-20,placed,10.50,2026-11-20T10:00:00Z',
            "O2,C1,2026-11-20,placed,-1.00,2026-11-20T10:00:00Z",
        ),
        valid=1,
        quarantined=[(4, "total_amount", "non_negative")],
    ),
    Case(
        "blank-lines-between-records",
        lines(ORDERS_HEADER, ORDER, "", "O2,C1,2026-11-20,placed,x,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(4, "total_amount", "is_decimal")],
    ),
    Case(
        "ragged-rows-short-and-long",
        lines(
            ORDERS_HEADER, ORDER, "O2,C1,2026-11-20,placed", ORDER.replace("O1", "O3") + ",extra"
        ),
        valid=1,
        quarantined=[(3, None, "field_count"), (4, None, "field_count")],
    ),
    Case(
        "negative-amount",
        lines(ORDERS_HEADER, "O1,C1,2026-11-20,placed,-0.01,2026-11-20T10:00:00Z"),
        valid=0,
        quarantined=[(2, "total_amount", "non_negative")],
    ),
    Case(
        "three-decimal-amount",
        lines(ORDERS_HEADER, ORDER, "O2,C1,2026-11-20,placed,10.505,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "total_amount", "max_2_decimals")],
    ),
    Case(
        "amount-with-thousands-separator",
        lines(ORDERS_HEADER, ORDER, 'O2,C1,2026-11-20,placed,"1,000.00",2026-11-20T10:00:00Z'),
        valid=1,
        quarantined=[(3, "total_amount", "is_decimal")],
    ),
    Case(
        "impossible-calendar-date",
        lines(ORDERS_HEADER, ORDER, "O2,C1,2026-02-30,placed,1.00,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "order_date", "is_date")],
    ),
    Case(
        "order-date-in-the-future-of-the-file",
        lines(ORDERS_HEADER, ORDER, "O2,C1,2026-11-21,placed,1.00,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "order_date", "not_in_future")],
    ),
    Case(
        "order-date-year-zero",  # issue 16: silver failed on it, every run
        lines(ORDERS_HEADER, ORDER, "O2,C1,0000-01-01,placed,1.00,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "order_date", "not_too_old")],
    ),
    Case(
        "order-date-year-9999",
        lines(ORDERS_HEADER, ORDER, "O2,C1,9999-12-31,placed,1.00,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "order_date", "not_in_future")],
    ),
    Case(
        "order-date-feb-29-of-1900-not-a-leap-year",
        lines(ORDERS_HEADER, ORDER, "O2,C1,1900-02-29,placed,1.00,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "order_date", "is_date")],
    ),
    Case(
        "order-date-in-unicode-digits",
        lines(
            ORDERS_HEADER,
            ORDER,
            "O2,C1,\uff12\uff10\uff12\uff16-\uff11\uff11-\uff12\uff10,placed,1.00,"
            "2026-11-20T10:00:00Z",
            "O3,C1,\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0660,placed,1.00,"
            "2026-11-20T10:00:00Z",
        ),
        valid=1,
        quarantined=[(3, "order_date", "is_date"), (4, "order_date", "is_date")],
    ),
    Case(
        "amount-in-unicode-digits",  # passed `\d`, then broke the decimal cast
        lines(ORDERS_HEADER, ORDER, "O2,C1,2026-11-20,placed,\uff11\uff10.50,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "total_amount", "is_decimal")],
    ),
    Case(
        "timestamp-year-zero-and-leap-second",
        lines(
            ORDERS_HEADER,
            ORDER,
            "O2,C1,2026-11-20,placed,1.00,0000-01-01T00:00:00Z",
            "O3,C1,2026-11-20,placed,1.00,2026-11-20T10:00:60Z",
            "O4,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00+99:00",
        ),
        valid=1,
        quarantined=[
            (3, "updated_at", "not_too_old"),
            (4, "updated_at", "is_timestamp"),
            (5, "updated_at", "is_timestamp"),
        ],
    ),
    Case(
        "timestamp-with-nanoseconds-is-truncated-to-microseconds",
        lines(ORDERS_HEADER, "O1,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00.123456789Z"),
        valid=1,
    ),
    Case(
        "bad-timestamp",
        lines(ORDERS_HEADER, ORDER, "O2,C1,2026-11-20,placed,1.00,yesterday"),
        valid=1,
        quarantined=[(3, "updated_at", "is_timestamp")],
    ),
    Case(
        "timestamps-with-offsets-and-without",
        lines(
            ORDERS_HEADER,
            "O1,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00+02:00",
            "O2,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00",
            "O3,C1,2026-11-20,placed,1.00,2026-11-20 10:00:00.123456Z",
        ),
        valid=3,
    ),
    Case(
        "unknown-status",
        lines(ORDERS_HEADER, ORDER, "O2,C1,2026-11-20,lost,1.00,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "order_status", "one_of")],
    ),
    Case(
        "status-in-wrong-case",
        lines(ORDERS_HEADER, ORDER, "O2,C1,2026-11-20,Placed,1.00,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "order_status", "one_of")],
    ),
    Case(
        "empty-required-value",
        lines(ORDERS_HEADER, ORDER, "O2,,2026-11-20,placed,1.00,2026-11-20T10:00:00Z"),
        valid=1,
        quarantined=[(3, "customer_id", "required")],
    ),
    Case(
        "quoted-empty-string-is-missing-too",
        lines(ORDERS_HEADER, ORDER, 'O2,"",2026-11-20,placed,1.00,2026-11-20T10:00:00Z'),
        valid=1,
        quarantined=[(3, "customer_id", "required")],
    ),
    Case(
        "several-rules-broken-first-column-reported",
        lines(ORDERS_HEADER, "O2,,2026-11-21,lost,-5,2026-11-20T10:00:00Z"),
        valid=0,
        quarantined=[(2, "customer_id", "required")],
    ),
    Case(
        "huge-field",
        lines(
            ORDERS_HEADER,
            ORDER,
            "O2," + "C" * 5000 + ",2026-11-20,placed,1.00,2026-11-20T10:00:00Z",
        ),
        valid=1,
        quarantined=[(3, "customer_id", "max_length")],
    ),
    Case(
        "exact-duplicate-rows-both-valid",
        lines(ORDERS_HEADER, ORDER, ORDER),
        valid=2,  # the duplicate rule, not the contract, settles which one survives
    ),
    Case(
        "customer-bad-email-and-region",
        lines(
            CUSTOMERS_HEADER,
            CUSTOMER,
            "C2,Bob,Ray,bob.example.com,EU,2026-11-01,2026-11-20T01:00:00Z",
            "C3,Cy,Li,cy@example.com,Europe,2026-11-01,2026-11-20T01:00:00Z",
        ),
        dataset=Dataset.CUSTOMERS,
        valid=1,
        quarantined=[(3, "email", "is_email"), (4, "customer_region", "one_of")],
    ),
    Case(
        "payment-unknown-method-and-status",
        lines(
            PAYMENTS_HEADER,
            PAYMENT,
            "P2,O1,2026-11-20,bitcoin,succeeded,1.00,2026-11-20T10:00:00Z",
            "P3,O1,2026-11-20,card,pending,1.00,2026-11-20T10:00:00Z",
        ),
        dataset=Dataset.PAYMENTS,
        valid=1,
        quarantined=[(3, "payment_method", "one_of"), (4, "payment_status", "one_of")],
    ),
    Case(
        "employee-age-salary-hire-date",
        lines(
            EMPLOYEES_HEADER,
            EMPLOYEE,
            "Al,Bo,17,Sales,Rep,2020-01-01,1.00",
            "Al,Cy,40,Sales,Rep,2020-01-01,0.00",
            "Al,Di,40.5,Sales,Rep,2020-01-01,1.00",
            "Al,Ed,40,Sales,Rep,2026-12-01,1.00",
        ),
        dataset=Dataset.EMPLOYEES,
        valid=1,
        quarantined=[
            (3, "age", "in_range"),
            (4, "salary", "positive"),
            (5, "age", "is_integer"),
            (6, "hire_date", "not_in_future"),
        ],
    ),
]


def run_case(case: Case):
    return validate_file(
        SOURCE.format(dataset=case.dataset),
        case.data,
        SPECS[case.dataset],
        file_day=DAY,
        pii_key=KEY,
        run=RUN,
    )


def test_the_catalogue_has_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c.file_error], ids=lambda c: c.id)
def test_bad_file_fails_whole_naming_file_line_and_column(case: Case) -> None:
    with pytest.raises(BadFileError) as caught:
        run_case(case)
    error = caught.value
    assert case.file_error in error.reason
    assert str(error).startswith(SOURCE.format(dataset=case.dataset))
    if case.error_line is not None:
        assert error.line == case.error_line
        assert f"line {case.error_line}" in str(error)
    if case.error_column is not None:
        assert error.column == case.error_column
        assert repr(case.error_column) in str(error)


@pytest.mark.parametrize("case", [c for c in CASES if not c.file_error], ids=lambda c: c.id)
def test_rows_are_quarantined_with_line_column_and_rule(case: Case) -> None:
    result = run_case(case)
    quarantine = result.quarantine.to_pylist()
    assert [(q["_source_line"], q["column"], q["rule"]) for q in quarantine] == case.quarantined
    if case.valid is not None:
        assert result.valid.num_rows == case.valid
    assert result.dropped_columns == case.dropped
    # every row is accounted for
    assert result.rows_read == result.valid.num_rows + result.quarantine.num_rows
    assert all(q["_source_file"] == SOURCE.format(dataset=case.dataset) for q in quarantine)


def test_valid_rows_are_typed_exactly_and_carry_lineage() -> None:
    result = run_case(Case("typed", lines(ORDERS_HEADER, ORDER, ORDER.replace("O1", "O2"))))
    row = result.valid.to_pylist()[0]
    assert row["total_amount"] == Decimal("10.50")
    assert row["order_date"] == date(2026, 11, 20)
    assert row["updated_at"] == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert (row["_source_file"], row["_source_line"], row["_run_id"]) == (
        "raw/orders/dt=2026-11-20/export.csv",
        2,
        "run-1",
    )
    assert result.valid.schema.field("total_amount").type == pa.decimal128(18, 2)


def test_offset_timestamps_are_normalised_to_utc() -> None:
    data = lines(ORDERS_HEADER, "O1,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00+02:00")
    row = run_case(Case("tz", data)).valid.to_pylist()[0]
    assert row["updated_at"] == datetime(2026, 11, 20, 8, tzinfo=UTC)


def test_pii_is_hashed_in_valid_rows_and_masked_in_quarantine() -> None:
    data = lines(
        CUSTOMERS_HEADER,
        CUSTOMER,
        "C2,Bob,Ray,bob.example.com,EU,2026-11-01,2026-11-20T01:00:00Z",
    )
    result = run_case(Case("pii", data, dataset=Dataset.CUSTOMERS))
    valid = result.valid.to_pylist()[0]
    assert valid["first_name"] == hash_value(KEY, "Ann")
    assert valid["email"] == hash_value(KEY, "ann.lee@example.com")
    bad = result.quarantine.to_pylist()[0]
    assert bad["value"] == MASK
    assert bad["email"] == hash_value(KEY, "bob.example.com")
    assert bad["first_name"] == hash_value(KEY, "Bob")
    text = repr(result.valid.to_pylist()) + repr(result.quarantine.to_pylist())
    for clear in ("Ann", "Lee", "ann.lee@example.com", "Bob", "Ray", "bob.example.com"):
        assert clear not in text


def validate_in_blocks(data: bytes, dataset: Dataset, block_bytes: int):
    validation = FileValidation(
        SOURCE.format(dataset=dataset),
        io.BytesIO(data),
        SPECS[dataset],
        file_day=DAY,
        pii_key=KEY,
        run=RUN,
        block_bytes=block_bytes,
    )
    batches = list(validation.valid_batches())
    return validation.result(pa.concat_tables(batches)), len(batches)


@pytest.mark.parametrize("judged_every", [1, 50_000], ids=["row", "file"])
@pytest.mark.parametrize("case", [c for c in CASES if not c.file_error], ids=lambda c: c.id)
def test_validating_block_by_block_gives_the_whole_file_outcome(
    case: Case, judged_every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Suspect records are judged whenever enough have gathered: after every one of them, or
    once at the file's end, the outcome is the same."""
    whole = run_case(case)
    monkeypatch.setattr(validation, "SUSPECTS_PER_VERDICT", judged_every)
    blocked, _batches = validate_in_blocks(case.data, case.dataset, block_bytes=40)
    assert blocked.rows_read == whole.rows_read
    assert blocked.valid.equals(whole.valid)
    assert blocked.quarantine.sort_by("_source_line").equals(whole.quarantine)
    assert blocked.dropped_columns == whole.dropped_columns


def test_a_type_change_is_seen_across_blocks_and_fails_the_file() -> None:
    rows = [ORDER.replace("10.50", f"${n}.00").replace("O1", f"O{n}") for n in range(40)]
    data = lines(ORDERS_HEADER, *rows)
    _, batches = validate_in_blocks(lines(ORDERS_HEADER, ORDER, *[ORDER] * 40), Dataset.ORDERS, 200)
    assert batches > 3  # the file really is read in several blocks
    with pytest.raises(BadFileError, match="type changed upstream") as caught:
        validate_in_blocks(data, Dataset.ORDERS, block_bytes=200)
    assert (caught.value.line, caught.value.column) == (2, "total_amount")


GOOD_ROWS = {
    Dataset.ORDERS: (ORDERS_HEADER, ORDER),
    Dataset.CUSTOMERS: (CUSTOMERS_HEADER, CUSTOMER),
    Dataset.PAYMENTS: (PAYMENTS_HEADER, PAYMENT),
    Dataset.EMPLOYEES: (EMPLOYEES_HEADER, EMPLOYEE),
}
#: (value, rule) for any date column; a timestamp column gets the same day at 10:00Z.
BAD_DAYS = [
    ("0000-01-01", "not_too_old"),
    ("1899-12-31", "not_too_old"),
    ("9999-12-31", "not_in_future"),
    ("1900-02-29", "is_date"),
    ("2026-02-30", "is_date"),
    ("\uff12\uff10\uff12\uff16-\uff11\uff11-\uff12\uff10", "is_date"),  # fullwidth digits
    ("\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0660", "is_date"),  # Arabic-Indic digits
]
DATE_COLUMNS = [
    (dataset, column.name, column.kind)
    for dataset, spec in SPECS.items()
    for column in spec.columns
    if column.kind in ("date", "timestamp")
]


@pytest.mark.parametrize(("dataset", "column", "kind"), DATE_COLUMNS)
def test_every_date_and_timestamp_column_takes_only_plausible_calendar_days(
    dataset: Dataset, column: str, kind: str
) -> None:
    """Issue 16: a date that passes the contract must not poison silver (year 0 and the like)."""
    header, good = GOOD_ROWS[dataset]
    position = header.split(",").index(column)
    rows = []
    for value, _rule in BAD_DAYS:
        fields = good.split(",")
        fields[position] = value if kind == "date" else f"{value}T10:00:00Z"
        rows.append(",".join(fields))
    result = run_case(Case("dates", lines(header, good, *rows), dataset=dataset))
    got = [(q["_source_line"], q["column"], q["rule"]) for q in result.quarantine.to_pylist()]
    expected = [
        (line, column, "is_timestamp" if kind == "timestamp" and rule == "is_date" else rule)
        for line, (_value, rule) in enumerate(BAD_DAYS, start=3)
    ]
    assert got == expected
    assert result.valid.num_rows == 1


def test_timestamps_may_reach_the_end_of_the_day_after_the_file_day_only() -> None:
    data = lines(
        ORDERS_HEADER,
        "O1,C1,2026-11-20,placed,1.00,2026-11-21T23:59:59.999999Z",
        "O2,C1,2026-11-20,placed,1.00,2026-11-22T00:00:00Z",
        "O3,C1,2026-11-20,placed,1.00,2026-11-22T01:00:00+02:00",  # 23:00 UTC the day before
    )
    result = run_case(Case("late", data))
    assert [(q["_source_line"], q["rule"]) for q in result.quarantine.to_pylist()] == [
        (3, "not_in_future")
    ]


def test_sub_microsecond_fractions_are_truncated() -> None:
    data = lines(ORDERS_HEADER, "O1,C1,2026-11-20,placed,1.00,2026-11-20T10:00:00.1234569Z")
    row = run_case(Case("ns", data)).valid.to_pylist()[0]
    assert row["updated_at"] == datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)


def test_a_customers_file_without_header_row_names_no_value_in_its_error() -> None:
    """Issue 17: the "header" of such a file is a customer; its name and e-mail stay out."""
    data = lines(CUSTOMER, CUSTOMER.replace("C1", "C2"))
    with pytest.raises(BadFileError) as caught:
        run_case(Case("no-header", data, dataset=Dataset.CUSTOMERS))
    message = str(caught.value)
    for clear in ("Ann", "Lee", "ann.lee@example.com", "C1", "2026-11-01"):
        assert clear not in message
    assert "customer_id" in message  # the contract's columns are named


def test_a_repeated_unknown_header_name_is_reported_by_position_only() -> None:
    data = lines(CUSTOMERS_HEADER + ",Ann,Ann", CUSTOMER + ",x,y")
    with pytest.raises(BadFileError, match="header columns 8 and 9") as caught:
        run_case(Case("dup", data, dataset=Dataset.CUSTOMERS))
    assert "Ann" not in str(caught.value)


def test_a_type_change_message_quotes_no_value() -> None:
    data = lines(
        EMPLOYEES_HEADER,
        "Eve,Park,30,Sales,Rep,2020-01-01,EUR50000",
        "Al,Bo,40,Sales,Rep,2020-01-01,EUR60000",
    )
    with pytest.raises(BadFileError, match="type changed upstream") as caught:
        run_case(Case("retyped", data, dataset=Dataset.EMPLOYEES))
    assert (caught.value.line, caught.value.column) == (2, "salary")
    assert "EUR" not in str(caught.value) and "Eve" not in str(caught.value)


def test_pii_in_a_non_pii_column_leaves_validate_masked_and_hashed_only() -> None:
    """Issue 17: an e-mail shifted into ``signup_date`` must not land in clear in quarantine."""
    data = lines(
        CUSTOMERS_HEADER,
        CUSTOMER,
        "C2,Bob,Ray,EU,bob.ray@example.com,bob.ray@example.com,2026-11-20T01:00:00Z",
    )
    result = run_case(Case("shifted", data, dataset=Dataset.CUSTOMERS))
    bad = result.quarantine.to_pylist()[0]
    assert (bad["column"], bad["rule"]) == ("email", "is_email")
    assert bad["value"] == MASK
    assert bad["errors"] == "email: is_email; customer_region: one_of; signup_date: is_date"
    assert bad["signup_date"] == hash_value(KEY, "bob.ray@example.com")
    assert bad["customer_region"] == hash_value(KEY, "bob.ray@example.com")
    text = repr(result.quarantine.to_pylist())
    assert "bob.ray" not in text and "Bob" not in text


def test_a_non_pii_column_value_of_a_pii_dataset_is_quarantined_by_its_shape() -> None:
    data = lines(CUSTOMERS_HEADER, "C2,Bob,Ray,bob@example.com,EU,bob@example.com,2026-11-20Z")
    bad = run_case(Case("shape", data, dataset=Dataset.CUSTOMERS)).quarantine.to_pylist()[0]
    assert (bad["column"], bad["value"]) == ("signup_date", "xxx@xxxxxxx.xxx")


def test_orders_keep_offending_values_in_clear_they_hold_no_pii() -> None:
    data = lines(ORDERS_HEADER, "O2,C1,2026-11-20,lost,1.00,2026-11-20T10:00:00Z")
    bad = run_case(Case("clear", data)).quarantine.to_pylist()[0]
    assert (bad["value"], bad["order_status"]) == ("lost", "lost")
