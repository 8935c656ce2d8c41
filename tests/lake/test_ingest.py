"""Ingest discovery (SPEC §2): every object under a day's folder is read, ignored with a reason,
or rejected by key; nothing is skipped without a word, and one stray object cannot stop the day.
Run against a local folder and moto's S3 API alike."""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from ecom_pipeline.errors import BadFileError, LakeKeyError
from ecom_pipeline.lake import intake as ingest
from ecom_pipeline.lake.storage import Lake, LocalLake, S3Lake

DAY = date(2026, 11, 21)
DT = f"dt={DAY.isoformat()}"
CSV = b"order_id,customer_id\nO1,C1\n"


def put_raw(lake: Lake, key: str, data: bytes) -> None:
    """Write an object exactly as upstream would, bypassing the lake's key checks."""
    if isinstance(lake, S3Lake):
        lake.client.put_object(Bucket=lake.bucket, Key=lake.prefix + key, Body=data)
    else:
        assert isinstance(lake, LocalLake)
        path = lake.path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def verdicts(listing: ingest.DayListing) -> dict[str, tuple[str, bool]]:
    return {u.key: (u.reason, u.rejected) for u in listing.unread}


def test_only_csv_files_directly_under_the_day_folder_are_read_the_rest_is_accounted_for(
    lake: Lake,
) -> None:
    put_raw(lake, f"raw/orders/{DT}/orders.csv", CSV)
    put_raw(lake, f"raw/orders/{DT}/UPPER.CSV", CSV)
    put_raw(lake, f"raw/orders/{DT}/_SUCCESS", b"")
    put_raw(lake, f"raw/orders/{DT}/orders.csv.gz", b"\x1f\x8b")
    put_raw(lake, f"raw/orders/{DT}/.tmp-orders.csv", CSV)
    put_raw(lake, f"raw/orders/{DT}/late/orders.csv", CSV)
    put_raw(lake, "raw/orders/dt=2026-11-20/orders.csv", CSV)  # another day: not listed
    put_raw(lake, f"raw/refunds/{DT}/refunds.csv", CSV)  # unknown folder: read, then rejected

    listing = ingest.discover(lake, DAY)

    assert listing.files == {
        "orders": [f"raw/orders/{DT}/UPPER.CSV", f"raw/orders/{DT}/orders.csv"],
        "refunds": [f"raw/refunds/{DT}/refunds.csv"],
    }
    found = verdicts(listing)
    assert set(found) == {
        f"raw/orders/{DT}/_SUCCESS",
        f"raw/orders/{DT}/orders.csv.gz",
        f"raw/orders/{DT}/.tmp-orders.csv",
        f"raw/orders/{DT}/late/orders.csv",
    }
    assert found[f"raw/orders/{DT}/_SUCCESS"] == (
        "not a .csv file (deliveries are raw/{dataset}/dt=D/*.csv)",
        False,
    )
    assert "temporary name" in found[f"raw/orders/{DT}/.tmp-orders.csv"][0]
    assert "sub-folder" in found[f"raw/orders/{DT}/late/orders.csv"][0]
    assert not any(rejected for _, rejected in found.values())


