"""The lake's key layout (SPEC §2): keys as earlier versions wrote them, taken apart again, and
no other module spelling one."""

from __future__ import annotations

import ast
import dataclasses
import re
from datetime import date
from pathlib import Path

import pytest

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.gold.tables import GOLD_TABLES, MONTH
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.layout import LakeKey, parse_key

DAY = date(2026, 11, 21)
REPO = Path(__file__).resolve().parents[2]


# -- every key, byte for byte as the pipeline has always written it, and back --------------
# (key built by the layout, the same key spelled out, what parse_key must find in it)
KEYS = [
    pytest.param(
        layout.raw_key("orders", DAY, "orders-0001.csv"),
        "raw/orders/dt=2026-11-21/orders-0001.csv",
        LakeKey("raw", "orders", DAY, "orders-0001.csv"),
        id="raw",
    ),
    pytest.param(
        layout.silver_root("payments"),
        "processed/payments",
        LakeKey("silver", "payments"),
        id="silver-root",
    ),
    pytest.param(
        layout.quarantine_rows_key("orders", DAY, "raw/orders/dt=2026-11-21/orders-0001.csv"),
        "quarantine/orders/dt=2026-11-21/orders-0001.csv.parquet",
        LakeKey("quarantined_rows", "orders", DAY, "orders-0001.csv"),
        id="quarantined-rows",
    ),
    pytest.param(
        layout.quarantine_file_key("_unknown", DAY, "stuff-a.csv"),
        "quarantine/_unknown/dt=2026-11-21/files/stuff-a.csv",
        LakeKey("quarantined_file", "_unknown", DAY, "stuff-a.csv"),
        id="quarantined-file",
    ),
    pytest.param(
        layout.quarantine_reason_key(layout.quarantine_file_key("payments", DAY, "p.csv")),
        "quarantine/payments/dt=2026-11-21/files/p.csv.reason.json",
        LakeKey("quarantine_reason", "payments", DAY, "p.csv"),
        id="quarantine-reason",
    ),
    pytest.param(
        layout.gold_key("daily_revenue", "2026-11"),
        "gold/daily_revenue/month=2026-11/daily_revenue.parquet",
        LakeKey("gold", name="daily_revenue", month="2026-11"),
        id="gold",
    ),
    pytest.param(
        layout.manifest_key(DAY, "0b9c6c1e-4d4e-4c44-9a3e-5f1f1d1e2a3b"),
        "_runs/dt=2026-11-21/0b9c6c1e-4d4e-4c44-9a3e-5f1f1d1e2a3b.json",
        LakeKey("manifest", day=DAY, name="0b9c6c1e-4d4e-4c44-9a3e-5f1f1d1e2a3b"),
        id="manifest",
    ),
    pytest.param(
        layout.ledger_key("customers", DAY),
        "_runs/ledger/customers/dt=2026-11-21.json",
        LakeKey("ledger", "customers", DAY),
        id="ledger",
    ),
    pytest.param(
        layout.alert_key("20261121T020000123456Z", "failure"),
        "_runs/alerts/20261121T020000123456Z-failure.json",
        LakeKey("alert", name="20261121T020000123456Z-failure"),
        id="alert",
    ),
    pytest.param(
        layout.lock_folder("gold"),
        "_locks/gold",
        LakeKey("lock", name="gold"),
        id="lock",
    ),
]


@pytest.mark.parametrize(("built", "spelled", "parts"), KEYS)
def test_each_key_is_built_as_before_and_parsed_back(
    built: str, spelled: str, parts: LakeKey
) -> None:
    assert built == spelled
    assert parse_key(built) == parts


