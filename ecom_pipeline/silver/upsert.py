"""The silver step for one dataset: validated files in, committed silver partitions out.

Writes each file's quarantined rows, merges the valid rows into silver under the duplicate rule,
and accounts for every row of every file. Orders get their region from the customers silver
holds; orders whose customer was unknown are moved once the customer has arrived.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecom_pipeline.contracts.datasets import SPECS, UNKNOWN_REGION, Dataset, DatasetSpec
from ecom_pipeline.contracts.validation import ValidatedFile
from ecom_pipeline.lake import layout
from ecom_pipeline.lake.intake import FileAccount
from ecom_pipeline.lake.storage import Lake
from ecom_pipeline.silver.store import ACCOUNTED, SilverStore


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
    if "customer_region" in orders.column_names:
        orders = orders.drop_columns(["customer_region"])
    index = pc.index_in(orders.column("customer_id"), value_set=customers.column("customer_id"))
    regions = pc.take(customers.column("customer_region"), index)
    regions = pc.fill_null(regions, UNKNOWN_REGION)
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

    tables = list(_valid_tables(validated))
    incoming = pa.concat_tables(tables) if tables else store.schema.empty_table()
    dates = _distinct_dates(spec, incoming)
    if dataset == Dataset.ORDERS:
        orders = incoming
        incoming = store.retrying(
            "orders' regions", lambda: _with_regions_and_moves(lake, store, orders)
        )
    result = store.merge(incoming, run_id)
    touched, rewritten, version = set(result.touched), set(result.rewritten), result.version
    if dataset == Dataset.ORDERS and store.retrying(
        "UNKNOWN orders", lambda: _holds_unknown_region(store)
    ):
        # A concurrent run may have committed a customer after our regions were read, and
        # moved the UNKNOWN orders it saw before ours were committed: move once more, now.
        moves = store.retrying(
            "UNKNOWN orders' regions",
            lambda: _with_regions_and_moves(lake, store, store.schema.empty_table()),
        )
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
        dates=dates,
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
    """The files' valid rows, a batch at a time."""
    for item in validated:
        with item.valid.to_reader() as reader:
            for batch in reader:
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])


def _holds_unknown_region(orders_store: SilverStore) -> bool:
    """True when committed orders wait in an ``UNKNOWN`` region partition."""
    unknown = f"customer_region={UNKNOWN_REGION}"
    return any(p.endswith(unknown) for p in orders_store.current().partitions)


def _with_regions_and_moves(lake: Lake, orders_store: SilverStore, orders: pa.Table) -> pa.Table:
    """Orders with their region, plus committed UNKNOWN-region orders whose customer arrived."""
    customers = SilverStore(lake, SPECS[Dataset.CUSTOMERS]).read(
        columns=["customer_id", "customer_region"]
    )
    snapshot = orders_store.current()
    unknown = [p for p in snapshot.partitions if p.endswith(f"customer_region={UNKNOWN_REGION}")]
    schema = orders_store.schema
    moved = schema.empty_table()
    if unknown:
        moved = assign_regions(snapshot.read(partitions=unknown), customers)
        moved = moved.filter(pc.not_equal(moved.column("customer_region"), UNKNOWN_REGION))
    # Moved rows keep their lineage, so they tie with their committed selves and replace them;
    # they are not rows of this run's files, so they stay out of the files' accounting.
    parts = [
        assign_regions(orders, customers)
        .select(schema.names)
        .cast(schema)
        .append_column(ACCOUNTED, pa.array(np.ones(orders.num_rows, dtype=bool))),
        moved.select(schema.names)
        .cast(schema)
        .append_column(ACCOUNTED, pa.array(np.zeros(moved.num_rows, dtype=bool))),
    ]
    return pa.concat_tables(parts)


def _distinct_dates(spec: DatasetSpec, rows: pa.Table) -> dict[str, list[date]]:
    """The distinct values of each of the spec's date columns in ``rows``, sorted."""
    return {
        column.name: sorted(d for d in pc.unique(rows.column(column.name)).to_pylist() if d)
        for column in spec.columns
        if column.kind == "date"
    }
