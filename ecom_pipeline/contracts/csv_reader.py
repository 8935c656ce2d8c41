"""Reading one delivered CSV file into text columns, with the line number of every record.

Nothing is typed here: every value stays the text the file holds, so the contract can say
exactly which value broke which rule. Problems that make the whole file unusable raise
`BadFileError` with the line (and column) where they were seen; a record with the wrong number
of fields is kept aside as a *ragged* record so the rest of the file can proceed.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from ecom_pipeline.contracts.datasets import DatasetSpec
from ecom_pipeline.errors import BadFileError

#: Column holding each record's 1-based line number in the file (the header is line 1).
LINE = "_source_line"
#: A field longer than this makes the file unreadable (a broken quote swallowing the file).
MAX_FIELD_BYTES = 1 << 20
#: A header line longer than this is not a header (thousands of columns, or no line end).
MAX_HEADER_BYTES = 64 << 10
#: A line (up to a line end, quoted or not) longer than this makes the file unreadable.
MAX_LINE_BYTES = 16 << 20
_BOM = "\ufeff"
#: Files are read in blocks of about this size, cut at line ends (a block is one batch of rows).
#: Validation holds several working copies of a block: 8 MiB keeps a 1 M-order day near 1.2 GB.
BLOCK_BYTES = 8 << 20
#: Arrow parses a block in pieces of this size, in parallel (small pieces stay in cache).
ARROW_BLOCK_BYTES = 1 << 20
#: Records per batch on the exact (csv module) path.
EXACT_BATCH_ROWS = 250_000


@dataclass(frozen=True)
class RaggedRecord:
    line: int
    fields: int


@dataclass
class RawRecords:
    """The records of one file as text.

    Attributes:
        table: one row per well-formed record; the contract's columns as strings (null for
            an empty field) plus ``_source_line`` (int64).
        ragged: records whose field count differs from the header's.
        dropped_columns: extra columns the contract does not know (schema drift).
        rows_read: every record, well-formed or ragged (blank lines are not records).
    """

    table: pa.Table
    ragged: list[RaggedRecord] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.table.num_rows + len(self.ragged)


def check_text(source: str, data: bytes, *, first_line: int = 1) -> None:
    """Fail the file if a block of it is not UTF-8 text without NUL (see `decode_utf8`).

    Plain ASCII, the usual case, is checked without decoding."""
    if data.isascii() and data:
        nul = data.find(b"\x00")
        if nul >= 0:
            line = data.count(b"\n", 0, nul) + first_line
            raise BadFileError(source, "contains a NUL byte (binary or UTF-16 content?)", line=line)
        return
    decode_utf8(source, data, first_line=first_line)


def decode_utf8(source: str, data: bytes, *, first_line: int = 1) -> str:
    """A block of the file as text; a byte that is not UTF-8 fails the file at its line.

    ``first_line`` is the file's line number of the block's first line."""
    if not data and first_line == 1:
        raise BadFileError(source, "the file is empty (0 bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + first_line
        raise BadFileError(
            source,
            f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded",
            line=line,
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        # No warehouse column can hold NUL; it usually means a binary or UTF-16 file.
        line = text.count("\n", 0, nul) + first_line
        raise BadFileError(source, "contains a NUL byte (binary or UTF-16 content?)", line=line)
    return text.removeprefix(_BOM) if first_line == 1 else text


def read_records(source: str, data: bytes, spec: DatasetSpec) -> RawRecords:
    """Parse a whole delivered CSV file held in memory (see `iter_records`)."""
    batches = list(iter_records(source, io.BytesIO(data), spec, block_bytes=max(len(data), 1)))
    if len(batches) == 1:
        return batches[0]
    return RawRecords(
        table=pa.concat_tables([b.table for b in batches]),
        ragged=[r for b in batches for r in b.ragged],
        dropped_columns=batches[0].dropped_columns,
    )


def iter_records(
    source: str, stream: BinaryIO, spec: DatasetSpec, *, block_bytes: int = BLOCK_BYTES
) -> Iterator[RawRecords]:
    """Parse a delivered CSV file against the dataset's column list, one block at a time.

    The file is read in blocks of about ``block_bytes`` cut at line ends, so memory holds one
    block, never the file. Blocks without quotes or stray carriage returns (the common case)
    are parsed by Arrow, with line numbers counted on the raw bytes; from the first block that
    has any, the rest of the file goes through Python's csv module, which follows quoted
    commas and newlines. Both give the same records and line numbers.

    Args:
        source: the file's lake key, used in every error message.
        stream: the file's bytes exactly as delivered.
        spec: the dataset contract; its columns must all be present (in any order).
        block_bytes: the size of the blocks read.

    Yields:
        The records of each block as text, ragged records set aside, extra columns named.

    Raises:
        BadFileError: empty file, not UTF-8, unreadable CSV, a header too long, duplicated or
            missing header columns, a line too long, or a header with no records. It can come
            after some blocks were yielded (the caller then drops the file's rows). Messages
            name lines and the contract's columns, never a value of the file.
    """
    blocks = _line_blocks(source, stream, block_bytes)
    header: _Header | None = None
    records = 0
    for block, line, ends in blocks:  # line: the file line number of the block's first line
        check_text(source, block, first_line=line)
        if line == 1:
            block = block.removeprefix(_BOM.encode())
            if not block or block.isspace():  # only blank lines: no header at all
                raise BadFileError(source, "the file holds only blank lines")
            _check_header_length(source, block)
        if b'"' in block or (b"\r" in block and block.count(b"\r") != block.count(b"\r\n")):
            text = block.decode("utf-8")  # checked above
            exact = _exact_batches(
                source, itertools.chain([(text, line)], _decoded(source, blocks)), spec, header
            )
            for batch in exact:
                records += batch.rows_read
                yield batch
            break
        if header is None:
            header = _plain_header(source, block, spec)
        plain = _plain_records(source, block, spec, header, line, ends)
        if plain is not None:
            records += plain.rows_read
            yield plain
    if records == 0:
        raise BadFileError(source, "the file has a header but no records")


@dataclass(frozen=True)
class _Header:
    names: list[str]
    positions: dict[str, int]

    @property
    def width(self) -> int:
        return len(self.names)


def _check_header_length(source: str, block: bytes) -> None:
    end = block.find(b"\n")
    length = len(block) if end < 0 else end
    if length > MAX_HEADER_BYTES:
        raise BadFileError(
            source,
            f"header too long: {length:,} bytes, more than {MAX_HEADER_BYTES:,} "
            "(not a header row, or far too many columns)",
            line=1,
        )


def _line_blocks(
    source: str, stream: BinaryIO, block_bytes: int
) -> Iterator[tuple[bytes, int, int]]:
    """The stream in blocks that end at a line end (the last one where the stream ends), each
    with the file line number of its first line and its count of line ends.

    A line longer than `MAX_LINE_BYTES` fails the file, so memory stays bounded."""
    carry = b""
    first = True
    lines = 0  # line ends yielded so far
    while True:
        chunk = stream.read(block_bytes)
        if not chunk:
            if carry or first:
                yield carry, lines + 1, carry.count(b"\n")
            return
        first = False
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # no line end yet: read on
            if lines == 0:
                _check_header_length(source, data)
            if len(data) > MAX_LINE_BYTES:
                raise BadFileError(
                    source,
                    f"line too long: more than {MAX_LINE_BYTES:,} bytes without a line end",
                    line=lines + 1,
                )
            carry = data
            continue
        carry = data[cut:]
        ends = data.count(b"\n", 0, cut)
        yield data[:cut], lines + 1, ends
        lines += ends


def _decoded(source: str, blocks: Iterator[tuple[bytes, int, int]]) -> Iterator[tuple[str, int]]:
    for block, line, _ends in blocks:
        yield decode_utf8(source, block, first_line=line), line


def _exact_batches(
    source: str,
    texts: Iterator[tuple[str, int]],
    spec: DatasetSpec,
    header: _Header | None,
    batch_rows: int = EXACT_BATCH_ROWS,
) -> Iterator[RawRecords]:
    """Records of text blocks (the first at its file line) by the csv module, in batches."""
    texts = iter(texts)
    first_text, first_line = next(texts)
    if first_line == 1:
        first_text = first_text.removeprefix(_BOM)
    lines = itertools.chain.from_iterable(
        io.StringIO(text, newline="")
        for text in itertools.chain([first_text], (t for t, _ in texts))
    )
    reader = csv.reader(lines, strict=True)
    csv.field_size_limit(MAX_FIELD_BYTES)
    offset = first_line - 1  # file lines before the reader's first line
    if header is None:
        try:
            names = [name.strip() for name in next(reader)]
        except StopIteration:
            return
        except csv.Error as exc:
            raise BadFileError(source, f"unreadable header: {exc}", line=1) from None
        header = _Header(names, _header_positions(source, names, spec))
    wanted = [header.positions[name] for name in spec.column_names]
    columns: list[list[str | None]] = [[] for _ in wanted]
    numbers: list[int] = []
    ragged: list[RaggedRecord] = []
    last_line = reader.line_num
    try:
        for record in reader:
            start = offset + last_line + 1
            last_line = reader.line_num
            if not record:  # a blank line is not a record
                continue
            if len(record) != header.width:
                ragged.append(RaggedRecord(start, len(record)))
            else:
                numbers.append(start)
                for values, position in zip(columns, wanted, strict=True):
                    value = record[position]
                    values.append(value if value != "" else None)
            if len(numbers) + len(ragged) >= batch_rows:
                yield _records(spec, header, columns, numbers, ragged)
                columns, numbers, ragged = [[] for _ in wanted], [], []
    except csv.Error as exc:
        raise BadFileError(
            source, f"unreadable CSV: {exc}", line=offset + reader.line_num
        ) from None
    if numbers or ragged:
        yield _records(spec, header, columns, numbers, ragged)


def _read_quoted(source: str, text: str, spec: DatasetSpec) -> RawRecords:
    """A whole file by the csv module (the exact path, in one batch)."""
    batches = list(_exact_batches(source, iter([(text, 1)]), spec, None, batch_rows=1 << 62))
    if not batches:
        raise BadFileError(source, "the file has a header but no records")
    return batches[0]


def _read_unquoted(source: str, body: bytes, spec: DatasetSpec) -> RawRecords:
    """A whole plain file by Arrow (the fast path, in one batch)."""
    batch = _plain_records(source, body, spec, _plain_header(source, body, spec), 1)
    if batch is None:
        raise BadFileError(source, "the file has a header but no records")
    return batch


def _plain_header(source: str, body: bytes, spec: DatasetSpec) -> _Header:
    end = body.find(b"\n")
    first = (body if end < 0 else body[:end]).removesuffix(b"\r")
    names = [name.strip() for name in first.decode().split(",")]
    return _Header(names, _header_positions(source, names, spec))


def _plain_records(
    source: str,
    body: bytes,
    spec: DatasetSpec,
    header: _Header,
    first_line: int,
    line_ends: int | None = None,
) -> RawRecords | None:
    """One record per line: values from Arrow's parser, line numbers from the bytes (ragged
    lines are skipped by both alike). ``first_line`` is the file line of the block's first
    line; the header line (line 1) is not a record. ``line_ends``: the block's count of
    line ends, when the caller knows it."""
    if line_ends is None:
        line_ends = body.count(b"\n")
    if not body:
        return None
    skipped: list[int] = []  # Arrow's calls for ragged lines

    def skip(_row: object) -> str:
        skipped.append(1)
        return "skip"

    names = [f"f{i}" for i in range(header.width)]
    wanted = [names[header.positions[name]] for name in spec.column_names]
    try:
        table = pa_csv.read_csv(
            io.BytesIO(body),
            read_options=pa_csv.ReadOptions(
                skip_rows=1 if first_line == 1 else 0,
                column_names=names,
                block_size=ARROW_BLOCK_BYTES,
            ),
            parse_options=pa_csv.ParseOptions(quote_char=False, invalid_row_handler=skip),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                # every column when there are extras: their fields' length counts too
                include_columns=wanted if header.width == len(wanted) else names,
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid:  # never expected; the exact parser decides then
        return _exact_block(source, body, spec, header, first_line)
    longest = max((pc.max(pc.binary_length(column)).as_py() or 0) for column in table.columns)
    if longest > MAX_FIELD_BYTES:  # the exact parser's field limit decides, as for quotes
        return _exact_block(source, body, spec, header, first_line)
    count = line_ends + (not body.endswith(b"\n"))  # lines in the block
    first_record = max(first_line, 2)
    ragged: list[RaggedRecord] = []
    if not skipped and table.num_rows == first_line + count - first_record:
        # Arrow made a row of every line but the header: no blank and no ragged lines
        lines = np.arange(first_record, first_line + count)
    else:
        lines, ragged = _line_numbers(body, first_line, header.width)
    if table.num_rows != len(lines):  # never expected; the exact parser decides then
        return _exact_block(source, body, spec, header, first_line)
    if not len(lines) and not ragged:
        return None
    arrays = [table.column(name) for name in wanted]  # chunked: no copy
    return _records(spec, header, arrays, pa.array(lines, pa.int64()), ragged)


def _line_numbers(
    body: bytes, first_line: int, width: int
) -> tuple[np.ndarray, list[RaggedRecord]]:
    """File line numbers of the block's well-formed records, and its ragged records, from the
    bytes: a line is a record unless it is empty; its fields are its commas plus one."""
    raw = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(raw == ord("\n"))
    ends = newlines if body.endswith(b"\n") else np.append(newlines, len(body))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    carriage = lengths > 0
    carriage[carriage] = raw[ends[carriage] - 1] == ord("\r")
    lengths = lengths - carriage
    line_numbers = np.arange(first_line, first_line + len(starts))
    is_record = (lengths > 0) & (line_numbers > 1)
    commas = np.flatnonzero(raw == ord(","))
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
    bad = is_record & (fields != width)
    ragged = [
        RaggedRecord(int(n), int(f)) for n, f in zip(line_numbers[bad], fields[bad], strict=True)
    ]
    return line_numbers[is_record & (fields == width)], ragged


def _exact_block(
    source: str, body: bytes, spec: DatasetSpec, header: _Header, first_line: int
) -> RawRecords:
    text = body.decode("utf-8")
    return next(_exact_batches(source, iter([(text, first_line)]), spec, header, 1 << 62))


def _records(
    spec: DatasetSpec,
    header: _Header,
    columns: list[pa.ChunkedArray] | list[list[str | None]],
    lines: pa.Array | list[int],
    ragged: list[RaggedRecord],
) -> RawRecords:
    arrays = [
        values if isinstance(values, pa.ChunkedArray) else pa.array(values, pa.string())
        for values in columns
    ]
    numbers = lines if isinstance(lines, pa.Array) else pa.array(lines, pa.int64())
    table = pa.Table.from_arrays([*arrays, numbers], names=[*spec.column_names, LINE])
    dropped = [name for name in header.names if name not in spec.column_names]
    return RawRecords(table=table, ragged=ragged, dropped_columns=dropped)


def _header_positions(source: str, header: list[str], spec: DatasetSpec) -> dict[str, int]:
    """Where each named column is. Messages name the contract's columns and positions only:
    a file without a header row has a record there, and its values may be PII."""
    seen: dict[str, int] = {}
    for position, name in enumerate(header):
        if not name:
            raise BadFileError(source, f"header column {position + 1} has no name", line=1)
        if name in seen:
            if name in spec.column_names:
                raise BadFileError(
                    source, "the header names this column twice", line=1, column=name
                )
            raise BadFileError(
                source,
                f"header columns {seen[name] + 1} and {position + 1} have the same name",
                line=1,
            )
        seen[name] = position
    missing = [name for name in spec.column_names if name not in seen]
    if missing:
        raise BadFileError(
            source,
            f"required column(s) missing from the header: {', '.join(missing)} "
            f"(the header has {len(header)} column(s), "
            f"{len(spec.column_names) - len(missing)} of them known)",
            line=1,
        )
    return seen
