"""Deterministic raw CSV exports of SPEC §3 (orders, customers, payments, employees).

A development tool, not part of the runtime package: used by ``make quickstart``
(``python -m devtools.generate``), by tests and by the benchmark. Everything is vectorized
(numpy for the values, pyarrow compute for the text), so a day of a million orders takes seconds.

The generated world
-------------------
Values are pure functions of the seed and of the entity they describe, hashed with splitmix64
(``_hash``), so any day can be generated alone and any earlier order re-derived cheaply:

* **customers** ``C`` + signup day + 6 digits (``C20261120000042``), ``customers_per_day`` a day
  (default ``orders_per_day // 10``). Name, e-mail and region hash from (seed, signup day,
  sequence): a customer is the same person whatever range is generated. The range's first day
  also delivers a pool of about ``5 × customers_per_day`` earlier customers (the first few
  signups of each of up to 90 days before).
* **orders** ``O`` + day + 7 digits, ``orders_per_day`` a day, roughly in time order; a tenth by
  customers who signed up that day, the rest by any customer known by then. Status, amount and
  times hash from (seed, day, index). A day of 100 orders or more comes in two files
  (``orders-0001.csv``, ``orders-0002.csv``, first and second half of the day).
* **payments** ``P`` + the order's digits: one per order (amount = the order's total); a failed
  payment of an open order is retried (a second payment, numbered after the day's orders).
* **employees** a full snapshot of ``employees`` people each day, from the seed and the day only:
  each of the ``employees`` positions is held by a person for 5–15 years (hire_date = the start),
  salaries rise 3 % a year; so day to day a few salaries change and now and then someone leaves
  and a new person is hired. ``(first_name, last_name, age)`` is unique in each snapshot.

Choices about one day's files (which rows are defective, where copies go) come from
``numpy.random.default_rng([seed, day.toordinal(), stream])``. A day's files depend on
``(day, config, first_day)`` only and are byte-identical on every call.

Defects (``clean=False``)
-------------------------
Rates are shares of a file's rows, stochastically rounded (so small files often get none).

* **duplicate** (0.5 %, every dataset): a line repeated verbatim a few lines later.
* **cross-file duplicate** (0.3 %): a line of ``orders-0001.csv`` repeated in ``orders-0002.csv``.
* **late update** (0.6 % of the day's orders): an order placed 1–3 days earlier (never before
  ``first_day``) re-delivered with its next status (placed → shipped or cancelled,
  shipped → delivered, delivered → returned) and an ``updated_at`` on the delivery day. When it
  becomes cancelled or returned, its succeeded payment is re-delivered as ``refunded`` too.
* **late customer** (1 % of a day's signups): signed up on D, placing an order on D, but
  delivered in D+1's customers file (with ``signup_date`` D).
* **customer update** (1 %): an earlier customer re-delivered with a new e-mail
  (``@example.net``) and a later ``updated_at``.
* **bad values**, each in one column of an otherwise valid row:
  orders ``total_amount`` negative (0.15 %) or with three decimals (0.15 %), ``order_status``
  unknown such as ``pending`` (0.15 %), ``order_date`` unparseable such as month 13 (0.15 %);
  customers ``email`` without ``@`` (0.3 %), ``customer_region`` unknown such as ``EMEA``
  (0.3 %); payments ``payment_method`` unknown such as ``crypto`` (0.3 %), ``amount`` with three
  decimals (0.2 %); employees ``age`` 17, 101 or 150 (0.3 %).
* **column order**: on about one day in four, one dataset's columns come shuffled (SPEC §3
  allows any order).

Each bad value spoils one column of an otherwise valid row, so the validator quarantines that row
alone. All defects of a file together never exceed 3 % of its rows, so the default 5 %
quarantine threshold is never reached. With ``clean=True`` there are none: no duplicate keys at
all, no late rows, no bad values, canonical column order, and every order's customer is
delivered on or before the order's day.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import IntEnum, auto
from typing import TYPE_CHECKING, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import (
    ORDER_STATUSES,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    REGIONS,
    SPECS,
    Dataset,
)
from ecom_pipeline.errors import ConfigurationError
from ecom_pipeline.lake import layout

if TYPE_CHECKING:
    from ecom_pipeline.lake.storage import Lake

# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawFile:
    """One generated export file, as upstream would drop it under ``raw/``."""

    dataset: Dataset
    #: The ``dt=`` folder the file is delivered to.
    day: date
    #: The file name, e.g. ``orders-0001.csv``.
    name: str
    #: UTF-8 CSV with a header row and ``\\n`` line endings.
    content: bytes

    @property
    def key(self) -> str:
        """The file's lake key: ``raw/{dataset}/dt=YYYY-MM-DD/{name}``."""
        return layout.raw_key(self.dataset, self.day, self.name)


