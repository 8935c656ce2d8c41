"""The lake's key layout (SPEC §2): every key the pipeline writes is built here, and every key
whose parts the pipeline reads back is parsed here.

Keys are relative to the lake root (``./lake`` or ``s3://bucket[/prefix]``)::

    raw/{dataset}/dt=YYYY-MM-DD/{file}.csv                 bronze: deliveries, never modified
    processed/{dataset}/                                   silver: one Delta table per dataset
    quarantine/{dataset}/dt=YYYY-MM-DD/{file}.parquet      rejected rows of one input file
    quarantine/{dataset}/dt=YYYY-MM-DD/files/{file}        a rejected whole file (when copied)
    quarantine/{dataset}/dt=YYYY-MM-DD/files/{file}.reason.json   and why it was rejected
    gold/{table}/month=YYYY-MM/{table}.parquet             gold: one file per table and month
    _runs/dt=YYYY-MM-DD/{run_id}.json                      run manifests
    _runs/ledger/{dataset}/dt=YYYY-MM-DD.json              files already ingested, per day
    _runs/alerts/{stamp}-{kind}.json                       alerts of the lake notifier
    _locks/{name}/                                         the lake lock's generations

`parse_key` takes any of these keys apart again (kind and parts). Retention ages a key by its
``dt=`` day (`day_in_key`) and a gold file by its ``month=`` (`parse_key`), so it reads exactly
what the writers above wrote. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

# -- the layers -----------------------------------------------------------------------------
RAW = "raw"
PROCESSED = "processed"
QUARANTINE = "quarantine"
GOLD = "gold"
RUNS = "_runs"
LOCKS = "_locks"

RAW_PREFIX = f"{RAW}/"
PROCESSED_PREFIX = f"{PROCESSED}/"
QUARANTINE_PREFIX = f"{QUARANTINE}/"
GOLD_PREFIX = f"{GOLD}/"
RUNS_PREFIX = f"{RUNS}/"
LOCKS_PREFIX = f"{LOCKS}/"

#: Hive-style name of the day folder (``dt=YYYY-MM-DD``) and of the gold month folder.
DAY_PARTITION = "dt"
MONTH_PARTITION = "month"
#: Where a delivery is expected, as people read it in messages.
RAW_DELIVERIES = f"{RAW_PREFIX}{{dataset}}/{DAY_PARTITION}=D/*.csv"

_LEDGER = "ledger"
_ALERTS = "alerts"
_QUARANTINED_FILES = "files"
_REASON_SUFFIX = ".reason.json"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DAY_IN_KEY = re.compile(rf"/{DAY_PARTITION}=(\d{{4}}-\d{{2}}-\d{{2}})(/|\.json$)")
_MONTH_IN_URI = re.compile(rf"/{MONTH_PARTITION}=(\d{{4}}-\d{{2}})/")


# -- the day folder -------------------------------------------------------------------------
def day_segment(day: date) -> str:
    """The day folder's name: ``dt=YYYY-MM-DD``."""
    return f"{DAY_PARTITION}={day.isoformat()}"


def parse_day_segment(segment: str) -> date | None:
    """The day a ``dt=YYYY-MM-DD`` folder name stands for; None for any other name."""
    name, sep, value = segment.partition("=")
    if name != DAY_PARTITION or not sep or not _DAY.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:  # 2026-02-30
        return None


def day_in_key(key: str) -> date | None:
    """The day a key belongs to: its ``dt=`` folder or ``dt=D.json`` ledger, or an alert's
    stamp; None for keys without one (locks, silver tables, gold months).

    A folder named for a day that does not exist (``dt=2026-02-30``) belongs to none: retention
    leaves it alone instead of failing on it at every run.
    """
    alerts = f"{RUNS_PREFIX}{_ALERTS}/"
    if key.startswith(alerts):  # an alert is dated by its stamp, YYYYMMDDTHHMMSS…
        stamp = key[len(alerts) : len(alerts) + 8]
        day = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"
        return parse_day_segment(f"{DAY_PARTITION}={day}") if stamp.isascii() else None
    match = _DAY_IN_KEY.search(key)
    return parse_day_segment(f"{DAY_PARTITION}={match.group(1)}") if match else None


