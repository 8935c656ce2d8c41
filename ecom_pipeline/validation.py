"""The validate step for one file: text records in, typed silver rows and quarantined rows out.

Pure: bytes and settings in, Arrow tables out. Every record of the file ends in exactly one of
the two outputs (ragged records and contract failures in quarantine), so
``rows_read == len(valid) + len(quarantine)`` holds for every file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline import pii
from ecom_pipeline.contracts import FORMAT_RULES, contract, parse_timestamps
from ecom_pipeline.csv_reader import LINE, RawRecords, read_records
from ecom_pipeline.datasets import (
    INGESTED_AT,
    RUN_ID,
    SOURCE_FILE,
    SOURCE_LINE,
    TIMESTAMP_TYPE,
    DatasetSpec,
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
    valid: pa.Table
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
    """Validate a delivered file against its dataset's contract.

    Args:
        source: the file's lake key (named in every error and stored as ``_source_file``).
        data: the file's bytes as delivered.
        spec: the dataset the file belongs to.
        file_day: the ``dt=`` day of the file; dates after it are in the future.
        pii_key: the HMAC key that replaces names and e-mails.
        run: run id and ingestion time stamped on the rows.

    Raises:
        BadFileError: the file as a whole is unusable (see ``read_records``), or a column's
            values all fail its type (the column's type changed upstream).
    """
    records = read_records(source, data, spec)
    failures = _contract_failures(records.frame, spec, file_day)
    _reject_retyped_columns(source, records.frame, failures)

    bad_index = failures.index.unique()
    good = records.frame.drop(index=bad_index)
    valid = _typed_rows(good, spec, source, pii_key, run)
    quarantine = _quarantine_rows(source, records, failures, spec, pii_key, run)
    return ValidatedFile(
        source=source,
        rows_read=records.rows_read,
        valid=valid,
        quarantine=quarantine,
        dropped_columns=records.dropped_columns,
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


def _reject_retyped_columns(source: str, frame: pd.DataFrame, failures: pd.DataFrame) -> None:
    if failures.empty:
        return
    format_failures = failures[failures["rule"].isin(FORMAT_RULES)]
    for column, group in format_failures.groupby("column"):
        present = int(frame[column].notna().sum())
        if present >= TYPE_CHANGE_MIN_VALUES and len(group) == present:
            first_line = int(frame.loc[group.index[0], LINE])
            example = group["value"].iloc[0]
            raise BadFileError(
                source,
                f"no value of this column is {group['rule'].iloc[0].removeprefix('is_')} "
                f"(e.g. {example!r}): its type changed upstream",
                line=first_line,
                column=str(column),
            )


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