def test_s3_folder_markers_and_dot_dot_keys_do_not_stop_the_day(
    s3_lake_uri: str, moto_endpoint: str
) -> None:
    lake = S3Lake(s3_lake_uri, endpoint_url=moto_endpoint)
    put_raw(lake, f"raw/orders/{DT}/orders.csv", CSV)
    put_raw(lake, f"raw/orders/{DT}/", b"")  # what the S3 console's "create folder" makes
    put_raw(lake, f"raw/orders/{DT}/..", CSV)
    put_raw(lake, f"raw/../{DT}/x.csv", CSV)
    put_raw(lake, f"raw/payments/{DT}//double.csv", CSV)
    put_raw(lake, f"raw/customers/{DT}", CSV)  # an object, not a folder, named like the day

    listing = ingest.discover(lake, DAY)

    assert listing.files == {"orders": [f"raw/orders/{DT}/orders.csv"]}
    found = verdicts(listing)
    assert found[f"raw/orders/{DT}/"] == (
        "a folder marker (an empty object named like the folder)",
        False,
    )
    assert found[f"raw/customers/{DT}"] == (
        f"an object named like the {DT} folder, not a file in it",
        False,
    )
    for key in (f"raw/orders/{DT}/..", f"raw/../{DT}/x.csv", f"raw/payments/{DT}//double.csv"):
        reason, rejected = found[key]
        assert rejected and reason.startswith("invalid object key"), key
    datasets = {u.key: u.dataset for u in listing.unread}
    assert datasets[f"raw/../{DT}/x.csv"] == ingest.UNKNOWN_DATASET
    assert datasets[f"raw/payments/{DT}//double.csv"] == "payments"
    # the good file is still read whole, through Arrow's S3 streams
    assert ingest.read_input(lake, "orders", f"raw/orders/{DT}/orders.csv", DAY).size == len(CSV)


def test_a_link_out_of_the_local_lake_is_listed_rejected_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:first line must never be quoted\n")
    lake = LocalLake(tmp_path / "lake")
    put_raw(lake, f"raw/orders/{DT}/orders.csv", CSV)
    folder = lake.path / "raw" / "orders" / DT
    os.symlink(secret, folder / "linked.csv")
    os.symlink(secret.parent, folder / "linked-folder")
    os.symlink(tmp_path / "nowhere", folder / "dangling.csv")

    listing = ingest.discover(lake, DAY)

    assert listing.files == {"orders": [f"raw/orders/{DT}/orders.csv"]}
    found = verdicts(listing)
    for name in ("linked.csv", "linked-folder", "dangling.csv"):
        reason, rejected = found[f"raw/orders/{DT}/{name}"]
        assert rejected and "symbolic link" in reason
    # even asked directly, the lake does not follow the link out of its root
    with pytest.raises(BadFileError) as refused:
        ingest.read_input(lake, "orders", f"raw/orders/{DT}/linked.csv", DAY)
    message = str(refused.value)
    assert message.startswith(f"raw/orders/{DT}/linked.csv: ")
    assert "first line" not in message and str(secret) not in message


def test_linked_folders_above_the_day_are_rejected_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "orders" / DT
    outside.mkdir(parents=True)
    (outside / "orders.csv").write_bytes(CSV)
    lake = LocalLake(tmp_path / "lake")
    (lake.path / "raw" / "payments").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere" / "orders", lake.path / "raw" / "orders")
    os.symlink(outside, lake.path / "raw" / "payments" / DT)

    listing = ingest.discover(lake, DAY)

    assert listing.files == {}
    assert {u.key: (u.dataset, u.rejected) for u in listing.unread} == {
        "raw/orders": ("orders", True),
        f"raw/payments/{DT}": ("payments", True),
    }
    with pytest.raises(BadFileError, match="out of the lake root"):
        ingest.read_input(lake, "orders", f"raw/orders/{DT}/orders.csv", DAY)
    # a write through the link is refused as well: nothing lands outside the root
    with pytest.raises(LakeKeyError):
        lake.write_bytes(f"raw/orders/{DT}/new.csv", CSV)
    assert sorted(p.name for p in outside.iterdir()) == ["orders.csv"]
    lake.delete([f"raw/payments/{DT}"])  # deleting the link removes the link only
    assert (outside / "orders.csv").exists() and not (lake.path / "raw" / "payments").exists()


def test_s3_reads_are_arrow_streams_and_ranged_parquet_reads(
    s3_lake_uri: str, moto_endpoint: str
) -> None:
    lake = S3Lake(s3_lake_uri, endpoint_url=moto_endpoint)
    put_raw(lake, f"raw/orders/{DT}/orders.csv", CSV)
    with lake.open_binary(f"raw/orders/{DT}/orders.csv") as stream:
        assert isinstance(stream, pa.NativeFile)  # Arrow's S3 stream, not a whole download
        assert stream.read(9) + stream.read(1 << 20) == CSV
    with pytest.raises(FileNotFoundError, match=s3_lake_uri):
        lake.open_binary(f"raw/orders/{DT}/missing.csv")
    with pytest.raises(FileNotFoundError, match=s3_lake_uri):
        lake.read_parquet(["processed/missing.parquet"])


