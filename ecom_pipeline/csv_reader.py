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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from ecom_pipeline.datasets import DatasetSpec
from ecom_pipeline.errors import BadFileError

#: Column holding each record's 1-based line number in the file (the header is line 1).
LINE = "_source_line"
#: A field longer than this makes the file unreadable (a broken quote swallowing the file).
MAX_FIELD_BYTES = 1 << 20
_BOM = "\ufeff"
#: Text columns are Arrow-backed: vectorised string checks, no Python objects per value.
TEXT = pd.ArrowDtype(pa.string())


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

    Files without quotes or stray carriage returns (the common case) are parsed by Arrow, with
    line numbers counted on the raw bytes; any other file by Python's csv module, which follows
    quoted commas and newlines. Both give the same records and line numbers.

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
    body = data.removeprefix(_BOM.encode())
    if b'"' not in body and body.count(b"\r") == body.count(b"\r\n"):
        return _read_unquoted(source, body, spec)
    return _read_quoted(source, text.removeprefix(_BOM), spec)


def _read_quoted(source: str, text: str, spec: DatasetSpec) -> RawRecords:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    csv.field_size_limit(MAX_FIELD_BYTES)
    try:
        header = [name.strip() for name in next(reader)]
    except csv.Error as exc:
        raise BadFileError(source, f"unreadable header: {exc}", line=1) from None
    positions = _header_positions(source, header, spec)
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
    arrays = [pa.array(values, pa.string()) for values in columns]
    return _records(source, spec, header, arrays, lines, ragged)


def _read_unquoted(source: str, body: bytes, spec: DatasetSpec) -> RawRecords:
    """One record per line: line numbers and field counts come from the bytes, values from
    Arrow's parser (ragged lines are skipped by both alike)."""
    raw = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(raw == ord("\n"))
    ends = newlines if body.endswith(b"\n") else np.append(newlines, len(body))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    carriage = lengths > 0
    carriage[carriage] = raw[ends[carriage] - 1] == ord("\r")
    lengths = lengths - carriage
    commas = np.flatnonzero(raw == ord(","))
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1

    header = [name.strip() for name in body[starts[0] : starts[0] + lengths[0]].decode().split(",")]
    positions = _header_positions(source, header, spec)
    width = len(header)
    line_numbers = np.arange(1, len(starts) + 1)
    is_record = (lengths > 0) & (line_numbers > 1)
    good = is_record & (fields == width)
    bad = is_record & (fields != width)
    ragged = [
        RaggedRecord(int(n), int(f)) for n, f in zip(line_numbers[bad], fields[bad], strict=True)
    ]

    names = [f"f{i}" for i in range(width)]
    wanted = [names[positions[name]] for name in spec.column_names]
    table = pa_csv.read_csv(
        io.BytesIO(body),
        read_options=pa_csv.ReadOptions(skip_rows=1, column_names=names, block_size=1 << 24),
        parse_options=pa_csv.ParseOptions(
            quote_char=False, invalid_row_handler=lambda _row: "skip"
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            include_columns=wanted,
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    lines = line_numbers[good]
    if table.num_rows != len(lines):  # never expected; the exact parser decides then
        return _read_quoted(source, body.decode("utf-8"), spec)
    arrays = [table.column(name).combine_chunks() for name in wanted]
    return _records(source, spec, header, arrays, lines.tolist(), ragged)


def _records(
    source: str,
    spec: DatasetSpec,
    header: list[str],
    arrays: list[pa.Array],
    lines: list[int],
    ragged: list[RaggedRecord],
) -> RawRecords:
    if not lines and not ragged:
        raise BadFileError(source, "the file has a header but no records")
    frame = pd.DataFrame(
        {
            name: pd.Series(array, dtype=TEXT, copy=False)
            for name, array in zip(spec.column_names, arrays, strict=True)
        }
    )
    frame[LINE] = pd.array(lines, dtype="int64")
    dropped = [name for name in header if name not in spec.column_names]
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
