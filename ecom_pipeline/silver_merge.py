"""The silver upsert in bounded memory: any number of incoming rows, a few batches in memory.

The incoming rows are read in passes (they wait on local disk, see ``ecom_pipeline.staging``):

1. *Count*: rows per target partition, and a sample of the keys.
2. *Route*: when there are more than ``batch_rows`` rows, the sample's quantiles cut the key
   space into ranges of about ``batch_rows`` incoming rows each, and every row goes to its
   range's scratch file. All versions of a key land in the same range, so the duplicate rule
   can be applied one range at a time, exactly.
3. *Merge each range*: the existing versions of its keys are looked up in the committed files
   whose key range may hold them (key and precedence columns only), the duplicate rule picks
   one winner per key, the existing rows that lost are noted for removal, and the incoming
   winners go to their partition.
4. *Rewrite partitions*: a partition that stays under ``batch_rows`` rows is rewritten as one
   sorted file (unchanged content: left alone). A larger one keeps its untouched files, has the
   files that lost rows rewritten without them, and gains new sorted files of about
   ``batch_rows`` rows each with disjoint key ranges.

The caller commits the changed partitions in one snapshot (see ``ecom_pipeline.silver_store``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.datasets import INGESTED_AT, RUN_ID, SOURCE_FILE
from ecom_pipeline.dedup import precedence_columns, winners_mask
from ecom_pipeline.partitioning import combined_key, partition_column, split_by_partition
from ecom_pipeline.staging import scratch_folder

if TYPE_CHECKING:
    from ecom_pipeline.silver_store import DataFile, SilverStore, Snapshot

#: The incoming rows, readable more than once: each call starts a new pass over them.
Incoming = Callable[[], Iterator[pa.Table]]
#: Working column: True for rows that count in the files' accounting (False: rows moved
#: between partitions by the pipeline itself).
ACCOUNTED = "__accounted"
#: Working column: the row's partition path, computed once when the row is routed.
PARTITION = "__partition"
#: One key in this many goes into the sample the key ranges are cut from (fewer when ranges
#: are small, so that every range still gets about 64 sampled keys or more).
SAMPLE_STRIDE = 64
#: Ranges are cut a little smaller than ``batch_rows`` so that an uneven sample stays under.
RANGE_HEADROOM = 1.25
#: Lineage that may differ between two writes of the same rows without changing the data.
VOLATILE_COLUMNS = (INGESTED_AT, RUN_ID)


@dataclass
class MergeResult:
    """What one merge did.

    Attributes:
        written_by_source: per source file, its incoming rows that survived (accounted rows).
        touched: partitions the incoming rows belong to or took rows from (gold follows them).
        rewritten: partitions whose content changed.
        version: the snapshot version after the merge.
        files_written: keys of the data files this merge committed.
        ranges: how many key ranges the incoming rows were merged in.
    """

    written_by_source: dict[str, int]
    touched: list[str]
    rewritten: list[str]
    version: int
    files_written: list[str] = field(default_factory=list)
    ranges: int = 1


@dataclass
class _Plan:
    rows: int = 0
    rows_by_partition: dict[str, int] = field(default_factory=dict)
    boundaries: list[str] = field(default_factory=list)


class BoundedMerge:
    """One attempt to merge incoming rows onto one snapshot (see the module docstring)."""

    def __init__(self, store: SilverStore, base: Snapshot, run_id: str, batch_rows: int) -> None:
        self.store, self.spec, self.base = store, store.spec, base
        self.run_id, self.batch_rows = run_id, batch_rows
        self.working = store.schema.append(pa.field(ACCOUNTED, pa.bool_())).append(
            pa.field(PARTITION, pa.string())
        )
        self.key_schema = pa.schema(
            [store.schema.field(n) for n in (*self.spec.key, *precedence_columns(self.spec))]
        )
        self.written_by_source: dict[str, int] = {}
        self.touched: set[str] = set()
        self.removed: dict[str, list[pa.Array]] = {}
        self.new_files: dict[str, list[DataFile]] = {}
        self.pending: dict[str, int] = {}

    def run(
        self, incoming: Incoming, scratch_dir: str | None
    ) -> tuple[dict[str, tuple[DataFile, ...]], int]:
        """The changed partitions' new file lists, and the number of key ranges used."""
        plan = self._plan(incoming)
        large = {
            name
            for name in {*plan.rows_by_partition, *self.base.partitions}
            if plan.rows_by_partition.get(name, 0) + self._committed_rows(name) > self.batch_rows
        }
        with scratch_folder(scratch_dir, "ecom-merge-") as folder:
            scratch = _Scratch(folder)
            for rows in self._ranges(incoming, plan, scratch):
                self._merge_range(rows, large, scratch)
            for partition in sorted(self.pending):
                self._flush(partition, scratch)
            changes = {}
            for partition in sorted(self.touched):
                if partition in large:
                    files = self._rewrite_large(partition)
                else:
                    files = self._rewrite_small(partition, scratch.read(f"partition-{partition}"))
                if files is not None:
                    changes[partition] = files
        return changes, len(plan.boundaries) + 1

    def _committed_rows(self, partition: str) -> int:
        return sum(f.rows for f in self.base.partitions.get(partition, ()))

    # -- passes 1 and 2 -------------------------------------------------------------------
    def _plan(self, incoming: Incoming) -> _Plan:
        plan = _Plan()
        samples = []
        stride = max(1, min(SAMPLE_STRIDE, self.batch_rows // 64))
        for table in incoming():
            plan.rows += table.num_rows
            counts = pc.value_counts(partition_column(table, self.spec))
            for item in counts.to_pylist():
                name = item["values"]
                plan.rows_by_partition[name] = plan.rows_by_partition.get(name, 0) + item["counts"]
            keys = combined_key(table, self.spec)
            samples.append(keys.take(pa.array(np.arange(0, len(keys), stride))))
        if plan.rows > self.batch_rows and samples:
            sample = pa.concat_arrays(samples)
            sample = sample.take(pc.sort_indices(sample)).to_pylist()
            count = math.ceil(plan.rows * RANGE_HEADROOM / self.batch_rows)
            cuts = {sample[len(sample) * i // count] for i in range(1, count)}
            plan.boundaries = sorted(cuts)
        return plan

    def _ranges(self, incoming: Incoming, plan: _Plan, scratch: _Scratch) -> Iterator[pa.Table]:
        """The incoming rows (working schema), one key range at a time."""
        if not plan.boundaries:
            tables = [self._working(t) for t in incoming()]
            yield pa.concat_tables(tables) if tables else self.working.empty_table()
            return
        for table in incoming():
            keys = combined_key(table, self.spec)
            ranges = np.zeros(len(keys), dtype=np.int32)
            for boundary in plan.boundaries:
                ranges += pc.greater_equal(keys, boundary).to_numpy(zero_copy_only=False)
            working = self._working(table)
            for number in np.unique(ranges):
                rows = working.filter(pa.array(ranges == number))
                scratch.append(f"range-{number:05d}", rows)
        for number in range(len(plan.boundaries) + 1):
            yield scratch.read(f"range-{number:05d}") or self.working.empty_table()

    def _working(self, table: pa.Table) -> pa.Table:
        if ACCOUNTED not in table.column_names:
            table = table.append_column(ACCOUNTED, pa.array(np.ones(table.num_rows, dtype=bool)))
        table = table.append_column(PARTITION, partition_column(table, self.spec))
        return table.select(self.working.names).cast(self.working)

    # -- pass 3 ---------------------------------------------------------------------------
    def _merge_range(self, rows: pa.Table, large: set[str], scratch: _Scratch) -> None:
        if rows.num_rows == 0:
            return
        keys = combined_key(rows, self.spec)
        sorted_keys = keys.take(pc.sort_indices(keys)).to_numpy(zero_copy_only=False)
        existing, existing_paths = self._existing_versions(sorted_keys, keys)

        # Existing rows first: on a full tie the incoming row (a re-delivery) wins.
        versions = pa.concat_tables([existing, rows.select(self.key_schema.names)])
        won = winners_mask(versions, self.spec).to_numpy(zero_copy_only=False)
        existing_won, incoming_won = won[: existing.num_rows], won[existing.num_rows :]

        if existing.num_rows:
            self.touched.update(pc.unique(existing_paths).to_pylist())
            lost = pa.array(~existing_won)
            lost_keys = combined_key(existing.filter(lost), self.spec)
            for partition, part in split_by_partition(
                pa.table({"key": lost_keys}), existing_paths.filter(lost)
            ):
                self.removed.setdefault(partition, []).append(part.column("key").combine_chunks())

        winners = rows.filter(pa.array(incoming_won))
        counted = winners.filter(winners.column(ACCOUNTED))
        for item in pc.value_counts(counted.column(SOURCE_FILE)).to_pylist():
            source = item["values"]
            self.written_by_source[source] = self.written_by_source.get(source, 0) + item["counts"]
        self.touched.update(pc.unique(rows.column(PARTITION)).to_pylist())
        paths = winners.column(PARTITION)
        winners = winners.drop_columns([ACCOUNTED, PARTITION])
        for partition, part in split_by_partition(winners, paths):
            if partition in large:
                # Ranges come in key order: a partition's sorted parts, appended, stay sorted.
                scratch.append(f"large-{partition}", self.store._sorted(part))
                self.pending[partition] = self.pending.get(partition, 0) + part.num_rows
                if self.pending[partition] >= self.batch_rows:
                    self._flush(partition, scratch)
            else:
                scratch.append(f"partition-{partition}", part)

    def _flush(self, partition: str, scratch: _Scratch) -> None:
        """Write a large partition's pending winners as one new file."""
        rows = scratch.read(f"large-{partition}")
        self.pending[partition] = 0
        if rows is not None and rows.num_rows:
            data_file = self.store._write_file(partition, rows, self.run_id)
            self.new_files.setdefault(partition, []).append(data_file)

    def _existing_versions(
        self, sorted_keys: np.ndarray, keys: pa.Array
    ) -> tuple[pa.Table, pa.Array]:
        """Committed versions of these keys (key and precedence columns), with their partition."""
        parts, paths = [], []
        for data_file in self.base.files():
            if not data_file.may_hold_any(sorted_keys):
                continue
            table = self.store.lake.read_parquet([data_file.key], columns=self.key_schema.names)
            table = table.cast(self.key_schema)
            matched = table.filter(pc.is_in(combined_key(table, self.spec), value_set=keys))
            if matched.num_rows:
                parts.append(matched)
                paths.append(pa.array([data_file.partition] * matched.num_rows, pa.string()))
        if not parts:
            return self.key_schema.empty_table(), pa.array([], pa.string())
        return pa.concat_tables(parts), pa.concat_arrays(paths)

    # -- pass 4 ---------------------------------------------------------------------------
    def _removed_keys(self, partition: str) -> pa.Array:
        parts = self.removed.get(partition, [])
        return pa.concat_arrays(parts) if parts else pa.array([], pa.string())

    def _rewrite_small(
        self, partition: str, new_rows: pa.Table | None
    ) -> tuple[DataFile, ...] | None:
        """One sorted file for the whole partition; None when its content did not change."""
        store = self.store
        old_files = self.base.files([partition])
        old = store.read_files(old_files)
        removed = self._removed_keys(partition)
        kept = old.filter(pc.invert(pc.is_in(combined_key(old, self.spec), value_set=removed)))
        parts = [kept] if new_rows is None else [kept, new_rows.cast(store.schema)]
        new = store._sorted(pa.concat_tables(parts))
        if _same_rows(store, old, new):
            return None
        return (store._write_file(partition, new, self.run_id),) if new.num_rows else ()

    def _rewrite_large(self, partition: str) -> tuple[DataFile, ...] | None:
        """Untouched files kept, files that lost rows rewritten, new range files added."""
        store = self.store
        removed = self._removed_keys(partition)
        removed_sorted = np.sort(removed.to_numpy(zero_copy_only=False))
        files: list[DataFile] = []
        changed = False
        for data_file in self.base.files([partition]):
            if not len(removed_sorted) or not data_file.may_hold_any(removed_sorted):
                files.append(data_file)
                continue
            rows = store.read_files([data_file])
            kept = rows.filter(
                pc.invert(pc.is_in(combined_key(rows, self.spec), value_set=removed))
            )
            if kept.num_rows == rows.num_rows:
                files.append(data_file)
                continue
            changed = True
            if kept.num_rows:
                files.append(store._write_file(partition, kept, self.run_id))
        new_files = self.new_files.get(partition, [])
        if not changed and not new_files:
            return None
        return (*files, *new_files)


def _same_rows(store: SilverStore, old: pa.Table, new: pa.Table) -> bool:
    if old.num_rows != new.num_rows:
        return False
    stable = [n for n in store.schema.names if n not in VOLATILE_COLUMNS]
    return store._sorted(old).select(stable).equals(new.select(stable))


class _Scratch:
    """Named append-only Arrow IPC files in the merge's temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writers: dict[str, tuple[pa.NativeFile, pa.ipc.RecordBatchStreamWriter]] = {}

    def _path(self, name: str) -> Path:
        return self.folder / (name.replace("/", "__") + ".arrows")

    def append(self, name: str, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        if name not in self.writers:
            sink = pa.OSFile(str(self._path(name)), "wb")
            self.writers[name] = (sink, pa.ipc.new_stream(sink, rows.schema))
        self.writers[name][1].write_table(rows)

    def read(self, name: str) -> pa.Table | None:
        """Everything appended under ``name`` (None if nothing was)."""
        if name not in self.writers:
            return None
        sink, writer = self.writers.pop(name)
        writer.close()
        sink.close()
        with pa.ipc.open_stream(pa.OSFile(str(self._path(name)))) as reader:
            return reader.read_all()
