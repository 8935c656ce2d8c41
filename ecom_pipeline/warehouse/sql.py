"""SQL text of a warehouse load: one small pure function per statement, no I/O.

Every function returns the statement as a string, in SQLAlchemy ``text()`` notation: ``:name``
marks a bound parameter (``:months`` is an expanding list, bound with
``bindparam("months", expanding=True)``). The warehouse adapter runs them; see
``ecom_pipeline.warehouse.engine``.

Two rules hold throughout:

- every identifier (schema, table, column, staging table) goes through `quote_identifier`, which
  always quotes, so any name is one identifier and never SQL;
- values are bound parameters, with one exception: Redshift's ``COPY`` takes its S3 URI and IAM
  role only as string literals. Those two are checked against strict patterns first and then
  written by `_string_literal` (see `redshift_copy_sql`).

So bandit's B608 (SQL built from strings) is a false positive here: each statement carries
``# nosec B608`` for these reasons.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from ecom_pipeline.gold.tables import LOADED_AT, MONTH, GoldTable

if TYPE_CHECKING:
    # Annotations only: a module-level binding of a SQLAlchemy class keeps DuckDB's objects
    # reachable at interpreter exit (see warehouse.py).
    from sqlalchemy.engine import Dialect

#: Strings are short codes and names in gold; Redshift stores VARCHAR lengths in bytes.
VARCHAR_LENGTH = 256

#: An IAM role ARN (any AWS partition).
IAM_ROLE_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
#: A Parquet object in S3: a plain bucket name, then a key of unreserved characters.
S3_PARQUET_URI_PATTERN = re.compile(r"^s3://[a-z0-9.-]{3,63}/[\w!\-.*'()/=]+\.parquet$")


def quote_identifier(dialect: Dialect, name: str) -> str:
    """Quote one identifier with the dialect's preparer, always (not only when needed).

    Args:
        dialect: the SQLAlchemy dialect of the warehouse (DuckDB, PostgreSQL or Redshift).
        name: a schema, table or column name, taken literally.

    Returns:
        ``"name"`` with embedded double quotes doubled, e.g. ``x"; drop table y; --`` becomes
        ``"x""; drop table y; --"``: one identifier whatever it contains.

    Note:
        Quoted identifiers are case-sensitive on DuckDB and PostgreSQL; the gold names are
        lower case, so quoting them never changes which object is meant.
    """
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}: must be non-empty and contain no NUL")
    preparer = dialect.identifier_preparer
    # The preparer's own quote_identifier() also doubles "%" for drivers with a format
    # paramstyle (psycopg, redshift_connector): right for SQL it compiles itself, wrong here,
    # because text() doubles "%" again when it compiles and psycopg's COPY takes the text as is.
    escaped = name.replace(preparer.escape_quote, preparer.escape_to_quote)
    return f"{preparer.initial_quote}{escaped}{preparer.final_quote}"


def qualified_name(dialect: Dialect, schema: str, name: str) -> str:
    """``"schema"."name"``, both parts quoted."""
    return f"{quote_identifier(dialect, schema)}.{quote_identifier(dialect, name)}"


def _column_list(dialect: Dialect, columns: Sequence[str]) -> str:
    return ", ".join(quote_identifier(dialect, column) for column in columns)


def column_type_sql(arrow_type: pa.DataType) -> str:
    """The SQL type declared for an Arrow type of a gold column.

    Raises:
        TypeError: for a type gold tables do not use (add it here deliberately).
    """
    if pa.types.is_date32(arrow_type):
        return "DATE"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return f"VARCHAR({VARCHAR_LENGTH})"
    if pa.types.is_int64(arrow_type):
        return "BIGINT"
    if pa.types.is_int32(arrow_type):
        return "INTEGER"
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision}, {arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    raise TypeError(
        f"no SQL type for Arrow type {arrow_type} (expected date, string, int, decimal)"
    )


def create_schema_sql(dialect: Dialect, schema: str) -> str:
    """``CREATE SCHEMA IF NOT EXISTS``: a no-op when the schema is there."""
    return f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(dialect, schema)}"


def create_table_sql(dialect: Dialect, schema: str, table: GoldTable) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the declared types, ``_loaded_at`` and the key.

    Note:
        An existing table is left as it is: a changed GoldTable schema needs a migration, this
        statement will not alter the table. The primary key is enforced by DuckDB and
        PostgreSQL; Redshift only records it, so the load checks key uniqueness itself.
    """
    lines = []
    for field in table.schema:
        null = "" if field.nullable else " NOT NULL"
        lines.append(f"{quote_identifier(dialect, field.name)} {column_type_sql(field.type)}{null}")
    lines.append(f"{quote_identifier(dialect, LOADED_AT)} TIMESTAMP NOT NULL")
    lines.append(f"PRIMARY KEY ({_column_list(dialect, table.key)})")
    body = ",\n    ".join(lines)
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified_name(dialect, schema, table.name)} (\n    {body}\n)"
    )


