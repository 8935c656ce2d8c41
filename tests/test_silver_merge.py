"""The bounded silver merge: merging in key ranges gives exactly what one merge in memory gives.

Each test runs the same days through two stores: one with a batch larger than any day (one key
range, one file per partition, the in-memory case) and one with a tiny batch (many key
ranges, large partitions split across files), then compares the committed rows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ecom_pipeline.adapters.lake import Lake, LocalLake
from ecom_pipeline.datasets import SPECS, Dataset, silver_schema
from ecom_pipeline.silver_merge import ACCOUNTED
from ecom_pipeline.silver_store import SilverStore

ORDERS = SPECS[Dataset.ORDERS]
T0 = datetime(2026, 11, 20, tzinfo=UTC)
REGIONS = ["EU", "NA", "APAC"]


def day_of_orders(seed: int, day: int, count: int) -> pa.Table:
    """A delivery of day ``day``: new orders of that day, late updates of the three days
    before (some stale, some moving to another region), and duplicates within the file."""
    rng = np.random.default_rng(seed * 1000 + day)
    rows = []
    for n in range(count):
        rows.append((f"O{day:02d}{n:05d}", day, REGIONS[n % 3], int(rng.integers(0, 600))))
    for _ in range(count // 5):  # late updates, possibly stale, possibly another region
        old_day = day - int(rng.integers(1, 4))
        if old_day >= 1:
            number = int(rng.integers(0, count))
            minutes = int(rng.integers(-300, 900))
            rows.append((f"O{old_day:02d}{number:05d}", old_day, str(rng.choice(REGIONS)), minutes))
    for _ in range(count // 10):  # the same key twice in one file
        rows.append(rows[int(rng.integers(0, len(rows)))])
    source = f"raw/orders/dt=2026-11-{day:02d}/orders.csv"
    return pa.Table.from_pylist(
        [
            {
                "order_id": key,
                "customer_id": f"C{line % 17}",
                "order_date": date(2026, 11, order_day),
                "order_status": "placed",
                "total_amount": None,
                "updated_at": T0 + timedelta(minutes=minutes),
                "customer_region": region,
                "_source_file": source,
                "_source_line": line + 2,
                "_ingested_at": T0 + timedelta(days=day),
                "_run_id": f"run-{day}",
            }
            for line, (key, order_day, region, minutes) in enumerate(rows)
        ],
        schema=silver_schema(ORDERS),
    )


def committed(store: SilverStore) -> list[dict]:
    rows = store.read().sort_by("order_id").to_pylist()
    assert len({r["order_id"] for r in rows}) == len(rows), "a key is held twice"
    return rows


def in_batches(table: pa.Table, size: int):
    """The table as a re-readable source of small tables, as staged rows are read."""
    return lambda: (table.slice(start, size) for start in range(0, table.num_rows, size))


@pytest.mark.parametrize("batch_rows", [7, 25, 1000])
def test_merging_in_key_ranges_gives_the_in_memory_result(tmp_path, batch_rows: int) -> None:
    memory = SilverStore(LocalLake(tmp_path / "memory"), ORDERS)
    ranged = SilverStore(LocalLake(tmp_path / "ranged"), ORDERS)
    for day in range(1, 7):
        delivery = day_of_orders(seed=batch_rows, day=day, count=120)
        expected = memory.merge(delivery, f"run-{day}", batch_rows=1_000_000)
        result = ranged.merge(in_batches(delivery, 33), f"run-{day}", batch_rows=batch_rows)
        assert result.written_by_source == expected.written_by_source
        assert result.touched == expected.touched
        assert (result.ranges > 1) == (delivery.num_rows > batch_rows)
        assert committed(ranged) == committed(memory)
    files = ranged.current().partitions
    # Partitions hold 40-60 rows: larger than a batch, they span several files.
    assert any(len(f) > 1 for f in files.values()) == (batch_rows < 40)
    # No file is bigger than a key range (a range holds about batch_rows incoming rows).
    assert max(f.rows for fs in files.values() for f in fs) <= 2 * batch_rows
    # Every file is written sorted by key, and its recorded key range is its content's.
    for data_file in (f for fs in files.values() for f in fs):
        keys = ranged.read_files([data_file], columns=["order_id"]).column(0).to_pylist()
        assert keys == sorted(keys)
        assert (data_file.min_key, data_file.max_key) == (keys[0], keys[-1])


def test_a_late_update_rewrites_only_the_files_holding_its_keys(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(day_of_orders(seed=1, day=1, count=300).slice(0, 300), "run-1", batch_rows=20)
    partition = "order_date=2026-11-01/customer_region=EU"
    before = {f.key for f in store.current().partitions[partition]}
    assert len(before) > 2
    update = store.read(partitions=[partition]).slice(0, 1)
    newer = pc.add(update.column("updated_at"), pa.scalar(timedelta(hours=1)))
    update = update.set_column(update.schema.get_field_index("updated_at"), "updated_at", newer)
    result = store.merge(update, "run-2", batch_rows=20)
    after = {f.key for f in store.current().partitions[partition]}
    assert len(before - after) == 1 and len(after - before) == 2  # rewritten + new range file
    assert result.rewritten == [partition]
    assert store.read(partitions=[partition]).num_rows == 100


def test_moved_rows_are_merged_but_not_counted_for_any_file(tmp_path) -> None:
    store = SilverStore(LocalLake(tmp_path), ORDERS)
    delivery = day_of_orders(seed=2, day=1, count=60)
    flagged = delivery.append_column(
        ACCOUNTED, pa.array([n % 2 == 0 for n in range(delivery.num_rows)])
    )
    result = store.merge(flagged, "run-1", batch_rows=10)
    counted = sum(result.written_by_source.values())
    assert 0 < counted < store.read().num_rows
