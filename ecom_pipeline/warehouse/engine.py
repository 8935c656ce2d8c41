"""The warehouse adapter: replace whole months of a gold table in one transaction (SPEC §5, §6).

One algorithm for every engine (`Warehouse.upsert_months`)::

    BEGIN
    CREATE SCHEMA IF NOT EXISTS, CREATE TABLE IF NOT EXISTS   -- DDL from the GoldTable
    LOCK the table (PostgreSQL, Redshift)                      -- concurrent loads queue up
    CREATE TEMP TABLE staging AS SELECT <cols> FROM target WHERE 1 = 0
    fill staging                                               -- the only per-engine step
    check staging: row count, months, duplicate keys           -- fail loudly, change nothing
    DELETE FROM target WHERE month IN (:months)
    INSERT INTO target (<cols>, _loaded_at) SELECT <cols>, :loaded_at FROM staging
    DROP TABLE staging
    COMMIT                                                     -- any error: ROLLBACK, re-raise

Only two things differ between engines, and they live in the small `LoadStrategy` classes: how
staging is filled in bulk (DuckDB reads the registered Arrow table, PostgreSQL takes
``COPY FROM STDIN``, Redshift ``COPY``s the gold Parquet files from S3) and which lock statement
serializes loads. The SQL text comes from `ecom_pipeline.warehouse.sql`.
"""

from __future__ import annotations

import io
import logging
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from ecom_pipeline.errors import ConfigurationError, WarehouseLoadError
from ecom_pipeline.gold.tables import LOADED_AT, MONTH, GoldTable
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.failpoints import failpoint
from ecom_pipeline.settings import Settings
from ecom_pipeline.warehouse import sql as q

if TYPE_CHECKING:
    # Annotations only. At run time this module reaches SQLAlchemy through the ``sa`` module
    # object alone: a flow run keeps its flow's module globals (and through them this module's
    # globals) alive until interpreter exit, and a SQLAlchemy class bound here, such as
    # ``Dialect``, leads on to duckdb_engine's dict, which ``@compiles`` registers on SQLAlchemy
    # classes, and from there to DuckDB's nanobind types. CPython clears the globals of the
    # modules still alive at exit, which drops the ``sa`` reference, but not the dict of a module
    # object already freed. With a class bound here, DuckDB's types are still alive at exit and
    # every ``ecom-pipeline run`` ended with "nanobind: leaked ... DuckDBPyType" warnings.
    from sqlalchemy.engine import URL, Dialect

logger = logging.getLogger(__name__)

WarehouseDialect = Literal["duckdb", "postgresql", "redshift"]
#: Driver options that notice a silent peer: first probe after 30 s idle, then every 10 s,
#: dropped after 3 unanswered (libpq's and redshift_connector's names for the same thing).
DEAD_PEER_DETECTION: dict[str, dict[str, Any]] = {
    "postgresql": {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    },
    "redshift": {
        "tcp_keepalive": True,
        "tcp_keepalive_idle": 30,
        "tcp_keepalive_interval": 10,
        "tcp_keepalive_count": 3,
    },
}
MONTH_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
#: ``_loaded_at`` as `Warehouse.read_table` returns it (stored as a UTC TIMESTAMP).
LOADED_AT_TYPE = pa.timestamp("us", tz="UTC")
_COPY_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class LoadResult:
    """What one `Warehouse.upsert_months` did.

    Attributes:
        table: the gold table's name.
        months: the months replaced, sorted.
        rows_deleted: rows of those months that were in the warehouse before.
        rows_inserted: rows of those months now in the warehouse.
        seconds: wall time of the load, connection and transaction included.
    """

    table: str
    months: tuple[str, ...]
    rows_deleted: int
    rows_inserted: int
    seconds: float


