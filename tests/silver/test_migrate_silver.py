"""Converting silver of the earlier snapshot format to Delta tables keeps every committed row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.errors import LegacySilverError
from ecom_pipeline.lake.storage import Lake, LocalLake, open_lake
from ecom_pipeline.silver.migrate import migrate_lake
from ecom_pipeline.silver.store import SilverStore

FIXTURE = Path(__file__).parent / "data" / "snapshot_silver"


def rows(table: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def copy_fixture(lake: Lake) -> None:
    for path in sorted((FIXTURE / "processed").rglob("*")):
        if path.is_file():
            lake.write_bytes(path.relative_to(FIXTURE).as_posix(), path.read_bytes())


def test_migration_gives_delta_tables_with_identical_rows(lake: Lake) -> None:
    copy_fixture(lake)
    with pytest.raises(LegacySilverError, match="migrate-silver"):
        SilverStore(lake, SPECS[Dataset.ORDERS]).read()

    done = migrate_lake(lake)

    assert sorted(m.dataset for m in done) == sorted(d.value for d in Dataset)
    assert any(m.old_files_removed > m.snapshot_version for m in done)  # superseded files too
    for dataset in Dataset:
        store = SilverStore(lake, SPECS[dataset])
        expected = pq.read_table(FIXTURE / f"expected-{dataset}.parquet").cast(store.schema)
        assert rows(store.read()) == rows(expected), dataset
        left = [o.key for o in lake.list(f"processed/{dataset}/") if "/_delta_log/" not in o.key]
        assert len(left) == store.current().file_count()  # only the table's own files remain
        assert not lake.list(f"processed/{dataset}/_snapshots/")
    orders = SilverStore(lake, SPECS[Dataset.ORDERS]).current()
    assert all("/customer_region=" in p for p in orders.partitions)  # hive folders as before
    assert migrate_lake(lake) == []  # nothing left to convert


def test_a_migration_killed_before_its_clean_up_is_finished_by_a_rerun(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE / "processed", tmp_path / "processed")
    lake = LocalLake(tmp_path)
    migrate_lake(lake)
    # as if killed after the commits but before the clean-up: the old files are back
    for path in sorted((FIXTURE / "processed").rglob("*")):
        if path.is_file():
            lake.write_bytes(path.relative_to(FIXTURE).as_posix(), path.read_bytes())
    done = migrate_lake(lake)
    assert {m.dataset for m in done} == {d.value for d in Dataset}
    store = SilverStore(lake, SPECS[Dataset.PAYMENTS])
    expected = pq.read_table(FIXTURE / "expected-payments.parquet").cast(store.schema)
    assert rows(store.read()) == rows(expected)
    assert store.current().version == 0  # converted once, not twice


def test_the_cli_converts_a_lake_on_s3(
    s3_lake_uri: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from ecom_pipeline.cli import main

    lake = open_lake(s3_lake_uri, endpoint_url=moto_endpoint)
    copy_fixture(lake)
    monkeypatch.setenv("ECOM_LAKE_URI", s3_lake_uri)
    monkeypatch.setenv("ECOM_AWS_ENDPOINT_URL", moto_endpoint)
    assert main(["migrate-silver"]) == 0
    assert "orders: snapshot 3 → Delta table, 180 rows" in capsys.readouterr().out
    store = SilverStore(lake, SPECS[Dataset.ORDERS])
    assert store.read().num_rows == 180

    assert main(["silver-files", "orders"]) == 0  # the current version's files, for other tools
    listed = capsys.readouterr().out.split()
    assert len(listed) == store.current().file_count() > 0
    assert all(u.startswith(f"{s3_lake_uri}/processed/orders/order_date=") for u in listed)