#: Most employees a snapshot can hold with unique ``(first_name, last_name, age)`` keys.
_MAX_EMPLOYEES = 50_000


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate.

    Attributes:
        orders_per_day: orders placed each day (before duplicates and late updates).
        customers_per_day: new signups each day; None means ``orders_per_day // 10`` (at least 1).
        employees: rows of the daily employees snapshot (at most 50,000).
        seed: any non-negative integer; the same seed gives the same bytes.
        clean: True for files without any defect (see the module docstring).
    """

    orders_per_day: int = 2000
    customers_per_day: int | None = None
    employees: int = 1000
    seed: int = 7
    clean: bool = False

    def __post_init__(self) -> None:
        if self.orders_per_day < 1:
            raise ConfigurationError(
                f"orders_per_day must be at least 1, got {self.orders_per_day}"
            )
        if self.customers_per_day is not None and self.customers_per_day < 1:
            raise ConfigurationError(
                f"customers_per_day must be at least 1 (or None), got {self.customers_per_day}"
            )
        if not 1 <= self.employees <= _MAX_EMPLOYEES:
            raise ConfigurationError(
                f"employees must be between 1 and {_MAX_EMPLOYEES}, got {self.employees}"
            )
        if self.seed < 0:
            raise ConfigurationError(f"seed must be a non-negative integer, got {self.seed}")


def generate_day(
    day: date, config: GeneratorConfig, *, first_day: date | None = None
) -> list[RawFile]:
    """All export files delivered for one day: customers, orders (one or two files), payments,
    employees.

    Args:
        day: the ``dt`` the files are delivered for.
        config: volumes, seed and defect mode.
        first_day: the first day of the generated range (default ``day``). It delivers the pool
            of earlier customers; late updates never reach back before it.

    Returns:
        The files in processing order. The same arguments always give byte-identical files.
    """
    first = day if first_day is None else first_day
    if first > day:
        raise ConfigurationError(f"first_day {first} is after day {day}")
    world = _World(config, first)
    orders = _orders(world, day, np.arange(config.orders_per_day, dtype=np.int64))
    late = _late_updates(world, day)
    return [
        _customer_file(world, day),
        *_order_files(world, day, orders, late),
        _payment_file(world, day, orders, late),
        _employee_file(world, day),
    ]


def generate_days(start: date, days: int, config: GeneratorConfig) -> Iterator[RawFile]:
    """The files of ``days`` consecutive days from ``start``, one day at a time (lazily)."""
    if days < 0:
        raise ConfigurationError(f"days must not be negative, got {days}")
    return _generate_days(start, days, config)


def write_raw_files(lake: Lake, files: Iterable[RawFile]) -> list[str]:
    """Write each file to its key in the lake (replacing any object there); returns the keys."""
    keys = []
    for raw in files:
        lake.write_bytes(raw.key, raw.content)
        keys.append(raw.key)
    return keys


def _generate_days(start: date, days: int, config: GeneratorConfig) -> Iterator[RawFile]:
    for offset in range(days):
        yield from generate_day(start + timedelta(days=offset), config, first_day=start)


# ---------------------------------------------------------------------------------------------
# Vocabulary and rates
# ---------------------------------------------------------------------------------------------

#: Share of a day's orders placed by customers who signed up that same day.
_NEW_CUSTOMER_ORDER_SHARE = 0.1
#: The first day delivers about this many days of signups from before the range …
_POOL_FACTOR = 5
#: … spread over at most this many days.
_POOL_MAX_DAYS = 90
#: A day with at least this many orders delivers them in two files.
_SPLIT_AT = 100
#: All defects of a file together stay under this share of its rows.
_MAX_DEFECT_SHARE = 0.03
#: Late updates reach back at most this many days.
_LATE_UPDATE_MAX_DAYS = 3
_LATE_UPDATE_RATE = 0.006
_LATE_CUSTOMER_RATE = 0.01
_CUSTOMER_UPDATE_RATE = 0.01
_DUPLICATE_RATE = 0.005
_CROSS_FILE_DUPLICATE_RATE = 0.003
#: Share of days on which one dataset's columns come in another order.
_SHUFFLE_DAY_SHARE = 0.25
#: A payment of an open order fails this often (and is then retried).
_PAYMENT_FAILURE_RATE = 0.03

_STATUS_WEIGHTS = {"placed": 0.45, "shipped": 0.25, "delivered": 0.20, "cancelled": 0.06,
                   "returned": 0.04}  # fmt: skip
_REGION_WEIGHTS = {"NA": 0.34, "EU": 0.28, "APAC": 0.20, "LATAM": 0.12, "MEA": 0.06}
_METHOD_WEIGHTS = {"card": 0.55, "paypal": 0.20, "bank_transfer": 0.08, "gift_card": 0.05,
                   "cash_on_delivery": 0.12}  # fmt: skip
assert set(_STATUS_WEIGHTS) == set(ORDER_STATUSES)
assert set(_REGION_WEIGHTS) == set(REGIONS)
assert set(_METHOD_WEIGHTS) == set(PAYMENT_METHODS)

_PLACED, _SHIPPED, _DELIVERED, _CANCELLED, _RETURNED = (
    list(_STATUS_WEIGHTS).index(s)
    for s in ("placed", "shipped", "delivered", "cancelled", "returned")
)
_SUCCEEDED, _FAILED, _REFUNDED = range(3)

#: (as written, as in an e-mail address)
_FIRST_NAMES = (
    ("Olivia", "olivia"), ("Liam", "liam"), ("Emma", "emma"), ("Noah", "noah"),
    ("Sofía", "sofia"), ("Mateo", "mateo"), ("Amelia", "amelia"), ("Lucas", "lucas"),
    ("Mia", "mia"), ("Ethan", "ethan"), ("Zoë", "zoe"), ("José", "jose"),
    ("Chloé", "chloe"), ("Łukasz", "lukasz"), ("Søren", "soren"), ("Aisha", "aisha"),
    ("Omar", "omar"), ("Fatima", "fatima"), ("Yusuf", "yusuf"), ("Priya", "priya"),
    ("Arjun", "arjun"), ("Mei", "mei"), ("Wei", "wei"), ("Hana", "hana"),
    ("Haruto", "haruto"), ("Ji-woo", "jiwoo"), ("Minh", "minh"), ("Chiamaka", "chiamaka"),
    ("Kwame", "kwame"), ("Amara", "amara"), ("Lars", "lars"), ("Ingrid", "ingrid"),
    ("Giulia", "giulia"), ("Marco", "marco"), ("Camille", "camille"), ("Louis", "louis"),
    ("Anna", "anna"), ("Jan", "jan"), ("Isabella", "isabella"), ("Gabriel", "gabriel"),
    ("Valentina", "valentina"), ("Diego", "diego"), ("Ana", "ana"), ("João", "joao"),
    ("Sara", "sara"), ("David", "david"), ("Leila", "leila"), ("Karim", "karim"),
    ("Ava", "ava"), ("James", "james"), ("Grace", "grace"), ("Daniel", "daniel"),
    ("Nora", "nora"), ("Samuel", "samuel"), ("Elif", "elif"), ("Emre", "emre"),
    ("Olga", "olga"), ("Dmitri", "dmitri"), ("Ngozi", "ngozi"), ("Tunde", "tunde"),
    ("Aroha", "aroha"), ("Mason", "mason"), ("Lily", "lily"), ("Henry", "henry"),
)  # fmt: skip
_LAST_NAMES = (
    ("Smith", "smith"), ("Johnson", "johnson"), ("Williams", "williams"), ("Brown", "brown"),
    ("García", "garcia"), ("Martínez", "martinez"), ("Rodríguez", "rodriguez"),
    ("López", "lopez"), ("Hernández", "hernandez"), ("González", "gonzalez"),
    ("Müller", "muller"), ("Schmidt", "schmidt"), ("Schneider", "schneider"),
    ("Fischer", "fischer"), ("Dubois", "dubois"), ("Martin", "martin"), ("Bernard", "bernard"),
    ("Rossi", "rossi"), ("Russo", "russo"), ("Ferrari", "ferrari"), ("Kowalski", "kowalski"),
    ("Nowak", "nowak"), ("Novák", "novak"), ("Jensen", "jensen"), ("Hansen", "hansen"),
    ("Johansson", "johansson"), ("Nilsson", "nilsson"), ("O'Brien", "obrien"),
    ("Murphy", "murphy"), ("Kelly", "kelly"), ("Nguyễn", "nguyen"), ("Trần", "tran"),
    ("Lê", "le"), ("Wang", "wang"), ("Li", "li"), ("Zhang", "zhang"), ("Chen", "chen"),
    ("Liu", "liu"), ("Kim", "kim"), ("Lee", "lee"), ("Park", "park"), ("Sato", "sato"),
    ("Suzuki", "suzuki"), ("Takahashi", "takahashi"), ("Tanaka", "tanaka"), ("Patel", "patel"),
    ("Shah", "shah"), ("Singh", "singh"), ("Kumar", "kumar"), ("Sharma", "sharma"),
    ("Okafor", "okafor"), ("Adeyemi", "adeyemi"), ("Mensah", "mensah"), ("Haddad", "haddad"),
    ("Khalil", "khalil"), ("Yılmaz", "yilmaz"), ("Kaya", "kaya"), ("Ivanov", "ivanov"),
    ("Petrova", "petrova"), ("Cohen", "cohen"), ("Silva", "silva"), ("Santos", "santos"),
    ("Pereira", "pereira"), ("de la Cruz", "delacruz"),
)  # fmt: skip

#: (department, job title, share of staff, base yearly salary)
_JOBS = (
    ("Engineering", "Software Engineer", 0.12, 95_000),
    ("Engineering", "Senior Software Engineer", 0.06, 130_000),
    ("Engineering", "Engineering Manager", 0.02, 155_000),
    ("Data", "Data Analyst", 0.035, 78_000),
    ("Data", "Data Engineer", 0.025, 110_000),
    ("Sales", "Account Executive", 0.10, 70_000),
    ("Sales", "Sales Manager", 0.03, 105_000),
    ("Sales", "Director, Sales", 0.005, 160_000),
    ("Marketing", "Marketing Specialist", 0.06, 62_000),
    ("Marketing", "Marketing Manager", 0.02, 98_000),
    ("Customer Support", "Support Agent", 0.16, 42_000),
    ("Customer Support", "Support Team Lead", 0.02, 58_000),
    ("Logistics", "Warehouse Associate", 0.15, 38_000),
    ("Logistics", "Logistics Coordinator", 0.04, 52_000),
    ("Logistics", "Operations Manager", 0.01, 90_000),
    ("Finance", "Accountant", 0.03, 68_000),
    ("Finance", "Financial Analyst", 0.025, 80_000),
    ("Finance", "Vice President, Finance", 0.005, 190_000),
    ("People", "Recruiter", 0.03, 60_000),
    ("People", "HR Business Partner", 0.02, 85_000),
    ("Legal", "Legal Counsel", 0.03, 140_000),
)

_STATUS_TEXT = pa.array(list(_STATUS_WEIGHTS))
_REGION_TEXT = pa.array(list(_REGION_WEIGHTS))
_METHOD_TEXT = pa.array(list(_METHOD_WEIGHTS))
_PAYMENT_STATUS_TEXT = pa.array(list(PAYMENT_STATUSES))
_FIRST_TEXT = pa.array([name for name, _ in _FIRST_NAMES])
_FIRST_ASCII = pa.array([ascii_ for _, ascii_ in _FIRST_NAMES])
_LAST_TEXT = pa.array([name for name, _ in _LAST_NAMES])
_LAST_ASCII = pa.array([ascii_ for _, ascii_ in _LAST_NAMES])
_DEPARTMENT_TEXT = pa.array([job[0] for job in _JOBS])
_TITLE_TEXT = pa.array([job[1] for job in _JOBS])
_JOB_WEIGHTS = [job[2] for job in _JOBS]
_JOB_SALARY = np.array([job[3] for job in _JOBS], dtype=np.float64)


class _Stream(IntEnum):
    """Independent random streams: one per hashed attribute, one per day-level choice."""

    CUSTOMER_FIRST = auto()
    CUSTOMER_LAST = auto()
    CUSTOMER_REGION = auto()
    CUSTOMER_TIME = auto()
    ORDER_CHANNEL = auto()
    ORDER_CUSTOMER = auto()
    ORDER_STATUS = auto()
    ORDER_AMOUNT = auto()
    ORDER_AMOUNT_ANGLE = auto()
    ORDER_TIME = auto()
    ORDER_DELAY = auto()
    PAYMENT_METHOD = auto()
    PAYMENT_OUTCOME = auto()
    PAYMENT_DELAY = auto()
    RETRY_METHOD = auto()
    RETRY_DELAY = auto()
    EMPLOYEE_PERIOD = auto()
    EMPLOYEE_PHASE = auto()
    EMPLOYEE_FIRST = auto()
    EMPLOYEE_LAST = auto()
    EMPLOYEE_AGE = auto()
    EMPLOYEE_JOB = auto()
    EMPLOYEE_PAY = auto()
    # day-level generators
    LATE_CUSTOMERS = 100
    LATE_UPDATES = auto()
    CUSTOMERS_FILE = auto()
    ORDERS_FILE = auto()
    PAYMENTS_FILE = auto()
    EMPLOYEES_FILE = auto()
    LAYOUT = auto()


# ---------------------------------------------------------------------------------------------
# Counter-based randomness
# ---------------------------------------------------------------------------------------------

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: a bijection of uint64 that scrambles every bit."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _hash(seed: int, stream: _Stream, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """64 random-looking bits for each (a, b) pair, a pure function of (seed, stream, a, b)."""
    key = _mix(np.array([(seed * _GOLDEN + int(stream)) & _MASK64], dtype=np.uint64))
    x = np.atleast_1d(np.asarray(a, dtype=np.int64)).astype(np.uint64) * np.uint64(_GOLDEN)
    x ^= key
    x = _mix(x)
    x = x + np.atleast_1d(np.asarray(b, dtype=np.int64)).astype(np.uint64) * np.uint64(
        0xD6E8FEB86659FD93
    )
    return _mix(x)


def _unit(bits: np.ndarray) -> np.ndarray:
    """Uniform floats in (0, 1) from hashed bits."""
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53 + 2.0**-54


def _below(bits: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Uniform integers in [0, n) from hashed bits (n may vary per element)."""
    top = np.asarray(n, dtype=np.int64) - 1
    return np.minimum((_unit(bits) * np.asarray(n, dtype=np.float64)).astype(np.int64), top)


