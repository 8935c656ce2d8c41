"""Two runs' silver steps interleaved at the worst instant, deterministically (issue 14).

The concurrent-run tests start real runs at once and compare with a sequential run, but which
interleaving they meet is left to the scheduler. Here the interleaving is forced: a second run
commits between the first run's reading of silver and its own commit.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.contracts.validation import FileValidation, RunContext, ValidatedFile
from ecom_pipeline.gold.plan import plan_gold
from ecom_pipeline.lake.failpoints import interleave
from ecom_pipeline.lake.storage import LocalLake
from ecom_pipeline.run.report import FileAccount
from ecom_pipeline.silver.store import SilverStore
from ecom_pipeline.silver.upsert import merge_into_silver

pytestmark = [pytest.mark.chaos]

DAY = date(2026, 11, 18)
NEXT = date(2026, 11, 19)
KEY = b"test-pii-key-0123456789abcdef"
CUSTOMERS = "customer_id,first_name,last_name,email,customer_region,signup_date,updated_at\n"
ORDERS = "order_id,customer_id,order_date,order_status,total_amount,updated_at\n"


def validated(dataset: Dataset, day: date, name: str, text: str) -> ValidatedFile:
    source = f"raw/{dataset}/dt={day}/{name}"
    validation = FileValidation(
        source,
        io.BytesIO(text.encode()),
        SPECS[dataset],
        file_day=day,
        pii_key=KEY,
        run=RunContext(run_id=f"run-{day}", ingested_at=datetime(2026, 11, 20, tzinfo=UTC)),
    )
    batches = list(validation.valid_batches())
    return validation.result(pa.concat_tables(batches))


def silver_step(lake: LocalLake, dataset: Dataset, day: date, files: list[ValidatedFile]):
    accounts = [FileAccount(f.source, dataset, "", 0) for f in files]
    return merge_into_silver(lake, dataset, files, accounts, day=day, run_id=f"run-{day}")


def test_a_customer_committed_while_an_order_of_theirs_is_being_merged_still_places_it(
    tmp_path: Path,
) -> None:
    """SPEC §4: an order of a not-yet-known customer goes to UNKNOWN and is moved once the
    customer arrives, whatever the order of two concurrent days' steps.

    Day D delivers order O1 of customer C2, who signed up on D but is delivered on D+1 (a late
    customer). The run of D reads customers (C2 unknown: O1 goes to UNKNOWN); before it commits,
    the run of D+1 commits C2 and moves the UNKNOWN orders it sees (none yet: O1 is not
    committed). A sequential run puts O1 in C2's region; so must this interleaving.
    """
    lake = LocalLake(tmp_path / "lake")
    silver_step(
        lake,
        Dataset.CUSTOMERS,
        DAY,
        [
            validated(
                Dataset.CUSTOMERS,
                DAY,
                "customers.csv",
                CUSTOMERS + "C1,Ann,Lee,ann@example.com,EU,2026-11-01,2026-11-01T08:00:00Z\n",
            )
        ],
    )
    late_customer = validated(
        Dataset.CUSTOMERS,
        NEXT,
        "customers.csv",
        CUSTOMERS + "C2,Bob,Ray,bob@example.com,APAC,2026-11-18,2026-11-18T09:00:00Z\n",
    )
    day_orders = validated(
        Dataset.ORDERS,
        DAY,
        "orders.csv",
        ORDERS
        + "O1,C2,2026-11-18,placed,10.00,2026-11-18T10:00:00Z\n"
        + "O2,C1,2026-11-18,placed,20.00,2026-11-18T10:00:00Z\n",
    )

    interleaved = []

    def the_other_run() -> None:  # the run of D+1, from here to its end
        interleaved.append(True)
        silver_step(lake, Dataset.CUSTOMERS, NEXT, [late_customer])
        silver_step(lake, Dataset.ORDERS, NEXT, [])

    # The run of D has read customers (C2 unknown: O1 goes to UNKNOWN) and not merged yet.
    with interleave("silver:orders:regions-read", the_other_run):
        outcome = silver_step(lake, Dataset.ORDERS, DAY, [day_orders])
    assert interleaved

    rows = SilverStore(lake, SPECS[Dataset.ORDERS]).read().to_pylist()
    regions = {row["order_id"]: row["customer_region"] for row in rows}
    assert regions == {"O1": "APAC", "O2": "EU"}
    # gold of D is rebuilt from the settled partitions
    assert DAY in plan_gold({Dataset.ORDERS: outcome}).order_days
    assert [a.rows_written for a in outcome.accounts] == [2]