# -- bronze ---------------------------------------------------------------------------------
def raw_day_folder(dataset: str, day: date) -> str:
    """``raw/{dataset}/dt=D/``: where a day's files of a dataset are delivered."""
    return f"{RAW_PREFIX}{dataset}/{day_segment(day)}/"


def raw_key(dataset: str, day: date, name: str) -> str:
    """``raw/{dataset}/dt=D/{name}``: one delivered file."""
    return f"{raw_day_folder(dataset, day)}{name}"


def raw_parts(key: str) -> list[str] | None:
    """The segments of a key under ``raw/`` (after it); None for a key outside bronze."""
    return key[len(RAW_PREFIX) :].split("/") if key.startswith(RAW_PREFIX) else None


# -- silver ---------------------------------------------------------------------------------
def silver_root(dataset: str) -> str:
    """``processed/{dataset}``: the root of a dataset's Delta table."""
    return f"{PROCESSED_PREFIX}{dataset}"


# -- quarantine -----------------------------------------------------------------------------
def quarantine_folder(dataset: str, day: date) -> str:
    """``quarantine/{dataset}/dt=D/``: everything set aside for a dataset on a run's day."""
    return f"{QUARANTINE_PREFIX}{dataset}/{day_segment(day)}/"


def quarantine_rows_key(dataset: str, day: date, source: str) -> str:
    """``quarantine/{dataset}/dt=D/{file}.parquet``: the rejected rows of input file ``source``."""
    name = source.rsplit("/", 1)[-1]
    return f"{quarantine_folder(dataset, day)}{name}.parquet"


def quarantine_file_key(dataset: str, day: date, name: str) -> str:
    """``quarantine/{dataset}/dt=D/files/{name}``: a whole rejected file."""
    return f"{quarantine_folder(dataset, day)}{_QUARANTINED_FILES}/{name}"


def quarantine_reason_key(file_key: str) -> str:
    """``{file_key}.reason.json``: why the whole file at `quarantine_file_key` was rejected."""
    return f"{file_key}{_REASON_SUFFIX}"


# -- gold -----------------------------------------------------------------------------------
def gold_month_prefix(table: str) -> str:
    """``gold/{table}/month=``: lists every month file of a gold table."""
    return f"{GOLD_PREFIX}{table}/{MONTH_PARTITION}="


def gold_key(table: str, month: str) -> str:
    """``gold/{table}/month=YYYY-MM/{table}.parquet``: the complete month of a gold table."""
    return f"{gold_month_prefix(table)}{month}/{table}.parquet"


def month_in_uri(uri: str) -> str | None:
    """The ``YYYY-MM`` of the ``/month=YYYY-MM/`` folder in a gold file's URI, if any."""
    match = _MONTH_IN_URI.search(uri)
    return match.group(1) if match else None


# -- run records ----------------------------------------------------------------------------
def manifest_key(run_date: date, run_id: str) -> str:
    """``_runs/dt=D/{run_id}.json``: the manifest of one run of day ``run_date``."""
    return f"{RUNS_PREFIX}{day_segment(run_date)}/{run_id}.json"


def ledger_key(dataset: str, day: date) -> str:
    """``_runs/ledger/{dataset}/dt=D.json``: the files of a day already ingested."""
    return f"{RUNS_PREFIX}{_LEDGER}/{dataset}/{day_segment(day)}.json"


def alert_key(stamp: str, kind: str) -> str:
    """``_runs/alerts/{stamp}-{kind}.json``: one alert written by the lake notifier."""
    return f"{RUNS_PREFIX}{_ALERTS}/{stamp}-{kind}.json"


# -- locks ----------------------------------------------------------------------------------
def lock_folder(name: str) -> str:
    """``_locks/{name}``: the folder of lake lock ``name``."""
    return f"{LOCKS_PREFIX}{name}"


