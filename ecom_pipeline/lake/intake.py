"""The ingest step: find a day's delivered files in bronze, checksum them, skip what is done.

Bronze is never modified. A file already ingested (same key and checksum, per the ledger under
``_runs/ledger/``) is skipped; a file re-delivered with new content is processed again. A file
that cannot be processed at all is copied whole to ``quarantine/{dataset}/dt=…/files/`` with
its reason beside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.errors import BadFileError, LakeKeyError
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.failpoints import failpoint
from ecom_pipeline.lake.storage import Lake, LakeObject, check_key

#: Pseudo-dataset under which files of unknown dataset folders are quarantined.
UNKNOWN_DATASET = "_unknown"
#: Names upstream tools give files still being written; never read as deliveries.
TEMPORARY_NAME_PREFIX = ".tmp-"


#: processed; skipped (already ingested); ignored (no delivery, see ``reason``); failed.
FileStatus = Literal["processed", "skipped", "ignored", "failed"]


@dataclass
class FileAccount:
    """What became of the rows of one input file in this run."""

    source: str
    dataset: str
    sha256: str
    size: int
    status: FileStatus = "processed"
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    rows_superseded: int = 0
    error: str | None = None
    dropped_columns: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_written + self.rows_quarantined + self.rows_superseded


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


@dataclass(frozen=True)
class Unread:
    """An object under a day's folder that is not read as a delivery, and why.

    Attributes:
        dataset: the dataset the manifest lists it under (its folder, or ``_unknown``).
        key: its key, as listed (it may be one the lake refuses to open).
        size: its size in bytes, as listed.
        reason: why it is not read, for people.
        rejected: True for a bad file (the run fails, naming it); False for an object that is
            no delivery at all (a folder marker, ``_SUCCESS``…), listed as ignored.
    """

    dataset: str
    key: str
    size: int
    reason: str
    rejected: bool


@dataclass
class DayListing:
    """Everything under ``raw/*/dt=D/``: the files to read, by folder, and the rest with why."""

    files: dict[str, list[str]] = field(default_factory=dict)
    unread: list[Unread] = field(default_factory=list)


def discover(lake: Lake, day: date) -> DayListing:
    """Sort every object delivered for ``day`` into files to read and objects not read.

    SPEC §2: a delivery is ``raw/{dataset}/dt=D/*.csv``. Every other object under a day's
    folder is accounted for (see `classify`), so nothing is skipped without a word and one
    stray object cannot stop the day.
    """
    listing = DayListing()
    for item in lake.list(layout.RAW_PREFIX):
        verdict = classify(item, day)
        if verdict is None:
            continue
        if isinstance(verdict, Unread):
            listing.unread.append(verdict)
        else:
            listing.files.setdefault(verdict, []).append(item.key)
    listing.files = {name: sorted(keys) for name, keys in sorted(listing.files.items())}
    failpoint("ingest:listed")
    return listing


def classify(item: LakeObject, day: date) -> str | Unread | None:
    """What to do with one object under ``raw/``: None when it belongs to no folder of ``day``,
    its dataset folder when it is a file to read, else why it is not read."""
    parts = layout.raw_parts(item.key)
    marker = layout.day_segment(day)
    if parts is None:
        return None
    if item.link and len(parts) == 1:  # a linked dataset folder hides every day behind it
        folder = parts[0] if is_plain_key(parts[0]) else UNKNOWN_DATASET
        return Unread(
            folder, item.key, item.size, "a symbolic link: the lake does not follow links", True
        )
    if marker not in parts:
        return None
    at = parts.index(marker)
    folder = parts[0] if at == 1 else ""
    dataset = folder if folder and is_plain_key(folder) else UNKNOWN_DATASET
    name = parts[at + 1 :]

    def unread(reason: str, *, rejected: bool) -> Unread:
        return Unread(dataset, item.key, item.size, reason, rejected)

    if at == 1 and name == [""] and item.size == 0:
        return unread("a folder marker (an empty object named like the folder)", rejected=False)
    try:
        check_key(item.key)
    except LakeKeyError:
        return unread(
            "invalid object key (an empty, '.' or '..' segment, a backslash or NUL): "
            "left in bronze, not read",
            rejected=True,
        )
    if at != 1:
        return unread(
            f"not directly under {layout.RAW_PREFIX}{{dataset}}/{marker}/", rejected=False
        )
    if item.link:
        return unread("a symbolic link: the lake does not follow links", rejected=True)
    if not name:
        return unread(f"an object named like the {marker} folder, not a file in it", rejected=False)
    if len(name) > 1:
        return unread(
            f"in a sub-folder of {marker}/ (only files directly under it are read)",
            rejected=False,
        )
    if name[0].startswith(TEMPORARY_NAME_PREFIX):
        return unread("a temporary name (an upload still in progress?)", rejected=False)
    if not name[0].lower().endswith(".csv"):
        return unread(f"not a .csv file (deliveries are {layout.RAW_DELIVERIES})", rejected=False)
    return folder


def is_plain_key(key: str) -> bool:
    """True if the lake accepts ``key`` (see `check_key`)."""
    try:
        check_key(key)
    except LakeKeyError:
        return False
    return True


#: Raw files are read in blocks of this size (checksums, and the CSV reader's blocks).
READ_BLOCK_BYTES = 16 << 20


def read_input(lake: Lake, dataset: str, key: str, day: date) -> RawInput:
    """Checksum one delivered file, streaming it.

    Raises:
        BadFileError: the lake refuses the key (a link out of the local lake's root) or the
            file cannot be read (permissions). The message names the key only.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with lake.open_binary(key) as stream:
            while block := stream.read(READ_BLOCK_BYTES):
                digest.update(block)
                size += len(block)
    except LakeKeyError as exc:
        raise BadFileError(key, exc.reason) from None
    except (PermissionError, IsADirectoryError) as exc:
        raise BadFileError(key, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    failpoint("ingest:checksummed")
    return RawInput(dataset, key, day, digest.hexdigest(), size)


def is_known_dataset(name: str) -> bool:
    return name in {d.value for d in Dataset}


# -- the ledger of ingested files ---------------------------------------------------------
def read_ledger(lake: Lake, dataset: str, day: date) -> dict[str, dict[str, str]]:
    try:
        document: dict[str, dict[str, str]] = lake.read_json(layout.ledger_key(dataset, day))
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
    failpoint(f"ledger:{dataset}:before-write")
    ledger = read_ledger(lake, dataset, day)
    now = datetime.now(UTC).isoformat()
    for item in items:
        ledger[item.key] = {"sha256": item.sha256, "run_id": run_id, "ingested_at": now}
    lake.write_json(layout.ledger_key(dataset, day), ledger)


# -- whole-file quarantine ----------------------------------------------------------------
def quarantine_whole_file(
    lake: Lake, item: RawInput, reason: str, run_id: str, *, readable: bool = True
) -> str:
    """Quarantine a rejected file with its reason; returns the key of the reason record.

    The file itself is copied beside the reason only when its dataset holds no PII: clear-text
    names never leave bronze, so for customers, employees and unknown folders the record points
    back to the bronze key (kept 30 days) instead. A file the lake refused to read
    (``readable=False``) is never copied either.
    """
    known = is_known_dataset(item.dataset)
    dataset = item.dataset if known else UNKNOWN_DATASET
    name = item.name if known else f"{item.dataset}-{item.name}"
    copy_key = layout.quarantine_file_key(dataset, item.day, name)
    copied = readable and known and not SPECS[Dataset(item.dataset)].pii_columns
    if copied:
        lake.copy(item.key, copy_key)  # never whole in memory: raw files can be large
    record_key = layout.quarantine_reason_key(copy_key)
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