def sql_text(sql: str) -> sa.TextClause:
    """``sa.text(sql)`` that never reads a bind parameter inside a quoted name or literal.

    ``text()`` takes every ``:word`` for a parameter, even in ``"we:ird"``; a colon inside double
    or single quotes is escaped as ``\\:`` (which ``text()`` turns back into ``:``).
    """
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None  # a doubled quote closes and reopens: the state stays right
            elif char == ":":
                char = "\\:"
        elif char in "\"'":
            quote = char
        out.append(char)
    return sa.text("".join(out))


def check_month(month: str) -> str:
    """The month, if it is a ``YYYY-MM`` string; ValueError otherwise."""
    if not isinstance(month, str) or not MONTH_PATTERN.fullmatch(month):
        raise ValueError(f"invalid month {month!r}: expected 'YYYY-MM'")
    return month


def read_schema(table: GoldTable) -> pa.Schema:
    """The schema `Warehouse.read_table` returns: the gold columns plus ``_loaded_at``."""
    return table.schema.append(pa.field(LOADED_AT, LOADED_AT_TYPE, nullable=False))


@dataclass(frozen=True)
class StagingLoad:
    """What a strategy needs to fill the staging table of one load."""

    dialect: Dialect
    table: GoldTable
    staging: str
    rows: pa.Table
    months: tuple[str, ...]
    source_uris: tuple[str, ...]


class LoadStrategy(ABC):
    """What differs between engines in a load; everything else is `Warehouse.upsert_months`."""

    @abstractmethod
    def fill_staging(self, conn: sa.Connection, load: StagingLoad) -> None:
        """Put the rows into the (empty, temporary) staging table, inside the transaction."""

    def lock_sql(self, dialect: Dialect, schema: str, table: GoldTable) -> str | None:
        """A statement that makes concurrent loads of the table wait, or None."""
        return None


class DuckDBStrategy(LoadStrategy):
    """Staging from the Arrow table registered on the DuckDB connection (zero-copy scan).

    No lock: DuckDB lets one process write a file, and conflicting transactions fail to commit.
    """

    def fill_staging(self, conn: sa.Connection, load: StagingLoad) -> None:
        raw: Any = conn.connection.driver_connection  # duckdb_engine's wrapper of the connection
        view = f"_arrow_{uuid.uuid4().hex}"
        raw.register(view, load.rows)
        try:
            conn.execute(
                sql_text(
                    q.insert_staging_from_relation_sql(
                        load.dialect, load.staging, view, load.table.column_names
                    )
                )
            )
        finally:
            raw.unregister(view)


class PostgresStrategy(LoadStrategy):
    """Staging by ``COPY … FROM STDIN`` (CSV written by Arrow) on the same psycopg connection."""

    def fill_staging(self, conn: sa.Connection, load: StagingLoad) -> None:
        raw: Any = conn.connection.driver_connection  # psycopg.Connection, in our transaction
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        statement = q.postgres_copy_sql(load.dialect, load.staging, load.table.column_names)
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            # Arrow quotes every string and leaves nulls empty, which is how PostgreSQL's CSV
            # tells '' from NULL; decimals are written exactly ("0.30").
            for batch in load.rows.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getvalue())

    def lock_sql(self, dialect: Dialect, schema: str, table: GoldTable) -> str | None:
        # Blocks other loads of the table, not readers.
        return q.lock_table_sql(dialect, schema, table.name, "SHARE ROW EXCLUSIVE")


