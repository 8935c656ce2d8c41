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

import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline import pii
from ecom_pipeline.contracts import FORMAT_RULES, contract, parse_timestamps
from ecom_pipeline.csv_reader import BLOCK_BYTES, LINE, RawRecords, iter_records
from ecom_pipeline.datasets import (
    INGESTED_AT,
    RUN_ID,
    SOURCE_FILE,
    SOURCE_LINE,
    TIMESTAMP_TYPE,
    DatasetSpec,
    validated_schema,
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
        frame = self.quarantine.select(["column", "rule"]).to_pandas()
        labels = frame["column"].fillna("(record)") + ": " + frame["rule"]
        return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}


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
        self._types = _TypeChangeWatch(source, spec.column_names)
        self._done = False

    def valid_batches(self) -> Iterator[pa.Table]:
        for records in iter_records(
            self.source, self.stream, self.spec, block_bytes=self.block_bytes
        ):
            failures = _contract_failures(records.frame, self.spec, self.file_day)
            self._types.add(records.frame, failures)
            good = records.frame.drop(index=failures.index.unique())
            self.rows_read += records.rows_read
            self.dropped_columns = records.dropped_columns
            self._quarantined.append(
                _quarantine_rows(self.source, records, failures, self.spec, self.pii_key, self.run)
            )
            yield _typed_rows(good, self.spec, self.source, self.pii_key, self.run)
        self._types.check()
        self._done = True

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


class _TypeChangeWatch:
    """Counts, per column over the whole file, present values and values failing the format;
    a column whose every value fails (two at least) had its type changed upstream."""

    def __init__(self, source: str, columns: tuple[str, ...]) -> None:
        self.source = source
        self.present = dict.fromkeys(columns, 0)
        self.failed = dict.fromkeys(columns, 0)
        self.first: dict[str, tuple[int, str, Any]] = {}

    def add(self, frame: pd.DataFrame, failures: pd.DataFrame) -> None:
        for name in self.present:
            self.present[name] += int(frame[name].notna().sum())
        format_failures = failures[failures["rule"].isin(FORMAT_RULES)]
        for column, group in format_failures.groupby("column"):
            name = str(column)
            self.failed[name] += len(group)
            if name not in self.first:
                line = int(frame.loc[group.index[0], LINE])
                self.first[name] = (line, str(group["rule"].iloc[0]), group["value"].iloc[0])

    def check(self) -> None:
        for name, failed in self.failed.items():
            present = self.present[name]
            if failed and present >= TYPE_CHANGE_MIN_VALUES and failed == present:
                line, rule, example = self.first[name]
                raise BadFileError(
                    self.source,
                    f"no value of this column is {rule.removeprefix('is_')} "
                    f"(e.g. {example!r}): its type changed upstream",
                    line=line,
                    column=name,
                )


def _contract_failures(frame: pd.DataFrame, spec: DatasetSpec, file_day: date) -> pd.DataFrame:
    """One row per failing record: its first broken rule in column order, and all of them."""
    schema = contract(spec.name, file_day)
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return pd.DataFrame(columns=["column", "rule", "value", "errors"])
    cases = cases[cases["index"].notna()].copy()
    cases["index"] = cases["index"].astype("int64")
    order = {name: position for position, name in enumerate(spec.column_names)}
    cases["column_order"] = cases["column"].map(order)
    cases["rule"] = cases["check"].astype(str).str.replace("not_nullable", "required")
    cases = cases.sort_values(["index", "column_order", "check_number"], na_position="first")
    labels = cases["column"].astype(str) + ": " + cases["rule"]
    summary = labels.groupby(cases["index"]).agg("; ".join)
    first = cases.drop_duplicates("index").set_index("index")
    result = pd.DataFrame(
        {
            "column": first["column"].astype(str),
            "rule": first["rule"],
            "value": first["failure_case"],
            "errors": summary,
        }
    )
    result.index.name = None
    return result


def _typed_rows(
    frame: pd.DataFrame, spec: DatasetSpec, source: str, pii_key: bytes, run: RunContext
) -> pa.Table:
    arrays = []
    for column in spec.columns:
        values = frame[column.name]
        arrays.append(_typed_array(values, column.kind, column.arrow_type))
    table = pa.Table.from_arrays(arrays, schema=spec.arrow_schema())
    table = pii.hash_columns(pii_key, table, spec.pii_columns)
    count = table.num_rows
    return (
        table.append_column(SOURCE_FILE, pa.array([source] * count, pa.string()))
        .append_column(SOURCE_LINE, pa.array(frame[LINE].to_numpy(), pa.int64()))
        .append_column(INGESTED_AT, pa.array([run.ingested_at] * count, TIMESTAMP_TYPE))
        .append_column(RUN_ID, pa.array([run.run_id] * count, pa.string()))
    )


def _typed_array(values: pd.Series, kind: str, arrow_type: pa.DataType) -> pa.Array:
    """Convert text that passed its contract (so every conversion succeeds)."""
    text = pa.array(values, pa.string())  # Arrow-backed already: no copy per value
    if kind == "string":
        return text
    if kind == "date":
        return pc.cast(pc.strptime(text, format="%Y-%m-%d", unit="s"), arrow_type)
    if kind == "timestamp":  # ISO-8601 with or without an offset: pandas parses every form
        return pa.array(parse_timestamps(values), arrow_type)
    # integers and decimals: exact from the text, never through float
    return text.cast(arrow_type)


def _quarantine_rows(
    source: str,
    records: RawRecords,
    failures: pd.DataFrame,
    spec: DatasetSpec,
    pii_key: bytes,
    run: RunContext,
) -> pa.Table:
    schema = quarantine_schema(spec)
    bad = records.frame.loc[failures.index]
    pii_columns = set(spec.pii_columns)
    masked_values = [
        None if pd.isna(value) else pii.MASK if column in pii_columns else str(value)
        for column, value in zip(failures["column"], failures["value"], strict=True)
    ]
    count = len(bad) + len(records.ragged)
    rows: dict[str, list[Any]] = {
        SOURCE_FILE: [source] * count,
        SOURCE_LINE: [int(v) for v in bad[LINE]] + [r.line for r in records.ragged],
        "column": list(failures["column"]) + [None] * len(records.ragged),
        "rule": list(failures["rule"]) + ["field_count"] * len(records.ragged),
        "value": masked_values + [None] * len(records.ragged),
        "errors": list(failures["errors"])
        + [
            f"expected {len(records.frame.columns) - 1 + len(records.dropped_columns)} fields, "
            f"found {r.fields}"
            for r in records.ragged
        ],
    }
    rows[RUN_ID] = [run.run_id] * count
    rows[INGESTED_AT] = [run.ingested_at] * count
    for name in spec.column_names:
        # Ragged records cannot be mapped to columns: the bronze file and line point to them.
        rows[name] = list(bad[name].to_numpy(dtype=object, na_value=None)) + [None] * len(
            records.ragged
        )
    table = pa.Table.from_pydict(rows, schema=schema)
    return pii.hash_columns(pii_key, table, spec.pii_columns).sort_by(SOURCE_LINE)
