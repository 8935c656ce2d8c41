"""Convert silver of the earlier snapshot format into Delta tables, so an old lake is not stranded.

The earlier format kept immutable Parquet files plus ``processed/{dataset}/_snapshots/N.json``,
the newest of which listed every live file. For each dataset still in that format this writes
the newest snapshot's rows as a Delta table in the same folder (one commit, tagged with the
snapshot it came from), checks the row count, then deletes the old snapshot documents and data
files. Killed at any step, it can simply be run again: a table tagged as a migration is not
written twice, and the clean-up repeats until nothing of the old format is left.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.errors import MigrationError
from ecom_pipeline.lake.storage import Lake
from ecom_pipeline.silver.store import TABLE_CONFIGURATION, SilverStore

log = logging.getLogger(__name__)

#: Commit metadata key naming the snapshot version a table was converted from.
MIGRATED_FROM = "ecom.migrated_from_snapshot"


@dataclass(frozen=True)
class Migrated:
    dataset: str
    snapshot_version: int
    rows: int
    old_files_removed: int


def _snapshot_keys(lake: Lake, root: str) -> list[str]:
    return sorted(o.key for o in lake.list(f"{root}/_snapshots/") if o.key.endswith(".json"))


def read_snapshot_silver(store: SilverStore) -> tuple[int, pa.Table] | None:
    """The newest snapshot's version and rows, in the silver schema (None: no snapshot)."""
    keys = _snapshot_keys(store.lake, store.root)
    if not keys:
        return None
    document = json.loads(store.lake.read_bytes(keys[-1]))
    files = [f["key"] for files in document["partitions"].values() for f in files]
    if not files:
        return int(document["version"]), store.schema.empty_table()
    rows = store.lake.read_parquet(files).select(store.schema.names).cast(store.schema)
    return int(document["version"]), rows


def _migrated_version(store: SilverStore) -> int | None:
    """The snapshot version the Delta table was converted from (None: not a migration)."""
    try:
        table = DeltaTable(store.uri, version=0, storage_options=store.storage_options)
    except TableNotFoundError:
        return None
    for entry in table.history():
        if entry.get("version") == 0 and MIGRATED_FROM in entry:
            return int(entry[MIGRATED_FROM])
    raise MigrationError(
        f"{store.root} holds both a Delta table and snapshot-format files, and the table was "
        "not made by the migration: a newer pipeline ran before `migrate-silver`. Move one "
        "of them aside and convert again."
    )


def migrate_dataset(lake: Lake, dataset: Dataset) -> Migrated | None:
    """Convert one dataset's snapshot-format silver (None: nothing of that format there)."""
    store = SilverStore(lake, SPECS[dataset])
    found = read_snapshot_silver(store)
    if found is None:
        return None
    version, rows = found
    done = _migrated_version(store)
    if done is None:
        write_deltalake(
            store.uri,
            rows,
            partition_by=list(store.spec.partition_by) or None,
            mode="error",
            configuration=TABLE_CONFIGURATION,
            storage_options=store.storage_options,
            writer_properties=store.writer_properties,
            commit_properties=CommitProperties(custom_metadata={MIGRATED_FROM: str(version)}),
        )
    elif done != version:
        raise MigrationError(
            f"{store.root}: the Delta table came from snapshot {done}, the folder's newest "
            f"snapshot is {version}"
        )
    converted = store.current()
    count = converted.read(columns=list(store.spec.key)).num_rows
    if count != rows.num_rows:
        raise MigrationError(
            f"{store.root}: snapshot {version} holds {rows.num_rows} rows, the Delta table "
            f"{count}; the old files are kept"
        )
    live = {
        f"{store.root}/{path}"
        for paths in converted.files_by_partition().values()
        for path in paths
    }
    old = [
        o.key
        for o in lake.list(f"{store.root}/")
        if not o.key.startswith(f"{store.root}/_delta_log/") and o.key not in live
    ]
    # Data files first, the snapshots last: until they go, a re-run finds the work unfinished.
    lake.delete(k for k in old if "/_snapshots/" not in k)
    lake.delete(k for k in old if "/_snapshots/" in k)
    log.info(
        "%s: snapshot %d → Delta, %d rows, %d old files removed", dataset, version, count, len(old)
    )
    return Migrated(str(dataset), version, count, len(old))


def migrate_lake(lake: Lake) -> list[Migrated]:
    """Convert every dataset still in the snapshot format; the others are left alone."""
    return [m for d in Dataset if (m := migrate_dataset(lake, d)) is not None]