class RedshiftStrategy(LoadStrategy):
    """Staging by ``COPY … FORMAT AS PARQUET`` of the month files from S3, with an IAM role."""

    def __init__(self, iam_role: str) -> None:
        self.iam_role = q.check_iam_role(iam_role)

    def copy_statements(self, load: StagingLoad) -> list[str]:
        """One ``COPY`` per source URI, after checking each URI names one of the load's months.

        Raises:
            ValueError: no URI although there are rows, or a URI that is not a month file of
                the months being replaced (or fails `sql.check_s3_parquet_uri`).
        """
        if load.rows.num_rows and not load.source_uris:
            raise ValueError(
                f"{load.table.name}: a Redshift load copies the gold files from S3, but "
                "source_uris is empty"
            )
        statements = []
        for uri in load.source_uris:
            if layout.month_in_uri(uri) not in load.months:
                raise ValueError(
                    f"{load.table.name}: source URI {uri!r} is not the file of one of the months "
                    f"being replaced ({', '.join(load.months)}); expected "
                    f".../{layout.gold_key(load.table.name, 'YYYY-MM')}"
                )
            statements.append(q.redshift_copy_sql(load.dialect, load.staging, uri, self.iam_role))
        return statements

    def fill_staging(self, conn: sa.Connection, load: StagingLoad) -> None:
        for statement in self.copy_statements(load):
            conn.execute(sql_text(statement))

    def lock_sql(self, dialect: Dialect, schema: str, table: GoldTable) -> str | None:
        # Taken before the first read of the table, as Redshift advises against serializable
        # isolation violations; readers wait until commit.
        return q.lock_table_sql(dialect, schema, table.name)


