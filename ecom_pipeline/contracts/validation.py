"""The validate step for one file: text records in, typed silver rows and quarantined rows out.

Pure: bytes and settings in, Arrow tables out. Every record of the file ends in exactly one of
the two outputs (ragged records and contract failures in quarantine), so
``rows_read == len(valid) + len(quarantine)`` holds for every file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, BinaryIO, Protocol

import numpy as np
import pandera.errors
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pandera.polars import DataFrameSchema

from ecom_pipeline.contracts import pii
from ecom_pipeline.contracts.csv_reader import BLOCK_BYTES, LINE, RaggedRecord, iter_records
from ecom_pipeline.contracts.datasets import (
    INGESTED_AT,
    RUN_ID,
    SOURCE_FILE,
    SOURCE_LINE,
    TIMESTAMP_TYPE,
    DatasetSpec,
    validated_schema,
)
from ecom_pipeline.contracts.rules import (
    FORMAT_RULES,
    contract,
    parsed_name,
    passes_every_rule,
    with_parsed,
)
from ecom_pipeline.errors import BadFileError

#: Columns of a quarantine file besides the dataset's own (kept as text, PII hashed).
QUARANTINE_FIELDS = (
    pa.field(SOURCE_FILE, pa.string()),
    pa.field(SOURCE_LINE, pa.int64()),
    pa.field("column", pa.string()),
    pa.field("rule", pa.string()),
    pa.field("value", pa.string()),
    pa.field("errors", pa.string()),
    pa.field(RUN_ID, pa.string()),
    pa.field(INGESTED_AT, TIMESTAMP_TYPE),
)
#: Suspect records are judged by pandera once this many have gathered (and at the file's end):
#: a pass costs tens of milliseconds however few its rows, and a 1 M-row file has 12 blocks.
SUSPECTS_PER_VERDICT = 50_000
#: A column is treated as retyped upstream when at least this many values all fail its format.
TYPE_CHANGE_MIN_VALUES = 2


@dataclass(frozen=True)
class RunContext:
    """Lineage stamped on every row this run writes."""

    run_id: str
    ingested_at: datetime


class ValidRows(Protocol):
    """Valid rows of a file: an Arrow table, or the same rows staged on local disk."""

    @property
    def num_rows(self) -> int: ...

    def to_reader(self) -> pa.RecordBatchReader: ...


@dataclass
class ValidatedFile:
    """The outcome of validating one delivered file.

    Attributes:
        source: the file's lake key.
        rows_read: records in the file.
        valid: typed rows that passed the contract, PII hashed, with lineage columns.
        quarantine: rows that broke a rule, one per record, with the first broken rule.
        dropped_columns: unknown columns that were dropped (a schema-drift warning).
    """

    source: str
    rows_read: int
    valid: ValidRows
    quarantine: pa.Table
    dropped_columns: list[str] = field(default_factory=list)

    def quarantine_reasons(self) -> dict[str, int]:
        """How many rows broke each ``column: rule`` (for the run report)."""
        if self.quarantine.num_rows == 0:
            return {}
        frame = pl.from_arrow(self.quarantine.select(["column", "rule"]))
        assert isinstance(frame, pl.DataFrame)
        labels = frame.select(pl.col("column").fill_null("(record)") + ": " + pl.col("rule"))
        counts = labels.to_series().value_counts().sort("column")
        return {str(label): int(count) for label, count in counts.iter_rows()}


def quarantine_schema(spec: DatasetSpec) -> pa.Schema:
    return pa.schema([*QUARANTINE_FIELDS, *(pa.field(c, pa.string()) for c in spec.column_names)])


def validate_file(
    source: str,
    data: bytes,
    spec: DatasetSpec,
    *,
    file_day: date,
    pii_key: bytes,
    run: RunContext,
) -> ValidatedFile:
    """Validate a whole delivered file held in memory (see `FileValidation`)."""
    validation = FileValidation(
        source,
        io.BytesIO(data),
        spec,
        file_day=file_day,
        pii_key=pii_key,
        run=run,
        block_bytes=max(len(data), 1),
    )
    batches = list(validation.valid_batches())
    valid = pa.Table.from_batches(
        [b for t in batches for b in t.to_batches()], schema=validated_schema(spec)
    )
    return validation.result(valid)


class FileValidation:
    """The validation of one delivered file against its dataset's contract, block by block.

    Iterate `valid_batches` for the typed valid rows (PII hashed, lineage added), one batch
    per block of the file, then `result` gives the file's accounting and quarantined rows.
    Only one block is in memory at a time, plus the quarantined rows.

    Args:
        source: the file's lake key (named in every error and stored as ``_source_file``).
        stream: the file's bytes as delivered.
        spec: the dataset the file belongs to.
        file_day: the ``dt=`` day of the file; dates after it are in the future.
        pii_key: the HMAC key that replaces names and e-mails.
        run: run id and ingestion time stamped on the rows.
        block_bytes: size of the blocks the file is read in.

    Raises (from `valid_batches`, possibly after some batches):
        BadFileError: the file as a whole is unusable (see ``iter_records``), or a column's
            values all fail its type (the column's type changed upstream).
    """

    def __init__(
        self,
        source: str,
        stream: BinaryIO,
        spec: DatasetSpec,
        *,
        file_day: date,
        pii_key: bytes,
        run: RunContext,
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self.source, self.stream, self.spec = source, stream, spec
        self.file_day, self.pii_key, self.run = file_day, pii_key, run
        self.block_bytes = block_bytes
        self.rows_read = 0
        self.dropped_columns: list[str] = []
        self._quarantined: list[pa.Table] = []
        self._suspects = _Suspects()
        self._types = _TypeChangeWatch(source, spec.column_names)
        self._done = False

    def valid_batches(self) -> Iterator[pa.Table]:
        for records in iter_records(
            self.source, self.stream, self.spec, block_bytes=self.block_bytes
        ):
            checked = _with_parsed(records.table, self.spec)
            suspect = checked.select(~passes_every_rule(self._contract)).to_series()
            self._types.count_present(checked)
            self.rows_read += records.rows_read
            self.dropped_columns = records.dropped_columns
            self._suspects.add(checked.filter(suspect), records.ragged)
            if self._suspects.rows >= SUSPECTS_PER_VERDICT:
                self._judge_suspects()
            yield _typed_rows(
                records.table,
                checked,
                ~suspect.to_numpy(),
                self.spec,
                self.source,
                self.pii_key,
                self.run,
            )
        self._judge_suspects()
        self._types.check()
        self._done = True

    @property
    def _contract(self) -> DataFrameSchema:
        return contract(self.spec.name, self.file_day)

    def _judge_suspects(self) -> None:
        """Name the rules the suspect records break and quarantine them (one pandera pass
        for many blocks: a pass costs tens of milliseconds however few its rows)."""
        checked, ragged = self._suspects.take()
        if checked.is_empty() and not ragged:
            return
        broken = _broken_rules(checked, self.spec, self._contract)
        self._types.add_failures(checked, broken)
        self._quarantined.append(
            _quarantine_rows(
                self.source,
                checked,
                ragged,
                broken,
                self.spec,
                self.pii_key,
                self.run,
                width=len(self.spec.column_names) + len(self.dropped_columns),
            )
        )

    def result(self, valid: ValidRows) -> ValidatedFile:
        """The file's outcome, once `valid_batches` is exhausted; ``valid`` holds its rows."""
        if not self._done:
            raise RuntimeError(f"{self.source}: result() before valid_batches() was exhausted")
        quarantine = (
            pa.concat_tables(self._quarantined)
            if self._quarantined
            else quarantine_schema(self.spec).empty_table()
        )
        return ValidatedFile(
            source=self.source,
            rows_read=self.rows_read,
            valid=valid,
            quarantine=quarantine,
            dropped_columns=self.dropped_columns,
        )


class _Suspects:
    """Records of a file that broke a rule (text, parsed values, line) and its ragged records,
    gathered across blocks until they are judged."""

    def __init__(self) -> None:
        self._frames: list[pl.DataFrame] = []
        self._ragged: list[RaggedRecord] = []
        self._empty = pl.DataFrame()
        self.rows = 0

    def add(self, checked: pl.DataFrame, ragged: list[RaggedRecord]) -> None:
        self._empty = checked.clear()
        if not checked.is_empty():
            self._frames.append(checked)
        self._ragged.extend(ragged)
        self.rows += checked.height + len(ragged)

    def take(self) -> tuple[pl.DataFrame, list[RaggedRecord]]:
        """Everything gathered (in file order), and a fresh start."""
        frames, ragged = self._frames, self._ragged
        self._frames, self._ragged, self.rows = [], [], 0
        if not frames:
            return self._empty, ragged
        return pl.concat(frames, rechunk=True), ragged


class _TypeChangeWatch:
    """Counts, per column over the whole file, present values and values failing the format;
    a column whose every value fails (two at least) had its type changed upstream."""

    def __init__(self, source: str, columns: tuple[str, ...]) -> None:
        self.source = source
        self.present = dict.fromkeys(columns, 0)
        self.failed = dict.fromkeys(columns, 0)
        self.first: dict[str, tuple[int, str]] = {}

    def count_present(self, checked: pl.DataFrame) -> None:
        counts = checked.select(pl.col(name).is_not_null().sum() for name in self.present)
        for name, count in zip(self.present, counts.row(0), strict=True):
            self.present[name] += int(count)

    def add_failures(self, checked: pl.DataFrame, broken: pl.DataFrame) -> None:
        """Count the format failures among ``broken`` (rows of ``checked``, in file order)."""
        format_failures = broken.filter(pl.col("rule").is_in(FORMAT_RULES))
        if format_failures.is_empty():
            return
        summary = format_failures.group_by("column", maintain_order=True).agg(
            pl.len().alias("failed"), pl.col("row").min(), pl.col("rule").first()
        )
        lines = checked.get_column(LINE)
        for name, failed, row, rule in summary.iter_rows():
            self.failed[name] += failed
            if name not in self.first:
                self.first[name] = (int(lines[row]), rule)

    def check(self) -> None:
        for name, failed in self.failed.items():
            present = self.present[name]
            if failed and present >= TYPE_CHANGE_MIN_VALUES and failed == present:
                line, rule = self.first[name]
                # No example value: the file may hold PII, and the message travels far.
                raise BadFileError(
                    self.source,
                    f"none of the column's {present} value(s) is "
                    f"{rule.removeprefix('is_')}: its type changed upstream",
                    line=line,
                    column=name,
                )


def _with_parsed(table: pa.Table, spec: DatasetSpec) -> pl.DataFrame:
    """The block's text columns and line numbers, with dates, timestamps and integers parsed."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return with_parsed(frame, spec)


#: The broken rules of a block: one row per (record, rule), records by position in the block.
_BROKEN_SCHEMA = {
    "row": pl.Int64,
    "column": pl.String,
    "rule": pl.String,
    "value": pl.String,
    "position": pl.Int64,
    "check_number": pl.Int64,
}


def _broken_rules(
    suspects: pl.DataFrame, spec: DatasetSpec, schema: DataFrameSchema
) -> pl.DataFrame:
    """Every rule each suspect record breaks, in record, then column, then check order.

    The suspects are the records `passes_every_rule` rejected, in one polars pass over each
    block (a few in a thousand, usually); pandera validates only them and names each failure,
    instead of collecting every check over every row one check at a time.
    """
    if suspects.is_empty():
        return pl.DataFrame(schema=_BROKEN_SCHEMA)
    try:
        schema.validate(suspects, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        raise RuntimeError(f"the {spec.name} contract passed rows its own rules reject")
    if cases.get_column("index").null_count():  # a check that could not run: a defect of ours
        checks = cases.filter(pl.col("index").is_null()).get_column("check").to_list()
        raise RuntimeError(f"the {spec.name} contract could not be evaluated: {checks}")
    if cases.get_column("index").n_unique() != suspects.height:  # a row would be lost
        raise RuntimeError(f"the {spec.name} contract passed rows its own rules reject")
    positions = {name: position for position, name in enumerate(spec.column_names)}
    return (
        cases.with_columns(pl.col("index").cast(pl.Int64).alias("row"))
        .select(
            pl.col("row"),
            pl.col("column").cast(pl.String),
            pl.col("check").cast(pl.String).replace("not_nullable", "required").alias("rule"),
            pl.col("failure_case").cast(pl.String).alias("value"),
            pl.col("column")
            .cast(pl.String)
            .replace_strict(positions, return_dtype=pl.Int64)
            .alias("position"),
            # the null check has no number and comes first
            pl.col("check_number").cast(pl.Int64).fill_null(-1),
        )
        .sort("row", "position", "check_number")
    )


def _typed_rows(
    table: pa.Table,
    checked: pl.DataFrame,
    keep: np.ndarray,
    spec: DatasetSpec,
    source: str,
    pii_key: bytes,
    run: RunContext,
) -> pa.Table:
    """The valid records typed: text that passed its contract, so every conversion succeeds."""
    texts = [c.name for c in spec.columns if c.kind == "string"]
    table = table.select([*texts, LINE])
    checked = checked.select(parsed_name(c.name) for c in spec.columns if c.name not in texts)
    if not keep.all():  # only the columns used are filtered
        table = table.filter(pa.array(keep))
        checked = checked.filter(pl.Series(keep))
    arrays: list[pa.Array | pa.ChunkedArray] = []
    for column in spec.columns:
        if column.kind == "string":
            arrays.append(table.column(column.name))
            continue
        parsed = checked.get_column(parsed_name(column.name))
        if column.kind == "decimal":  # exact from the text, never through float
            kind = column.arrow_type
            parsed = parsed.cast(pl.Decimal(kind.precision, kind.scale))
        arrays.append(pc.cast(parsed.to_arrow(), column.arrow_type))
    typed = pa.Table.from_arrays(arrays, schema=spec.arrow_schema())
    typed = pii.hash_columns(pii_key, typed, spec.pii_columns)
    count = typed.num_rows
    return (
        typed.append_column(SOURCE_FILE, pa.repeat(pa.scalar(source, pa.string()), count))
        .append_column(SOURCE_LINE, table.column(LINE))
        .append_column(INGESTED_AT, pa.repeat(pa.scalar(run.ingested_at, TIMESTAMP_TYPE), count))
        .append_column(RUN_ID, pa.repeat(pa.scalar(run.run_id, pa.string()), count))
        .combine_chunks()  # one record batch per block downstream, not one per Arrow piece
    )


def _quarantine_rows(
    source: str,
    suspects: pl.DataFrame,
    ragged: list[RaggedRecord],
    broken: pl.DataFrame,
    spec: DatasetSpec,
    pii_key: bytes,
    run: RunContext,
    *,
    width: int,
) -> pa.Table:
    """One row per failing or ragged record: its first broken rule and all of them.

    ``broken`` names the rules each row of ``suspects`` breaks; ``width`` is the header's
    number of fields (a ragged record's error says how many it has instead).

    In a dataset with PII, no value leaves in clear: PII columns are hashed and their offending
    value masked; an offending value of another column (an e-mail in ``signup_date``) is shown
    by its shape only, and every cell that broke a rule is hashed.
    """
    first = broken.group_by("row", maintain_order=True).agg(
        pl.col("column").first(),
        pl.col("rule").first(),
        pl.col("value").first(),
        (pl.col("column") + ": " + pl.col("rule")).str.join("; ").alias("errors"),
    )
    bad = suspects[first.get_column("row")].select([*spec.column_names, LINE]).to_arrow()
    pii_columns = set(spec.pii_columns)
    columns = first.get_column("column").to_list()
    values: list[str | None] = first.get_column("value").to_list()
    if pii_columns:
        values = [
            None if value is None else pii.MASK if column in pii_columns else pii.mask(value)
            for column, value in zip(columns, values, strict=True)
        ]
    cells = {name: bad.column(name).to_pylist() for name in spec.column_names}
    if pii_columns:
        where = {row: position for position, row in enumerate(first.get_column("row"))}
        for row, name in broken.select("row", "column").iter_rows():
            value = cells[name][where[row]]
            if name not in pii_columns and value is not None:
                cells[name][where[row]] = pii.hash_value(pii_key, value)
    count = bad.num_rows + len(ragged)
    rows: dict[str, list[Any]] = {
        SOURCE_FILE: [source] * count,
        SOURCE_LINE: bad.column(LINE).to_pylist() + [r.line for r in ragged],
        "column": columns + [None] * len(ragged),
        "rule": first.get_column("rule").to_list() + ["field_count"] * len(ragged),
        "value": values + [None] * len(ragged),
        "errors": first.get_column("errors").to_list()
        + [f"expected {width} fields, found {r.fields}" for r in ragged],
        RUN_ID: [run.run_id] * count,
        INGESTED_AT: [run.ingested_at] * count,
    }
    for name in spec.column_names:
        # Ragged records cannot be mapped to columns: the bronze file and line point to them.
        rows[name] = cells[name] + [None] * len(ragged)
    table = pa.Table.from_pydict(rows, schema=quarantine_schema(spec))
    return pii.hash_columns(pii_key, table, spec.pii_columns).sort_by(SOURCE_LINE)