def _pick(bits: np.ndarray, weights: Iterable[float]) -> np.ndarray:
    """Codes 0..len(weights)-1, drawn with those weights."""
    cumulative = np.cumsum(list(weights))
    codes = np.searchsorted(cumulative / cumulative[-1], _unit(bits), side="right")
    return np.minimum(codes, cumulative.size - 1).astype(np.int64)


def _day_rng(seed: int, day: date, stream: _Stream) -> np.random.Generator:
    """The generator for one kind of choice about one day's files."""
    return np.random.default_rng([seed, day.toordinal(), int(stream)])


def _stochastic_round(rng: np.random.Generator, x: float) -> int:
    """floor(x) or ceil(x), the latter with probability frac(x): right on average."""
    whole = math.floor(x)
    return whole + int(rng.random() < x - whole)


# ---------------------------------------------------------------------------------------------
# Text columns (pyarrow compute, no Python loop over rows)
# ---------------------------------------------------------------------------------------------


@functools.cache
def _clock() -> pa.Array:
    """``HH:MM:SSZ`` for every second of a day, indexed by the second."""
    return pa.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(86_400)])


_UNIX_EPOCH = date(1970, 1, 1).toordinal()


def _day_labels(ordinals: np.ndarray, *, compact: bool = False) -> pa.Array:
    """Each day ordinal as ``YYYY-MM-DD`` (``YYYYMMDD`` when ``compact``)."""
    if ordinals.size == 0:
        return pa.array([], pa.string())
    low, high = int(ordinals.min()), int(ordinals.max())
    days = np.arange(low - _UNIX_EPOCH, high + 1 - _UNIX_EPOCH).astype("datetime64[D]")
    table = pa.array(np.datetime_as_string(days, unit="D"), pa.string())
    if compact:
        table = pc.replace_substring(table, "-", "")
    return table.take(pa.array(ordinals - low))


def _same_day(day: date, count: int) -> np.ndarray:
    return np.full(count, day.toordinal(), dtype=np.int64)


@functools.lru_cache(maxsize=8)
def _day_clock(ordinal: int) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SSZ`` for every second of one day, indexed by the second."""
    return pc.binary_join_element_wise(date.fromordinal(ordinal).isoformat(), _clock(), "T")


def _single_day(ordinals: np.ndarray) -> int | None:
    """The ordinal when all rows are on one day (the common, fast case), else None."""
    if ordinals.size and ordinals.min() == ordinals.max():
        return int(ordinals[0])
    return None


def _timestamps(ordinals: np.ndarray, seconds: np.ndarray) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC) for a day ordinal and seconds after midnight."""
    ordinal = _single_day(ordinals)
    if ordinal is not None:
        return _day_clock(ordinal).take(pa.array(seconds))
    return pc.binary_join_element_wise(_day_labels(ordinals), _clock().take(pa.array(seconds)), "T")