class Warehouse:
    """The gold schema in DuckDB, PostgreSQL or Redshift, chosen by one SQLAlchemy URL.

    Args:
        url: SQLAlchemy URL; ``duckdb:///path.duckdb``, ``postgresql+psycopg://…`` or
            ``redshift+redshift_connector://…``. It may hold a password: it is never logged or
            put in an error message.
        schema: the schema of the gold tables (quoted, created if missing).
        iam_role: Redshift only, required there: the role ``COPY`` assumes to read S3.
        region: the AWS region of the cluster. Kept for information: Parquet ``COPY`` refuses a
            ``REGION`` clause, so the gold bucket must be in the cluster's region.

    Example:
        A local warehouse::

            wh = Warehouse("duckdb:///warehouse.duckdb")
            wh.upsert_months(DAILY_REVENUE, rows, ["2026-11"])
            wh.close()
    """

    def __init__(
        self,
        url: str,
        schema: str = "gold",
        *,
        iam_role: str | None = None,
        region: str = "us-east-1",
    ) -> None:
        try:
            parsed = sa.make_url(url)
        except Exception:
            # The parse error repeats the URL, password included.
            raise ConfigurationError(
                "the warehouse URL is not a valid SQLAlchemy URL (expected e.g. "
                "duckdb:///warehouse.duckdb or redshift+redshift_connector://user@host:5439/db)"
            ) from None
        backend = parsed.get_backend_name()
        self._dialect: WarehouseDialect
        if backend == "duckdb":
            self._dialect = "duckdb"
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("md:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        elif backend == "postgresql":
            self._dialect = "postgresql"
            # Staging uses psycopg 3's COPY API; a bare postgresql:// would mean psycopg2.
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            elif parsed.drivername != "postgresql+psycopg":
                raise ConfigurationError(
                    "a PostgreSQL warehouse needs the psycopg 3 driver: use a "
                    f"postgresql+psycopg:// URL, not {parsed.drivername}://"
                )
        elif backend.startswith("redshift"):
            self._dialect = "redshift"
            if not iam_role:
                raise ConfigurationError(
                    "a Redshift warehouse needs ECOM_REDSHIFT_IAM_ROLE: the IAM role ARN that "
                    "COPY assumes to read the gold files from S3"
                )
            try:
                q.check_iam_role(iam_role)
            except ValueError as exc:
                raise ConfigurationError(f"ECOM_REDSHIFT_IAM_ROLE: {exc}") from None
            if "%" in schema:
                # sqlalchemy-redshift doubles every "%" of a text() statement for the driver,
                # but redshift_connector only undoes that outside quotes: the schema would be
                # created with "%%" in its name.
                raise ConfigurationError(
                    f"warehouse schema {schema!r}: '%' is not supported with Redshift"
                )
        else:
            raise ConfigurationError(
                f"unsupported warehouse dialect {backend!r}: expected duckdb, postgresql or "
                "redshift"
            )
        self.schema = schema
        self.iam_role = iam_role
        self.region = region
        #: For messages and logs: the URL with its password masked.
        self.display_url = parsed.render_as_string(hide_password=True)
        self._strategy = self._load_strategy()
        # Kept as text, to create the engine again after `close` (see `_engine`).
        self._url = parsed.render_as_string(hide_password=False)
        self._open_engine: sa.Engine | None = self._create_engine(parsed)

    # -- hooks (tests override these; production leaves them alone) -----------------------
    def _load_strategy(self) -> LoadStrategy:
        """The per-engine part of a load, for `dialect`."""
        if self._dialect == "duckdb":
            return DuckDBStrategy()
        if self._dialect == "postgresql":
            return PostgresStrategy()
        assert self.iam_role is not None  # checked in __init__
        return RedshiftStrategy(self.iam_role)

    def _create_engine(self, url: URL) -> sa.Engine:
        """The SQLAlchemy engine for the URL.

        ``pool_pre_ping``: a pooled connection the server or the network dropped while it sat
        idle (restart, failover, NAT timeout) is replaced at checkout instead of failing the
        next load and costing it a retry. TCP keepalives: a connection whose peer vanished
        without a word (a partition, a NAT that forgot it) fails within about a minute and is
        retried, instead of waiting for a reply forever.
        """
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args=DEAD_PEER_DETECTION.get(self._dialect, {})
        )

    def _after_delete(self, conn: sa.Connection, table: GoldTable) -> None:
        """Runs inside the load's transaction between DELETE and INSERT; does nothing."""

    @property
    def _engine(self) -> sa.Engine:
        """The SQLAlchemy engine; a new one on first use after `close`."""
        if self._open_engine is None:
            self._open_engine = self._create_engine(sa.make_url(self._url))
        return self._open_engine

    # -- public API ------------------------------------------------------------------------
    @property
    def dialect(self) -> WarehouseDialect:
        """``duckdb``, ``postgresql`` or ``redshift``."""
        return self._dialect

    def upsert_months(
        self,
        table: GoldTable,
        rows: pa.Table,
        months: Sequence[str],
        *,
        source_uris: Sequence[str] = (),
        loaded_at: datetime | None = None,
    ) -> LoadResult:
        """Replace the warehouse rows of ``months`` with ``rows``, in one transaction.

        Creates the schema and the table if missing, stages the rows, checks them, deletes the
        months' old rows, inserts the new ones stamped with ``loaded_at`` and commits. Loading the
        same content twice leaves every column but ``_loaded_at`` unchanged.

        Note:
            ``rows`` must be the *full* content of those months: a month in ``months`` with no
            row in ``rows`` ends up empty. On Redshift the data comes from ``source_uris`` (the
            months' gold Parquet files) and ``rows`` is only used for the checks; the staged row
            count must equal ``rows.num_rows``. Any error rolls the whole load back and is
            re-raised: readers see the old months or the new ones, never a mix.

        Args:
            table: the gold table.
            rows: Arrow table with exactly the GoldTable's columns (any order, castable types).
            months: the ``YYYY-MM`` months replaced; duplicates are ignored.
            source_uris: Redshift only: ``s3://…/month=YYYY-MM/{table}.parquet`` of the months.
            loaded_at: the ``_loaded_at`` stamp, default now; stored as UTC without time zone
                (a naive datetime is taken to be UTC already).

        Returns:
            A `LoadResult` with the rows deleted and inserted.

        Raises:
            ValueError: bad months, columns or types, or rows of a month not in ``months``.
            WarehouseLoadError: staging holds duplicate keys or not the expected rows.
        """
        started = time.perf_counter()
        month_list = tuple(sorted({check_month(m) for m in months}))
        rows = self._conform_rows(table, rows, month_list)
        stamp = _utc_naive(loaded_at or datetime.now(UTC))
        if not month_list:
            return LoadResult(table.name, (), 0, 0, time.perf_counter() - started)
        dialect = self._engine.dialect
        staging = f"_stage_{table.name}_{uuid.uuid4().hex[:12]}"
        months_param = {"months": list(month_list)}
        with self._engine.begin() as conn:
            conn.execute(sql_text(q.create_schema_sql(dialect, self.schema)))
            conn.execute(sql_text(q.create_table_sql(dialect, self.schema, table)))
            lock = self._strategy.lock_sql(dialect, self.schema, table)
            if lock is not None:
                conn.execute(sql_text(lock))
            conn.execute(sql_text(q.create_staging_sql(dialect, self.schema, table, staging)))
            self._strategy.fill_staging(
                conn,
                StagingLoad(dialect, table, staging, rows, month_list, tuple(source_uris)),
            )
            staged = self._check_staging(conn, table, staging, rows.num_rows, month_list)
            deleted = conn.execute(
                _with_months(q.delete_months_sql(dialect, self.schema, table)), months_param
            ).rowcount
            self._after_delete(conn, table)
            inserted = conn.execute(
                sql_text(q.insert_from_staging_sql(dialect, self.schema, table, staging)),
                {"loaded_at": stamp},
            ).rowcount
            conn.execute(sql_text(q.drop_staging_sql(dialect, staging)))
            failpoint(f"load:{table.name}:before-commit")
        failpoint(f"load:{table.name}:after-commit")
        result = LoadResult(
            table=table.name,
            months=month_list,
            rows_deleted=max(deleted, 0),
            rows_inserted=inserted if inserted >= 0 else staged,
            seconds=time.perf_counter() - started,
        )
        logger.info(
            "warehouse %s: %s months %s replaced, %d rows deleted, %d inserted in %.2f s",
            self._dialect,
            table.name,
            ",".join(month_list),
            result.rows_deleted,
            result.rows_inserted,
            result.seconds,
        )
        return result

    def delete_months_before(self, table: GoldTable, month: str) -> int:
        """Retention: delete the table's rows whose month is before ``month`` (``YYYY-MM``).

        Returns:
            The number of rows deleted; 0 if the table does not exist (it is not created).
        """
        check_month(month)
        dialect = self._engine.dialect
        with self._engine.begin() as conn:
            if not self._table_exists(conn, table):
                return 0
            result = conn.execute(
                sql_text(q.delete_months_before_sql(dialect, self.schema, table)), {"month": month}
            )
            return max(result.rowcount, 0)

    def rows_by_month(self, table: GoldTable) -> dict[str, int]:
        """Each month of a gold table (``YYYY-MM``) with its row count, counted by the
        warehouse; empty if the table does not exist."""
        with self._engine.connect() as conn:
            if not self._table_exists(conn, table):
                return {}
            counts = conn.execute(
                sql_text(q.rows_by_month_sql(self._engine.dialect, self.schema, table))
            ).fetchall()
        return {str(month): int(rows) for month, rows in counts}

    def read_table(self, table: GoldTable) -> pa.Table:
        """All rows of a gold table, sorted by its key, with `read_schema` types.

        Meant for tests (it reads the whole table into memory); summaries use `rows_by_month`.

        Returns:
            The gold columns in GoldTable order plus ``_loaded_at`` (UTC); decimals as
            decimal128(18, 2), dates as date32. An empty table if the table does not exist.
        """
        schema = read_schema(table)
        with self._engine.connect() as conn:
            if not self._table_exists(conn, table):
                return schema.empty_table()
            records = conn.execute(
                sql_text(q.select_table_sql(self._engine.dialect, self.schema, table))
            ).fetchall()
        columns = list(zip(*records, strict=True)) if records else [()] * len(schema)
        return pa.table(
            [
                pa.array(list(values), type=field.type)
                for values, field in zip(columns, schema, strict=True)
            ],
            schema=schema,
        )

    def close(self) -> None:
        """Close every pooled connection (a DuckDB file is released) and drop the engine.

        The warehouse stays usable: the next call creates a new engine. Dropping the engine,
        its dialect and pool releases the driver's objects even if something (a Prefect flow
        run, say) keeps this `Warehouse` alive until interpreter exit, where DuckDB would
        report them as leaked.
        """
        engine, self._open_engine = self._open_engine, None
        if engine is not None:
            engine.dispose()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Warehouse({self.display_url!r}, schema={self.schema!r})"

    # -- internals -------------------------------------------------------------------------
    def _table_exists(self, conn: sa.Connection, table: GoldTable) -> bool:
        count = conn.execute(
            sql_text(q.table_exists_sql()), {"schema": self.schema, "table": table.name}
        ).scalar_one()
        return bool(count)

    @staticmethod
    def _conform_rows(table: GoldTable, rows: pa.Table, months: tuple[str, ...]) -> pa.Table:
        missing = [c for c in table.column_names if c not in rows.column_names]
        extra = [c for c in rows.column_names if c not in table.column_names]
        if missing or extra:
            raise ValueError(
                f"{table.name}: rows must have exactly the columns {list(table.column_names)}; "
                f"missing {missing}, unexpected {extra}"
            )
        try:
            conformed = rows.select(list(table.column_names)).cast(table.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise ValueError(f"{table.name}: rows do not fit the gold schema: {exc}") from exc
        present = pc.unique(conformed[MONTH]).to_pylist()
        outside = sorted(set(present) - set(months))
        if outside:
            raise ValueError(
                f"{table.name}: rows of month {outside[0]!r} are not in the months being "
                f"replaced ({', '.join(months) or 'none'}); a load replaces whole months"
            )
        return conformed

    def _check_staging(
        self,
        conn: sa.Connection,
        table: GoldTable,
        staging: str,
        expected_rows: int,
        months: tuple[str, ...],
    ) -> int:
        dialect = self._engine.dialect
        row_count, foreign_rows = conn.execute(
            _with_months(q.staging_summary_sql(dialect, staging)), {"months": list(months)}
        ).one()
        if row_count != expected_rows:
            raise WarehouseLoadError(
                f"{table.name}: staging holds {row_count} rows, expected {expected_rows} (the "
                "rows to load); nothing was changed"
            )
        if foreign_rows:
            raise WarehouseLoadError(
                f"{table.name}: {foreign_rows} staged rows belong to months other than "
                f"{', '.join(months)}; nothing was changed"
            )
        duplicate = conn.execute(
            sql_text(q.staging_duplicate_key_sql(dialect, staging, table.key))
        ).first()
        if duplicate is not None:
            *key_values, occurrences = duplicate
            key = ", ".join(
                f"{c}={v!r}" if isinstance(v, str) else f"{c}={v}"
                for c, v in zip(table.key, key_values, strict=True)
            )
            raise WarehouseLoadError(
                f"{table.name}: the rows to load have duplicate keys, e.g. ({key}) {occurrences} "
                "times; gold rows are unique by key, so this is a bug upstream. Nothing was "
                "changed"
            )
        return int(row_count)


def _with_months(sql: str) -> sa.TextClause:
    return sql_text(sql).bindparams(sa.bindparam("months", expanding=True))


def _utc_naive(moment: datetime) -> datetime:
    # TIMESTAMP columns have no zone: store UTC wall time, whatever the session's time zone.
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def open_warehouse(settings: Settings) -> Warehouse:
    """The warehouse of the settings (``ECOM_WAREHOUSE_URL``, schema, IAM role, region)."""
    return Warehouse(
        settings.warehouse_url.get_secret_value(),
        settings.warehouse_schema,
        iam_role=settings.redshift_iam_role,
        region=settings.aws_region,
    )
