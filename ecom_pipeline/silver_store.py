"""The silver layer: partitioned Parquet with upsert by key and atomic snapshot commits (SPEC §4).

Commit protocol. Data files are immutable and uniquely named; a dataset's committed state is
the newest *snapshot*, a small JSON object ``processed/{dataset}/_snapshots/{version}.json``
listing every live data file per partition. A writer reads the newest snapshot N, writes the
new files of the partitions it changes, and commits by creating snapshot N+1 with a
create-if-absent write (``If-None-Match: *`` on S3, an exclusive link locally). Whatever
instant a writer dies at, readers that go through the newest snapshot see the dataset as before
the commit or as after it, never a half-written, missing or doubled partition; files of a
commit that never happened are invisible and the retention flow removes them. Two writers that
start from the same snapshot cannot both commit N+1: the loser re-reads and merges again on top
of the winner's rows, so neither loses the other's.

Reading committed data elsewhere: ``ecom-pipeline silver-files DATASET`` prints the committed
files; DuckDB reads them with ``read_parquet([...], hive_partitioning = false)`` (the partition
columns are stored in the files too).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.adapters.lake import Lake, json_bytes, unique_name
from ecom_pipeline.datasets import DatasetSpec, silver_schema
from ecom_pipeline.errors import CommitConflictError
from ecom_pipeline.partitioning import combined_key
from ecom_pipeline.silver_merge import BoundedMerge, Incoming, MergeResult

log = logging.getLogger(__name__)

SNAPSHOT_DIGITS = 10
MAX_COMMIT_ATTEMPTS = 12
#: Waits between attempts grow from 20 ms and are randomised so rivals stop colliding.
BACKOFF_BASE_SECONDS = 0.02
#: Rows merged at a time unless the caller says otherwise (``ECOM_MERGE_BATCH_ROWS``).
DEFAULT_MERGE_BATCH_ROWS = 1_000_000


@dataclass(frozen=True)
class DataFile:
    """One immutable Parquet file of a partition, with the key range it holds."""

    key: str
    partition: str
    rows: int
    size: int
    min_key: str
    max_key: str

    def may_hold_any(self, sorted_keys: np.ndarray) -> bool:
        """Whether any of these keys (sorted) falls in the file's key range."""
        position = int(np.searchsorted(sorted_keys, self.min_key))
        return position < len(sorted_keys) and sorted_keys[position] <= self.max_key


@dataclass(frozen=True)
class Snapshot:
    """A committed state of one dataset: every live file, by partition."""

    dataset: str
    version: int
    partitions: dict[str, tuple[DataFile, ...]]
    run_id: str | None = None
    committed_at: str | None = None

    def files(self, partitions: Iterable[str] | None = None) -> list[DataFile]:
        names = self.partitions.keys() if partitions is None else partitions
        return [f for name in names for f in self.partitions.get(name, ())]

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "run_id": self.run_id,
            "committed_at": self.committed_at,
            "partitions": {
                name: [vars(f) for f in files] for name, files in sorted(self.partitions.items())
            },
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Snapshot:
        return cls(
            dataset=document["dataset"],
            version=int(document["version"]),
            run_id=document.get("run_id"),
            committed_at=document.get("committed_at"),
            partitions={
                name: tuple(DataFile(**f) for f in files)
                for name, files in document["partitions"].items()
            },
        )


