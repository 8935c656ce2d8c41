"""The Redshift path through the real ``redshift_connector`` driver, against the real PostgreSQL.

No Redshift cluster here: a local proxy (``tests/redshift_proxy.py``) fixes the two wire-level
differences between the driver and PostgreSQL, so the driver's own parameter binding, extended
query protocol, ``executemany`` and transactions run for real, and so does the SQLAlchemy
``redshift+redshift_connector`` dialect with `Warehouse`'s upsert code.

What this cannot run is ``COPY … FROM 's3://…' IAM_ROLE … FORMAT AS PARQUET`` (Redshift only:
it needs S3, an IAM role and Redshift's Parquet reader). The test strategy below builds and
records the exact COPY statements the real strategy would issue (with all their validation)
and stages the same rows with ``executemany`` instead; the text of COPY is pinned in
``test_warehouse_sql.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import redshift_connector
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy_redshift.dialect import RedshiftDialect_redshift_connector

from ecom_pipeline.errors import ConfigurationError, WarehouseLoadError
from ecom_pipeline.gold.tables import DAILY_REVENUE, LOADED_AT, GoldTable
from ecom_pipeline.warehouse import sql as q
from ecom_pipeline.warehouse.engine import (
    DEAD_PEER_DETECTION,
    RedshiftStrategy,
    StagingLoad,
    Warehouse,
    sql_text,
)
from tests.redshift_proxy import (
    RedshiftToPostgresProxy,
    rewrite_server_message,
    rewrite_startup,
)
from tests.warehouse.test_warehouse import keepalive_options

ROLE = "arn:aws:iam::123456789012:role/redshift-copy"
REDSHIFT = RedshiftDialect_redshift_connector()
T1 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def month_uri(month: str, table: str = "daily_revenue") -> str:
    return f"s3://ecommerce-data/gold/{table}/month={month}/{table}.parquet"


def revenue_rows(month: str, *, bump: int = 0, regions: tuple[str, ...] = ("EU", "NA")) -> pa.Table:
    year, mon = (int(part) for part in month.split("-"))
    return pa.Table.from_pylist(
        [
            {
                "order_date": date(year, mon, day),
                "customer_region": region,
                "orders": 10 + day + bump,
                "cancelled_orders": 1,
                "revenue": Decimal(1000 + day + bump) / 100,
                "avg_order_value": None if region == "NA" else Decimal("0.10"),
                "customers": 3,
                "month": month,
            }
            for day in (1, 2, 3)
            for region in regions
        ],
        schema=DAILY_REVENUE.schema,
    )


@pytest.fixture(scope="module")
def pg(postgres_url: str) -> URL:
    return make_url(postgres_url)


@pytest.fixture(scope="module")
def proxy(pg: URL) -> Iterator[RedshiftToPostgresProxy]:
    with RedshiftToPostgresProxy(pg.host or "127.0.0.1", pg.port or 5432) as running:
        yield running


# -- the proxy's two rewrites ------------------------------------------------------------
def test_proxy_strips_redshift_startup_parameters() -> None:
    body = (
        (196608).to_bytes(4, "big")
        + b"user\x00postgres\x00client_protocol_version\x002\x00database\x00test\x00"
        + b"driver_version\x00x\x00os_version\x00y\x00driver_discovery_version\x001\x00\x00"
    )
    assert rewrite_startup(body) == (
        (196608).to_bytes(4, "big") + b"user\x00postgres\x00database\x00test\x00\x00"
    )


def test_proxy_rewrites_only_the_server_version() -> None:
    debian = b"server_version\x0015.20 (Debian 15.20-0+deb12u1)\x00"
    assert rewrite_server_message(b"S", debian) == b"server_version\x0015.20\x00"
    other = b"TimeZone\x00UTC (x)\x00"
    assert rewrite_server_message(b"S", other) == other
    assert rewrite_server_message(b"D", debian) == debian


# -- the driver alone, with the statements of a Redshift load ------------------------------
def driver_statement(sql: str, **params: Any) -> tuple[str, list[Any]]:
    """What SQLAlchemy's Redshift dialect hands redshift_connector: ``%s`` text + values."""
    statement = sql_text(sql)
    if "months" in params:
        statement = statement.bindparams(sa.bindparam("months", expanding=True))
    compiled = statement.bindparams(**params).compile(
        dialect=REDSHIFT, compile_kwargs={"render_postcompile": True}
    )
    values = [compiled.params[name] for name in compiled.positiontup or ()]
    return str(compiled), values


