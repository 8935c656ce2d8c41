"""The warehouse adapter against real engines: a DuckDB file and the machine's PostgreSQL."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from ecom_pipeline.errors import ConfigurationError, WarehouseLoadError
from ecom_pipeline.gold.tables import DAILY_PAYMENTS, DAILY_REVENUE, LOADED_AT, GoldTable
from ecom_pipeline.settings import Settings
from ecom_pipeline.warehouse import sql as q
from ecom_pipeline.warehouse.engine import (
    LOADED_AT_TYPE,
    Warehouse,
    open_warehouse,
    read_schema,
    sql_text,
)

T1 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
REGIONS = ("APAC", "EU", "LATAM", "MEA", "NA", "OTHER")


@dataclass(frozen=True)
class Target:
    url: str
    schema: str
    dialect: str


@pytest.fixture(params=["duckdb", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "duckdb":
        # A folder that does not exist yet: the adapter creates it.
        return Target(f"duckdb:///{tmp_path}/wh/warehouse.duckdb", "gold", "duckdb")
    url = request.getfixturevalue("postgres_url")
    return Target(url, request.getfixturevalue("pg_schema"), "postgresql")


@pytest.fixture
def warehouse(target: Target) -> Iterator[Warehouse]:
    wh = Warehouse(target.url, target.schema)
    yield wh
    wh.close()


def revenue_rows(
    month: str, days: int = 3, *, bump: int = 0, regions: tuple[str, ...] = REGIONS[:2]
) -> pa.Table:
    """daily_revenue rows for the first ``days`` days of ``month``; ``bump`` changes values."""
    year, mon = (int(part) for part in month.split("-"))
    records = []
    for day in range(1, days + 1):
        for i, region in enumerate(regions):
            orders = 10 + day + i + bump
            revenue = Decimal(orders * 1234 + bump) / 100
            records.append(
                {
                    "order_date": date(year, mon, day),
                    "customer_region": region,
                    "orders": orders,
                    "cancelled_orders": i,
                    "revenue": revenue,
                    "avg_order_value": None
                    if i == 1
                    else (revenue / orders).quantize(Decimal("0.01")),
                    "customers": orders - 1,
                    "month": month,
                }
            )
    return pa.Table.from_pylist(records, schema=DAILY_REVENUE.schema)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def gold_part(table: pa.Table) -> pa.Table:
    """The table without ``_loaded_at``."""
    return table.drop_columns([LOADED_AT])


def sorted_rows(rows: pa.Table, table: GoldTable = DAILY_REVENUE) -> pa.Table:
    return rows.sort_by([(k, "ascending") for k in table.key])


def loaded_at_values(rows: pa.Table) -> set[datetime]:
    return set(rows[LOADED_AT].to_pylist())


# -- loading ------------------------------------------------------------------------------
def test_first_load_creates_schema_and_table(warehouse: Warehouse, target: Target) -> None:
    assert warehouse.dialect == target.dialect
    assert warehouse.read_table(DAILY_REVENUE).equals(read_schema(DAILY_REVENUE).empty_table())
    rows = revenue_rows("2026-11")

    result = warehouse.upsert_months(DAILY_REVENUE, rows, ["2026-11"], loaded_at=T1)

    assert (result.table, result.months) == ("daily_revenue", ("2026-11",))
    assert (result.rows_deleted, result.rows_inserted) == (0, rows.num_rows)
    assert result.seconds > 0
    stored = warehouse.read_table(DAILY_REVENUE)
    assert stored.schema == read_schema(DAILY_REVENUE)
    assert gold_part(stored).equals(sorted_rows(rows))
    assert loaded_at_values(stored) == {T1}


def test_rows_by_month_are_counted_by_the_warehouse(warehouse: Warehouse) -> None:
    assert warehouse.rows_by_month(DAILY_REVENUE) == {}  # no table yet
    november, october = revenue_rows("2026-11"), revenue_rows("2026-10")
    warehouse.upsert_months(DAILY_REVENUE, november, ["2026-11"], loaded_at=T1)
    warehouse.upsert_months(DAILY_REVENUE, october.slice(0, 2), ["2026-10"], loaded_at=T1)

    assert warehouse.rows_by_month(DAILY_REVENUE) == {"2026-10": 2, "2026-11": november.num_rows}


def test_same_load_twice_changes_only_loaded_at(warehouse: Warehouse) -> None:
    rows = revenue_rows("2026-11")
    warehouse.upsert_months(DAILY_REVENUE, rows, ["2026-11"], loaded_at=T1)
    first = warehouse.read_table(DAILY_REVENUE)

    again = warehouse.upsert_months(DAILY_REVENUE, rows, ["2026-11"], loaded_at=T2)

    second = warehouse.read_table(DAILY_REVENUE)
    assert again.rows_deleted == again.rows_inserted == rows.num_rows
    assert gold_part(second).equals(gold_part(first))
    assert loaded_at_values(first) == {T1}
    assert loaded_at_values(second) == {T2}


def test_corrected_month_replaces_its_rows_and_leaves_other_months(warehouse: Warehouse) -> None:
    october, november = revenue_rows("2026-10"), revenue_rows("2026-11", days=3)
    warehouse.upsert_months(
        DAILY_REVENUE, pa.concat_tables([october, november]), ["2026-10", "2026-11"], loaded_at=T1
    )
    corrected = revenue_rows("2026-11", days=2, bump=7)

    result = warehouse.upsert_months(DAILY_REVENUE, corrected, ["2026-11"], loaded_at=T2)

    assert (result.rows_deleted, result.rows_inserted) == (november.num_rows, corrected.num_rows)
    stored = warehouse.read_table(DAILY_REVENUE)
    stored_october = stored.filter(pc.equal(stored["month"], "2026-10"))
    stored_november = stored.filter(pc.equal(stored["month"], "2026-11"))
    assert gold_part(stored_october).equals(sorted_rows(october))
    assert loaded_at_values(stored_october) == {T1}
    assert gold_part(stored_november).equals(sorted_rows(corrected))
    assert loaded_at_values(stored_november) == {T2}


def test_month_with_no_rows_now_loses_its_old_rows(warehouse: Warehouse) -> None:
    october, november = revenue_rows("2026-10"), revenue_rows("2026-11")
    warehouse.upsert_months(
        DAILY_REVENUE, pa.concat_tables([october, november]), ["2026-10", "2026-11"], loaded_at=T1
    )

    result = warehouse.upsert_months(
        DAILY_REVENUE, DAILY_REVENUE.schema.empty_table(), ["2026-11"], loaded_at=T2
    )

    assert (result.rows_deleted, result.rows_inserted) == (november.num_rows, 0)
    assert gold_part(warehouse.read_table(DAILY_REVENUE)).equals(sorted_rows(october))


def test_months_list_may_repeat_and_is_sorted(warehouse: Warehouse) -> None:
    rows = pa.concat_tables([revenue_rows("2026-11"), revenue_rows("2026-09")])
    result = warehouse.upsert_months(DAILY_REVENUE, rows, ["2026-11", "2026-09", "2026-11"])
    assert result.months == ("2026-09", "2026-11")
    assert result.rows_inserted == rows.num_rows


def test_no_months_is_a_no_op(warehouse: Warehouse) -> None:
    result = warehouse.upsert_months(DAILY_REVENUE, DAILY_REVENUE.schema.empty_table(), [])
    assert (result.months, result.rows_deleted, result.rows_inserted) == ((), 0, 0)


def test_columns_in_another_order_are_accepted(warehouse: Warehouse) -> None:
    rows = revenue_rows("2026-11")
    shuffled = rows.select(list(reversed(rows.column_names)))
    warehouse.upsert_months(DAILY_REVENUE, shuffled, ["2026-11"])
    assert gold_part(warehouse.read_table(DAILY_REVENUE)).equals(sorted_rows(rows))


def test_strings_with_csv_metacharacters_and_many_rows(warehouse: Warehouse) -> None:
    # Bulk staging (PostgreSQL: COPY CSV) must keep '' apart from NULL and survive , " and \n.
    regions = ("", 'say "hi"', "a,b", "line\nbreak", "back\\slash", "ünï €", "NULL", "\\N")
    tricky = revenue_rows("2026-11", days=30, regions=regions)
    plain = revenue_rows("2026-11", days=30, regions=tuple(f"region-{i}" for i in range(40)))
    many = pa.concat_tables([tricky, plain])
    warehouse.upsert_months(DAILY_REVENUE, many, ["2026-11"])
    stored = gold_part(warehouse.read_table(DAILY_REVENUE))
    assert stored.num_rows == many.num_rows == 30 * (len(regions) + 40)
    assert stored.equals(sorted_rows(many))


def test_decimals_stay_exact(warehouse: Warehouse) -> None:
    rows = revenue_rows("2026-11", days=1, regions=("EU",))
    big = Decimal("9999999999999999.99")
    parts = [
        {**rows.to_pylist()[0], "order_date": date(2026, 11, d), "revenue": value}
        for d, value in ((1, Decimal("0.10")), (2, Decimal("0.20")), (3, big))
    ]
    warehouse.upsert_months(
        DAILY_REVENUE, pa.Table.from_pylist(parts, schema=DAILY_REVENUE.schema), ["2026-11"]
    )
    stored = warehouse.read_table(DAILY_REVENUE)
    revenue = stored["revenue"]
    assert revenue.type == pa.decimal128(18, 2)
    assert revenue.to_pylist() == [Decimal("0.10"), Decimal("0.20"), big]
    first_two = pc.sum(revenue.slice(0, 2)).as_py()
    assert first_two == Decimal("0.30")


def test_loaded_at_is_stored_as_utc(warehouse: Warehouse) -> None:
    local = T1.astimezone(ZoneInfo("America/New_York"))
    warehouse.upsert_months(DAILY_REVENUE, revenue_rows("2026-11"), ["2026-11"], loaded_at=local)
    stored = warehouse.read_table(DAILY_REVENUE)
    assert stored.schema.field(LOADED_AT).type == LOADED_AT_TYPE
    assert loaded_at_values(stored) == {T1}


def test_two_tables_side_by_side(warehouse: Warehouse) -> None:
    payments = pa.Table.from_pylist(
        [
            {
                "payment_date": date(2026, 11, 1),
                "payment_method": method,
                "payments": 5,
                "failed_payments": 1,
                "succeeded_amount": Decimal("100.10"),
                "refunded_amount": Decimal("0.00"),
                "month": "2026-11",
            }
            for method in ("card", "paypal")
        ],
        schema=DAILY_PAYMENTS.schema,
    )
    warehouse.upsert_months(DAILY_PAYMENTS, payments, ["2026-11"])
    warehouse.upsert_months(DAILY_REVENUE, revenue_rows("2026-11"), ["2026-11"])
    assert gold_part(warehouse.read_table(DAILY_PAYMENTS)).equals(payments)


# -- refusals and atomicity ---------------------------------------------------------------
def loaded_state(warehouse: Warehouse) -> Warehouse:
    warehouse.upsert_months(
        DAILY_REVENUE,
        pa.concat_tables([revenue_rows("2026-10"), revenue_rows("2026-11")]),
        ["2026-10", "2026-11"],
        loaded_at=T1,
    )
    return warehouse


def test_rows_of_a_month_not_replaced_are_refused(warehouse: Warehouse) -> None:
    before = loaded_state(warehouse).read_table(DAILY_REVENUE)
    rows = pa.concat_tables([revenue_rows("2026-11"), revenue_rows("2026-12")])
    with pytest.raises(ValueError, match=r"daily_revenue: rows of month '2026-12'.*\(2026-11\)"):
        warehouse.upsert_months(DAILY_REVENUE, rows, ["2026-11"])
    assert warehouse.read_table(DAILY_REVENUE).equals(before)


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "26-11", "2026-11-01", "2026-11' --"])
def test_bad_month_is_refused(warehouse: Warehouse, month: str) -> None:
    with pytest.raises(ValueError, match="invalid month"):
        warehouse.upsert_months(DAILY_REVENUE, DAILY_REVENUE.schema.empty_table(), [month])
    with pytest.raises(ValueError, match="invalid month"):
        warehouse.delete_months_before(DAILY_REVENUE, month)


def test_wrong_columns_are_refused(warehouse: Warehouse) -> None:
    rows = revenue_rows("2026-11").drop_columns(["customers"]).append_column("x", pa.array([1] * 6))
    with pytest.raises(ValueError, match=r"missing \['customers'\], unexpected \['x'\]"):
        warehouse.upsert_months(DAILY_REVENUE, rows, ["2026-11"])


def test_null_in_a_required_column_is_refused(warehouse: Warehouse) -> None:
    rows = revenue_rows("2026-11")
    rows = rows.set_column(2, "orders", pa.array([None] * rows.num_rows, pa.int64()))
    with pytest.raises(ValueError, match="daily_revenue: rows do not fit the gold schema"):
        warehouse.upsert_months(DAILY_REVENUE, rows, ["2026-11"])


def test_duplicate_keys_fail_after_staging_and_change_nothing(warehouse: Warehouse) -> None:
    before = loaded_state(warehouse).read_table(DAILY_REVENUE)
    rows = revenue_rows("2026-11", bump=3)
    duplicated = pa.concat_tables([rows, rows.slice(1, 1)])
    with pytest.raises(
        WarehouseLoadError,
        match=r"daily_revenue: the rows to load have duplicate keys, e\.g\. "
        r"\(order_date=2026-11-01, customer_region='EU'\) 2 times",
    ):
        warehouse.upsert_months(DAILY_REVENUE, duplicated, ["2026-11"], loaded_at=T2)
    assert warehouse.read_table(DAILY_REVENUE).equals(before)


class FailsAfterDelete(Warehouse):
    """Fails inside the transaction once the DELETE has run (recording what it saw)."""

    rows_left_after_delete: int | None = None

    def _after_delete(self, conn: sa.Connection, table: GoldTable) -> None:
        statement = sa.text(
            f"SELECT COUNT(*) FROM {q.qualified_name(conn.dialect, self.schema, table.name)}"
        )
        self.rows_left_after_delete = conn.execute(statement).scalar_one()
        raise RuntimeError("injected failure after DELETE")


def test_failure_after_delete_rolls_everything_back(warehouse: Warehouse, target: Target) -> None:
    before = loaded_state(warehouse).read_table(DAILY_REVENUE)
    warehouse.close()  # DuckDB: one writer per file
    failing = FailsAfterDelete(target.url, target.schema)
    try:
        with pytest.raises(RuntimeError, match="injected failure after DELETE"):
            failing.upsert_months(
                DAILY_REVENUE, revenue_rows("2026-11", bump=5), ["2026-11"], loaded_at=T2
            )
        # Inside the transaction November was gone; October (6 rows) was left.
        assert failing.rows_left_after_delete == revenue_rows("2026-10").num_rows
        assert failing.read_table(DAILY_REVENUE).equals(before)
    finally:
        failing.close()
    # Nothing is left behind (no lock, no staging table): the next load works.
    again = Warehouse(target.url, target.schema)
    try:
        again.upsert_months(DAILY_REVENUE, revenue_rows("2026-11", bump=5), ["2026-11"])
        stored = again.read_table(DAILY_REVENUE)
        assert stored.num_rows == before.num_rows
    finally:
        again.close()


def test_failure_on_first_load_leaves_no_table(warehouse: Warehouse, target: Target) -> None:
    rows = revenue_rows("2026-11")
    with pytest.raises(WarehouseLoadError):
        warehouse.upsert_months(DAILY_REVENUE, pa.concat_tables([rows, rows]), ["2026-11"])
    engine = sa.create_engine(target.url)
    try:
        with engine.connect() as conn:
            count = conn.execute(
                sa.text(q.table_exists_sql()), {"schema": target.schema, "table": "daily_revenue"}
            ).scalar_one()
        assert count == 0
    finally:
        engine.dispose()


# -- retention ----------------------------------------------------------------------------
def test_delete_months_before(warehouse: Warehouse) -> None:
    assert warehouse.delete_months_before(DAILY_REVENUE, "2026-11") == 0  # no table yet
    months = ["2026-09", "2026-10", "2026-11"]
    warehouse.upsert_months(
        DAILY_REVENUE, pa.concat_tables([revenue_rows(m) for m in months]), months
    )

    assert warehouse.delete_months_before(DAILY_REVENUE, "2026-10") == 6

    stored = warehouse.read_table(DAILY_REVENUE)
    assert sorted(set(stored["month"].to_pylist())) == ["2026-10", "2026-11"]
    assert warehouse.delete_months_before(DAILY_REVENUE, "2026-10") == 0


# -- identifiers --------------------------------------------------------------------------
def test_hostile_schema_name_is_one_quoted_identifier(target: Target) -> None:
    Warehouse(target.url).close()  # creates the DuckDB file's folder
    engine = sa.create_engine(target.url)
    sentinel_schema = "main" if target.dialect == "duckdb" else target.schema
    sentinel = f'"{sentinel_schema}"."sentinel"'
    # Unquoted, this name would end the statement and drop the sentinel table.
    hostile = f'x:y%"; DROP TABLE {sentinel}; --{target.schema[-6:]}'
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{sentinel_schema}"'))
            conn.execute(sa.text(f"CREATE TABLE {sentinel} (id INTEGER)"))
        with Warehouse(target.url, hostile) as wh:
            wh.upsert_months(DAILY_REVENUE, revenue_rows("2026-11"), ["2026-11"])
            assert wh.read_table(DAILY_REVENUE).num_rows == 6
            assert wh.delete_months_before(DAILY_REVENUE, "2026-12") == 6
        with engine.connect() as conn:
            schemas = conn.execute(
                sa.text("SELECT schema_name FROM information_schema.schemata")
            ).scalars()
            assert hostile in set(schemas)
            assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {sentinel}")).scalar_one() == 0
    finally:
        with engine.begin() as conn:
            conn.execute(sql_text(f"DROP SCHEMA IF EXISTS {quoted(hostile)} CASCADE"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {sentinel}"))
        engine.dispose()


# -- concurrency (PostgreSQL: loads of one table queue on the table lock) ---------------------
def test_concurrent_loads_of_one_month_serialize(postgres_url: str, pg_schema: str) -> None:
    variants = [revenue_rows("2026-11", bump=b) for b in (0, 1)]
    Warehouse(postgres_url, pg_schema).upsert_months(DAILY_REVENUE, variants[0], ["2026-11"])
    errors: list[BaseException] = []

    def load(variant: pa.Table) -> None:
        wh = Warehouse(postgres_url, pg_schema)
        try:
            for _ in range(5):
                wh.upsert_months(DAILY_REVENUE, variant, ["2026-11"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            wh.close()

    threads = [threading.Thread(target=load, args=(v,)) for v in variants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with Warehouse(postgres_url, pg_schema) as wh:
        stored = gold_part(wh.read_table(DAILY_REVENUE))
    assert any(stored.equals(sorted_rows(v)) for v in variants)


def keepalive_options(sock: socket.socket) -> tuple[int, int, int, int]:
    """SO_KEEPALIVE, then idle seconds, probe interval and probe count, as the kernel has them."""
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    )


def test_a_postgresql_connection_probes_a_peer_gone_silent(
    postgres_url: str, pg_schema: str
) -> None:
    """A partition that drops packets without a reset must fail the load in about a minute (and
    retry it), not leave it waiting for a reply forever: the kernel probes the idle socket."""
    with Warehouse(postgres_url, pg_schema) as wh, wh._engine.connect() as conn:
        driver = conn.connection.driver_connection
        with socket.socket(fileno=os.dup(driver.fileno())) as sock:
            assert keepalive_options(sock) == (1, 30, 10, 3)


# -- construction -------------------------------------------------------------------------
def test_open_warehouse_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(
        warehouse_url=SecretStr("duckdb:///data/nested/warehouse.duckdb"),
        warehouse_schema="analytics",
    )
    with open_warehouse(settings) as wh:
        assert wh.dialect == "duckdb"
        assert wh.schema == "analytics"
        wh.upsert_months(DAILY_REVENUE, revenue_rows("2026-11"), ["2026-11"])
    assert (tmp_path / "data" / "nested" / "warehouse.duckdb").exists()


def test_redshift_needs_a_valid_iam_role() -> None:
    url = "redshift+redshift_connector://loader:s3cret@cluster.example:5439/dev"
    with pytest.raises(ConfigurationError, match="ECOM_REDSHIFT_IAM_ROLE") as missing:
        Warehouse(url)
    with pytest.raises(ConfigurationError, match="invalid Redshift IAM role") as bad:
        Warehouse(url, iam_role="arn:aws:iam::1:role/x' --")
    for exc in (missing.value, bad.value):
        assert "s3cret" not in str(exc)
    wh = Warehouse(url, iam_role="arn:aws:iam::123456789012:role/copy", region="eu-west-1")
    assert wh.dialect == "redshift"
    assert "s3cret" not in repr(wh)
    assert wh.display_url == "redshift+redshift_connector://loader:***@cluster.example:5439/dev"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql+pymysql://root:s3cret@db/x", "unsupported warehouse dialect 'mysql'"),
        ("postgresql+psycopg2://u:s3cret@db/x", "needs the psycopg 3 driver"),
        ("not a url s3cret", "not a valid SQLAlchemy URL"),
        ("postgresql://u:s3cret@db:notaport/x", "not a valid SQLAlchemy URL"),
    ],
)
def test_bad_url_errors_never_show_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        Warehouse(url)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_plain_postgresql_url_uses_psycopg(postgres_url: str, pg_schema: str) -> None:
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with Warehouse(url, pg_schema) as wh:
        wh.upsert_months(DAILY_REVENUE, revenue_rows("2026-11"), ["2026-11"])
        assert wh.read_table(DAILY_REVENUE).num_rows == 6


def test_read_table_times_are_utc(warehouse: Warehouse) -> None:
    warehouse.upsert_months(DAILY_REVENUE, revenue_rows("2026-11"), ["2026-11"])
    (stamp,) = loaded_at_values(warehouse.read_table(DAILY_REVENUE))
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
