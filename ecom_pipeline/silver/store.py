"""The silver layer: one Delta Lake table per dataset under ``processed/{dataset}/`` (SPEC §4).

A day's upsert is one ``DeltaTable.merge`` (one commit) whose update predicate is the
duplicate rule of SPEC §3. Commits are put-if-absent writes of ``_delta_log/N.json`` (S3's
conditional put, no DynamoDB): a crash at any instant leaves the previous version in force, and
of two writers that read the same version one loses the commit, re-reads and merges again on
top of the other's rows.

Before the merge, the incoming rows are reduced to the ones that win, on their key, precedence
and partition columns alone (`IncomingRows` reads the day's rows from scratch twice and never
holds them whole): the batch is deduplicated (a key twice in a batch that is new to the table
would otherwise be inserted twice) and compared with the committed versions of its keys, looked
up in the files whose key statistics can hold them. That lookup gives the exact accounting (rows
written per source file), the partitions a run touches (including those a moved row leaves), and
a partition predicate that keeps the merge from scanning the whole table. When no key of the day
is in the table yet, the winners are appended instead (the same single commit, without the
merge's join); then the winners stream from scratch to the writer.

Any engine that reads Delta sees exactly the committed rows:
``DeltaTable(uri).to_pyarrow_dataset()`` (DuckDB can query it), ``polars.scan_delta(uri)``,
Spark, Athena through Glue.
"""

from __future__ import annotations