def test_parquet_reads_only_the_asked_columns_on_both_lakes(lake: Lake) -> None:
    table = pa.table({"a": list(range(1000)), "b": [str(i) * 20 for i in range(1000)]})
    lake.write_parquet("processed/t/part.parquet", table)
    assert lake.read_parquet(["processed/t/part.parquet"], columns=["a"]) == table.select(["a"])
    both = lake.read_parquet(["processed/t/part.parquet", "processed/t/part.parquet"])
    assert both.num_rows == 2000 and both.column_names == ["a", "b"]


@pytest.mark.usefixtures("prefect_api")
def test_the_ingest_task_accounts_for_strays_and_escapes_names_in_its_log(
    pipeline_env: Path,
) -> None:
    from prefect import flow

    from ecom_pipeline.contracts.datasets import Dataset
    from ecom_pipeline.run.ingest import DayInputs
    from ecom_pipeline.run.resources import build_resources
    from ecom_pipeline.settings import load_settings
    from tasks.ingest import ingest_raw_files

    resources = build_resources(load_settings())
    lake = resources.lake
    put_raw(lake, f"raw/orders/{DT}/orders.csv", CSV)
    forged = f"raw/orders/{DT}/x\n12:00:00.000 | ERROR   | forged line.txt"
    put_raw(lake, forged, b"")
    put_raw(lake, f"raw/payments/{DT}/_SUCCESS", b"")
    os.symlink(pipeline_env / "elsewhere.csv", lake.path / f"raw/orders/{DT}/link.csv")  # type: ignore[attr-defined]

    records: list[logging.LogRecord] = []
    collect = logging.Handler(logging.INFO)
    collect.emit = records.append  # type: ignore[method-assign]
    task_log = logging.getLogger("prefect.task_runs")
    task_log.addHandler(collect)

    @flow
    def pipeline() -> DayInputs:  # as the pipeline calls its tasks: inside a flow run
        return ingest_raw_files(resources, DAY, [Dataset.ORDERS], False, "run-1")

    try:
        inputs = pipeline()
    finally:
        task_log.removeHandler(collect)

    assert [item.key for item in inputs.files[Dataset.ORDERS]] == [f"raw/orders/{DT}/orders.csv"]
    assert [(a.source, a.status) for a in inputs.skipped] == [(forged, "ignored")]  # not payments
    [rejected] = inputs.rejected
    assert rejected.source == f"raw/orders/{DT}/link.csv" and rejected.status == "failed"
    assert (
        rejected.error
        == f"raw/orders/{DT}/link.csv: a symbolic link: the lake does not follow links"
    )
    messages = [record.getMessage() for record in records]
    assert not any("\n12:00:00.000" in m for m in messages)
    assert any("x\\n12:00:00.000 | ERROR   | forged line.txt" in m for m in messages), messages
    # a reason record for the link, pointing back to its key, without any copy of its target
    record = lake.read_json(f"quarantine/orders/{DT}/files/link.csv.reason.json")
    assert record["source"] == f"raw/orders/{DT}/link.csv" and record["copy"] is None


def test_copy_within_the_lake_on_both_stores(lake: Lake) -> None:
    body = bytes(range(256)) * 40_000  # 10 MB: more than one local copy block
    put_raw(lake, f"raw/orders/{DT}/big.csv", body)
    lake.copy(f"raw/orders/{DT}/big.csv", f"quarantine/orders/{DT}/files/big.csv")
    assert lake.read_bytes(f"quarantine/orders/{DT}/files/big.csv") == body
    with pytest.raises(FileNotFoundError):
        lake.copy(f"raw/orders/{DT}/missing.csv", f"quarantine/orders/{DT}/files/missing.csv")
    assert not lake.exists(f"quarantine/orders/{DT}/files/missing.csv")
