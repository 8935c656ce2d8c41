"""The silver step for one dataset: validated files in, committed silver partitions out.

Writes each file's quarantined rows, merges the valid rows into silver under the duplicate rule,
and accounts for every row of every file. Orders get their region from the customers silver
holds; orders whose customer was unknown are moved once the customer has arrived.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import SPECS, UNKNOWN_REGION, Dataset, DatasetSpec
from ecom_pipeline.contracts.validation import ValidatedFile
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.failpoints import failpoint
from ecom_pipeline.lake.intake import FileAccount
from ecom_pipeline.lake.storage import Lake
from ecom_pipeline.silver.incoming import IncomingRows, with_accounted, working_schema
from ecom_pipeline.silver.store import MergeResult, SilverStore


@dataclass
class SilverOutcome:
    """What the silver step did for one dataset.

    Attributes:
        accounts: per input file, rows written and superseded (read and quarantined set too).
        touched: partitions the run's rows went to or came from.
        rewritten: partitions whose content the commit changed.
        version: Delta table version after the step.
        compacted: partitions compacted after the merge (too many small files).
        dates: per date column of the dataset, the distinct values the run's valid rows carry
            (what changed, for the layers built on silver: see ``gold.plan``).
    """

    accounts: list[FileAccount]
    touched: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    version: int = 0
    compacted: list[str] = field(default_factory=list)
    dates: dict[str, list[date]] = field(default_factory=dict)


def write_quarantine(lake: Lake, dataset: str, day: date, validated: ValidatedFile) -> str | None:
    """Write the quarantined rows of one input file; re-running the file replaces them."""
    if validated.quarantine.num_rows == 0:
        return None
    key = layout.quarantine_rows_key(dataset, day, validated.source)
    lake.write_parquet(key, validated.quarantine)
    return key


def assign_regions(orders: pa.Table, customers: pa.Table) -> pa.Table:
    """Orders with ``customer_region`` from their customer, ``UNKNOWN`` when not yet known.

    Args:
        orders: order rows (without ``customer_region`` or with a stale one).
        customers: ``customer_id`` and ``customer_region`` of every known customer.
    """
    index = pc.index_in(orders.column("customer_id"), value_set=customers.column("customer_id"))
    return with_regions(orders, customers, index)


def with_regions(orders: pa.Table, customers: pa.Table, index: pa.Array) -> pa.Table:
    """Orders with ``customer_region`` taken from ``customers`` at ``index`` (one position per
    order, null when its customer is not known: ``UNKNOWN``)."""
    if "customer_region" in orders.column_names:
        orders = orders.drop_columns(["customer_region"])
    regions = pc.fill_null(pc.take(customers.column("customer_region"), index), UNKNOWN_REGION)
    return orders.append_column("customer_region", regions)


def merge_into_silver(
    lake: Lake,
    dataset: Dataset,
    validated: list[ValidatedFile],
    accounts: list[FileAccount],
    *,
    day: date,
    run_id: str,
) -> SilverOutcome:
    """Quarantine bad rows, upsert valid rows, and account for each file's rows.

    The upsert is one Delta merge (one commit); the partitions it touched are then compacted
    if they hold many small files (see `SilverStore.compact`).

    Args:
        lake: the lake.
        dataset: the dataset of every file in ``validated``.
        validated: the day's validated files of this dataset (valid rows in memory or staged).
        accounts: one account per validated file, same order (returned completed, in the
            outcome; these are left as they are).
        day: the run's day (names the quarantine folder).
        run_id: lineage and commit attribution.
    """
    spec = SPECS[dataset]
    store = SilverStore(lake, spec)
    for item in validated:
        write_quarantine(lake, dataset, day, item)

    regions_seen = None
    if dataset == Dataset.ORDERS:
        incoming, regions_seen = store.retrying(
            "orders' regions", lambda: _orders_with_regions(lake, validated)
        )
        failpoint("silver:orders:regions-read")
    else:
        incoming = _valid_rows(store, validated)
    result = store.merge(incoming, run_id)
    touched, rewritten, version = set(result.touched), set(result.rewritten), result.version
    if (
        regions_seen is not None
        and not store.retrying("regions settled", lambda: _settled(lake, regions_seen, result))
        and store.retrying("UNKNOWN orders", lambda: _holds_unknown_region(store))
    ):
        # A concurrent run may have committed a customer after our regions were read, and
        # moved the UNKNOWN orders it saw before ours were committed: move once more, now.
        moves, _ = store.retrying("UNKNOWN orders' regions", lambda: _orders_with_regions(lake, []))
        settled = store.merge(moves, run_id)
        touched.update(settled.touched)
        rewritten.update(settled.rewritten)
        version = max(version, settled.version)
    compacted = store.retrying(
        f"compact {dataset.value}", lambda: store.compact(sorted(rewritten), run_id)
    )
    return SilverOutcome(
        [
            _accounted(account, item, result.written_by_source.get(item.source, 0))
            for item, account in zip(validated, accounts, strict=True)
        ],
        touched=sorted(touched),
        rewritten=sorted(rewritten),
        version=version,
        compacted=compacted,
        dates=_distinct_dates(spec, validated),
    )


def _accounted(account: FileAccount, item: ValidatedFile, written: int) -> FileAccount:
    """The file's account with what became of its rows: read, quarantined, written, superseded."""
    return replace(
        account,
        rows_read=item.rows_read,
        rows_quarantined=item.quarantine.num_rows,
        dropped_columns=item.dropped_columns,
        rows_written=written,
        rows_superseded=item.valid.num_rows - written,
    )


