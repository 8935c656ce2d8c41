"""Reading one delivered CSV file into text columns, with the line number of every record.

Nothing is typed here: every value stays the text the file holds, so the contract can say
exactly which value broke which rule. Problems that make the whole file unusable raise
`BadFileError` with the line (and column) where they were seen; a record with the wrong number
of fields is kept aside as a *ragged* record so the rest of the file can proceed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import pandas as pd

from ecom_pipeline.datasets import DatasetSpec
from ecom_pipeline.errors import BadFileError

#: Column holding each record's 1-based line number in the file (the header is line 1).
LINE = "_source_line"
#: A field longer than this makes the file unreadable (a broken quote swallowing the file).
MAX_FIELD_BYTES = 1 << 20
_BOM = "\ufeff"


@dataclass(frozen=True)
class RaggedRecord:
    line: int
    fields: int


@dataclass
class RawRecords:
    """The records of one file as text.

    Attributes:
        frame: one row per well-formed record; the contract's columns as strings (``None`` for
            an empty field) plus ``_source_line``.
        ragged: records whose field count differs from the header's.
        dropped_columns: extra columns the contract does not know (schema drift).
        rows_read: every record, well-formed or ragged (blank lines are not records).
    """

    frame: pd.DataFrame
    ragged: list[RaggedRecord] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.ragged)


def decode_utf8(source: str, data: bytes) -> str:
    """The file as text; a byte that is not UTF-8 fails the file at its line."""
    if not data:
        raise BadFileError(source, "the file is empty (0 bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadFileError(
            source,
            f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded",
            line=line,
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        # No warehouse column can hold NUL; it usually means a binary or UTF-16 file.
        line = text.count("\n", 0, nul) + 1
        raise BadFileError(source, "contains a NUL byte (binary or UTF-16 content?)", line=line)
    return text.removeprefix(_BOM)


def read_records(source: str, data: bytes, spec: DatasetSpec) -> RawRecords:
    """Parse a delivered CSV file against the dataset's column list.

    Args:
        source: the file's lake key, used in every error message.
        data: the file's bytes exactly as delivered.
        spec: the dataset contract; its columns must all be present (in any order).

    Returns:
        The records as text, ragged records set aside, extra columns named.

    Raises:
        BadFileError: empty file, not UTF-8, unreadable CSV, duplicated or missing header
            columns, or a header with no records.
    """
    text = decode_utf8(source, data)
    if not text.strip():
        raise BadFileError(source, "the file holds only blank lines")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    csv.field_size_limit(MAX_FIELD_BYTES)
    try:
        header = [name.strip() for name in next(reader)]
    except csv.Error as exc:
        raise BadFileError(source, f"unreadable header: {exc}", line=1) from None
    positions = _header_positions(source, header, spec)
    dropped = [name for name in header if name not in spec.column_names]

    wanted = [positions[name] for name in spec.column_names]
    columns: list[list[str | None]] = [[] for _ in wanted]
    lines: list[int] = []
    ragged: list[RaggedRecord] = []
    width = len(header)
    last_line = reader.line_num
    try:
        for record in reader:
            start = last_line + 1
            last_line = reader.line_num
            if not record:  # a blank line is not a record
                continue
            if len(record) != width:
                ragged.append(RaggedRecord(start, len(record)))
                continue
            lines.append(start)
            for values, position in zip(columns, wanted, strict=True):
                value = record[position]
                values.append(value if value != "" else None)
    except csv.Error as exc:
        raise BadFileError(source, f"unreadable CSV: {exc}", line=reader.line_num) from None
    if not lines and not ragged:
        raise BadFileError(source, "the file has a header but no records")

    frame = pd.DataFrame(
        {
            name: pd.array(values, dtype="string")
            for name, values in zip(spec.column_names, columns, strict=True)
        }
    )
    frame[LINE] = pd.array(lines, dtype="int64")
    return RawRecords(frame=frame, ragged=ragged, dropped_columns=dropped)


def _header_positions(source: str, header: list[str], spec: DatasetSpec) -> dict[str, int]:
    seen: dict[str, int] = {}
    for position, name in enumerate(header):
        if not name:
            raise BadFileError(source, f"header column {position + 1} has no name", line=1)
        if name in seen:
            raise BadFileError(source, "the header names this column twice", line=1, column=name)
        seen[name] = position
    missing = [name for name in spec.column_names if name not in seen]
    if missing:
        raise BadFileError(
            source,
            f"required column(s) missing from the header: {', '.join(missing)} "
            f"(found: {', '.join(header)})",
            line=1,
        )
    return seen