def test_prefixes_and_folders_are_those_the_writers_list_and_retention_expires() -> None:
    assert layout.raw_day_folder("orders", DAY) == "raw/orders/dt=2026-11-21/"
    assert layout.quarantine_folder("orders", DAY) == "quarantine/orders/dt=2026-11-21/"
    assert layout.gold_month_prefix("daily_payments") == "gold/daily_payments/month="
    assert layout.lock_prefix("gold") == "_locks/gold/"
    assert (layout.RAW_PREFIX, layout.PROCESSED_PREFIX, layout.QUARANTINE_PREFIX) == (
        "raw/",
        "processed/",
        "quarantine/",
    )
    assert (layout.GOLD_PREFIX, layout.RUNS_PREFIX, layout.LOCKS_PREFIX) == (
        "gold/",
        "_runs/",
        "_locks/",
    )
    # every key that is written under a prefix starts with it
    assert layout.raw_key("orders", DAY, "a.csv").startswith(layout.raw_day_folder("orders", DAY))
    assert layout.gold_key("t", "2026-11").startswith(layout.gold_month_prefix("t"))
    assert layout.manifest_key(DAY, "r").startswith(layout.RUNS_PREFIX)
    assert layout.ledger_key("orders", DAY).startswith(layout.RUNS_PREFIX)
    assert layout.alert_key("s", "sla").startswith(layout.RUNS_PREFIX)
    assert layout.quarantine_rows_key("orders", DAY, "a.csv").startswith(
        layout.quarantine_folder("orders", DAY)
    )


def test_lock_records_and_silver_files_belong_to_their_lock_and_table() -> None:
    record = f"{layout.lock_prefix('gold')}000000000003.renew-000001.json"
    assert parse_key(record) == LakeKey("lock", name="gold")
    data = f"{layout.silver_root('orders')}/order_date=2026-11-20/customer_region=EU/p.parquet"
    parsed = parse_key(data)
    assert parsed == LakeKey(
        "silver", "orders", name="order_date=2026-11-20/customer_region=EU/p.parquet"
    )


@pytest.mark.parametrize(
    "key",
    [
        "",
        "raw",
        "raw/",
        "raw/orders/a.csv",
        "raw/orders/dt=2026-11-21/",
        "raw/orders/sub/dt=2026-11-21/a.csv",
        "raw/orders/dt=2026-02-30/a.csv",
        "raw/orders/dt=20261121/a.csv",
        "processed/",
        "quarantine/orders/dt=2026-11-21/a.csv",
        "quarantine/orders/dt=2026-11-21/other/a.csv",
        "gold/daily_revenue/month=2026-11/other.parquet",
        "gold/daily_revenue/2026-11/daily_revenue.parquet",
        "_runs/dt=2026-11-21/.json",
        "_runs/ledger/orders/2026-11-21.json",
        "_runs/alerts/nodash.json",
        "_locks/",
        "elsewhere/dt=2026-11-21/a.csv",
    ],
)
def test_keys_the_layout_does_not_make_are_not_parsed(key: str) -> None:
    assert parse_key(key) is None


def test_day_folders_parse_only_real_days() -> None:
    assert layout.day_segment(DAY) == "dt=2026-11-21"
    assert layout.parse_day_segment(layout.day_segment(DAY)) == DAY
    for segment in ("dt=2026-02-30", "dt=20261121", "dt=2026-W47-6", "dt=", "dt", "x=2026-11-21"):
        assert layout.parse_day_segment(segment) is None, segment


def test_retention_reads_the_day_every_writer_puts_in_its_keys() -> None:
    dated = [
        layout.raw_key("orders", DAY, "a.csv"),
        layout.quarantine_rows_key("orders", DAY, "a.csv"),
        layout.quarantine_reason_key(layout.quarantine_file_key("orders", DAY, "a.csv")),
        layout.manifest_key(DAY, "run"),
        layout.ledger_key("orders", DAY),
    ]
    assert [layout.day_in_key(k) for k in dated] == [DAY] * len(dated)
    # a stray nested under the day folder ages with it; an alert by its stamp; locks carry no day
    assert layout.day_in_key("raw/orders/dt=2026-11-21/sub/a.csv") == DAY
    assert layout.day_in_key(layout.alert_key("20261121T0Z", "sla")) == DAY  # by its stamp
    assert layout.day_in_key(layout.alert_key("2026x121T0Z", "sla")) is None
    assert layout.day_in_key(layout.lock_prefix("gold") + "000000000001.json") is None
    assert layout.day_in_key("raw/orders/dt=2026-02-30/a.csv") is None  # a stray, not a day