def lock_prefix(name: str) -> str:
    """``_locks/{name}/``: lists every record of lake lock ``name``."""
    return f"{lock_folder(name)}/"


# -- taking keys apart ----------------------------------------------------------------------
KeyKind = Literal[
    "raw",
    "silver",
    "quarantined_rows",
    "quarantined_file",
    "quarantine_reason",
    "gold",
    "manifest",
    "ledger",
    "alert",
    "lock",
]


@dataclass(frozen=True)
class LakeKey:
    """A key taken apart by `parse_key`: its kind and the parts its builder was given.

    Attributes:
        kind: which of the layout's keys it is.
        dataset: the dataset (raw, silver, quarantine, ledger); empty otherwise.
        day: the ``dt=`` day (raw, quarantine, manifest, ledger); None otherwise.
        name: the file name (raw, quarantine: the input file's), the path inside the table
            (silver, empty for its root), the run id (manifest), the table (gold), the file
            stem ``{stamp}-{kind}`` (alert) or the lock name (lock).
        month: the ``month=`` value (gold), as written in the key; empty otherwise.
    """

    kind: KeyKind
    dataset: str = ""
    day: date | None = None
    name: str = ""
    month: str = ""


def parse_key(key: str) -> LakeKey | None:
    """What ``key`` is in the layout, with its parts; None for a key no builder here makes."""
    layer, _, rest = key.partition("/")
    parts = rest.split("/")
    parser = _PARSERS.get(layer)
    return parser(parts) if parser is not None and all(parts) else None


def _parse_raw(parts: list[str]) -> LakeKey | None:
    day = parse_day_segment(parts[1]) if len(parts) == 3 else None
    return LakeKey("raw", parts[0], day, parts[2]) if day is not None else None


def _parse_silver(parts: list[str]) -> LakeKey | None:
    return LakeKey("silver", parts[0], name="/".join(parts[1:]))


def _parse_quarantine(parts: list[str]) -> LakeKey | None:
    day = parse_day_segment(parts[1]) if len(parts) in (3, 4) else None
    if day is None:
        return None
    dataset, name = parts[0], parts[-1]
    if len(parts) == 3:
        stem = name.removesuffix(".parquet")
        return LakeKey("quarantined_rows", dataset, day, stem) if stem != name else None
    if parts[2] != _QUARANTINED_FILES:
        return None
    if name.endswith(_REASON_SUFFIX) and name != _REASON_SUFFIX:
        return LakeKey("quarantine_reason", dataset, day, name.removesuffix(_REASON_SUFFIX))
    return LakeKey("quarantined_file", dataset, day, name)


def _parse_gold(parts: list[str]) -> LakeKey | None:
    if len(parts) != 3 or parts[2] != f"{parts[0]}.parquet":
        return None
    name, sep, month = parts[1].partition("=")
    ok = name == MONTH_PARTITION and sep
    return LakeKey("gold", name=parts[0], month=month) if ok else None


def _parse_runs(parts: list[str]) -> LakeKey | None:
    stem = parts[-1].removesuffix(".json")
    if stem == parts[-1] or not stem:
        return None
    if len(parts) == 2 and parts[0] == _ALERTS:
        return LakeKey("alert", name=stem) if "-" in stem.strip("-") else None
    if len(parts) == 2 and (day := parse_day_segment(parts[0])) is not None:
        return LakeKey("manifest", day=day, name=stem)
    if len(parts) == 3 and parts[0] == _LEDGER and (day := parse_day_segment(stem)) is not None:
        return LakeKey("ledger", parts[1], day)
    return None


def _parse_lock(parts: list[str]) -> LakeKey | None:
    return LakeKey("lock", name=parts[0])


_PARSERS = {
    RAW: _parse_raw,
    PROCESSED: _parse_silver,
    QUARANTINE: _parse_quarantine,
    GOLD: _parse_gold,
    RUNS: _parse_runs,
    LOCKS: _parse_lock,
}