def create_staging_sql(dialect: Dialect, schema: str, table: GoldTable, staging: str) -> str:
    """An empty temporary table with the gold columns (no ``_loaded_at``), in file order.

    ``CREATE TEMP TABLE … AS SELECT … WHERE 1 = 0`` is the form all three engines accept
    (DuckDB has no ``LIKE``). The column order matters on Redshift: ``COPY … FORMAT AS PARQUET``
    maps the file's columns to the table's by position.
    """
    return (
        f"CREATE TEMP TABLE {quote_identifier(dialect, staging)} AS "  # nosec B608
        f"SELECT {_column_list(dialect, table.column_names)} "
        f"FROM {qualified_name(dialect, schema, table.name)} WHERE 1 = 0"
    )


def insert_staging_from_relation_sql(
    dialect: Dialect, staging: str, relation: str, columns: Sequence[str]
) -> str:
    """Fill staging from another relation (DuckDB: a registered Arrow table)."""
    column_list = _column_list(dialect, columns)
    return (
        f"INSERT INTO {quote_identifier(dialect, staging)} ({column_list}) "  # nosec B608
        f"SELECT {column_list} FROM {quote_identifier(dialect, relation)}"
    )


def postgres_copy_sql(dialect: Dialect, staging: str, columns: Sequence[str]) -> str:
    """PostgreSQL ``COPY … FROM STDIN`` in CSV: an unquoted empty field is NULL, ``""`` is ''.

    This one runs on the psycopg cursor, not through ``text()``.
    """
    return (
        f"COPY {quote_identifier(dialect, staging)} ({_column_list(dialect, columns)}) "
        "FROM STDIN (FORMAT csv)"
    )


def check_iam_role(role: str) -> str:
    """The IAM role ARN, unchanged, if it matches `IAM_ROLE_PATTERN`; ValueError otherwise."""
    return _matching(
        IAM_ROLE_PATTERN,
        role,
        "Redshift IAM role",
        "an ARN like arn:aws:iam::123456789012:role/name",
    )


def check_s3_parquet_uri(uri: str) -> str:
    """The S3 URI, unchanged, if it matches `S3_PARQUET_URI_PATTERN`; ValueError otherwise."""
    return _matching(
        S3_PARQUET_URI_PATTERN,
        uri,
        "S3 Parquet URI",
        "s3://bucket/key.parquet with a plain bucket name and a key of letters, digits and "
        "!-_.*'()/=",
    )