def test_the_month_of_a_gold_file_is_read_from_its_uri() -> None:
    uri = f"s3://bucket/prefix/{layout.gold_key('daily_revenue', '2026-11')}"
    assert layout.month_in_uri(uri) == "2026-11"
    assert layout.month_in_uri("s3://bucket/gold/daily_revenue/daily_revenue.parquet") is None


def test_gold_month_folders_are_named_after_the_tables_month_column() -> None:
    assert layout.MONTH_PARTITION == MONTH
    for table in GOLD_TABLES:
        assert MONTH in table.column_names


def test_each_dated_dataset_is_dated_by_one_of_its_date_partitions() -> None:
    dated = {d: s.date_column for d, s in SPECS.items() if s.date_column is not None}
    assert dated == {Dataset.ORDERS: "order_date", Dataset.PAYMENTS: "payment_date"}
    for dataset, column in dated.items():
        assert column in SPECS[dataset].partition_by
        assert SPECS[dataset].column(column).kind == "date"


def test_a_date_column_must_be_a_partition_of_its_dataset() -> None:
    orders = SPECS[Dataset.ORDERS]
    with pytest.raises(ValueError, match="updated_at"):
        dataclasses.replace(orders, date_column="updated_at")


# -- the rule: only lake/layout.py spells a lake path -------------------------------------
#: A layer folder at the start of a path segment, a day or month folder, or a ``_runs`` /
#: ``_locks`` name. ``draw/``, ``task_runs`` and ``last_dt=`` do not count.
LAYOUT_SPELLING = re.compile(
    r"(?<!\w)(raw/|processed/|quarantine/|gold/|dt=|month=)|(?<!\w)_(runs|locks)(?!\w)"
)
GUARDED = ("ecom_pipeline", "flows", "tasks", "devtools")
LAYOUT_MODULE = Path("ecom_pipeline/lake/layout.py")


def layout_spellings(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string constant and f-string part that spells a lake path.

    Docstrings and other bare string statements are documentation, not keys: not counted.
    """
    tree = ast.parse(source)
    documentation = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in documentation
        and LAYOUT_SPELLING.search(node.value)
    )


def test_the_guard_sees_constants_and_f_string_parts_not_docstrings() -> None:
    source = '''
"""Keys like raw/{dataset}/dt=D/ are documented here."""
A = "quarantine/"
def f(d):
    """Writes _runs/dt=…/x.json."""
    return f"gold/{d}/month={d}/x" + "draw/" + "task_runs" + "last_dt=" + "_locks"
'''
    assert [line for line, _ in layout_spellings(source)] == [3, 6, 6, 6]


def test_no_module_but_the_layout_spells_a_lake_path() -> None:
    offenders = []
    for package in GUARDED:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO)
            if relative == LAYOUT_MODULE:
                continue
            for line, text in layout_spellings(path.read_text(encoding="utf-8")):
                offenders.append(f"{relative}:{line}: {text!r}")
    assert not offenders, "build lake keys with ecom_pipeline.lake.layout:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "key",
    [
        layout.raw_key("orders", DAY, "orders-0001.csv"),
        layout.raw_key("unknown_feed", DAY, "x.csv"),
        "raw/orders/sub/dt=2026-11-21/a.csv",
        "raw/orders/dt=2026-11-21/sub/a.csv",
        layout.quarantine_rows_key("orders", DAY, "a.csv"),
        layout.ledger_key("orders", DAY),
    ],
)
def test_the_s3_trigger_lambda_sees_the_deliveries_the_layout_builds(key: str) -> None:
    """The Lambda cannot import the package (it ships alone): its own pattern must agree."""
    from deployments.s3_trigger import RAW_KEY

    match = RAW_KEY.match(key)
    parsed = parse_key(key)
    delivery = parsed if parsed is not None and parsed.kind == "raw" else None
    assert (match is None) == (delivery is None)
    if match and delivery:
        assert match["dataset"] == delivery.dataset
        assert date.fromisoformat(match["day"]) == delivery.day
        assert match["file"] == delivery.name