class SilverStore:
    """One dataset's silver table on the lake."""

    def __init__(self, lake: Lake, spec: DatasetSpec) -> None:
        self.lake = lake
        self.spec = spec
        self.schema = silver_schema(spec)
        self.root = f"processed/{spec.name}"

    # -- snapshots ------------------------------------------------------------------------
    def _snapshot_key(self, version: int) -> str:
        return f"{self.root}/_snapshots/{version:0{SNAPSHOT_DIGITS}d}.json"

    def snapshot_versions(self) -> list[int]:
        prefix = f"{self.root}/_snapshots/"
        return sorted(
            int(o.key[len(prefix) :].removesuffix(".json"))
            for o in self.lake.list(prefix)
            if o.key.endswith(".json")
        )

    def current(self) -> Snapshot:
        """The newest committed snapshot (version 0, empty, before the first commit)."""
        versions = self.snapshot_versions()
        if not versions:
            return Snapshot(dataset=str(self.spec.name), version=0, partitions={})
        return Snapshot.from_json(self.lake.read_json(self._snapshot_key(versions[-1])))

    def _commit(self, base: Snapshot, changes: dict[str, tuple[DataFile, ...]], run_id: str) -> int:
        partitions = dict(base.partitions)
        for name, files in changes.items():
            if files:
                partitions[name] = files
            else:
                partitions.pop(name, None)
        snapshot = Snapshot(
            dataset=str(self.spec.name),
            version=base.version + 1,
            partitions=partitions,
            run_id=run_id,
            committed_at=datetime.now(UTC).isoformat(),
        )
        if not self.lake.put_if_absent(
            self._snapshot_key(snapshot.version), json_bytes(snapshot.to_json())
        ):
            raise CommitConflictError(
                f"{self.spec.name}: snapshot {snapshot.version} was committed by another writer"
            )
        return snapshot.version

    # -- reading ------------------------------------------------------------------------
    def read(
        self,
        partitions: Iterable[str] | None = None,
        columns: list[str] | None = None,
        snapshot: Snapshot | None = None,
    ) -> pa.Table:
        """Committed rows of the given partitions (all when None), in the silver schema."""
        snapshot = snapshot or self.current()
        return self.read_files(snapshot.files(partitions), columns)

    def read_files(self, files: list[DataFile], columns: list[str] | None = None) -> pa.Table:
        """The rows of these committed files, in the silver schema (or these of its columns)."""
        schema = (
            self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        )
        if not files:
            return schema.empty_table()
        return self.lake.read_parquet([f.key for f in files], columns=columns).cast(schema)

    def committed_uris(self) -> list[str]:
        return [self.lake.uri(f.key) for f in self.current().files()]

    # -- writing ------------------------------------------------------------------------
    def merge(
        self,
        incoming: pa.Table | Incoming,
        run_id: str,
        *,
        batch_rows: int = DEFAULT_MERGE_BATCH_ROWS,
        scratch_dir: str | None = None,
    ) -> MergeResult:
        """Upsert rows by key under the duplicate rule and commit the changed partitions.

        Args:
            incoming: rows in the silver schema (partition columns filled in), as a table or
                as a function that yields them in tables on every call (read more than once).
            run_id: recorded in the snapshot and in the new files' names.
            batch_rows: rows merged at a time, and the largest file a large partition gets
                (see ``ecom_pipeline.silver_merge``): the memory bound.
            scratch_dir: parent of the merge's temporary folder (system default when None).

        Returns:
            Rows written per source file, which partitions were touched and rewritten.

        Raises:
            CommitConflictError: other writers kept committing first, ``MAX_COMMIT_ATTEMPTS``
                times in a row.
        """
        source: Incoming = (
            (lambda: iter([incoming])) if isinstance(incoming, pa.Table) else incoming
        )
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            base = self.current()
            merge = BoundedMerge(self, base, run_id, batch_rows)
            changes, ranges = merge.run(source, scratch_dir)
            touched = sorted(merge.touched)
            if not changes:
                return MergeResult(
                    merge.written_by_source, touched, [], base.version, ranges=ranges
                )
            try:
                version = self._commit(base, changes, run_id)
            except CommitConflictError:
                log.info("%s: commit conflict (attempt %d), merging again", self.spec.name, attempt)
                _back_off(attempt)
                continue
            written = [f.key for files in changes.values() for f in files]
            log.info(
                "%s: snapshot %d commits %d partition(s)", self.spec.name, version, len(changes)
            )
            return MergeResult(
                merge.written_by_source, touched, sorted(changes), version, written, ranges
            )
        raise CommitConflictError(
            f"{self.spec.name}: gave up after {MAX_COMMIT_ATTEMPTS} commit conflicts in a row"
        )

    def replace_partitions(self, changes: dict[str, pa.Table], run_id: str) -> int:
        """Commit new content for whole partitions (empty table: drop it). Used by retention."""
        for _attempt in range(MAX_COMMIT_ATTEMPTS):
            base = self.current()
            files: dict[str, tuple[DataFile, ...]] = {
                name: (self._write_file(name, self._sorted(rows), run_id),) if rows.num_rows else ()
                for name, rows in changes.items()
            }
            try:
                return self._commit(base, files, run_id)
            except CommitConflictError:
                _back_off(_attempt + 1)
        raise CommitConflictError(f"{self.spec.name}: gave up replacing partitions")

    def _sorted(self, table: pa.Table) -> pa.Table:
        return table.sort_by([(name, "ascending") for name in self.spec.key])

    def _write_file(self, partition: str, rows: pa.Table, run_id: str) -> DataFile:
        folder = f"{self.root}/{partition}" if partition else self.root
        key = f"{folder}/{unique_name(f'part-{run_id[:12]}', '.parquet')}"
        size = self.lake.write_parquet(key, rows)
        keys = combined_key(rows, self.spec)
        return DataFile(
            key=key,
            partition=partition,
            rows=rows.num_rows,
            size=size,
            min_key=str(pc.min(keys).as_py()),
            max_key=str(pc.max(keys).as_py()),
        )

    # -- housekeeping -------------------------------------------------------------------
    def vacuum(self, *, grace: timedelta, keep_snapshots: int = 20) -> list[str]:
        """Delete data files no snapshot of the last ``keep_snapshots`` references and that are
        older than ``grace`` (a reader may still hold an older snapshot), and older snapshots."""
        versions = self.snapshot_versions()
        kept_versions = versions[-keep_snapshots:]
        referenced: set[str] = set()
        for version in kept_versions:
            snapshot = Snapshot.from_json(self.lake.read_json(self._snapshot_key(version)))
            referenced.update(f.key for f in snapshot.files())
        cutoff = datetime.now(UTC) - grace
        doomed = [
            o.key
            for o in self.lake.list(f"{self.root}/")
            if o.key.endswith(".parquet") and o.key not in referenced and o.modified < cutoff
        ]
        doomed += [self._snapshot_key(v) for v in versions[:-keep_snapshots]]
        self.lake.delete(doomed)
        return doomed


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0, BACKOFF_BASE_SECONDS * 2 ** min(attempt, 6)))