def _matching(pattern: re.Pattern[str], value: str, what: str, expected: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: expected {expected}")
    return value


def _string_literal(value: str) -> str:
    # Only for values already checked by check_iam_role / check_s3_parquet_uri: neither pattern
    # admits a quote or a backslash, so doubling single quotes is belt and braces.
    return "'" + value.replace("'", "''") + "'"


def redshift_copy_sql(dialect: Dialect, staging: str, uri: str, iam_role: str) -> str:
    """Redshift ``COPY`` of one gold Parquet file from S3 into staging.

    Note:
        COPY accepts no bind parameters for its source or credentials, so the URI and the role
        are the only values ever written into SQL text: each is validated against a strict
        pattern (`check_s3_parquet_uri`, `check_iam_role`) and then quoted as a string literal
        with single quotes doubled. Parquet COPY maps columns by position and takes no column
        list and no ``REGION`` (the bucket must be in the cluster's region); staging is created
        with exactly the file's columns in the file's order.
    """
    return (
        f"COPY {quote_identifier(dialect, staging)} "
        f"FROM {_string_literal(check_s3_parquet_uri(uri))} "
        f"IAM_ROLE {_string_literal(check_iam_role(iam_role))} "
        "FORMAT AS PARQUET"
    )


def staging_summary_sql(dialect: Dialect, staging: str) -> str:
    """Rows in staging and how many of them fall outside ``:months`` (expanding)."""
    month = quote_identifier(dialect, MONTH)
    return (
        "SELECT COUNT(*) AS row_count, "  # nosec B608
        f"COALESCE(SUM(CASE WHEN {month} IN :months THEN 0 ELSE 1 END), 0) AS foreign_rows "
        f"FROM {quote_identifier(dialect, staging)}"
    )


def staging_duplicate_key_sql(dialect: Dialect, staging: str, key: Sequence[str]) -> str:
    """One key that occurs more than once in staging (and how often), or no row."""
    key_list = _column_list(dialect, key)
    return (
        f"SELECT {key_list}, COUNT(*) AS occurrences FROM {quote_identifier(dialect, staging)} "  # nosec B608
        f"GROUP BY {key_list} HAVING COUNT(*) > 1 ORDER BY {key_list} LIMIT 1"
    )


def lock_table_sql(dialect: Dialect, schema: str, table: str, mode: str | None = None) -> str:
    """``LOCK TABLE``: serializes concurrent loads of one table until commit.

    Args:
        dialect: the warehouse dialect.
        schema: the table's schema.
        table: the table's name.
        mode: a PostgreSQL lock mode such as ``SHARE ROW EXCLUSIVE`` (blocks other writers, not
            readers); None for Redshift, whose ``LOCK`` has no modes.
    """
    statement = f"LOCK TABLE {qualified_name(dialect, schema, table)}"
    if mode is None:
        return statement
    if mode not in {"SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}:
        raise ValueError(f"unsupported lock mode {mode!r}")
    return f"{statement} IN {mode} MODE"


def delete_months_sql(dialect: Dialect, schema: str, table: GoldTable) -> str:
    """Delete the rows of the months being replaced; ``:months`` is an expanding parameter."""
    return (
        f"DELETE FROM {qualified_name(dialect, schema, table.name)} "  # nosec B608
        f"WHERE {quote_identifier(dialect, MONTH)} IN :months"
    )


def delete_months_before_sql(dialect: Dialect, schema: str, table: GoldTable) -> str:
    """Retention: delete the rows whose month sorts before ``:month`` (``YYYY-MM`` strings)."""
    return (
        f"DELETE FROM {qualified_name(dialect, schema, table.name)} "  # nosec B608
        f"WHERE {quote_identifier(dialect, MONTH)} < :month"
    )


def insert_from_staging_sql(dialect: Dialect, schema: str, table: GoldTable, staging: str) -> str:
    """Copy staging into the target, stamping every row with ``:loaded_at``.

    The cast gives the parameter a type where it stands in a select list (PostgreSQL would
    otherwise have to infer it).
    """
    columns = _column_list(dialect, table.column_names)
    return (
        f"INSERT INTO {qualified_name(dialect, schema, table.name)} "  # nosec B608
        f"({columns}, {quote_identifier(dialect, LOADED_AT)}) "
        f"SELECT {columns}, CAST(:loaded_at AS TIMESTAMP) FROM {quote_identifier(dialect, staging)}"
    )


def drop_staging_sql(dialect: Dialect, staging: str) -> str:
    """Drop the staging table before commit, so a pooled session does not keep it."""
    return f"DROP TABLE {quote_identifier(dialect, staging)}"


def table_exists_sql() -> str:
    """1 if ``:schema.:table`` exists, else 0; ``information_schema`` exists on all three."""
    return (
        "SELECT COUNT(*) FROM information_schema.tables "
        "WHERE table_schema = :schema AND table_name = :table"
    )


def rows_by_month_sql(dialect: Dialect, schema: str, table: GoldTable) -> str:
    """Each month of the table with its row count, months in order."""
    month = quote_identifier(dialect, "month")
    return (
        f"SELECT {month}, COUNT(*) FROM {qualified_name(dialect, schema, table.name)} "  # nosec B608
        f"GROUP BY {month} ORDER BY {month}"
    )


def select_table_sql(dialect: Dialect, schema: str, table: GoldTable) -> str:
    """Every row with ``_loaded_at``, in GoldTable column order, sorted by the key."""
    columns = _column_list(dialect, (*table.column_names, LOADED_AT))
    return (
        f"SELECT {columns} FROM {qualified_name(dialect, schema, table.name)} "  # nosec B608
        f"ORDER BY {_column_list(dialect, table.key)}"
    )