def test_driver_runs_the_load_statements_and_rolls_back(
    proxy: RedshiftToPostgresProxy, pg: URL, pg_schema: str
) -> None:
    conn = redshift_connector.connect(
        host="127.0.0.1",
        port=proxy.port,
        database=pg.database or "test",
        user=pg.username or "postgres",
        password=pg.password or "",
        ssl=False,
    )
    target = q.qualified_name(REDSHIFT, pg_schema, "daily_revenue")
    staging = "_stage_daily_revenue_test"
    columns = DAILY_REVENUE.column_names
    try:
        assert conn.autocommit is False  # every statement below is in one explicit transaction
        cursor = conn.cursor()
        cursor.execute(q.create_schema_sql(REDSHIFT, pg_schema))
        cursor.execute(q.create_table_sql(REDSHIFT, pg_schema, DAILY_REVENUE))
        cursor.execute(q.lock_table_sql(REDSHIFT, pg_schema, "daily_revenue"))
        cursor.execute(q.create_staging_sql(REDSHIFT, pg_schema, DAILY_REVENUE, staging))
        # In place of COPY: the driver's executemany with bound values of every gold type.
        insert_values, _ = driver_statement(
            insert_values_sql(REDSHIFT, staging, columns),
            **{f"p{i}": None for i in range(len(columns))},
        )
        assert insert_values.endswith("VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
        rows = pa.concat_tables([revenue_rows("2026-10"), revenue_rows("2026-11")])
        cursor.executemany(insert_values, [tuple(r.values()) for r in rows.to_pylist()])
        summary, values = driver_statement(
            q.staging_summary_sql(REDSHIFT, staging), months=["2026-10", "2026-11"]
        )
        assert "IN (%s, %s)" in summary
        cursor.execute(summary, values)
        assert cursor.fetchone() == [12, 0]
        cursor.execute(q.staging_duplicate_key_sql(REDSHIFT, staging, DAILY_REVENUE.key))
        assert cursor.fetchone() is None
        delete, values = driver_statement(
            q.delete_months_sql(REDSHIFT, pg_schema, DAILY_REVENUE), months=["2026-10", "2026-11"]
        )
        assert delete.endswith('WHERE "month" IN (%s, %s)')
        cursor.execute(delete, values)
        assert cursor.rowcount == 0
        insert, values = driver_statement(
            q.insert_from_staging_sql(REDSHIFT, pg_schema, DAILY_REVENUE, staging),
            loaded_at=T1.replace(tzinfo=None),
        )
        assert "CAST(%s AS TIMESTAMP)" in insert
        cursor.execute(insert, values)
        assert cursor.rowcount == 12
        cursor.execute(q.drop_staging_sql(REDSHIFT, staging))
        conn.commit()

        select = q.select_table_sql(REDSHIFT, pg_schema, DAILY_REVENUE)
        cursor.execute(select)
        committed = cursor.fetchall()
        assert len(committed) == 12
        assert committed[0][4] == Decimal("10.01")
        assert committed[0][-1] == datetime(2026, 11, 21, 2, 0)

        # A failure mid-transaction, after the DELETE: rollback restores every row.
        delete, values = driver_statement(
            q.delete_months_sql(REDSHIFT, pg_schema, DAILY_REVENUE), months=["2026-11"]
        )
        cursor.execute(delete, values)
        assert cursor.rowcount == 6
        with pytest.raises(redshift_connector.ProgrammingError, match="not-null"):
            cursor.execute(
                f"INSERT INTO {target} ({q.quote_identifier(REDSHIFT, 'month')}) VALUES (%s)",
                ("2026-11",),
            )
        conn.rollback()
        cursor.execute(select)
        assert cursor.fetchall() == committed
    finally:
        conn.close()


def insert_values_sql(dialect: sa.engine.Dialect, staging: str, columns: tuple[str, ...]) -> str:
    """Test-only stand-in for COPY: ``INSERT INTO staging (…) VALUES (:p0, …)``."""
    column_list = ", ".join(q.quote_identifier(dialect, c) for c in columns)
    placeholders = ", ".join(f":p{i}" for i in range(len(columns)))
    staging_name = q.quote_identifier(dialect, staging)
    return f"INSERT INTO {staging_name} ({column_list}) VALUES ({placeholders})"


# -- Warehouse itself over redshift_connector ----------------------------------------------
class ExecutemanyRedshiftStrategy(RedshiftStrategy):
    """The real Redshift strategy, except that staging is filled by ``executemany``.

    It still builds (and validates) every COPY statement the real one would run, and records
    them in ``copies``.
    """

    def __init__(self, iam_role: str) -> None:
        super().__init__(iam_role)
        self.copies: list[str] = []

    def fill_staging(self, conn: sa.Connection, load: StagingLoad) -> None:
        self.copies.extend(self.copy_statements(load))
        if load.rows.num_rows:
            columns = load.table.column_names
            conn.execute(
                sql_text(insert_values_sql(load.dialect, load.staging, columns)),
                [
                    {f"p{i}": value for i, value in enumerate(record.values())}
                    for record in load.rows.to_pylist()
                ],
            )


class ProxiedRedshiftWarehouse(Warehouse):
    """`Warehouse` on a ``redshift+redshift_connector`` URL pointing at the proxy."""

    fail_after_delete = False

    def _create_engine(self, url: URL) -> sa.Engine:
        connect_args = {**DEAD_PEER_DETECTION["redshift"], "ssl": False}
        engine = sa.create_engine(url, connect_args=connect_args)
        self.executed: list[str] = []

        @sa.event.listens_for(engine, "before_execute")
        def record(conn: sa.Connection, clause: Any, *args: Any) -> None:
            self.executed.append(clause.text.replace("\\:", ":"))

        return engine

    def _load_strategy(self) -> ExecutemanyRedshiftStrategy:
        assert self.iam_role is not None
        self.strategy = ExecutemanyRedshiftStrategy(self.iam_role)
        return self.strategy

    def _after_delete(self, conn: sa.Connection, table: GoldTable) -> None:
        if self.fail_after_delete:
            raise RuntimeError("injected failure after DELETE")


def redshift_url_through(proxy: RedshiftToPostgresProxy, pg: URL) -> URL:
    """A ``redshift+redshift_connector`` URL that reaches the test PostgreSQL via the proxy."""
    return URL.create(
        "redshift+redshift_connector",
        username=pg.username,
        password=pg.password,
        host="127.0.0.1",
        port=proxy.port,
        database=pg.database,
    )


@pytest.fixture
def redshift(
    proxy: RedshiftToPostgresProxy, pg: URL, pg_schema: str
) -> Iterator[ProxiedRedshiftWarehouse]:
    url = redshift_url_through(proxy, pg)
    wh = ProxiedRedshiftWarehouse(
        url.render_as_string(hide_password=False), pg_schema, iam_role=ROLE
    )
    yield wh
    wh.close()


def gold_part(table: pa.Table) -> pa.Table:
    return table.drop_columns([LOADED_AT])


def test_warehouse_load_issues_the_redshift_statements(
    redshift: ProxiedRedshiftWarehouse, pg_schema: str
) -> None:
    assert redshift.dialect == "redshift"
    rows = revenue_rows("2026-11")

    result = redshift.upsert_months(
        DAILY_REVENUE, rows, ["2026-11"], source_uris=[month_uri("2026-11")], loaded_at=T1
    )

    assert (result.rows_deleted, result.rows_inserted) == (0, 6)
    created = next(s for s in redshift.executed if s.startswith("CREATE TEMP TABLE"))
    match = re.search(r'"(_stage_daily_revenue_[0-9a-f]{12})"', created)
    assert match is not None
    staging = match.group(1)
    d = REDSHIFT
    assert redshift.executed == [
        q.create_schema_sql(d, pg_schema),
        q.create_table_sql(d, pg_schema, DAILY_REVENUE),
        q.lock_table_sql(d, pg_schema, "daily_revenue"),
        q.create_staging_sql(d, pg_schema, DAILY_REVENUE, staging),
        insert_values_sql(d, staging, DAILY_REVENUE.column_names),  # where COPY would run
        q.staging_summary_sql(d, staging),
        q.staging_duplicate_key_sql(d, staging, DAILY_REVENUE.key),
        q.delete_months_sql(d, pg_schema, DAILY_REVENUE),
        q.insert_from_staging_sql(d, pg_schema, DAILY_REVENUE, staging),
        q.drop_staging_sql(d, staging),
    ]
    assert redshift.strategy.copies == [q.redshift_copy_sql(d, staging, month_uri("2026-11"), ROLE)]
    stored = redshift.read_table(DAILY_REVENUE)
    assert gold_part(stored).equals(
        rows.sort_by([("order_date", "ascending"), ("customer_region", "ascending")])
    )
    assert set(stored[LOADED_AT].to_pylist()) == {T1}


def test_a_redshift_connection_probes_a_peer_gone_silent(
    redshift: ProxiedRedshiftWarehouse,
) -> None:
    with redshift._engine.connect() as conn:
        sock = conn.connection.driver_connection._usock
        assert keepalive_options(sock) == (1, 30, 10, 3)


def test_warehouse_upsert_semantics_over_redshift_connector(
    redshift: ProxiedRedshiftWarehouse,
) -> None:
    october, november = revenue_rows("2026-10"), revenue_rows("2026-11")
    both = ["2026-10", "2026-11"]
    uris = [month_uri(m) for m in both]
    redshift.upsert_months(
        DAILY_REVENUE, pa.concat_tables([october, november]), both, source_uris=uris, loaded_at=T1
    )
    first = redshift.read_table(DAILY_REVENUE)

    again = redshift.upsert_months(
        DAILY_REVENUE, pa.concat_tables([october, november]), both, source_uris=uris, loaded_at=T2
    )
    assert again.rows_deleted == again.rows_inserted == 12
    second = redshift.read_table(DAILY_REVENUE)
    assert gold_part(second).equals(gold_part(first))
    assert set(second[LOADED_AT].to_pylist()) == {T2}

    corrected = revenue_rows("2026-11", bump=4, regions=("EU",))
    result = redshift.upsert_months(
        DAILY_REVENUE, corrected, ["2026-11"], source_uris=[month_uri("2026-11")]
    )
    assert (result.rows_deleted, result.rows_inserted) == (6, 3)
    stored = redshift.read_table(DAILY_REVENUE)
    assert gold_part(stored).slice(0, 6).equals(gold_part(second).slice(0, 6))  # October kept
    assert gold_part(stored).slice(6).equals(corrected)

    emptied = redshift.upsert_months(DAILY_REVENUE, DAILY_REVENUE.schema.empty_table(), ["2026-11"])
    assert (emptied.rows_deleted, emptied.rows_inserted) == (3, 0)
    assert redshift.read_table(DAILY_REVENUE).num_rows == 6

    assert redshift.delete_months_before(DAILY_REVENUE, "2026-11") == 6
    assert redshift.read_table(DAILY_REVENUE).num_rows == 0


def test_failures_roll_back_over_redshift_connector(redshift: ProxiedRedshiftWarehouse) -> None:
    rows = revenue_rows("2026-11")
    uri = [month_uri("2026-11")]
    redshift.upsert_months(DAILY_REVENUE, rows, ["2026-11"], source_uris=uri, loaded_at=T1)
    before = redshift.read_table(DAILY_REVENUE)

    with pytest.raises(WarehouseLoadError, match="daily_revenue: the rows to load have duplicate"):
        redshift.upsert_months(
            DAILY_REVENUE, pa.concat_tables([rows, rows.slice(0, 1)]), ["2026-11"], source_uris=uri
        )
    assert redshift.read_table(DAILY_REVENUE).equals(before)

    redshift.fail_after_delete = True
    with pytest.raises(RuntimeError, match="injected failure after DELETE"):
        redshift.upsert_months(
            DAILY_REVENUE, revenue_rows("2026-11", bump=9), ["2026-11"], source_uris=uri
        )
    redshift.fail_after_delete = False
    assert redshift.executed[-1].startswith("DELETE FROM")  # it failed after the DELETE
    assert redshift.read_table(DAILY_REVENUE).equals(before)

    with pytest.raises(ValueError, match="source_uris is empty"):
        redshift.upsert_months(DAILY_REVENUE, rows, ["2026-11"])
    with pytest.raises(ValueError, match="is not the file of one of the months being replaced"):
        redshift.upsert_months(DAILY_REVENUE, rows, ["2026-11"], source_uris=[month_uri("2026-10")])
    with pytest.raises(ValueError, match="invalid S3 Parquet URI"):
        redshift.upsert_months(
            DAILY_REVENUE,
            rows,
            ["2026-11"],
            source_uris=["s3://ecommerce-data/gold/month=2026-11/x.parquet' --.parquet"],
        )
    assert redshift.read_table(DAILY_REVENUE).equals(before)


def test_hostile_schema_over_redshift_connector(
    proxy: RedshiftToPostgresProxy, pg: URL, pg_schema: str
) -> None:
    hostile = f'rs:"; DROP SCHEMA "{pg_schema}" CASCADE; --'
    url = redshift_url_through(proxy, pg)
    check = sa.create_engine(pg)
    with check.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{pg_schema}"'))
    wh = ProxiedRedshiftWarehouse(url.render_as_string(hide_password=False), hostile, iam_role=ROLE)
    try:
        wh.upsert_months(
            DAILY_REVENUE, revenue_rows("2026-11"), ["2026-11"], source_uris=[month_uri("2026-11")]
        )
        assert wh.read_table(DAILY_REVENUE).num_rows == 6
        with check.connect() as conn:
            schemas = set(
                conn.execute(
                    sa.text("SELECT schema_name FROM information_schema.schemata")
                ).scalars()
            )
        assert {hostile, pg_schema} <= schemas
    finally:
        wh.close()
        with check.begin() as conn:
            escaped = hostile.replace('"', '""')
            conn.execute(sql_text(f'DROP SCHEMA IF EXISTS "{escaped}" CASCADE'))
        check.dispose()


def test_percent_in_a_redshift_schema_is_refused() -> None:
    # sqlalchemy-redshift doubles "%" in text(); redshift_connector does not undo it inside
    # quotes (seen through the proxy: a schema 'rs%x' was created as 'rs%%x').
    with pytest.raises(ConfigurationError, match="'%' is not supported with Redshift"):
        Warehouse("redshift+redshift_connector://u@h:5439/dev", "rs%x", iam_role=ROLE)
