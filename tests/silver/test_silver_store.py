"""Silver as Delta tables (SPEC §4): the upsert, its accounting, commits, maintenance and
readers, on a local folder and on an S3 API (moto's server over HTTP)."""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from ecom_pipeline.contracts.datasets import SPECS, Dataset, silver_schema
from ecom_pipeline.errors import LakeKeyError, PartitionValueError
from ecom_pipeline.lake.storage import Lake, LocalLake, open_lake
from ecom_pipeline.silver.dedup import latest_per_key
from ecom_pipeline.silver.incoming import ACCOUNTED
from ecom_pipeline.silver.partitioning import partition_path
from ecom_pipeline.silver.store import COMPACT_MIN_FILES, SilverStore

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
        for row in snapshot.read(partitions=[partition]).to_pylist():
            assert row["order_id"] not in result, "a key is held twice"
            result[row["order_id"]] = (partition, row["order_status"])
    return result


P20_EU = "order_date=2026-11-20/customer_region=EU"
P18_EU = "order_date=2026-11-18/customer_region=EU"
REGIONS = ["EU", "NA", "APAC"]


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
    assert result.rewritten == [P18_EU]
    assert result.metrics["num_target_files_removed"] == 1  # B's partition was not rewritten
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
    version = store.current().version
    result = store.merge(rows, "r2")
    assert store.current().version == version
    assert result.rewritten == [] and result.touched == [P20_EU]
    assert result.written_by_source == {"raw/orders/dt=2026-11-20/orders.csv": 1}  # a tie wins


def test_a_key_twice_in_one_batch_is_inserted_once(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    result = store.merge(
        orders(
            ("A", "2026-11-20", "EU", 0, "placed", 20), ("A", "2026-11-20", "EU", 9, "shipped", 20)
        ),
        "r1",
    )
    assert content(store) == {"A": (P20_EU, "shipped")}
    assert result.written_by_source == {"raw/orders/dt=2026-11-20/orders.csv": 1}


def test_a_row_whose_partition_changes_moves_and_leaves_nothing_behind(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("A", "2026-11-20", "UNKNOWN", 0, "placed", 20)), "r1")
    result = store.merge(orders(("A", "2026-11-20", "EU", 0, "placed", 20)), "r2")  # a tie
    assert content(store) == {"A": (P20_EU, "placed")}
    assert "order_date=2026-11-20/customer_region=UNKNOWN" not in store.current().partitions
    assert result.touched == [P20_EU, "order_date=2026-11-20/customer_region=UNKNOWN"]


def test_uncommitted_files_are_invisible(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("A", "2026-11-20", "EU", 0, "placed", 20)), "r1")
    # A writer that died after writing a data file but before its commit:
    lake.write_parquet(
        f"processed/orders/{P20_EU}/part-dead-000.parquet",
        orders(("Z", "2026-11-20", "EU", 0, "placed", 20)),
    )
    assert content(store) == {"A": (P20_EU, "placed")}


