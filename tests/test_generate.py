"""The raw export generator: deterministic bytes, the SPEC §3 contract in clean mode, each defect
kind in defect mode, and writing to a lake.

Every file is parsed with Python's csv module and every rule is checked here directly, without
the pipeline's own validation code.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from devtools.generate import (
    GeneratorConfig,
    RawFile,
    generate_day,
    generate_days,
    write_raw_files,
)
from ecom_pipeline.contracts.datasets import (
    ORDER_STATUSES,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    REGIONS,
    SPECS,
    Dataset,
)
from ecom_pipeline.errors import ConfigurationError
from ecom_pipeline.lake.storage import LocalLake

START = date(2026, 11, 20)
DAYS = 4

Row = dict[str, str]


# -- reading the files back -------------------------------------------------------------------


def read_csv(raw: RawFile) -> tuple[list[str], list[Row]]:
    """Header and rows of a generated file, parsed by the standard library."""
    reader = csv.reader(io.StringIO(raw.content.decode("utf-8"), newline=""))
    header = next(reader)
    return header, [dict(zip(header, values, strict=True)) for values in reader]


def by_dataset(files: list[RawFile]) -> dict[Dataset, list[tuple[RawFile, list[Row]]]]:
    grouped: dict[Dataset, list[tuple[RawFile, list[Row]]]] = defaultdict(list)
    for raw in files:
        grouped[raw.dataset].append((raw, read_csv(raw)[1]))
    return grouped


def parse_date(text: str) -> date | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_timestamp(text: str) -> datetime | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_amount(text: str) -> Decimal | None:
    """A decimal with at most two places (SPEC §3), else None."""
    return Decimal(text) if re.fullmatch(r"-?\d+(\.\d{1,2})?", text) else None


def violations(dataset: Dataset, row: Row, dt: date) -> list[str]:
    """The SPEC §3 rules this row breaks, as ``column:rule`` strings."""
    broken = []

    def check(ok: bool, column: str, rule: str) -> None:
        if not ok:
            broken.append(f"{column}:{rule}")

    def required(*columns: str) -> None:
        for column in columns:
            check(row[column].strip() != "", column, "required")

    def is_date(column: str, not_after: date | None = None) -> None:
        value = parse_date(row[column])
        check(value is not None, column, "date")
        if value is not None and not_after is not None:
            check(value <= not_after, column, "not_in_future")

    def amount(column: str, *, positive: bool = False) -> None:
        value = parse_amount(row[column])
        check(value is not None, column, "decimal")
        if value is not None:
            check(value > 0 if positive else value >= 0, column, "range")

    if dataset is Dataset.ORDERS:
        required("order_id", "customer_id")
        is_date("order_date", not_after=dt)
        check(row["order_status"] in ORDER_STATUSES, "order_status", "one_of")
        amount("total_amount")
        check(parse_timestamp(row["updated_at"]) is not None, "updated_at", "timestamp")
    elif dataset is Dataset.CUSTOMERS:
        required("customer_id", "first_name", "last_name")
        check(re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", row["email"]) is not None, "email", "email")
        check(row["customer_region"] in REGIONS, "customer_region", "one_of")
        is_date("signup_date")
        check(parse_timestamp(row["updated_at"]) is not None, "updated_at", "timestamp")
    elif dataset is Dataset.PAYMENTS:
        required("payment_id", "order_id")
        is_date("payment_date")
        check(row["payment_method"] in PAYMENT_METHODS, "payment_method", "one_of")
        check(row["payment_status"] in PAYMENT_STATUSES, "payment_status", "one_of")
        amount("amount")
        check(parse_timestamp(row["updated_at"]) is not None, "updated_at", "timestamp")
    else:
        required("first_name", "last_name", "department", "job_title")
        age = row["age"]
        check(age.isdigit() and 18 <= int(age) <= 100, "age", "range")
        is_date("hire_date", not_after=dt)
        amount("salary", positive=True)
    return broken


def order_day(order_id: str) -> date:
    """The day an order was placed, from its id (``O`` + YYYYMMDD + index)."""
    return datetime.strptime(order_id[1:9], "%Y%m%d").date()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_files() -> list[RawFile]:
    return list(generate_days(START, DAYS, GeneratorConfig(orders_per_day=1000, clean=True)))


@pytest.fixture(scope="module")
def defect_files() -> list[RawFile]:
    return list(generate_days(START, DAYS, GeneratorConfig()))


# -- determinism and layout -------------------------------------------------------------------


def test_same_inputs_give_identical_bytes() -> None:
    config = GeneratorConfig(orders_per_day=500)
    day = START + timedelta(days=2)

    once = generate_day(day, config, first_day=START)
    again = generate_day(day, config, first_day=START)
    in_range = [f for f in generate_days(START, 3, config) if f.day == day]

    assert once == again == in_range


def test_another_seed_gives_other_data() -> None:
    ours = generate_day(START, GeneratorConfig(orders_per_day=500, seed=7))
    theirs = generate_day(START, GeneratorConfig(orders_per_day=500, seed=8))

    assert [f.key for f in ours] == [f.key for f in theirs]
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.content != other.content, mine.key


def test_files_and_keys_of_a_day() -> None:
    big = generate_day(START, GeneratorConfig(orders_per_day=100, clean=True))
    small = generate_day(START, GeneratorConfig(orders_per_day=99, clean=True))

    assert [f.key for f in big] == [
        "raw/customers/dt=2026-11-20/customers-0001.csv",
        "raw/orders/dt=2026-11-20/orders-0001.csv",
        "raw/orders/dt=2026-11-20/orders-0002.csv",
        "raw/payments/dt=2026-11-20/payments-0001.csv",
        "raw/employees/dt=2026-11-20/employees-0001.csv",
    ]
    assert [f.name for f in small if f.dataset is Dataset.ORDERS] == ["orders-0001.csv"]


def test_order_volume_is_the_configured_one_plus_defects() -> None:
    config = GeneratorConfig(orders_per_day=1000)
    day = START + timedelta(days=1)
    clean = by_dataset(generate_day(day, GeneratorConfig(orders_per_day=1000, clean=True)))
    defects = by_dataset(generate_day(day, config, first_day=START))

    assert [len(rows) for _, rows in clean[Dataset.ORDERS]] == [500, 500]
    rows = [row for _, file_rows in defects[Dataset.ORDERS] for row in file_rows]
    own = {row["order_id"] for row in rows if row["order_id"].startswith("O20261121")}
    assert len(own) == 1000
    assert 1000 < len(rows) <= 1030


def test_bad_arguments_are_refused_with_their_name() -> None:
    with pytest.raises(ConfigurationError, match="orders_per_day"):
        GeneratorConfig(orders_per_day=0)
    with pytest.raises(ConfigurationError, match="seed"):
        GeneratorConfig(seed=-1)
    with pytest.raises(ConfigurationError, match="first_day"):
        generate_day(START, GeneratorConfig(), first_day=START + timedelta(days=1))
    with pytest.raises(ConfigurationError, match="days"):
        generate_days(START, -1, GeneratorConfig())


# -- clean mode: the contract, and nothing else --------------------------------------------


def test_clean_files_are_plain_utf8_csv_with_minimal_quoting(clean_files: list[RawFile]) -> None:
    for raw in clean_files:
        header, rows = read_csv(raw)
        assert header == list(SPECS[raw.dataset].column_names), raw.key
        assert b"\r" not in raw.content and raw.content.endswith(b"\n")
        rewritten = io.StringIO()
        writer = csv.writer(rewritten, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows([row[c] for c in header] for row in rows)
        assert rewritten.getvalue().encode("utf-8") == raw.content, raw.key
    employees = next(f for f in clean_files if f.dataset is Dataset.EMPLOYEES)
    assert b'"Director, Sales"' in employees.content or b'"Vice President, Finance"' in (
        employees.content
    )


def test_clean_rows_follow_every_rule(clean_files: list[RawFile]) -> None:
    for raw in clean_files:
        for line, row in enumerate(read_csv(raw)[1], start=2):
            assert violations(raw.dataset, row, raw.day) == [], (raw.key, line, row)
            for column in ("total_amount", "amount", "salary"):
                if column in row:
                    assert re.fullmatch(r"\d+\.\d{2}", row[column]), (raw.key, line, row)


def test_clean_files_hold_each_key_once_and_nothing_late(clean_files: list[RawFile]) -> None:
    grouped = by_dataset(clean_files)
    for dataset, key in (
        (Dataset.CUSTOMERS, "customer_id"),
        (Dataset.ORDERS, "order_id"),
        (Dataset.PAYMENTS, "payment_id"),
    ):
        keys = Counter(row[key] for _, rows in grouped[dataset] for row in rows)
        assert keys.most_common(1)[0][1] == 1, dataset
    for raw, rows in grouped[Dataset.EMPLOYEES]:
        keys = Counter((r["first_name"], r["last_name"], r["age"]) for r in rows)
        assert len(rows) == 1000 and len(keys) == 1000, raw.key
    for raw, rows in grouped[Dataset.ORDERS] + grouped[Dataset.PAYMENTS]:
        for row in rows:
            assert row.get("order_date", row.get("payment_date")) == f"{raw.day}"
            assert row["updated_at"].startswith(f"{raw.day}T")
    for raw, rows in grouped[Dataset.CUSTOMERS]:
        for row in rows:
            signup = date.fromisoformat(row["signup_date"])
            assert signup == raw.day or (raw.day == START and signup < START), row
            assert row["updated_at"].startswith(row["signup_date"])


def test_clean_orders_and_payments_reference_what_was_delivered(
    clean_files: list[RawFile],
) -> None:
    grouped = by_dataset(clean_files)
    delivered: set[str] = set()
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        delivered |= {
            row["customer_id"] for raw, rows in grouped[Dataset.CUSTOMERS] if raw.day == day
            for row in rows
        }  # fmt: skip
        orders = {
            row["order_id"]: row for raw, rows in grouped[Dataset.ORDERS] if raw.day == day
            for row in rows
        }  # fmt: skip
        payments = [
            row for raw, rows in grouped[Dataset.PAYMENTS] if raw.day == day for row in rows
        ]

        assert {row["customer_id"] for row in orders.values()} <= delivered
        assert len(orders) <= len(payments) <= 1.1 * len(orders)
        for payment in payments:
            assert payment["amount"] == orders[payment["order_id"]]["total_amount"]
        statuses = Counter(p["payment_status"] for p in payments)
        assert statuses["succeeded"] > 0.8 * len(payments)
        assert statuses["failed"] > 0 and statuses["refunded"] > 0


def test_employees_are_mostly_the_same_people_every_day(clean_files: list[RawFile]) -> None:
    snapshots = [
        {(r["first_name"], r["last_name"], r["age"]): r for r in rows}
        for _, rows in by_dataset(clean_files)[Dataset.EMPLOYEES]
    ]
    for before, after in itertools.pairwise(snapshots):
        assert len(before.keys() & after.keys()) >= 0.98 * len(before)
    first, last = snapshots[0], snapshots[-1]
    assert sum(first[k] != last[k] for k in first.keys() & last.keys()) > 0  # raises happen


# -- defect mode ------------------------------------------------------------------------------


def test_every_defect_kind_is_present(defect_files: list[RawFile]) -> None:
    grouped = by_dataset(defect_files)
    found: Counter[str] = Counter()

    for raw, rows in [(raw, rows) for files in grouped.values() for raw, rows in files]:
        lines = Counter(raw.content.decode("utf-8").splitlines())
        if any(count > 1 for count in lines.values()):
            found[f"duplicate:{raw.dataset}"] += 1
        for row in rows:
            for broken in violations(raw.dataset, row, raw.day):
                found[broken] += 1

    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        first, second = [raw for raw, _ in grouped[Dataset.ORDERS] if raw.day == day]
        shared = set(first.content.splitlines()[1:]) & set(second.content.splitlines()[1:])
        found["cross_file_duplicate"] += len(shared)

    # Late updates: an earlier day's order, again, with its next status and a later updated_at.
    first_seen: dict[str, Row] = {}
    moves = {("placed", "shipped"), ("placed", "cancelled"), ("shipped", "delivered"),
             ("delivered", "returned")}  # fmt: skip
    for raw, rows in grouped[Dataset.ORDERS]:
        for row in rows:
            original = first_seen.setdefault(row["order_id"], row)
            if order_day(row["order_id"]) < raw.day:
                assert (original["order_status"], row["order_status"]) in moves
                assert row["updated_at"] > original["updated_at"]
                assert row["updated_at"].startswith(f"{raw.day}T")
                found["late_update"] += 1
    paid: dict[str, Row] = {}
    for raw, rows in grouped[Dataset.PAYMENTS]:
        for row in rows:
            original = paid.setdefault(row["payment_id"], row)
            if row["payment_date"] < f"{raw.day}":
                assert (original["payment_status"], row["payment_status"]) == (
                    "succeeded",
                    "refunded",
                )
                found["late_refund"] += 1

    # Late customers: signed up (and ordered) on D, delivered on D + 1; and e-mail updates.
    customers: dict[str, Row] = {}
    for raw, rows in grouped[Dataset.CUSTOMERS]:
        for row in rows:
            if row["customer_id"] in customers and row["email"].endswith("@example.net"):
                assert row["updated_at"] > customers[row["customer_id"]]["updated_at"]
                found["customer_update"] += 1
            if raw.day > START and row["signup_date"] == f"{raw.day - timedelta(days=1)}":
                ordered = any(
                    order["customer_id"] == row["customer_id"]
                    for earlier, orders in grouped[Dataset.ORDERS]
                    if earlier.day == raw.day - timedelta(days=1)
                    for order in orders
                )
                found["late_customer_with_order"] += ordered
            customers.setdefault(row["customer_id"], row)

    expected = [
        *(f"duplicate:{dataset}" for dataset in Dataset),
        "cross_file_duplicate",
        "late_update",
        "late_refund",
        "late_customer_with_order",
        "customer_update",
        "total_amount:range",  # negative
        "total_amount:decimal",  # three decimals
        "amount:decimal",
        "order_status:one_of",
        "order_date:date",
        "email:email",
        "customer_region:one_of",
        "payment_method:one_of",
        "age:range",
    ]
    assert [kind for kind in expected if found[kind] == 0] == [], found


def test_each_bad_row_breaks_one_rule_and_files_stay_under_three_percent(
    defect_files: list[RawFile],
) -> None:
    for raw in defect_files:
        header, rows = read_csv(raw)
        assert sorted(header) == sorted(SPECS[raw.dataset].column_names)
        broken = [violations(raw.dataset, row, raw.day) for row in rows]
        assert all(len(rules) <= 1 for rules in broken), raw.key
        assert sum(bool(rules) for rules in broken) <= 0.03 * len(rows), raw.key


def test_some_days_shuffle_one_datasets_columns() -> None:
    config = GeneratorConfig(orders_per_day=100)
    shuffled = set()
    for raw in generate_days(START, 12, config):
        header = read_csv(raw)[0]
        assert sorted(header) == sorted(SPECS[raw.dataset].column_names)
        if header != list(SPECS[raw.dataset].column_names):
            shuffled.add((raw.day, raw.dataset))
    days = {day for day, _ in shuffled}
    assert shuffled and len(days) < 12
    assert all(len({ds for d, ds in shuffled if d == day}) == 1 for day in days)


# -- writing ----------------------------------------------------------------------------------


def test_write_raw_files_puts_each_file_under_its_key(tmp_path: Path) -> None:
    files = list(generate_days(START, 2, GeneratorConfig(orders_per_day=150)))
    lake = LocalLake(tmp_path)

    keys = write_raw_files(lake, files)

    assert keys == [raw.key for raw in files]
    assert [o.key for o in lake.list("raw/")] == sorted(keys)
    for raw in files:
        assert (tmp_path / "raw" / raw.dataset / f"dt={raw.day}" / raw.name).read_bytes() == (
            raw.content
        )