import bisect
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from ecom_pipeline.contracts.datasets import (
    INGESTED_AT,
    RUN_ID,
    SOURCE_FILE,
    SOURCE_LINE,
    DatasetSpec,
    silver_schema,
)
from ecom_pipeline.errors import (
    CommitConflictError,
    LegacySilverError,
    PipelineError,
    is_transient,
)
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.failpoints import failpoint
from ecom_pipeline.lake.storage import Lake
from ecom_pipeline.silver.dedup import precedence_columns, winners_mask
from ecom_pipeline.silver.incoming import ACCOUNTED, IncomingRows
from ecom_pipeline.silver.partitioning import (
    combined_key,
    parse_partition_path,
    partition_column,
    partitions_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_COMMIT_ATTEMPTS = 12
#: A merge is repeated this many times at most after a transient storage failure. delta-rs
#: reads many objects per merge and object_store never retries a body cut short, so one merge
#: often meets one on a faulty network; repeating it is safe (nothing was committed, or the
#: commit is there and the repeat finds its rows already equal).
MAX_TRANSIENT_RETRIES = 6
#: Waits between attempts grow from 50 ms and are randomised so rivals stop colliding.
BACKOFF_BASE_SECONDS = 0.05
#: Lineage that may differ between two writes of the same rows without changing the data: a
#: winner equal to the committed row but for these is not rewritten.
VOLATILE_COLUMNS = (INGESTED_AT, RUN_ID)
#: A partition a run touched is compacted once it holds this many files or more.
COMPACT_MIN_FILES = 8
#: Routine vacuums keep removed files this long, for readers and writers still on old versions.
VACUUM_RETENTION_HOURS = 7 * 24
#: String statistics longer than this may be truncated by the writer: not usable for pruning.
_STATS_TRUSTED_LENGTH = 32
TABLE_CONFIGURATION = {
    # Time travel reaches back this far; older log entries go at checkpoints.
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": "interval 7 days",
    "delta.checkpointInterval": "20",
}


def writer_properties(spec: DatasetSpec) -> WriterProperties:
    """How silver files are written: ZSTD, and no dictionary for the columns whose values are
    nearly all distinct (``Column.distinct`` and the source line). A writer tries a dictionary
    first and falls back once it outgrows its page: the try took about 40 % of the time to
    write customers, and made files bigger."""
    distinct = [c.name for c in spec.columns if c.distinct] + [SOURCE_LINE]
    return WriterProperties(
        compression="ZSTD",
        column_properties={name: ColumnProperties(dictionary_enabled=False) for name in distinct},
    )


#: Application transaction id of silver merges (see `SilverStore._merge_commit`).
MERGE_APP_ID = "ecom-pipeline-silver-merge"


@dataclass
class MergeResult:
    """What one merge did.

    Attributes:
        written_by_source: per source file, its incoming rows that survived (accounted rows).
        touched: partitions the incoming rows belong to or took rows from (gold follows them).
        rewritten: partitions whose content the commit changed.
        version: the table version after the merge (unchanged when nothing was written).
        read_version: the version the merge read, and committed onto when it wrote.
        metrics: delta-rs's merge metrics (empty when no merge ran).
    """

    written_by_source: dict[str, int]
    touched: list[str]
    rewritten: list[str]
    version: int
    read_version: int
    metrics: dict[str, Any] = field(default_factory=dict)


class SilverSnapshot:
    """One committed version of a silver table, read consistently however long it is used."""

    def __init__(self, store: SilverStore, table: DeltaTable | None) -> None:
        self.store = store
        self.table = table
        self.version = table.version() if table is not None else -1
        self._files: pa.Table | None = None

    def file_actions(self) -> pa.Table:
        """The version's data files: path, partition path (``partition``) and values, and
        statistics; read from the log once per snapshot."""
        if self._files is None:
            assert self.table is not None
            actions = pa.table(self.table.get_add_actions(flatten=True))
            paths = self.store.partition_paths(actions, prefix="partition.")
            self._files = actions.append_column("partition", paths)
        return self._files

    @property
    def partitions(self) -> list[str]:
        """Partition paths that hold rows (``""`` for an unpartitioned table with rows)."""
        if self.table is None:
            return []
        return sorted(set(self.files_by_partition()))

    def file_count(self, partition: str | None = None) -> int:
        """Data files of one partition (of the whole table when None)."""
        files = self.files_by_partition()
        if partition is not None:
            return len(files.get(partition, []))
        return sum(len(f) for f in files.values())

    def files_by_partition(self) -> dict[str, list[str]]:
        """Data file paths (relative to the table) by partition path."""
        if self.table is None:
            return {}
        actions = self.file_actions()
        result: dict[str, list[str]] = {}
        for path, name in zip(
            actions.column("path").to_pylist(), actions.column("partition").to_pylist(), strict=True
        ):
            result.setdefault(name, []).append(path)
        return result

    def dataset(
        self, partitions: Iterable[str] | None = None, files: Iterable[str] | None = None
    ) -> ds.Dataset:
        """The version as an Arrow dataset: every file, or only these partitions' files, or
        only these files (paths relative to the table, as the log names them).

        Built here from the log's add actions: delta-rs's ``to_pyarrow_dataset`` turns every
        file's statistics into an expression, at about 1 ms a file (0.15 s for a month of
        orders, several times a day), and nothing here prunes on them: reads filter after
        reading (see `SilverStore._existing_versions`).
        """
        assert self.table is not None
        filesystem = self.store.lake.arrow_filesystem(self.store.root)
        actions = self.file_actions()
        if partitions is not None:
            wanted = pa.array(sorted(set(partitions)), pa.string())
            actions = actions.filter(pc.is_in(actions.column("partition"), value_set=wanted))
        if files is not None:
            chosen = pa.array(sorted(set(files)), pa.string())
            actions = actions.filter(pc.is_in(actions.column("path"), value_set=chosen))
        if self.table.protocol().min_reader_version > 1:
            # Another writer upgraded the table (deletion vectors, column mapping): delta-rs
            # refuses what a plain Parquet reader would read wrong; its files, narrowed alike.
            whole = self.table.to_pyarrow_dataset(filesystem=filesystem)
            keep = set(actions.column("path").to_pylist())
            return ds.FileSystemDataset(
                [f for f in whole.get_fragments() if _relative(f.path, self.store.uri) in keep],
                whole.schema,
                whole.format,
                filesystem=whole.filesystem,
            )
        schema = pa.schema(self.table.schema().to_arrow())
        file_format = ds.ParquetFileFormat(
            default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True)
        )
        columns = self.store.spec.partition_by
        values = [actions.column(f"partition.{c}").to_pylist() for c in columns]
        fragments = [
            file_format.make_fragment(
                path,
                filesystem=filesystem,
                partition_expression=_partition_expression(
                    schema, dict(zip(columns, row, strict=True))
                ),
            )
            for path, *row in zip(actions.column("path").to_pylist(), *values, strict=True)
        ]
        return ds.FileSystemDataset(fragments, schema, file_format, filesystem)

    def read(
        self,
        partitions: Iterable[str] | None = None,
        columns: list[str] | None = None,
        filter: pc.Expression | None = None,
    ) -> pa.Table:
        """Committed rows of these partitions (all when None), in the silver schema (or these
        of its columns). Partitions are pruned from the log: other files are never opened."""
        schema, scanner = self._scanner(partitions, columns, filter)
        if scanner is None:
            return schema.empty_table()
        return scanner.to_table().select(schema.names).cast(schema)

    def reader(self, partitions: Iterable[str], columns: list[str]) -> pa.RecordBatchReader:
        """The rows `read` returns, streamed a record batch at a time in one scan."""
        schema, scanner = self._scanner(partitions, columns, None)
        if scanner is None:
            return pa.RecordBatchReader.from_batches(schema, [])
        return scanner.to_reader().cast(schema)

    def _scanner(
        self,
        partitions: Iterable[str] | None,
        columns: list[str] | None,
        filter: pc.Expression | None,
    ) -> tuple[pa.Schema, ds.Scanner | None]:
        """The schema of these columns, and a scan of the committed rows of these partitions
        (None when there are none)."""
        schema = self.store.schema
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        if self.table is None:
            return schema, None
        wanted = None if partitions is None else sorted(set(partitions))
        if wanted == []:
            return schema, None
        # The dataset holds exactly these partitions' files: only ``filter`` is left to apply.
        return schema, self.dataset(wanted).scanner(columns=schema.names, filter=filter)