def day_of_orders(seed: int, day: int, count: int) -> pa.Table:
    """A delivery of day ``day``: new orders of that day, late updates of the three days
    before (some stale, some moving to another region), and duplicates within the file."""
    rng = np.random.default_rng(seed * 1000 + day)
    rows = []
    for n in range(count):
        rows.append((f"O{day:02d}{n:05d}", day, REGIONS[n % 3], int(rng.integers(0, 600))))
    for _ in range(count // 5):
        old_day = day - int(rng.integers(1, 4))
        if old_day >= 1:
            number = int(rng.integers(0, count))
            minutes = int(rng.integers(-300, 900))
            rows.append((f"O{old_day:02d}{number:05d}", old_day, str(rng.choice(REGIONS)), minutes))
    for _ in range(count // 10):
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


def rows_of(table: pa.Table) -> list[tuple]:
    return sorted(
        tuple(r.values()) for r in table.drop_columns(["_ingested_at", "_run_id"]).to_pylist()
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_days_merged_in_any_order_give_the_duplicate_rule_over_all_of_them(
    tmp_path, seed: int
) -> None:
    days = [day_of_orders(seed, day, 60) for day in range(1, 6)]
    expected = latest_per_key(pa.concat_tables(days), ORDERS)
    order = list(range(5))
    random.Random(seed).shuffle(order)
    store = SilverStore(LocalLake(tmp_path), ORDERS)
    written: dict[str, int] = {}
    for index in order:
        result = store.merge(days[index], f"run-{index}")
        written.update(result.written_by_source)
    got = store.read()
    assert len(set(got.column("order_id").to_pylist())) == got.num_rows, "a key held twice"
    assert rows_of(got) == rows_of(expected)
    # in order of days, the rows a file wrote are exactly its rows that survive
    if order == sorted(order):
        counts = expected.group_by("_source_file").aggregate([("order_id", "count")])
        assert written == dict(
            zip(counts.column(0).to_pylist(), counts.column(1).to_pylist(), strict=True)
        )


def test_moved_rows_are_merged_but_not_counted_for_any_file(tmp_path) -> None:
    store = SilverStore(LocalLake(tmp_path), ORDERS)
    delivery = latest_per_key(day_of_orders(seed=2, day=1, count=60), ORDERS)
    flagged = delivery.append_column(
        ACCOUNTED, pa.array([n % 2 == 0 for n in range(delivery.num_rows)])
    )
    result = store.merge(flagged, "run-1")
    assert sum(result.written_by_source.values()) == (delivery.num_rows + 1) // 2
    assert store.read().num_rows == delivery.num_rows


def _concurrent_writer(lake_uri: str, endpoint: str | None, index: int, start: float) -> None:
    import time

    lake = open_lake(lake_uri, endpoint_url=endpoint)
    time.sleep(max(0.0, start - time.time()))  # all writers start together
    for batch in range(3):
        key = f"w{index}-{batch}"
        rows = [(key, "2026-11-20", "EU", 0, "placed", 20)]
        # every writer also updates the shared row: exactly one version of it must survive
        rows.append(("shared", "2026-11-20", "EU", index * 10 + batch + 1, f"s{index}{batch}", 20))
        # and moves another one to a partition of its own: it must not end up in two
        rows.append(("mover", "2026-11-20", REGIONS[index], index * 10 + batch, "placed", 20))
        SilverStore(lake, ORDERS).merge(orders(*rows), key)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_concurrent_writer_processes_lose_nothing_and_double_nothing(
    where: str, request: pytest.FixtureRequest
) -> None:
    import time

    if where == "local":
        uri, endpoint = request.getfixturevalue("local_lake_uri"), None
    else:
        uri, endpoint = (
            request.getfixturevalue("s3_lake_uri"),
            request.getfixturevalue("moto_endpoint"),
        )
    lake = open_lake(uri, endpoint_url=endpoint)
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("seed", "2026-11-20", "EU", 0, "placed", 20)), "r0")
    context = multiprocessing.get_context("spawn")  # delta-rs refuses to run after a fork
    start = time.time() + 3.0
    workers = [
        context.Process(target=_concurrent_writer, args=(uri, endpoint, i, start)) for i in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    held = content(store)  # fails on a key held twice
    written = {f"w{i}-{b}" for i in range(3) for b in range(3)}
    assert set(held) == {"seed", "shared", "mover"} | written
    assert held["shared"] == (P20_EU, "s22")  # the latest updated_at of all writers
    assert held["mover"] == ("order_date=2026-11-20/customer_region=APAC", "placed")
    assert store.current().version == 1 + 9  # one commit per merge, none lost


def test_compaction_merges_a_partitions_small_files_and_keeps_its_rows(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    for n in range(COMPACT_MIN_FILES):
        store.merge(orders((f"K{n}", "2026-11-20", "EU", 0, "placed", 20)), f"r{n}")
    store.merge(orders(("X", "2026-11-18", "EU", 0, "placed", 20)), "other")
    before = store.read()
    assert store.current().file_count(P20_EU) == COMPACT_MIN_FILES
    assert store.compact([P20_EU, P18_EU], "maintenance") == [P20_EU]  # P18 has one file
    assert store.current().file_count(P20_EU) == 1
    assert rows_of(store.read()) == rows_of(before)


def test_nearly_distinct_columns_are_written_without_a_dictionary(tmp_path) -> None:
    store = SilverStore(LocalLake(tmp_path), ORDERS)
    store.merge(day_of_orders(1, 20, 300), "append")  # new keys: an append
    store.merge(day_of_orders(1, 21, 300), "merge")  # late updates: a merge
    for n in range(COMPACT_MIN_FILES):
        store.merge(orders((f"K{n}", "2026-11-20", "EU", 0, "placed", 20)), f"r{n}")
    assert store.compact([P20_EU], "maintenance") == [P20_EU]

    table = DeltaTable(store.uri)
    assert len(table.file_uris()) > 1
    for uri in table.file_uris():
        encodings = {}
        row_group = pyarrow.parquet.ParquetFile(uri).metadata.row_group(0)
        for i in range(row_group.num_columns):
            column = row_group.column(i)
            encodings[column.path_in_schema] = set(column.encodings)
        for name in ("order_id", "customer_id", "updated_at", "_source_line"):
            assert "RLE_DICTIONARY" not in encodings[name], (uri, name)
        assert "RLE_DICTIONARY" in encodings["order_status"], uri


def test_a_snapshots_dataset_reads_what_delta_rs_reads(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    for day in (20, 21, 22):
        store.merge(day_of_orders(2, day, 200), f"run-{day}")
    snapshot = store.current(version=2)  # an older version than the newest
    table = snapshot.table
    assert table is not None
    theirs = table.to_pyarrow_dataset(filesystem=lake.arrow_filesystem(store.root))
    assert sorted(snapshot.dataset().files) == sorted(theirs.files)
    assert rows_of(snapshot.dataset().to_table()) == rows_of(theirs.to_table())

    some = snapshot.partitions[1:3]
    pruned = snapshot.dataset(some).to_table()
    everything = theirs.to_table()
    wanted = everything.filter(pc.is_in(store.partition_paths(everything), pa.array(some)))
    assert 0 < pruned.num_rows < everything.num_rows
    assert rows_of(pruned) == rows_of(wanted)
    # the partition columns filter by value, as delta-rs's partition expressions do
    first = some[0].split("/")[0].split("=")[1]
    assert snapshot.dataset(some).count_rows(
        filter=pc.field("order_date") == date.fromisoformat(first)
    )


def test_retention_deletes_old_partitions_and_vacuum_removes_their_files(lake: Lake) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(
        orders(
            ("A", "2026-11-18", "EU", 0, "placed", 18), ("B", "2026-11-20", "EU", 0, "placed", 20)
        ),
        "r1",
    )
    store.merge(orders(("B", "2026-11-20", "EU", 5, "shipped", 20)), "r2")
    assert store.expire_before("order_date", date(2026, 11, 19), "retention") == [P18_EU]
    assert content(store) == {"B": (P20_EU, "shipped")}
    # time travel still sees the deleted rows until the files are vacuumed
    assert "A" in store.current(version=1).read().column("order_id").to_pylist()
    assert store.vacuum(retention_hours=24 * 7) == []  # routine: every file is younger
    removed = store.vacuum(retention_hours=0)
    assert len(removed) == 2  # A's file and B's replaced version
    assert content(store) == {"B": (P20_EU, "shipped")}
    data = [o.key for o in lake.list("processed/orders/order_date=")]
    assert len(data) == 1


def test_other_engines_read_the_committed_rows_directly(lake: Lake) -> None:
    import duckdb
    import polars as pl

    store = SilverStore(lake, ORDERS)
    store.merge(
        orders(
            ("A", "2026-11-18", "EU", 0, "placed", 18), ("B", "2026-11-20", "NA", 0, "placed", 20)
        ),
        "r1",
    )
    store.merge(orders(("A", "2026-11-18", "EU", 9, "shipped", 20)), "r2")
    table = DeltaTable(store.uri, storage_options=store.storage_options)
    silver_orders = table.to_pyarrow_dataset()  # noqa: F841 - DuckDB finds it by its name
    assert duckdb.sql(
        "select order_id, order_status from silver_orders order by order_id"
    ).fetchall() == [("A", "shipped"), ("B", "placed")]
    frame = pl.scan_delta(store.uri, storage_options=store.storage_options).collect()
    assert sorted(frame["order_status"].to_list()) == ["placed", "shipped"]


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


def test_a_merge_onto_a_stale_version_conflicts_even_when_its_partitions_differ(
    lake: Lake,
) -> None:
    store = SilverStore(lake, ORDERS)
    store.merge(orders(("seed", "2026-11-18", "EU", 0, "placed", 18)), "r0")
    stale = DeltaTable(store.uri, storage_options=store.storage_options)
    store.merge(orders(("K", "2026-11-20", "EU", 0, "placed", 20)), "winner")
    # A writer still on the old version moves K to another partition: it must not commit.
    late = store._contestants(orders(("K", "2026-11-20", "NA", 5, "shipped", 20)))
    with pytest.raises(CommitFailedError):
        store._merge_onto(stale, late, "loser")
    store.merge(orders(("K", "2026-11-20", "NA", 5, "shipped", 20)), "loser")  # the retry
    assert content(store)["K"] == ("order_date=2026-11-20/customer_region=NA", "shipped")


def test_orders_regions_are_looked_at_again_unless_nothing_was_committed_in_between(
    lake: Lake,
) -> None:
    """The second look for UNKNOWN orders to move (a read of all customers) is skipped only
    when the merge committed right onto the orders version the regions were read from, and
    customers did not change since."""
    from ecom_pipeline.silver.upsert import RegionsSeen, _settled

    store = SilverStore(lake, ORDERS)
    first = store.merge(orders(("O1", "2026-11-20", "EU", 0, "placed", 20)), "r1")
    no_customers = -1  # no customers table yet
    ours = store.merge(orders(("O2", "2026-11-20", "UNKNOWN", 0, "placed", 20)), "r2")
    assert _settled(lake, RegionsSeen(first.version, no_customers), ours)

    # Another run's commit came between the regions' read and ours.
    store.merge(orders(("O3", "2026-11-20", "NA", 0, "placed", 20)), "r3")
    late = store.merge(orders(("O4", "2026-11-20", "UNKNOWN", 0, "placed", 20)), "r4")
    assert not _settled(lake, RegionsSeen(ours.version, no_customers), late)

    # Nothing written: no commit of ours to build on.
    again = store.merge(orders(("O4", "2026-11-20", "UNKNOWN", 0, "placed", 20)), "r5")
    assert again.version == late.version
    assert not _settled(lake, RegionsSeen(late.version, no_customers), again)

    # A customer table appeared (a run committed customers) since the regions were read.
    last = store.merge(orders(("O5", "2026-11-20", "UNKNOWN", 0, "placed", 20)), "r6")
    assert _settled(lake, RegionsSeen(late.version, no_customers), last)
    SilverStore(lake, SPECS[Dataset.CUSTOMERS])._open_or_create()
    assert not _settled(lake, RegionsSeen(late.version, no_customers), last)