def _digits(values: np.ndarray, width: int) -> pa.Array:
    """Non-negative integers as zero-padded decimal text."""
    return pc.utf8_lpad(
        pc.cast(pa.array(values, pa.int64()), pa.string()), width=width, padding="0"
    )


def _money(cents: np.ndarray) -> pa.Array:
    """Integer cents as a decimal with exactly two places (``1234`` → ``12.34``)."""
    magnitude = np.abs(cents)
    text = pc.binary_join_element_wise(
        pc.cast(pa.array(magnitude // 100), pa.string()), _digits(magnitude % 100, 2), "."
    )
    negative = cents < 0
    if negative.any():
        text = pc.if_else(pa.array(negative), pc.binary_join_element_wise("-", text, ""), text)
    return text


def _ids(prefix: str, ordinals: np.ndarray, numbers: np.ndarray, width: int) -> pa.Array:
    """``{prefix}{YYYYMMDD}{number:0width}``: ids unique across days."""
    digits = _digits(numbers, width)
    ordinal = _single_day(ordinals)
    if ordinal is not None:
        day = date.fromordinal(ordinal)
        return pc.binary_join_element_wise(f"{prefix}{day:%Y%m%d}", digits, "")
    return pc.binary_join_element_wise(prefix, _day_labels(ordinals, compact=True), digits, "")


def _customer_ids(signup: np.ndarray, seq: np.ndarray) -> pa.Array:
    return _ids("C", signup, seq, 6)


def _value_bytes(strings: pa.Array) -> memoryview:
    """The UTF-8 bytes of all values of a string array, back to back, without a copy."""
    if not (pa.types.is_string(strings.type) or pa.types.is_large_string(strings.type)):
        strings = strings.cast(pa.large_string())
    _, offsets_buffer, data = strings.buffers()
    if len(strings) == 0 or data is None:
        return memoryview(b"")
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width, count=strings.offset + len(strings) + 1)
    return memoryview(data)[int(offsets[strings.offset]) : int(offsets[-1])]


#: Bytes that make a CSV field need quotes. All are below 45 (``-``), unlike digits, letters,
#: ``-:.`` and every byte of a multi-byte UTF-8 character, so one comparison rules most text out.
_QUOTE_TRIGGERS = np.zeros(256, dtype=bool)
_QUOTE_TRIGGERS[list(b'",\r\n')] = True
assert max(b'",\r\n') < 45


def _quoted(column: pa.Array) -> pa.Array:
    """CSV fields with QUOTE_MINIMAL semantics: only values holding ``"``, ``,`` or a line break
    are enclosed in quotes (inner quotes doubled)."""
    raw = np.frombuffer(_value_bytes(column), dtype=np.uint8)
    if not _QUOTE_TRIGGERS[raw[raw < 45]].any():
        return column  # the common case, settled by a pass over the bytes
    needs = pc.match_substring_regex(column, r'[",\r\n]')
    escaped = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
    return pc.if_else(needs, escaped, column)


def _render(columns: Mapping[str, pa.Array], header: Sequence[str]) -> pa.Array:
    """One CSV line (``\\n``-terminated) per row, fields in ``header`` order."""
    fields = [_quoted(columns[name]) for name in header]
    return pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, ","), "\n", "")


def _csv_bytes(header: Sequence[str], lines: pa.Array) -> bytes:
    """The file: header line, then the lines, copied once out of the Arrow buffer."""
    head = (",".join(header) + "\n").encode("utf-8")
    return b"".join([head, _value_bytes(lines)])


def _concat_columns(
    parts: Sequence[Mapping[str, pa.Array]], names: Sequence[str]
) -> dict[str, pa.Array]:
    """Row-wise concatenation of column sets (empty string columns when there are none)."""
    if not parts:
        return {name: pa.array([], pa.string()) for name in names}
    return {name: pa.concat_arrays([part[name] for part in parts]) for name in names}


def _interleave(base: pa.Array, extra: pa.Array, after: np.ndarray) -> pa.Array:
    """``base`` with extra line j inserted at position ``after[j]`` (a float between lines)."""
    if len(extra) == 0:
        return base
    keys = np.concatenate([np.arange(len(base), dtype=np.float64), after])
    order = np.argsort(keys, kind="stable")
    return pa.concat_arrays([base, extra]).take(pa.array(order))


def _anywhere(rng: np.random.Generator, lines: pa.Array, count: int) -> np.ndarray:
    """Random insertion points among ``lines`` for ``count`` new lines."""
    return rng.uniform(-0.5, len(lines) - 0.5, size=count)


def _with_duplicates(rng: np.random.Generator, lines: pa.Array, count: int) -> pa.Array:
    """``lines`` with ``count`` of them repeated verbatim, each copy a few lines after its
    original (a re-sent batch)."""
    count = min(count, len(lines))
    if count == 0:
        return lines
    sources = rng.choice(len(lines), size=count, replace=False)
    after = sources + rng.integers(0, 20, size=count) + 0.5
    return _interleave(lines, lines.take(pa.array(sources)), after)


# ---------------------------------------------------------------------------------------------
# Defects
# ---------------------------------------------------------------------------------------------


