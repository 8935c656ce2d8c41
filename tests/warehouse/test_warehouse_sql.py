"""The SQL text of a warehouse load, statement by statement (no database needed)."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlalchemy as sa
from duckdb_engine import Dialect as DuckDBDialect
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Dialect
from sqlalchemy_redshift.dialect import RedshiftDialect_redshift_connector

from ecom_pipeline.gold.tables import DAILY_PAYMENTS, DAILY_REVENUE, MONTHLY_CUSTOMERS
from ecom_pipeline.warehouse import sql as q
from ecom_pipeline.warehouse.engine import sql_text

DUCKDB = DuckDBDialect()
POSTGRES = PGDialect_psycopg()
REDSHIFT = RedshiftDialect_redshift_connector()
ALL_DIALECTS = pytest.mark.parametrize(
    "dialect", [DUCKDB, POSTGRES, REDSHIFT], ids=["duckdb", "postgresql", "redshift"]
)

ROLE = "arn:aws:iam::123456789012:role/redshift-copy"
URI = "s3://ecommerce-data/gold/daily_revenue/month=2026-11/daily_revenue.parquet"
STAGING = "_stage_daily_revenue_0123456789ab"
REVENUE_COLUMNS = (
    '"order_date", "customer_region", "orders", "cancelled_orders", "revenue", '
    '"avg_order_value", "customers", "month"'
)


# -- identifiers --------------------------------------------------------------------------
@ALL_DIALECTS
def test_identifiers_are_always_quoted(dialect: Dialect) -> None:
    assert q.quote_identifier(dialect, "gold") == '"gold"'
    assert q.qualified_name(dialect, "gold", "daily_revenue") == '"gold"."daily_revenue"'


@ALL_DIALECTS
def test_hostile_identifier_stays_one_identifier(dialect: Dialect) -> None:
    hostile = 'x"; drop table y; --'
    assert q.quote_identifier(dialect, hostile) == '"x""; drop table y; --"'
    assert q.create_schema_sql(dialect, hostile) == (
        'CREATE SCHEMA IF NOT EXISTS "x""; drop table y; --"'
    )


@ALL_DIALECTS
def test_percent_and_colon_are_not_escaped_by_the_quoting(dialect: Dialect) -> None:
    # Escaping for the driver is text()'s job (see sql_text); the SQL text itself is plain.
    assert q.quote_identifier(dialect, "a%b:c") == '"a%b:c"'


@pytest.mark.parametrize("name", ["", "a\x00b"])
def test_empty_or_nul_identifier_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        q.quote_identifier(POSTGRES, name)


# -- types and DDL ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arrow_type", "sql_type"),
    [
        (pa.date32(), "DATE"),
        (pa.string(), "VARCHAR(256)"),
        (pa.int64(), "BIGINT"),
        (pa.int32(), "INTEGER"),
        (pa.decimal128(18, 2), "DECIMAL(18, 2)"),
        (pa.timestamp("us"), "TIMESTAMP"),
    ],
)
def test_column_types(arrow_type: pa.DataType, sql_type: str) -> None:
    assert q.column_type_sql(arrow_type) == sql_type


def test_unknown_column_type_is_refused() -> None:
    with pytest.raises(TypeError, match="no SQL type for Arrow type double"):
        q.column_type_sql(pa.float64())


def test_create_schema() -> None:
    assert q.create_schema_sql(POSTGRES, "gold") == 'CREATE SCHEMA IF NOT EXISTS "gold"'


@ALL_DIALECTS
def test_create_table_daily_revenue(dialect: Dialect) -> None:
    assert q.create_table_sql(dialect, "gold", DAILY_REVENUE) == (
        'CREATE TABLE IF NOT EXISTS "gold"."daily_revenue" (\n'
        '    "order_date" DATE NOT NULL,\n'
        '    "customer_region" VARCHAR(256) NOT NULL,\n'
        '    "orders" BIGINT NOT NULL,\n'
        '    "cancelled_orders" BIGINT NOT NULL,\n'
        '    "revenue" DECIMAL(18, 2) NOT NULL,\n'
        '    "avg_order_value" DECIMAL(18, 2),\n'
        '    "customers" BIGINT NOT NULL,\n'
        '    "month" VARCHAR(256) NOT NULL,\n'
        '    "_loaded_at" TIMESTAMP NOT NULL,\n'
        '    PRIMARY KEY ("order_date", "customer_region")\n'
        ")"
    )


def test_create_table_daily_payments_and_monthly_customers() -> None:
    assert q.create_table_sql(POSTGRES, "gold", DAILY_PAYMENTS) == (
        'CREATE TABLE IF NOT EXISTS "gold"."daily_payments" (\n'
        '    "payment_date" DATE NOT NULL,\n'
        '    "payment_method" VARCHAR(256) NOT NULL,\n'
        '    "payments" BIGINT NOT NULL,\n'
        '    "failed_payments" BIGINT NOT NULL,\n'
        '    "succeeded_amount" DECIMAL(18, 2) NOT NULL,\n'
        '    "refunded_amount" DECIMAL(18, 2) NOT NULL,\n'
        '    "month" VARCHAR(256) NOT NULL,\n'
        '    "_loaded_at" TIMESTAMP NOT NULL,\n'
        '    PRIMARY KEY ("payment_date", "payment_method")\n'
        ")"
    )
    assert q.create_table_sql(POSTGRES, "gold", MONTHLY_CUSTOMERS).endswith(
        '    PRIMARY KEY ("month", "customer_region")\n)'
    )


# -- staging ------------------------------------------------------------------------------
def test_create_staging() -> None:
    assert q.create_staging_sql(POSTGRES, "gold", DAILY_REVENUE, STAGING) == (
        f'CREATE TEMP TABLE "{STAGING}" AS SELECT {REVENUE_COLUMNS} '
        'FROM "gold"."daily_revenue" WHERE 1 = 0'
    )


def test_insert_staging_from_registered_arrow_table() -> None:
    assert q.insert_staging_from_relation_sql(DUCKDB, STAGING, "_arrow_1", ("a", "b")) == (
        f'INSERT INTO "{STAGING}" ("a", "b") SELECT "a", "b" FROM "_arrow_1"'
    )


def test_postgres_copy_from_stdin() -> None:
    assert q.postgres_copy_sql(POSTGRES, STAGING, ("a", "b")) == (
        f'COPY "{STAGING}" ("a", "b") FROM STDIN (FORMAT csv)'
    )


def test_staging_checks() -> None:
    assert q.staging_summary_sql(POSTGRES, STAGING) == (
        "SELECT COUNT(*) AS row_count, "
        'COALESCE(SUM(CASE WHEN "month" IN :months THEN 0 ELSE 1 END), 0) AS foreign_rows '
        f'FROM "{STAGING}"'
    )
    assert q.staging_duplicate_key_sql(POSTGRES, STAGING, DAILY_REVENUE.key) == (
        'SELECT "order_date", "customer_region", COUNT(*) AS occurrences '
        f'FROM "{STAGING}" GROUP BY "order_date", "customer_region" HAVING COUNT(*) > 1 '
        'ORDER BY "order_date", "customer_region" LIMIT 1'
    )


# -- the load -----------------------------------------------------------------------------
def test_lock_table() -> None:
    assert q.lock_table_sql(REDSHIFT, "gold", "daily_revenue") == (
        'LOCK TABLE "gold"."daily_revenue"'
    )
    assert q.lock_table_sql(POSTGRES, "gold", "daily_revenue", "SHARE ROW EXCLUSIVE") == (
        'LOCK TABLE "gold"."daily_revenue" IN SHARE ROW EXCLUSIVE MODE'
    )
    with pytest.raises(ValueError, match="unsupported lock mode"):
        q.lock_table_sql(POSTGRES, "gold", "t", "SHARE; DROP TABLE t")


def test_delete_months() -> None:
    assert q.delete_months_sql(POSTGRES, "gold", DAILY_REVENUE) == (
        'DELETE FROM "gold"."daily_revenue" WHERE "month" IN :months'
    )
    assert q.delete_months_before_sql(POSTGRES, "gold", DAILY_REVENUE) == (
        'DELETE FROM "gold"."daily_revenue" WHERE "month" < :month'
    )


def test_insert_from_staging() -> None:
    assert q.insert_from_staging_sql(POSTGRES, "gold", DAILY_REVENUE, STAGING) == (
        f'INSERT INTO "gold"."daily_revenue" ({REVENUE_COLUMNS}, "_loaded_at") '
        f'SELECT {REVENUE_COLUMNS}, CAST(:loaded_at AS TIMESTAMP) FROM "{STAGING}"'
    )


def test_drop_staging_exists_and_select() -> None:
    assert q.drop_staging_sql(POSTGRES, STAGING) == f'DROP TABLE "{STAGING}"'
    assert q.table_exists_sql() == (
        "SELECT COUNT(*) FROM information_schema.tables "
        "WHERE table_schema = :schema AND table_name = :table"
    )
    assert q.select_table_sql(POSTGRES, "gold", DAILY_PAYMENTS) == (
        'SELECT "payment_date", "payment_method", "payments", "failed_payments", '
        '"succeeded_amount", "refunded_amount", "month", "_loaded_at" '
        'FROM "gold"."daily_payments" ORDER BY "payment_date", "payment_method"'
    )


def test_month_list_is_bound_not_formatted() -> None:
    statement = sql_text(q.delete_months_sql(POSTGRES, "gold", DAILY_REVENUE)).bindparams(
        sa.bindparam("months", expanding=True)
    )
    compiled = statement.compile(dialect=POSTGRES)
    assert "2026" not in str(compiled)
    assert list(compiled.binds) == ["months"]


# -- Redshift COPY ------------------------------------------------------------------------
def test_redshift_copy() -> None:
    assert q.redshift_copy_sql(REDSHIFT, STAGING, URI, ROLE) == (
        f"COPY \"{STAGING}\" FROM '{URI}' "
        "IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-copy' FORMAT AS PARQUET"
    )


def test_redshift_copy_doubles_single_quotes_in_an_allowed_uri() -> None:
    sql = q.redshift_copy_sql(REDSHIFT, STAGING, "s3://bucket/it's.parquet", ROLE)
    assert "FROM 's3://bucket/it''s.parquet' IAM_ROLE" in sql


def test_redshift_copy_literals_hold_no_bind_parameters() -> None:
    # The role's colons must not read as ":param" once the statement goes through text().
    compiled = sql_text(q.redshift_copy_sql(REDSHIFT, STAGING, URI, ROLE)).compile(dialect=REDSHIFT)
    assert compiled.binds == {}
    assert ROLE in str(compiled)


@pytest.mark.parametrize(
    "role",
    [
        "arn:aws:iam::12345678901:role/short-account",
        "arn:aws:iam::123456789012:user/not-a-role",
        "arn:aws:iam::123456789012:role/x' CREDENTIALS 'aws_access_key_id=AK",
        "arn:aws:iam::123456789012:role/x\\",
        "arn:aws:iam::123456789012:role/",
        " arn:aws:iam::123456789012:role/padded",
        "arn:aws:iam::123456789012:role/x\n",
    ],
)
def test_redshift_copy_refuses_a_bad_role(role: str) -> None:
    with pytest.raises(ValueError, match="invalid Redshift IAM role"):
        q.redshift_copy_sql(REDSHIFT, STAGING, URI, role)


def test_redshift_role_in_other_partitions_is_accepted() -> None:
    assert q.check_iam_role("arn:aws-cn:iam::123456789012:role/path/to/r+w=,.@-") is not None


@pytest.mark.parametrize(
    "uri",
    [
        "s3://ecommerce-data/gold/daily_revenue/month=2026-11/daily_revenue.csv",
        "s3://Bad_Bucket/x.parquet",
        "s3://ab/x.parquet",
        "https://ecommerce-data.s3.amazonaws.com/x.parquet",
        "s3://ecommerce-data/x\\'.parquet",
        "s3://ecommerce-data/a b.parquet",
        "s3://ecommerce-data/x.parquet' IAM_ROLE 'arn:aws:iam::123456789012:role/evil",
        "s3://ecommerce-data/x;.parquet",
    ],
)
def test_redshift_copy_refuses_a_bad_uri(uri: str) -> None:
    with pytest.raises(ValueError, match="invalid S3 Parquet URI"):
        q.redshift_copy_sql(REDSHIFT, STAGING, uri, ROLE)


def test_exact_sql_of_a_redshift_load_of_daily_revenue() -> None:
    """The statements a Redshift load of one month of daily_revenue issues, in order.

    ``:months`` expands to one bound parameter per month; ``:loaded_at`` is bound. Only the
    COPY carries values in its text (the validated S3 URI and IAM role).
    """
    d = REDSHIFT
    statements = [
        q.create_schema_sql(d, "gold"),
        q.create_table_sql(d, "gold", DAILY_REVENUE),
        q.lock_table_sql(d, "gold", "daily_revenue"),
        q.create_staging_sql(d, "gold", DAILY_REVENUE, STAGING),
        q.redshift_copy_sql(d, STAGING, URI, ROLE),
        q.staging_summary_sql(d, STAGING),
        q.staging_duplicate_key_sql(d, STAGING, DAILY_REVENUE.key),
        q.delete_months_sql(d, "gold", DAILY_REVENUE),
        q.insert_from_staging_sql(d, "gold", DAILY_REVENUE, STAGING),
        q.drop_staging_sql(d, STAGING),
    ]
    assert ";\n".join(statements) + ";" == EXPECTED_REDSHIFT_LOAD


EXPECTED_REDSHIFT_LOAD = """\
CREATE SCHEMA IF NOT EXISTS "gold";
CREATE TABLE IF NOT EXISTS "gold"."daily_revenue" (
    "order_date" DATE NOT NULL,
    "customer_region" VARCHAR(256) NOT NULL,
    "orders" BIGINT NOT NULL,
    "cancelled_orders" BIGINT NOT NULL,
    "revenue" DECIMAL(18, 2) NOT NULL,
    "avg_order_value" DECIMAL(18, 2),
    "customers" BIGINT NOT NULL,
    "month" VARCHAR(256) NOT NULL,
    "_loaded_at" TIMESTAMP NOT NULL,
    PRIMARY KEY ("order_date", "customer_region")
);
LOCK TABLE "gold"."daily_revenue";
CREATE TEMP TABLE "_stage_daily_revenue_0123456789ab" AS SELECT "order_date", "customer_region", \
"orders", "cancelled_orders", "revenue", "avg_order_value", "customers", "month" \
FROM "gold"."daily_revenue" WHERE 1 = 0;
COPY "_stage_daily_revenue_0123456789ab" \
FROM 's3://ecommerce-data/gold/daily_revenue/month=2026-11/daily_revenue.parquet' \
IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-copy' FORMAT AS PARQUET;
SELECT COUNT(*) AS row_count, COALESCE(SUM(CASE WHEN "month" IN :months THEN 0 ELSE 1 END), 0) \
AS foreign_rows FROM "_stage_daily_revenue_0123456789ab";
SELECT "order_date", "customer_region", COUNT(*) AS occurrences \
FROM "_stage_daily_revenue_0123456789ab" GROUP BY "order_date", "customer_region" \
HAVING COUNT(*) > 1 ORDER BY "order_date", "customer_region" LIMIT 1;
DELETE FROM "gold"."daily_revenue" WHERE "month" IN :months;
INSERT INTO "gold"."daily_revenue" ("order_date", "customer_region", "orders", \
"cancelled_orders", "revenue", "avg_order_value", "customers", "month", "_loaded_at") \
SELECT "order_date", "customer_region", "orders", "cancelled_orders", "revenue", \
"avg_order_value", "customers", "month", CAST(:loaded_at AS TIMESTAMP) \
FROM "_stage_daily_revenue_0123456789ab";
DROP TABLE "_stage_daily_revenue_0123456789ab";"""


def test_sql_text_binds_only_unquoted_parameters() -> None:
    sql = """SELECT "we:ird", 'it'':s', "50%" FROM "t" WHERE "m" = :month"""
    compiled = sql_text(sql).compile(dialect=POSTGRES)
    assert list(compiled.binds) == ["month"]
    # psycopg's pyformat: text() doubles "%" for the driver, which reads it back as one.
    assert str(compiled) == """SELECT "we:ird", 'it'':s', "50%%" FROM "t" WHERE "m" = %(month)s"""