def _valid_tables(validated: list[ValidatedFile]) -> Iterator[pa.Table]:
    """The files' valid rows, a batch at a time (read from scratch as they are asked for)."""
    for item in validated:
        with item.valid.to_reader() as reader:
            for batch in reader:
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])


def _valid_rows(store: SilverStore, validated: list[ValidatedFile]) -> IncomingRows:
    """The files' valid rows as a merge's incoming rows (partition columns are source columns)."""
    schema = working_schema(store.schema)
    return IncomingRows(
        schema,
        lambda: (
            with_accounted(table, True).select(schema.names).cast(schema)
            for table in _valid_tables(validated)
        ),
    )


def _holds_unknown_region(orders_store: SilverStore) -> bool:
    """True when committed orders wait in an ``UNKNOWN`` region partition."""
    unknown = f"customer_region={UNKNOWN_REGION}"
    return any(p.endswith(unknown) for p in orders_store.current().partitions)


@dataclass(frozen=True)
class RegionsSeen:
    """The table versions orders' regions were decided on."""

    orders: int
    customers: int


def _settled(lake: Lake, seen: RegionsSeen, result: MergeResult) -> bool:
    """True when no other run can have committed a customer or an ``UNKNOWN`` order the
    regions did not see: the merge committed right onto the orders version they were read
    from, and customers are still at theirs. (Then every ``UNKNOWN`` order's customer is still
    unknown, and the second look for moves, a read of all customers, is not needed.)"""
    ours_next = result.read_version == seen.orders and result.version == seen.orders + 1
    customers = SilverStore(lake, SPECS[Dataset.CUSTOMERS])
    return ours_next and customers.current().version == seen.customers


def _orders_with_regions(
    lake: Lake, validated: list[ValidatedFile]
) -> tuple[IncomingRows, RegionsSeen]:
    """The files' valid orders with their region, then the committed ``UNKNOWN``-region orders
    whose customer has arrived (moved: not rows of this run's files, so not accounted); and
    the versions of orders and customers read.

    The customers and the moved orders are read once, here; the valid orders stream from
    scratch each time the rows are read."""
    orders_store = SilverStore(lake, SPECS[Dataset.ORDERS])
    customers_read = SilverStore(lake, SPECS[Dataset.CUSTOMERS]).current()
    snapshot = orders_store.current()
    schema = working_schema(orders_store.schema)
    unknown = [p for p in snapshot.partitions if p.endswith(f"customer_region={UNKNOWN_REGION}")]
    waiting = snapshot.read(partitions=unknown) if unknown else schema.empty_table()

    # Each order's customer is looked up once for every reading: a lookup builds a hash table,
    # and a 10 M-order day has over a hundred staged blocks, read twice. Dictionary-encoded,
    # the day's customer ids take new buffers (a column of a staged block would keep the whole
    # block alive) and are looked up once per distinct id.
    encoded = [pc.dictionary_encode(t.column("customer_id")) for t in _valid_tables(validated)]
    chunks = [c for chunked in encoded for c in chunked.chunks]
    ids = (
        pa.chunked_array(chunks).combine_chunks()
        if chunks
        else pa.array([], pa.dictionary(pa.int32(), pa.string()))
    )
    # Only the customers these orders name are kept: the hash table is built on the day's
    # distinct ids, not on every customer silver holds. (Filtered here rather than pushed
    # down: delta-rs's files may hold string_view statistics, which pyarrow's pruning cannot
    # compare with a string set.)
    wanted = pc.unique(
        pa.chunked_array(
            [ids.dictionary, *waiting.column("customer_id").chunks], ids.dictionary.type
        )
    )
    every_customer = customers_read.read(columns=["customer_id", "customer_region"])
    customers = every_customer.filter(
        pc.is_in(every_customer.column("customer_id"), value_set=wanted)
    )
    moved = schema.empty_table()
    if waiting.num_rows:
        found = assign_regions(waiting, customers)
        found = found.filter(pc.not_equal(found.column("customer_region"), UNKNOWN_REGION))
        # Moved rows keep their lineage, so they tie with their committed selves and replace
        # them.
        moved = with_accounted(found, False).select(schema.names).cast(schema)
    known = pc.index_in(ids.dictionary, value_set=customers.column("customer_id"))
    index = pc.take(known, ids.indices)

    def tables() -> Iterator[pa.Table]:
        start = 0
        for table in _valid_tables(validated):
            positions = index.slice(start, table.num_rows)
            start += table.num_rows
            orders = with_accounted(with_regions(table, customers, positions), True)
            yield orders.select(schema.names).cast(schema)
        yield moved

    return IncomingRows(schema, tables), RegionsSeen(snapshot.version, customers_read.version)


def _distinct_dates(spec: DatasetSpec, validated: list[ValidatedFile]) -> dict[str, list[date]]:
    """The distinct values of each of the spec's date columns in the files' valid rows."""
    names = [column.name for column in spec.columns if column.kind == "date"]
    found: dict[str, set[date]] = {name: set() for name in names}
    for table in _valid_tables(validated):
        for name in names:
            found[name].update(d for d in pc.unique(table.column(name)).to_pylist() if d)
    return {name: sorted(values) for name, values in found.items()}