def _one_of(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _negative(value: str, rng: np.random.Generator) -> str:
    return "-" + value


def _three_decimals(value: str, rng: np.random.Generator) -> str:
    return value + str(int(rng.integers(1, 10)))


def _bad_date(value: str, rng: np.random.Generator) -> str:
    year, month, day = value[:4], value[5:7], value[8:10]
    return _one_of(rng, (f"{year}-13-{day}", f"{year}-{month}-32", f"{year}-02-30"))


def _no_at_sign(value: str, rng: np.random.Generator) -> str:
    return value.replace("@", _one_of(rng, (".", "(at)", " at ")))


def _replacement(*options: str) -> Callable[[str, np.random.Generator], str]:
    def replace(value: str, rng: np.random.Generator) -> str:
        return _one_of(rng, options)

    return replace


@dataclass(frozen=True)
class _BadValue:
    """A kind of invalid value: the column it spoils, how often, and how."""

    kind: str
    column: str
    rate: float
    spoil: Callable[[str, np.random.Generator], str]


_ORDER_BAD_VALUES = (
    _BadValue("negative_amount", "total_amount", 0.0015, _negative),
    _BadValue("three_decimals", "total_amount", 0.0015, _three_decimals),
    _BadValue("unknown_status", "order_status", 0.0015, _replacement("pending", "on_hold", "lost")),
    _BadValue("bad_date", "order_date", 0.0015, _bad_date),
)
_CUSTOMER_BAD_VALUES = (
    _BadValue("bad_email", "email", 0.003, _no_at_sign),
    _BadValue("unknown_region", "customer_region", 0.003, _replacement("EMEA", "US", "Europe")),
)
_PAYMENT_BAD_VALUES = (
    _BadValue(
        "unknown_method", "payment_method", 0.003, _replacement("crypto", "voucher", "cheque")
    ),
    _BadValue("three_decimals", "amount", 0.002, _three_decimals),
)
_EMPLOYEE_BAD_VALUES = (
    _BadValue("age_out_of_range", "age", 0.003, _replacement("17", "101", "150")),
)


def _plan(
    rng: np.random.Generator | None, rows: int, rates: Mapping[str, float], reserved: int = 0
) -> dict[str, int]:
    """How many rows of each defect kind a file gets: ``rows × rate`` stochastically rounded,
    all kinds together (plus ``reserved`` rows already spent) within 3 % of the file.
    No generator (clean mode) means no defects."""
    if rng is None:
        return dict.fromkeys(rates, 0)
    budget = max(0, int(rows * _MAX_DEFECT_SHARE) - reserved)
    counts = {}
    for kind, rate in rates.items():
        counts[kind] = min(budget, _stochastic_round(rng, rows * rate))
        budget -= counts[kind]
    return counts


def _spoil(
    rng: np.random.Generator,
    columns: dict[str, pa.Array],
    bad_values: Sequence[_BadValue],
    counts: Mapping[str, int],
    protected: np.ndarray,
) -> None:
    """Replace one value in each of ``counts[kind]`` distinct rows per kind (in place);
    rows listed in ``protected`` are left alone."""
    total = sum(counts[bad.kind] for bad in bad_values)
    rows = len(next(iter(columns.values())))
    if total == 0 or rows == 0:
        return
    candidates = rng.choice(rows, size=min(rows, total + protected.size), replace=False)
    candidates = candidates[~np.isin(candidates, protected)][:total]
    spoiled: dict[str, dict[int, str]] = {}  # column -> row -> bad value
    start = 0
    for bad in bad_values:
        positions = candidates[start : start + counts[bad.kind]]
        start += counts[bad.kind]
        values = columns[bad.column].take(pa.array(positions)).to_pylist()
        by_row = spoiled.setdefault(bad.column, {})
        for row, value in zip(positions.tolist(), values, strict=True):
            by_row[row] = bad.spoil(value, rng)
    for name, by_row in spoiled.items():
        if not by_row:
            continue
        ordered = sorted(by_row)
        mask = np.zeros(rows, dtype=bool)
        mask[ordered] = True
        replacements = pa.array([by_row[row] for row in ordered], pa.string())
        columns[name] = pc.replace_with_mask(columns[name], pa.array(mask), replacements)


def _header(world: _World, day: date, dataset: Dataset) -> list[str]:
    """The file's column order: canonical, except on some defect-mode days for one dataset."""
    names = list(SPECS[dataset].column_names)
    if world.config.clean:
        return names
    rng = _day_rng(world.seed, day, _Stream.LAYOUT)
    if rng.random() >= _SHUFFLE_DAY_SHARE:
        return names
    target = list(Dataset)[int(rng.integers(len(Dataset)))]
    if target != dataset:
        return names
    shuffled = [names[i] for i in rng.permutation(len(names))]
    return shuffled if shuffled != names else names[1:] + names[:1]


def _defect_rng(world: _World, day: date, stream: _Stream) -> np.random.Generator | None:
    return None if world.config.clean else _day_rng(world.seed, day, stream)


class _Rows:
    """A dataclass of equally long numpy arrays (one element per row) plus scalar ``day``."""

    day: date

    def subset(self, keep: np.ndarray) -> Self:
        """The rows where ``keep`` (a boolean mask or indexes) selects."""
        arrays = {
            f.name: getattr(self, f.name)[keep]
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.name != "day"
        }
        return dataclasses.replace(self, **arrays)  # type: ignore[type-var]


# ---------------------------------------------------------------------------------------------
# The world: who is a customer when
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _World:
    """What a day's rows depend on besides the day: the configuration and the range's start."""

    config: GeneratorConfig
    first: date

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def signups(self) -> int:
        """New customers a day."""
        if self.config.customers_per_day is not None:
            return self.config.customers_per_day
        return max(1, self.config.orders_per_day // 10)

    @property
    def pool_days(self) -> int:
        return min(_POOL_MAX_DAYS, _POOL_FACTOR * self.signups)

    @property
    def pool_per_day(self) -> int:
        """The pool holds the first this-many signups of each of its days."""
        return math.ceil(_POOL_FACTOR * self.signups / self.pool_days)

    @property
    def pool_size(self) -> int:
        return self.pool_days * self.pool_per_day

    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        """(signup ordinal, sequence) of the pool, oldest first."""
        first = self.first.toordinal()
        days = np.arange(first - self.pool_days, first, dtype=np.int64)
        return np.repeat(days, self.pool_per_day), np.tile(
            np.arange(self.pool_per_day, dtype=np.int64), self.pool_days
        )

    def known_before(self, day: date) -> int:
        """Customers who signed up before ``day``: the pool, then the range's earlier days."""
        return self.pool_size + (day - self.first).days * self.signups

    def customers_at(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(signup ordinal, sequence) of customers by position in the ``known_before`` list."""
        in_pool = positions < self.pool_size
        later = np.maximum(positions - self.pool_size, 0)
        first = self.first.toordinal()
        signup = np.where(
            in_pool, first - 1 - positions // self.pool_per_day, first + later // self.signups
        )
        seq = np.where(in_pool, positions % self.pool_per_day, later % self.signups)
        return signup.astype(np.int64), seq.astype(np.int64)

    def late_signups(self, day: date) -> tuple[np.ndarray, np.ndarray]:
        """Customers of ``day`` delivered only the next day: (their sequences, the index of an
        order each of them places on ``day``). Empty in clean mode and before the range."""
        empty = np.array([], dtype=np.int64)
        if self.config.clean or day < self.first:
            return empty, empty
        rng = _day_rng(self.seed, day, _Stream.LATE_CUSTOMERS)
        count = _stochastic_round(rng, self.signups * _LATE_CUSTOMER_RATE)
        count = min(count, self.signups, self.config.orders_per_day)
        seqs = rng.choice(self.signups, size=count, replace=False).astype(np.int64)
        orders = rng.choice(self.config.orders_per_day, size=count, replace=False)
        return seqs, orders.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# customers
# ---------------------------------------------------------------------------------------------


def _customer_columns(world: _World, signup: np.ndarray, seq: np.ndarray) -> dict[str, pa.Array]:
    """Customer rows as first delivered: one per (signup ordinal, sequence) pair; updated_at is
    the moment of signup."""
    seed = world.seed
    first = pa.array(_below(_hash(seed, _Stream.CUSTOMER_FIRST, signup, seq), len(_FIRST_NAMES)))
    last = pa.array(_below(_hash(seed, _Stream.CUSTOMER_LAST, signup, seq), len(_LAST_NAMES)))
    region = _pick(_hash(seed, _Stream.CUSTOMER_REGION, signup, seq), _REGION_WEIGHTS.values())
    seconds = _below(_hash(seed, _Stream.CUSTOMER_TIME, signup, seq), 86_400)
    customer_id = _customer_ids(signup, seq)
    number = pc.utf8_slice_codeunits(customer_id, 1)
    return {
        "customer_id": customer_id,
        "first_name": _FIRST_TEXT.take(first),
        "last_name": _LAST_TEXT.take(last),
        "email": pc.binary_join_element_wise(
            _FIRST_ASCII.take(first), ".", _LAST_ASCII.take(last), "+", number, "@example.com", ""
        ),
        "customer_region": _REGION_TEXT.take(pa.array(region)),
        "signup_date": _day_labels(signup),
        "updated_at": _timestamps(signup, seconds),
    }


def _customer_file(world: _World, day: date) -> RawFile:
    """The customers delivered on ``day``: its signups (but the late ones), yesterday's late
    signups, and on the range's first day the pool of earlier customers. Defect mode adds
    updates of earlier customers, duplicates and bad values."""
    rng = _defect_rng(world, day, _Stream.CUSTOMERS_FILE)
    header = _header(world, day, Dataset.CUSTOMERS)
    signups, seqs = [], []
    if day == world.first:
        pool_signup, pool_seq = world.pool()
        signups.append(pool_signup)
        seqs.append(pool_seq)
    today = np.setdiff1d(np.arange(world.signups, dtype=np.int64), world.late_signups(day)[0])
    signups.append(_same_day(day, today.size))
    seqs.append(today)
    yesterday = day - timedelta(days=1)
    late = world.late_signups(yesterday)[0]
    signups.append(_same_day(yesterday, late.size))
    seqs.append(np.sort(late))
    columns = _customer_columns(world, np.concatenate(signups), np.concatenate(seqs))
    rows = len(columns["customer_id"])

    rates = {bad.kind: bad.rate for bad in _CUSTOMER_BAD_VALUES}
    rates |= {"update": _CUSTOMER_UPDATE_RATE, "duplicate": _DUPLICATE_RATE}
    counts = _plan(rng, rows, rates)
    if rng is not None:
        _spoil(rng, columns, _CUSTOMER_BAD_VALUES, counts, np.array([], dtype=np.int64))
    lines = _render(columns, header)
    if rng is not None:
        updates = _render(_customer_updates(world, day, rng, counts["update"]), header)
        lines = _interleave(lines, updates, _anywhere(rng, lines, len(updates)))
        lines = _with_duplicates(rng, lines, counts["duplicate"])
    return RawFile(Dataset.CUSTOMERS, day, "customers-0001.csv", _csv_bytes(header, lines))


def _customer_updates(
    world: _World, day: date, rng: np.random.Generator, count: int
) -> dict[str, pa.Array]:
    """Customer rows re-delivered on ``day`` for customers who signed up before it: a new
    e-mail address and a later ``updated_at``; every other value unchanged."""
    names = SPECS[Dataset.CUSTOMERS].column_names
    known = world.known_before(day)
    count = min(count, known)
    if day == world.first or count == 0:
        return _concat_columns([], names)
    positions = rng.choice(known, size=count, replace=False)
    columns = _customer_columns(world, *world.customers_at(positions))
    columns["email"] = pc.replace_substring(columns["email"], "@example.com", "@example.net")
    seconds = np.sort(rng.integers(0, 86_400, size=count))
    columns["updated_at"] = _timestamps(_same_day(day, count), seconds)
    return columns


# ---------------------------------------------------------------------------------------------
# orders
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Orders(_Rows):
    """The state of some orders of one day, one array element per order."""

    day: date
    index: np.ndarray  # position in the day; the digits of the order id
    customer_signup: np.ndarray  # the customer's signup day ordinal
    customer_seq: np.ndarray
    status: np.ndarray  # code into _STATUS_WEIGHTS
    cents: np.ndarray
    created: np.ndarray  # seconds after midnight of ``day``
    updated: np.ndarray  # seconds after midnight of the day the row is delivered


def _orders(world: _World, day: date, index: np.ndarray) -> _Orders:
    """The orders of ``day`` with these indexes, as placed that day: hashed from (seed, day,
    index), so an order is the same whichever day re-derives it."""
    seed, ordinal, n = world.seed, day.toordinal(), world.config.orders_per_day

    def bits(stream: _Stream) -> np.ndarray:
        return _hash(seed, stream, ordinal, index)

    own_day = _unit(bits(_Stream.ORDER_CHANNEL)) < _NEW_CUSTOMER_ORDER_SHARE
    who = bits(_Stream.ORDER_CUSTOMER)
    signup, seq = world.customers_at(_below(who, world.known_before(day)))
    signup = np.where(own_day, ordinal, signup)
    seq = np.where(own_day, _below(who, world.signups), seq)
    late_seqs, late_orders = world.late_signups(day)
    if late_orders.size:
        order = np.argsort(late_orders)
        found = np.minimum(np.searchsorted(late_orders[order], index), late_orders.size - 1)
        hit = late_orders[order][found] == index
        signup = np.where(hit, ordinal, signup)
        seq = np.where(hit, late_seqs[order][found], seq)

    status = _pick(bits(_Stream.ORDER_STATUS), _STATUS_WEIGHTS.values())
    # Log-normal amounts, median 55.00, from two uniforms (Box–Muller).
    normal = np.sqrt(-2.0 * np.log(_unit(bits(_Stream.ORDER_AMOUNT)))) * np.cos(
        2.0 * np.pi * _unit(bits(_Stream.ORDER_AMOUNT_ANGLE))
    )
    cents = np.clip(np.rint(np.exp(np.log(5_500.0) + 0.85 * normal)), 199, 2_500_000)
    # Index order is time order: order i is placed in the i-th slice of the day.
    created = np.minimum(
        index * 86_400 // n + _below(bits(_Stream.ORDER_TIME), max(1, 86_400 // n)), 86_399
    )
    delay = np.where(
        status == _PLACED,
        _below(bits(_Stream.ORDER_DELAY), 300),
        _below(bits(_Stream.ORDER_DELAY), 6 * 3_600),
    )
    return _Orders(
        day=day,
        index=index,
        customer_signup=signup.astype(np.int64),
        customer_seq=seq.astype(np.int64),
        status=status,
        cents=cents.astype(np.int64),
        created=created.astype(np.int64),
        updated=np.minimum(created + delay, 86_399).astype(np.int64),
    )


def _order_columns(orders: _Orders, delivered: date) -> dict[str, pa.Array]:
    """Order rows: one per order, ``updated_at`` on the ``delivered`` day."""
    count = orders.index.size
    placed_on = _same_day(orders.day, count)
    return {
        "order_id": _ids("O", placed_on, orders.index, 7),
        "customer_id": _customer_ids(orders.customer_signup, orders.customer_seq),
        "order_date": _day_labels(placed_on),
        "order_status": _STATUS_TEXT.take(pa.array(orders.status)),
        "total_amount": _money(orders.cents),
        "updated_at": _timestamps(_same_day(delivered, count), orders.updated),
    }


@dataclass(frozen=True)
class _LateUpdate:
    """Orders of an earlier day re-delivered today: as placed, their new status, and the second
    of today the change happened."""

    orders: _Orders
    status: np.ndarray
    at: np.ndarray

    def as_delivered(self) -> _Orders:
        return dataclasses.replace(self.orders, status=self.status, updated=self.at)


def _late_updates(world: _World, day: date) -> list[_LateUpdate]:
    """Status changes of orders placed 1–3 days before ``day`` (within the range), delivered
    with ``day``'s orders: placed → shipped or cancelled, shipped → delivered,
    delivered → returned."""
    reach = min(_LATE_UPDATE_MAX_DAYS, (day - world.first).days)
    if world.config.clean or reach <= 0:
        return []
    rng = _day_rng(world.seed, day, _Stream.LATE_UPDATES)
    n = world.config.orders_per_day
    count = min(_stochastic_round(rng, n * _LATE_UPDATE_RATE), int(n * _MAX_DEFECT_SHARE))
    ages = rng.integers(1, reach + 1, size=count)
    indexes = rng.integers(0, n, size=count)
    updates = []
    for age in range(1, reach + 1):
        index = np.unique(indexes[ages == age])
        if index.size == 0:
            continue
        placed = _orders(world, day - timedelta(days=age), index)
        to_cancel = rng.random(index.size) < 0.3
        new = np.select(
            [placed.status == _PLACED, placed.status == _SHIPPED, placed.status == _DELIVERED],
            [np.where(to_cancel, _CANCELLED, _SHIPPED), _DELIVERED, _RETURNED],
            default=-1,
        )
        keep = new >= 0
        at = np.sort(rng.integers(0, 86_400, size=int(keep.sum())))
        updates.append(_LateUpdate(placed.subset(keep), new[keep], at))
    return updates


def _order_files(
    world: _World, day: date, orders: _Orders, late: list[_LateUpdate]
) -> list[RawFile]:
    """The day's orders: the first and second half of the day in two files (one file below
    ``_SPLIT_AT`` orders). Defect mode mixes in late updates, duplicates within and across the
    files, and bad values."""
    rng = _defect_rng(world, day, _Stream.ORDERS_FILE)
    header = _header(world, day, Dataset.ORDERS)
    names = SPECS[Dataset.ORDERS].column_names
    columns = _order_columns(orders, day)
    late_columns = _concat_columns([_order_columns(u.as_delivered(), day) for u in late], names)
    n = orders.index.size
    bounds = [0, n // 2, n] if n >= _SPLIT_AT else [0, n]
    parts = len(bounds) - 1
    late_rows = len(late_columns["order_id"])
    late_part = rng.integers(0, parts, size=late_rows) if rng is not None else np.zeros(0)
    protected = world.late_signups(day)[1]

    files: list[RawFile] = []
    first_lines: pa.Array | None = None
    for part in range(parts):
        low, high = bounds[part], bounds[part + 1]
        mine = columns if parts == 1 else {k: v.slice(low, high - low) for k, v in columns.items()}
        late_mask = pa.array(late_part == part)
        late_lines = _render({k: v.filter(late_mask) for k, v in late_columns.items()}, header)
        rates = {bad.kind: bad.rate for bad in _ORDER_BAD_VALUES}
        rates["duplicate"] = _DUPLICATE_RATE
        if part == 1:
            rates["cross_file_duplicate"] = _CROSS_FILE_DUPLICATE_RATE
        rows = high - low + len(late_lines)
        counts = _plan(rng, rows, rates, reserved=len(late_lines))
        if rng is not None:
            mine = dict(mine)
            _spoil(
                rng,
                mine,
                _ORDER_BAD_VALUES,
                counts,
                protected[(protected >= low) & (protected < high)] - low,
            )
        lines = _render(mine, header)
        if rng is not None:
            lines = _interleave(lines, late_lines, _anywhere(rng, lines, len(late_lines)))
            if first_lines is not None:
                copies = min(counts["cross_file_duplicate"], len(first_lines))
                sources = rng.choice(len(first_lines), size=copies, replace=False)
                lines = _interleave(
                    lines, first_lines.take(pa.array(sources)), _anywhere(rng, lines, copies)
                )
            lines = _with_duplicates(rng, lines, counts["duplicate"])
        first_lines = lines
        name = f"orders-{part + 1:04d}.csv"
        files.append(RawFile(Dataset.ORDERS, day, name, _csv_bytes(header, lines)))
    return files


# ---------------------------------------------------------------------------------------------
# payments
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Payments(_Rows):
    """Payments of one day's orders, one array element per payment."""

    day: date
    index: np.ndarray  # the digits of the payment id
    order_index: np.ndarray
    method: np.ndarray  # code into _METHOD_WEIGHTS
    status: np.ndarray  # code into PAYMENT_STATUSES
    cents: np.ndarray
    updated: np.ndarray  # seconds after midnight of the day the row is delivered


def _first_payments(world: _World, orders: _Orders) -> _Payments:
    """The first payment of each order, numbered like the order: returned orders refunded,
    cancelled ones failed or refunded, open ones succeeded or (3 %) failed."""
    seed, ordinal = world.seed, orders.day.toordinal()
    outcome = _unit(_hash(seed, _Stream.PAYMENT_OUTCOME, ordinal, orders.index))
    status = np.select(
        [
            orders.status == _RETURNED,
            orders.status == _CANCELLED,
            outcome < _PAYMENT_FAILURE_RATE,
        ],
        [_REFUNDED, np.where(outcome < 0.5, _FAILED, _REFUNDED), _FAILED],
        default=_SUCCEEDED,
    )
    delay = 30 + _below(_hash(seed, _Stream.PAYMENT_DELAY, ordinal, orders.index), 870)
    return _Payments(
        day=orders.day,
        index=orders.index,
        order_index=orders.index,
        method=_pick(
            _hash(seed, _Stream.PAYMENT_METHOD, ordinal, orders.index), _METHOD_WEIGHTS.values()
        ),
        status=status.astype(np.int64),
        cents=orders.cents,
        updated=np.minimum(orders.created + delay, 86_399),
    )


def _retries(world: _World, orders: _Orders, first: _Payments) -> _Payments:
    """A second, succeeded payment for each open order whose first payment failed; numbered
    after the day's orders."""
    retried = (first.status == _FAILED) & (orders.status != _CANCELLED)
    again = first.subset(retried)
    seed, ordinal = world.seed, orders.day.toordinal()
    delay = 300 + _below(_hash(seed, _Stream.RETRY_DELAY, ordinal, again.order_index), 3_300)
    return dataclasses.replace(
        again,
        index=world.config.orders_per_day + np.arange(again.index.size, dtype=np.int64),
        method=_pick(
            _hash(seed, _Stream.RETRY_METHOD, ordinal, again.order_index), _METHOD_WEIGHTS.values()
        ),
        status=np.full(again.index.size, _SUCCEEDED, dtype=np.int64),
        updated=np.minimum(again.updated + delay, 86_399),
    )


def _payment_columns(payments: _Payments, delivered: date) -> dict[str, pa.Array]:
    """Payment rows: one per payment, ``updated_at`` on the ``delivered`` day."""
    count = payments.index.size
    paid_on = _same_day(payments.day, count)
    return {
        "payment_id": _ids("P", paid_on, payments.index, 7),
        "order_id": _ids("O", paid_on, payments.order_index, 7),
        "payment_date": _day_labels(paid_on),
        "payment_method": _METHOD_TEXT.take(pa.array(payments.method)),
        "payment_status": _PAYMENT_STATUS_TEXT.take(pa.array(payments.status)),
        "amount": _money(payments.cents),
        "updated_at": _timestamps(_same_day(delivered, count), payments.updated),
    }


def _late_refunds(
    world: _World, late: list[_LateUpdate], rng: np.random.Generator
) -> list[_Payments]:
    """Succeeded first payments of late-cancelled or late-returned orders, refunded a little
    after the order changed."""
    refunds = []
    for update in late:
        closed = np.isin(update.status, (_CANCELLED, _RETURNED))
        payments = _first_payments(world, update.orders.subset(closed))
        paid = payments.status == _SUCCEEDED
        at = update.at[closed][paid] + rng.integers(60, 3_600, size=int(paid.sum()))
        refunds.append(
            dataclasses.replace(
                payments.subset(paid),
                status=np.full(int(paid.sum()), _REFUNDED, dtype=np.int64),
                updated=np.minimum(at, 86_399),
            )
        )
    return refunds


def _payment_file(world: _World, day: date, orders: _Orders, late: list[_LateUpdate]) -> RawFile:
    """The day's payments, each retry right after its failed first attempt. Defect mode adds
    late refunds of earlier days' payments, duplicates and bad values."""
    rng = _defect_rng(world, day, _Stream.PAYMENTS_FILE)
    header = _header(world, day, Dataset.PAYMENTS)
    names = SPECS[Dataset.PAYMENTS].column_names
    first = _first_payments(world, orders)
    retries = _retries(world, orders, first)
    columns = _payment_columns(first, day)
    retry_lines = _render(_payment_columns(retries, day), header)
    refunds = _late_refunds(world, late, rng) if rng is not None else []
    refund_columns = _concat_columns([_payment_columns(r, day) for r in refunds], names)
    refund_lines = _render(refund_columns, header)

    rows = first.index.size + retries.index.size + len(refund_lines)
    rates = {bad.kind: bad.rate for bad in _PAYMENT_BAD_VALUES} | {"duplicate": _DUPLICATE_RATE}
    counts = _plan(rng, rows, rates, reserved=len(refund_lines))
    if rng is not None:
        _spoil(rng, columns, _PAYMENT_BAD_VALUES, counts, np.array([], dtype=np.int64))
    lines = _interleave(_render(columns, header), retry_lines, retries.order_index + 0.5)
    if rng is not None:
        lines = _interleave(lines, refund_lines, _anywhere(rng, lines, len(refund_lines)))
        lines = _with_duplicates(rng, lines, counts["duplicate"])
    return RawFile(Dataset.PAYMENTS, day, "payments-0001.csv", _csv_bytes(header, lines))


# ---------------------------------------------------------------------------------------------
# employees
# ---------------------------------------------------------------------------------------------


def _employee_columns(seed: int, count: int, day: date) -> dict[str, pa.Array]:
    """The staff on ``day``: one row per position. Each position is held for 5–15 years by one
    person (hashed from seed, position and tenure), hired at the start of the tenure; salaries
    rise 3 % a year."""
    position = np.arange(count, dtype=np.int64)
    period = 5 * 365 + _below(_hash(seed, _Stream.EMPLOYEE_PERIOD, 0, position), 10 * 365)
    phase = _below(_hash(seed, _Stream.EMPLOYEE_PHASE, 0, position), period)
    tenure = (day.toordinal() + phase) // period
    hired = tenure * period - phase

    def bits(stream: _Stream) -> np.ndarray:
        return _hash(seed, stream, position, tenure)

    first = _below(bits(_Stream.EMPLOYEE_FIRST), len(_FIRST_NAMES))
    last = _below(bits(_Stream.EMPLOYEE_LAST), len(_LAST_NAMES))
    # Old enough to have been at least 18 when hired, whatever the tenure.
    age = 18 + -(-period // 365) + _below(bits(_Stream.EMPLOYEE_AGE), 35)
    last = _unique_last_names(first, last, age)
    job = _pick(bits(_Stream.EMPLOYEE_JOB), _JOB_WEIGHTS)
    years = (day.toordinal() - hired) // 365
    yearly = _JOB_SALARY[job] * (0.85 + 0.3 * _unit(bits(_Stream.EMPLOYEE_PAY)))
    cents = np.rint(yearly * 100 * 1.03**years).astype(np.int64)
    return {
        "first_name": _FIRST_TEXT.take(pa.array(first)),
        "last_name": _LAST_TEXT.take(pa.array(last)),
        "age": pc.cast(pa.array(age), pa.string()),
        "department": _DEPARTMENT_TEXT.take(pa.array(job)),
        "job_title": _TITLE_TEXT.take(pa.array(job)),
        "hire_date": _day_labels(hired),
        "salary": _money(cents),
    }


def _unique_last_names(first: np.ndarray, last: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Last names adjusted so that (first, last, age) is unique: a later position sharing a key
    with an earlier one takes the next last name, until no key repeats."""
    for _ in range(len(_LAST_NAMES) * 4):
        key = (first * len(_LAST_NAMES) + last) * 200 + age
        _, first_seen = np.unique(key, return_index=True)
        repeated = np.ones(key.size, dtype=bool)
        repeated[first_seen] = False
        if not repeated.any():
            return last
        last = np.where(repeated, (last + 1) % len(_LAST_NAMES), last)
    raise ConfigurationError("too many employees for unique (first_name, last_name, age) keys")


def _employee_file(world: _World, day: date) -> RawFile:
    """The full employees snapshot of ``day``; defect mode adds duplicates and bad ages."""
    rng = _defect_rng(world, day, _Stream.EMPLOYEES_FILE)
    header = _header(world, day, Dataset.EMPLOYEES)
    columns = _employee_columns(world.seed, world.config.employees, day)
    rates = {bad.kind: bad.rate for bad in _EMPLOYEE_BAD_VALUES} | {"duplicate": _DUPLICATE_RATE}
    counts = _plan(rng, world.config.employees, rates)
    if rng is not None:
        _spoil(rng, columns, _EMPLOYEE_BAD_VALUES, counts, np.array([], dtype=np.int64))
    lines = _render(columns, header)
    if rng is not None:
        lines = _with_duplicates(rng, lines, counts["duplicate"])
    return RawFile(Dataset.EMPLOYEES, day, "employees-0001.csv", _csv_bytes(header, lines))


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devtools.generate``."""
    from ecom_pipeline.cli import iso_date

    parser = argparse.ArgumentParser(
        prog="python -m devtools.generate",
        description=(
            f"Write realistic raw CSV exports (SPEC §3) under {layout.RAW_PREFIX} of the "
            "configured lake."
        ),
    )
    parser.add_argument("--start-date", type=iso_date, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1, help="number of days (default 1)")
    parser.add_argument(
        "--orders-per-day", type=int, default=2000, help="orders a day (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="the world's seed (default 7)")
    parser.add_argument("--clean", action="store_true", help="no defects in the files")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.generate``: write days of raw CSVs into the configured lake."""
    import time

    from ecom_pipeline.cli import run_command
    from ecom_pipeline.run.resources import build_resources
    from ecom_pipeline.settings import load_settings

    args = build_parser().parse_args(argv)

    def generate() -> int:
        lake = build_resources(load_settings()).lake
        config = GeneratorConfig(
            orders_per_day=args.orders_per_day, seed=args.seed, clean=args.clean
        )
        for offset in range(args.days):
            day = args.start_date + timedelta(days=offset)
            started = time.perf_counter()
            keys = write_raw_files(lake, generate_day(day, config, first_day=args.start_date))
            print(f"{day}: {len(keys)} file(s) in {time.perf_counter() - started:.1f} s")
        print(f"raw files under {lake.uri(layout.RAW)}")
        return 0

    return run_command("generate", generate)


if __name__ == "__main__":
    raise SystemExit(main())
