"""Silver upsert and commit protocol (SPEC §4), on a local folder and on an S3 API."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from ecom_pipeline.adapters.lake import Lake, LakeKeyError, LocalLake
from ecom_pipeline.datasets import SPECS, Dataset, silver_schema
from ecom_pipeline.partitioning import PartitionValueError, partition_path
from ecom_pipeline.silver_store import SilverStore

ORDERS = SPECS[Dataset.ORDERS]
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def orders(*rows: tuple[str, str, str, int, str, int]) -> pa.Table:
    """Rows of (order_id, order_date, region, minutes after T0, status, source day)."""
    records = [
        {
            "order_id": key,
            "customer_id": "C1",
            "order_date": date.fromisoformat(day),
            "order_status": status,
            "total_amount": None,
            "updated_at": T0 + timedelta(minutes=minutes),
            "customer_region": region,
            "_source_file": f"raw/orders/dt=2026-11-{source_day:02d}/orders.csv",
            "_source_line": 2,
            "_ingested_at": T0,
            "_run_id": "test",
        }
        for key, day, region, minutes, status, source_day in rows
    ]
    return pa.Table.from_pylist(records, schema=silver_schema(ORDERS))


def content(store: SilverStore) -> dict[str, tuple[str, str]]:
    """order_id → (partition, status) of every committed row."""
    snapshot = store.current()
    result = {}
    for partition in snapshot.partitions:
        for row in store.read(partitions=[partition], snapshot=snapshot).to_pylist():
            assert row["order_id"] not in result, "a key is held twice"
            result[row["order_id"]] = (partition, row["order_status"])
    return result


P20_EU = "order_date=2026-11-20/customer_region=EU"
P18_EU = "order_date=2026-11-18/customer_region=EU"


def test_late_update_replaces_the_row_in_its_original_partition(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(
        orders(
            ("A", "2026-11-18", "EU", 0, "placed", 18), ("B", "2026-11-20", "EU", 0, "placed", 20)
        ),
        "r1",
    )
    result = store.merge(orders(("A", "2026-11-18", "EU", 60, "delivered", 20)), "r2")
    assert content(store) == {"A": (P18_EU, "delivered"), "B": (P20_EU, "placed")}
    assert result.rewritten == [P18_EU]  # B's partition was not rewritten
    assert result.written_by_source == {"raw/orders/dt=2026-11-20/orders.csv": 1}


def test_stale_update_never_replaces_a_newer_row(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("A", "2026-11-18", "EU", 60, "delivered", 20)), "r1")
    version = store.current().version
    result = store.merge(orders(("A", "2026-11-18", "EU", 0, "placed", 18)), "backfill")
    assert content(store) == {"A": (P18_EU, "delivered")}
    assert result.written_by_source == {}  # the incoming row was superseded
    assert store.current().version == version  # nothing changed, nothing committed


def test_redelivered_identical_rows_change_nothing(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    rows = orders(("A", "2026-11-20", "EU", 0, "placed", 20))
    store.merge(rows, "r1")
    files = [f.key for f in store.current().files()]
    result = store.merge(rows, "r2")
    assert [f.key for f in store.current().files()] == files
    assert result.rewritten == [] and result.touched == [P20_EU]


def test_a_row_whose_partition_changes_moves_and_leaves_nothing_behind(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("A", "2026-11-20", "UNKNOWN", 0, "placed", 20)), "r1")
    store.merge(orders(("A", "2026-11-20", "EU", 0, "placed", 20)), "r2")  # same version: tie
    assert content(store) == {"A": (P20_EU, "placed")}
    assert "order_date=2026-11-20/customer_region=UNKNOWN" not in store.current().partitions


def test_uncommitted_files_are_invisible(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("A", "2026-11-20", "EU", 0, "placed", 20)), "r1")
    # A writer that died after writing a data file but before committing its snapshot:
    lake.write_parquet(
        f"processed/orders/{P20_EU}/part-dead-000.parquet",
        orders(("Z", "2026-11-20", "EU", 0, "placed", 20)),
    )
    assert content(store) == {"A": (P20_EU, "placed")}


def test_concurrent_writers_on_the_same_partition_lose_nothing(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("seed", "2026-11-20", "EU", 0, "placed", 20)), "r0")
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            barrier.wait()
            for batch in range(3):
                key = f"w{index}-{batch}"
                SilverStore(lake, ORDERS).merge(
                    orders((key, "2026-11-20", "EU", 0, "placed", 20)), key
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert set(content(store)) == {"seed"} | {f"w{i}-{b}" for i in range(4) for b in range(3)}


def test_vacuum_removes_only_unreferenced_old_files(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("A", "2026-11-20", "EU", 0, "placed", 20)), "r1")
    store.merge(orders(("A", "2026-11-20", "EU", 5, "shipped", 20)), "r2")
    live = {f.key for f in store.current().files()}
    assert store.vacuum(grace=timedelta(days=1), keep_snapshots=1) == [
        "processed/orders/_snapshots/0000000001.json"
    ]
    removed = store.vacuum(grace=timedelta(seconds=-1), keep_snapshots=1)
    assert len([k for k in removed if k.endswith(".parquet")]) == 1
    assert {f.key for f in store.current().files()} == live
    assert content(store) == {"A": (P20_EU, "shipped")}


@pytest.mark.parametrize("value", ["..", "../x", "a/b", "", ".", "EU/../../etc", "x" * 65, "é"])
def test_partition_values_that_could_escape_are_rejected(value: str) -> None:
    with pytest.raises(PartitionValueError):
        partition_path(ORDERS, {"order_date": "2026-11-20", "customer_region": value})


def test_a_hostile_partition_value_writes_and_deletes_nothing(tmp_path) -> None:
    lake = LocalLake(tmp_path / "lake")
    sibling = tmp_path / "lake" / "processed" / "customers" / "keep.txt"
    sibling.parent.mkdir(parents=True)
    sibling.write_text("precious")
    store = SilverStore(lake, ORDERS)
    with pytest.raises(PartitionValueError):
        store.merge(orders(("A", "2026-11-20", "../../customers", 0, "placed", 20)), "evil")
    assert sibling.read_text() == "precious"
    assert not (tmp_path / "lake" / "processed" / "orders").exists()


@pytest.mark.parametrize("key", ["../outside", "/abs", "a//b", "a/./b", "a\\b"])
def test_lake_keys_cannot_leave_the_root(tmp_path, key: str) -> None:
    with pytest.raises(LakeKeyError):
        LocalLake(tmp_path).write_bytes(key, b"x")
