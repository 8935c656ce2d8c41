"""Faults on silver's own S3 traffic (delta-rs, through its object_store client) are classed
as the retry policy needs them (issue 14).

delta-rs retries a 5xx or a reset itself (10 times), but not a reply whose body is cut short:
one truncated reply to a Delta log read fails the read. Found by the flow-under-faults test once
the run's requests shifted: the silver task failed on the first truncated `_last_checkpoint`
read and was not retried, failing the whole run. These errors must count as transient (the
task is retried; its merge is idempotent); a refused credential must not.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from ecom_pipeline.errors import is_transient
from ecom_pipeline.lake.storage import open_lake
from ecom_pipeline.silver.store import SilverStore
from tests.chaos.http_faults import FaultKind, FaultyHttpProxy
from tests.chaos.test_failure_modes import IamProxy
from tests.silver.test_silver_store import ORDERS, content, orders

pytestmark = [pytest.mark.chaos]


def options(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def read_through(proxy: FaultyHttpProxy, uri: str) -> BaseException:
    with pytest.raises(Exception) as caught:
        DeltaTable(uri, storage_options=options(proxy.endpoint)).to_pyarrow_table()
    return caught.value


@pytest.mark.parametrize(
    "faults",
    [
        ["truncated"],  # the first GET: the `_last_checkpoint` object
        ["slow", "truncated"],  # the second: the listing of `_delta_log/`
        ["internal"] * 30,  # more than delta-rs's own retries
        ["reset"] * 30,
    ],
    ids=["truncated-object", "truncated-listing", "internal", "reset"],
)
def test_a_delta_read_failed_by_the_network_or_a_5xx_is_transient(
    s3_lake_uri: str, moto_endpoint: str, faults: list[FaultKind]
) -> None:
    uri = f"{s3_lake_uri}/table"
    write_deltalake(uri, pa.table({"a": [1, 2]}), storage_options=options(moto_endpoint))
    with FaultyHttpProxy(moto_endpoint, methods=["GET"]) as proxy:
        proxy.queue(*faults)
        error = read_through(proxy, uri)
    assert is_transient(error), repr(error)


def test_a_delta_read_refused_for_its_credential_is_not_transient(
    s3_lake_uri: str, moto_endpoint: str
) -> None:
    uri = f"{s3_lake_uri}/table"
    write_deltalake(uri, pa.table({"a": [1, 2]}), storage_options=options(moto_endpoint))
    with IamProxy(moto_endpoint) as proxy:
        proxy.deny_writes_after = None
        wrong = {**options(proxy.endpoint), "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0"}
        with pytest.raises(Exception) as caught:
            DeltaTable(uri, storage_options=wrong).to_pyarrow_table()
    assert proxy.refused
    assert not is_transient(caught.value), repr(caught.value)


def test_a_merge_whose_reads_are_cut_short_is_repeated_and_lands_once(
    s3_lake_uri: str, moto_endpoint: str
) -> None:
    clean = SilverStore(open_lake(s3_lake_uri, endpoint_url=moto_endpoint), ORDERS)
    clean.merge(orders(("o1", "2026-11-18", "EU", 1, "placed", 18)), "run-1")
    with FaultyHttpProxy(moto_endpoint, methods=["GET"]) as proxy:
        lake = open_lake(s3_lake_uri, endpoint_url=proxy.endpoint)
        proxy.queue("truncated", "truncated")  # delta-rs gives up on each; the store does not
        result = SilverStore(lake, ORDERS).merge(
            orders(
                ("o1", "2026-11-18", "EU", 2, "shipped", 19),
                ("o2", "2026-11-19", "NA", 1, "placed", 19),
            ),
            "run-2",
        )
    assert proxy.faults == 2
    assert lake.request_retries == 2
    assert result.written_by_source == {"raw/orders/dt=2026-11-19/orders.csv": 2}
    assert content(clean) == {
        "o1": ("order_date=2026-11-18/customer_region=EU", "shipped"),
        "o2": ("order_date=2026-11-19/customer_region=NA", "placed"),
    }
