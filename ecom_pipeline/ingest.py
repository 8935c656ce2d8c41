"""The ingest step: find a day's delivered files in bronze, checksum them, skip what is done.

Bronze is never modified. A file already ingested (same key and checksum, per the ledger under
``_runs/ledger/``) is skipped; a file re-delivered with new content is processed again. A file
that cannot be processed at all is copied whole to ``quarantine/{dataset}/dt=…/files/`` with
its reason beside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime

from ecom_pipeline.adapters.lake import Lake
from ecom_pipeline.datasets import SPECS, Dataset

RAW_PREFIX = "raw/"
#: Pseudo-dataset under which files of unknown dataset folders are quarantined.
UNKNOWN_DATASET = "_unknown"


@dataclass(frozen=True)
class RawInput:
    """One delivered file of the day: where it is and what it held when ingested.

    Attributes:
        dataset: the folder it was delivered to (a known dataset or not).
        key: its lake key, ``raw/{dataset}/dt=YYYY-MM-DD/{name}``.
        day: the ``dt=`` day.
        sha256: checksum of its bytes, recorded in the ledger and the manifest.
        size: its length in bytes.

    The bytes are not kept: the validate step streams the file again, block by block, so a
    day's files never sit in memory together.
    """

    dataset: str
    key: str
    day: date
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def day_folder(dataset: str, day: date) -> str:
    return f"{RAW_PREFIX}{dataset}/dt={day.isoformat()}/"


def discover(lake: Lake, day: date) -> dict[str, list[str]]:
    """Keys of every file delivered for ``day``, by dataset folder (known or not)."""
    marker = f"/dt={day.isoformat()}/"
    found: dict[str, list[str]] = {}
    for item in lake.list(RAW_PREFIX):
        rest = item.key[len(RAW_PREFIX) :]
        dataset, _, tail = rest.partition("/")
        if f"/{tail}".startswith(marker) and tail.count("/") == 1:
            found.setdefault(dataset, []).append(item.key)
    return {name: sorted(keys) for name, keys in sorted(found.items())}


#: Raw files are read in blocks of this size (checksums, and the CSV reader's blocks).
READ_BLOCK_BYTES = 16 << 20


def read_input(lake: Lake, dataset: str, key: str, day: date) -> RawInput:
    """Checksum one delivered file, streaming it."""
    digest = hashlib.sha256()
    size = 0
    with lake.open_binary(key) as stream:
        while block := stream.read(READ_BLOCK_BYTES):
            digest.update(block)
            size += len(block)
    return RawInput(dataset, key, day, digest.hexdigest(), size)


def is_known_dataset(name: str) -> bool:
    return name in {d.value for d in Dataset}


# -- the ledger of ingested files ---------------------------------------------------------
def ledger_key(dataset: str, day: date) -> str:
    return f"_runs/ledger/{dataset}/dt={day.isoformat()}.json"


def read_ledger(lake: Lake, dataset: str, day: date) -> dict[str, dict[str, str]]:
    try:
        document: dict[str, dict[str, str]] = lake.read_json(ledger_key(dataset, day))
    except FileNotFoundError:
        return {}
    return document


def already_ingested(ledger: dict[str, dict[str, str]], item: RawInput) -> bool:
    entry = ledger.get(item.key)
    return entry is not None and entry.get("sha256") == item.sha256


def record_ingested(
    lake: Lake, dataset: str, day: date, items: list[RawInput], run_id: str
) -> None:
    """Add these files to the day's ledger (after their rows are committed to silver)."""
    if not items:
        return
    ledger = read_ledger(lake, dataset, day)
    now = datetime.now(UTC).isoformat()
    for item in items:
        ledger[item.key] = {"sha256": item.sha256, "run_id": run_id, "ingested_at": now}
    lake.write_json(ledger_key(dataset, day), ledger)


# -- whole-file quarantine ----------------------------------------------------------------
def quarantine_whole_file(lake: Lake, item: RawInput, reason: str, run_id: str) -> str:
    """Quarantine a rejected file with its reason; returns the key of the reason record.

    The file itself is copied beside the reason only when its dataset holds no PII: clear-text
    names never leave bronze, so for customers, employees and unknown folders the record points
    back to the bronze key (kept 30 days) instead.
    """
    known = is_known_dataset(item.dataset)
    dataset = item.dataset if known else UNKNOWN_DATASET
    name = item.name if known else f"{item.dataset}-{item.name}"
    copy_key = f"quarantine/{dataset}/dt={item.day.isoformat()}/files/{name}"
    copied = known and not SPECS[Dataset(item.dataset)].pii_columns
    if copied:
        lake.write_bytes(copy_key, lake.read_bytes(item.key))
    record_key = f"{copy_key}.reason.json"
    lake.write_json(
        record_key,
        {
            "source": item.key,
            "sha256": item.sha256,
            "reason": reason,
            "copy": copy_key if copied else None,
            "run_id": run_id,
            "quarantined_at": datetime.now(UTC).isoformat(),
        },
    )
    return record_key