class SilverStore:
    """One dataset's silver Delta table on the lake."""

    def __init__(self, lake: Lake, spec: DatasetSpec) -> None:
        self.lake = lake
        self.spec = spec
        self.schema = silver_schema(spec)
        self.root = layout.silver_root(spec.name)
        self.uri = lake.table_uri(self.root)
        self.storage_options = lake.delta_storage_options()
        self.writer_properties = writer_properties(spec)

    # -- opening --------------------------------------------------------------------------
    def _open(self, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            self._refuse_legacy()
            return None

    def _refuse_legacy(self) -> None:
        if self.lake.list(f"{self.root}/_snapshots/"):
            raise LegacySilverError(
                f"{self.root} is silver in the snapshot format of earlier versions, not a Delta "
                "table: convert it once with `ecom-pipeline migrate-silver`"
            )

    def _open_or_create(self) -> DeltaTable:
        table = self._open()
        if table is not None:
            return table
        try:
            return DeltaTable.create(
                self.uri,
                schema=self.schema,
                partition_by=list(self.spec.partition_by) or None,
                mode="ignore",
                configuration=TABLE_CONFIGURATION,
                storage_options=self.storage_options,
            )
        except CommitFailedError:  # another writer created it first
            table = self._open()
            assert table is not None
            return table

    def current(self, version: int | None = None) -> SilverSnapshot:
        """The newest committed version (or ``version``); an empty view before the first."""
        return SilverSnapshot(self, self._open(version))

    def read(
        self, partitions: Iterable[str] | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        """Committed rows of the newest version (see `SilverSnapshot.read`)."""
        return self.current().read(partitions, columns)

    # -- partitions -----------------------------------------------------------------------
    def partition_paths(self, table: pa.Table, prefix: str = "") -> pa.Array:
        """Each row's partition path, from its partition columns (named ``prefix + column``)."""
        if not self.spec.partition_by:
            return pa.array([""] * table.num_rows, pa.string())
        columns = {c: table.column(prefix + c) for c in self.spec.partition_by}
        return partition_column(pa.table(columns), self.spec)

    def _target_restriction(self, partitions: Iterable[str]) -> str:
        """SQL for the merge: the target rows of these partitions (values checked, quote-free)."""
        values: dict[str, set[str]] = {c: set() for c in self.spec.partition_by}
        for path in partitions:
            for column, value in parse_partition_path(path).items():
                values[column].add(value)
        terms = []
        for column, found in values.items():
            literal = (
                (lambda v: f"CAST('{v}' AS DATE)")
                if pa.types.is_date(self.schema.field(column).type)
                else (lambda v: f"'{v}'")
            )
            terms.append(f"t.{column} IN ({', '.join(literal(v) for v in sorted(found))})")
        return " AND ".join(terms)

    # -- writing --------------------------------------------------------------------------
    def merge(self, incoming: IncomingRows | pa.Table, run_id: str) -> MergeResult:
        """Upsert rows by key under the duplicate rule, in one commit.

        The incoming rows are read twice, never whole: their key, precedence and partition
        columns decide the winners and the accounting, then the winners stream to the writer.

        Args:
            incoming: rows in the silver schema (partition columns filled in), optionally with
                an ``ACCOUNTED`` column (False: the row is not a row of an input file); a table
                or `IncomingRows` staged on scratch disk.
            run_id: recorded in the commit's metadata.

        Returns:
            Rows written per source file, the partitions touched and rewritten, the version.

        Raises:
            CommitConflictError: other writers kept committing first, ``MAX_COMMIT_ATTEMPTS``
                times in a row.
        """
        day = self._contestants(incoming)
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            try:
                return self.retrying(
                    f"merge into {self.spec.name}",
                    lambda: self._merge_onto(self._open_or_create(), day, run_id),
                )
            except CommitFailedError as exc:
                log.info("%s: commit conflict (attempt %d): %s", self.spec.name, attempt, exc)
                _back_off(attempt)
        raise CommitConflictError(
            f"{self.spec.name}: gave up after {MAX_COMMIT_ATTEMPTS} commit conflicts in a row"
        )

    def retrying(self, what: str, operation: Callable[[], T]) -> T:
        """``operation()``, repeated up to ``MAX_TRANSIENT_RETRIES`` times after a transient
        storage failure (each repeat counted in ``lake.request_retries``). The operation must be
        safe to repeat: a read, or a merge (see ``MAX_TRANSIENT_RETRIES``)."""
        retries = 0
        while True:
            try:
                return operation()
            except Exception as exc:
                if retries >= MAX_TRANSIENT_RETRIES or not _storage_hiccup(exc):
                    raise
                retries += 1
                self.lake.record_retries()
                log.warning("%s: repeated after a storage failure: %s", what, exc)
                _back_off(retries)

    def _contestants(self, incoming: IncomingRows | pa.Table) -> _Contestants:
        """The incoming rows' key, precedence and partition columns (read once), reduced to
        the batch's own winners; partition values checked."""
        if isinstance(incoming, pa.Table):
            incoming = IncomingRows.from_table(incoming, self.schema)
        columns = [*self.spec.key, *precedence_columns(self.spec), *self.spec.partition_by]
        keys = incoming.columns([*columns, ACCOUNTED])
        partitions_of(keys, self.spec)  # refuses a value that cannot name a folder
        won = winners_mask(keys, self.spec).to_numpy(zero_copy_only=False)
        return _Contestants(incoming, _kept(keys, won), np.flatnonzero(won), len(won))

    def _merge_onto(self, table: DeltaTable, day: _Contestants, run_id: str) -> MergeResult:
        snapshot = SilverSnapshot(self, table)
        batch = day.keys
        existing = self._existing_versions(snapshot, batch)
        existing_lost, batch_won = self._contest(existing, batch)
        winners = _kept(batch, batch_won)

        counted = winners.select([SOURCE_FILE, ACCOUNTED]).filter(pc.field(ACCOUNTED))
        written = {
            item["values"]: item["counts"]
            for item in pc.value_counts(counted.column(SOURCE_FILE)).to_pylist()
        }
        touched = partitions_of(batch, self.spec) | partitions_of(existing, self.spec)
        rewritten = partitions_of(winners, self.spec) | partitions_of(
            existing.filter(pa.array(existing_lost)), self.spec
        )
        if winners.num_rows == 0:
            return MergeResult(written, sorted(touched), [], snapshot.version, snapshot.version)

        source = day.incoming.filtered(day.mask(batch_won), self.schema)
        commit = self._merge_commit(table, run_id)
        failpoint(f"silver:{self.spec.name}:before-merge")
        if existing.num_rows == 0:
            # No key of the batch is in the table: the merge would only insert. An append
            # writes the same rows in one commit without the merge's join (a day of new keys
            # costs about a third), and its application transaction conflicts the same way.
            write_deltalake(
                table,
                source,
                mode="append",
                writer_properties=self.writer_properties,
                commit_properties=commit,
            )
            metrics = {"num_target_rows_updated": 0, "num_target_rows_inserted": winners.num_rows}
        else:
            metrics = (
                table.merge(
                    source,
                    self._merge_predicate(touched),
                    source_alias="s",
                    target_alias="t",
                    writer_properties=self.writer_properties,
                    streamed_exec=True,
                    commit_properties=commit,
                )
                .when_matched_update_all(predicate=self._update_predicate())
                .when_not_matched_insert_all()
                .execute()
            )
        failpoint(f"silver:{self.spec.name}:after-merge")
        changed = metrics["num_target_rows_updated"] + metrics["num_target_rows_inserted"]
        log.info("%s: version %d, %s", self.spec.name, table.version(), metrics)
        return MergeResult(
            written,
            sorted(touched),
            sorted(rewritten) if changed else [],
            table.version(),
            snapshot.version,
            metrics,
        )

    def _contest(self, existing: pa.Table, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """The duplicate rule between committed versions and the batch (one row per key each):
        which existing rows lose, which batch rows win. Only keys on both sides are contested;
        a batch row whose key is new wins outright."""
        batch_won = np.ones(batch.num_rows, dtype=bool)
        if existing.num_rows == 0:
            return np.zeros(0, dtype=bool), batch_won
        contested = pc.is_in(
            combined_key(batch, self.spec), value_set=combined_key(existing, self.spec)
        ).to_numpy(zero_copy_only=False)
        positions = np.flatnonzero(contested)
        precedence = [*self.spec.key, *precedence_columns(self.spec)]
        # Existing rows first: on a full tie the incoming row (a re-delivery) wins.
        committed = existing.select(precedence)
        contenders = batch.select(precedence).take(positions).cast(committed.schema)
        versions = pa.concat_tables([committed, contenders])
        won = winners_mask(versions, self.spec).to_numpy(zero_copy_only=False)
        batch_won[positions] = won[existing.num_rows :]
        return ~won[: existing.num_rows], batch_won

    def _existing_versions(self, snapshot: SilverSnapshot, batch: pa.Table) -> pa.Table:
        """Committed versions of the batch's keys (key, precedence and partition columns).
        Only files whose key statistics may hold one of the keys are read."""
        columns = [*self.spec.key, *precedence_columns(self.spec), *self.spec.partition_by]
        empty = pa.schema([self.schema.field(c) for c in dict.fromkeys(columns)]).empty_table()
        if snapshot.table is None or batch.num_rows == 0:
            return empty
        candidates = self._candidate_files(snapshot, batch)
        if not candidates:
            return empty
        keys = combined_key(batch, self.spec)
        # Filtered here rather than pushed down: delta-rs's files may hold string_view columns,
        # which pyarrow's statistics pruning cannot compare with a string set.
        found = snapshot.dataset(files=candidates).to_table(columns=list(empty.schema.names))
        found = found.cast(empty.schema)
        found = found.filter(pc.is_in(combined_key(found, self.spec), value_set=keys))
        return found.cast(empty.schema)

    def _candidate_files(self, snapshot: SilverSnapshot, batch: pa.Table) -> list[str]:
        """The files whose min/max key statistics can hold one of the batch's keys."""
        actions = snapshot.file_actions()
        paths = actions.column("path").to_pylist()
        key = self.spec.key[0]
        if not paths or len(self.spec.key) > 1 or f"min.{key}" not in actions.column_names:
            return paths
        keys = pc.cast(batch.column(key), pa.string())
        sorted_keys = SortedStrings(pc.take(keys, pc.sort_indices(keys)))
        lows = actions.column(f"min.{key}").to_pylist()
        highs = actions.column(f"max.{key}").to_pylist()
        result = []
        for path, low, high in zip(paths, lows, highs, strict=True):
            if low is None or high is None or len(high) >= _STATS_TRUSTED_LENGTH:
                result.append(path)
                continue
            position = bisect.bisect_left(sorted_keys, low)
            if position < len(sorted_keys) and sorted_keys[position] <= high:
                result.append(path)
        return result

    def _merge_commit(self, table: DeltaTable, run_id: str) -> CommitProperties:
        """Every merge of the table carries the same application transaction id, so two merges
        that read the same version always conflict. Without it, delta-rs rebases a merge over a
        concurrent commit to other partitions, and a key both inserted into different
        partitions (a customer changing region, an order re-homed) would end up twice."""
        return CommitProperties(
            custom_metadata={"run_id": run_id},
            app_transactions=[Transaction(app_id=MERGE_APP_ID, version=table.version() + 1)],
        )

    def _merge_predicate(self, partitions: Iterable[str]) -> str:
        join = " AND ".join(f"t.{k} = s.{k}" for k in self.spec.key)
        restriction = self._target_restriction(partitions)
        return f"{join} AND {restriction}" if restriction else join

    def _update_predicate(self) -> str:
        """The incoming row wins (SPEC §3; a full tie goes to it) and differs in more than its
        volatile lineage."""
        columns = precedence_columns(self.spec)
        wins = f"s.{columns[-1]} >= t.{columns[-1]}"
        for name in reversed(columns[:-1]):
            wins = f"s.{name} > t.{name} OR (s.{name} = t.{name} AND ({wins}))"
        stable = [n for n in self.schema.names if n not in VOLATILE_COLUMNS]
        differs = " OR ".join(f"(s.{n} IS DISTINCT FROM t.{n})" for n in stable)
        return f"({wins}) AND ({differs})"

    # -- maintenance ----------------------------------------------------------------------
    def compact(self, partitions: Iterable[str], run_id: str) -> list[str]:
        """Compact those of these partitions that hold ``COMPACT_MIN_FILES`` files or more.

        Returns the partitions compacted. Each is one commit; a conflict with another writer
        re-reads the table and tries again."""
        done: list[str] = []
        table = self._open()  # one read of the log for all partitions; again after a conflict
        for partition in sorted(set(partitions)):
            for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
                if table is None:
                    return done
                if SilverSnapshot(self, table).file_count(partition) < COMPACT_MIN_FILES:
                    break
                filters = [(c, "=", v) for c, v in parse_partition_path(partition).items()] or None
                failpoint(f"silver:{self.spec.name}:before-compact")
                try:
                    table.optimize.compact(
                        partition_filters=filters,
                        writer_properties=self.writer_properties,
                        commit_properties=CommitProperties(custom_metadata={"run_id": run_id}),
                    )
                except CommitFailedError:
                    _back_off(attempt)
                    table = self._open()
                    continue
                failpoint(f"silver:{self.spec.name}:after-compact")
                done.append(partition)
                break
        return done

    def expire_before(self, column: str, cutoff: date, run_id: str) -> list[str]:
        """Delete the rows of the date partitions before ``cutoff`` (one commit); returns those
        partitions. Their files stay for time travel until `vacuum` removes them."""
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            table = self._open()
            if table is None:
                return []
            snapshot = SilverSnapshot(self, table)
            old = [
                p
                for p in snapshot.partitions
                if date.fromisoformat(parse_partition_path(p)[column]) < cutoff
            ]
            if not old:
                return []
            try:
                table.delete(
                    f"{column} < CAST('{cutoff.isoformat()}' AS DATE)",
                    commit_properties=CommitProperties(custom_metadata={"run_id": run_id}),
                )
            except CommitFailedError:
                _back_off(attempt)
                continue
            return old
        raise CommitConflictError(f"{self.spec.name}: gave up expiring partitions")

    def vacuum(self, retention_hours: int = VACUUM_RETENTION_HOURS) -> list[str]:
        """Remove files no version of the last ``retention_hours`` needs, checkpoint the log
        and drop log entries past ``delta.logRetentionDuration``; returns the files removed.

        ``retention_hours`` below the table's 7 days is allowed (tests, one-off cleanups), but
        never below what in-flight writers need: keep it at 24 or more in routine runs."""
        table = self._open()
        if table is None:
            return []
        removed = table.vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
        )
        table.create_checkpoint()
        table.cleanup_metadata()
        return list(removed)


@dataclass
class _Contestants:
    """A merge's incoming rows with what is known before the table is read: the key,
    precedence and partition columns of the rows that win within the batch (one per key), at
    these positions among all ``count`` incoming rows."""

    incoming: IncomingRows
    keys: pa.Table
    positions: np.ndarray
    count: int

    def mask(self, won: np.ndarray) -> np.ndarray:
        """Over all incoming rows: True for the batch winners that ``won`` (one flag per row
        of ``keys``) marks."""
        mask = np.zeros(self.count, dtype=bool)
        mask[self.positions[won]] = True
        return mask


class SortedStrings(Sequence[str]):
    """A sorted Arrow string array as a sequence `bisect` can search: only the ~20 values a
    search looks at become Python strings, not the million a day holds."""

    def __init__(self, values: pa.Array | pa.ChunkedArray) -> None:
        self.values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return self.values[index].to_pylist()
        return str(self.values[index].as_py())


def _kept(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """The rows where ``mask`` is True; the table itself, not a copy, when that is all of them
    (a day of new keys: saves a copy of the day in memory)."""
    return table if bool(mask.all()) else table.filter(pa.array(mask))


def _relative(path: str, root: str) -> str:
    """A fragment path relative to the table root (fragments carry the filesystem's paths)."""
    root = root.removeprefix("s3://").rstrip("/") + "/"
    return path.removeprefix("s3://").split(root, 1)[-1]


def _storage_hiccup(exc: Exception) -> bool:
    """A transient storage failure (`is_transient`) that is not one of ours: a `PipelineError`
    is the pipeline's verdict, and a conflict the caller counts apart."""
    return not isinstance(exc, PipelineError) and is_transient(exc)


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0, BACKOFF_BASE_SECONDS * 2 ** min(attempt, 5)))  # nosec B311: retry jitter, not security


def _partition_expression(schema: pa.Schema, values: dict[str, Any]) -> pc.Expression:
    """What every row of a file holds in its partition columns (``True`` when unpartitioned)."""
    expression = pc.scalar(True)
    for column, value in values.items():
        field = pc.field(column)
        term = (
            field.is_null()
            if value is None
            else field == pa.scalar(value, schema.field(column).type)
        )
        expression = expression & term
    return expression
