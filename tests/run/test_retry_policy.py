"""Only transient failures are retried (SPEC §7): tested with real exceptions from real calls,
and once through a real Prefect task run."""

from __future__ import annotations

import errno
import importlib
import io
import pkgutil
import socket
from collections.abc import Callable
from pathlib import Path

import boto3
import pyarrow.csv
import pyarrow.fs
import pytest
import sqlalchemy as sa
from botocore.config import Config
from botocore.exceptions import ClientError
from prefect import flow
from prefect.states import Failed

import ecom_pipeline
from ecom_pipeline import errors
from ecom_pipeline.errors import BadFileError, PipelineError, is_transient
from tasks.policy import pipeline_task, retry_unless_deterministic
from tests.conftest import BUCKET, free_port


def raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("expected the call to fail")


def disk_full() -> None:
    with open("/dev/full", "wb") as handle:  # every write fails with ENOSPC
        handle.write(b"x")
        handle.flush()


def connect_to_closed_port() -> None:
    socket.create_connection(("127.0.0.1", free_port()), timeout=5)


def boto_to_closed_port() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    client.list_objects_v2(Bucket=BUCKET)


def arrow_s3_to_closed_port() -> None:
    s3 = pyarrow.fs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{free_port()}",
        scheme="http",
        region="us-east-1",
        connect_timeout=2,
        retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    s3.open_input_stream(f"{BUCKET}/raw/x.csv")


def postgres_on_closed_port() -> None:
    engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    try:
        engine.connect()
    finally:
        engine.dispose()


def arrow_parse_error() -> None:
    pyarrow.csv.read_csv(io.BytesIO(b"a,b\n1,2,3\n"))


def invalid_bucket_name() -> None:
    boto3.client("s3", region_name="us-east-1").get_object(Bucket="", Key="x")


def missing_bucket(moto_endpoint: str) -> Callable[[], None]:
    def call() -> None:
        client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
        client.get_object(Bucket="no-such-bucket-here", Key="x")

    return call


def throttled() -> None:
    raise ClientError(
        {
            "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        },
        "GetObject",
    )


def test_network_throttling_and_lost_connections_are_transient() -> None:
    for call in (
        connect_to_closed_port,
        boto_to_closed_port,
        arrow_s3_to_closed_port,
        postgres_on_closed_port,
        throttled,
    ):
        exc = raised(call)
        assert is_transient(exc), (call.__name__, repr(exc))
        assert retry_unless_deterministic(None, None, Failed(data=exc)), call.__name__  # type: ignore[arg-type]


def test_a_delta_rs_read_cut_short_is_transient_a_missing_table_is_not() -> None:
    """As delta-rs raised it in the fault suite (object_store does not retry a body cut short)."""
    cut = OSError(
        "Kernel error -> Generic S3 error\n  ↳ Error performing GET http://127.0.0.1:1/b/t/"
        "_delta_log/_last_checkpoint in 111ms, after 1 retries, max_retries\n  ↳ 10, "
        "retry_timeout\n  ↳ 180s  - HTTP error\n  ↳ request or response body error\n"
        "  ↳ error reading a body from connection\n  ↳ end of file before message length reached"
    )
    assert is_transient(cut)
    assert not is_transient(OSError("Generic S3 error: no such table: access denied (403)"))


def test_everything_else_is_deterministic(moto_endpoint: str) -> None:
    full = raised(disk_full)
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    for exc in (
        full,
        raised(arrow_parse_error),
        raised(invalid_bucket_name),
        raised(missing_bucket(moto_endpoint)),
        raised(lambda: open("/nonexistent/dir/file")),  # noqa: SIM115
        BadFileError("raw/orders/dt=2026-11-21/a.csv", "not UTF-8"),
        ValueError("a bug"),
    ):
        assert not is_transient(exc), repr(exc)
        assert not retry_unless_deterministic(None, None, Failed(data=exc))  # type: ignore[arg-type]


def test_a_wrapper_raised_from_a_connection_error_is_transient_a_pipeline_error_never() -> None:
    refused = raised(connect_to_closed_port)
    try:
        raise RuntimeError("lake unreachable") from refused
    except RuntimeError as wrapper:
        assert is_transient(wrapper)
    try:
        raise BadFileError("raw/x.csv", "unreadable") from refused
    except BadFileError as explained:
        assert not is_transient(explained)


@pytest.mark.usefixtures("prefect_api")
def test_a_task_retries_a_refused_connection_but_not_a_full_disk() -> None:
    calls: list[str] = []

    @pipeline_task("flaky", retry_delay_seconds=0, retry_jitter_factor=None)
    def flaky(kind: str) -> None:
        calls.append(kind)
        if kind == "network":
            connect_to_closed_port()
        disk_full()

    @flow
    def pipeline() -> None:  # as the pipeline calls its tasks: inside a flow run
        with pytest.raises(ConnectionRefusedError):
            flaky("network")
        with pytest.raises(OSError, match="No space left"):
            flaky("disk")

    pipeline()
    assert calls.count("network") == 4  # the first try and three retries
    assert calls.count("disk") == 1


def _pipeline_error_classes() -> list[type[PipelineError]]:
    """PipelineError and every subclass, after importing every module of the package (so a
    class defined anywhere is found)."""
    for module in pkgutil.walk_packages(ecom_pipeline.__path__, "ecom_pipeline."):
        importlib.import_module(module.name)
    found: list[type[PipelineError]] = []
    pending: list[type[PipelineError]] = [PipelineError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


ERROR_CLASSES = _pipeline_error_classes()
#: Contention only: another attempt, later, can win. Everything else is bad input, bad
#: configuration or a bug, and retrying it repeats it.
TRANSIENT = {errors.CommitConflictError, errors.LockLostError}
EXAMPLES: dict[type[PipelineError], PipelineError] = {
    errors.PipelineError: errors.PipelineError("something the pipeline explains"),
    errors.ConfigurationError: errors.ConfigurationError("ECOM_LAKE_URI: not a folder or s3://"),
    errors.LakeKeyError: errors.LakeKeyError("raw/../x.csv"),
    errors.LakeAccessError: errors.LakeAccessError(
        "s3://lake", "PutObject", "ExpiredToken", "The provided token has expired."
    ),
    errors.LockTimeoutError: errors.LockTimeoutError("lock _locks/gold still held"),
    errors.ScratchSpaceError: errors.ScratchSpaceError(
        Path("/tmp/scratch"), OSError(errno.ENOSPC, "No space left on device")
    ),
    errors.LockLostError: errors.LockLostError("lock _locks/gold (generation 3): expired"),
    errors.BadFileError: BadFileError("raw/orders/dt=2026-11-21/a.csv", "not UTF-8"),
    errors.AccountingError: errors.AccountingError("rows do not balance"),
    errors.QuarantineThresholdError: errors.QuarantineThresholdError("orders: 9 % quarantined"),
    errors.PartitionValueError: errors.PartitionValueError("partition value '..'"),
    errors.CommitConflictError: errors.CommitConflictError("orders: gave up after 12"),
    errors.LegacySilverError: errors.LegacySilverError("processed/orders is snapshot format"),
    errors.MigrationError: errors.MigrationError("processed/orders: counts differ"),
    errors.WarehouseLoadError: errors.WarehouseLoadError("daily_revenue: duplicate keys"),
    errors.RunFailedError: errors.RunFailedError(["orders: rejected"]),
}


def test_every_pipeline_error_is_defined_in_the_errors_module() -> None:
    elsewhere = [
        f"{c.__module__}.{c.__name__}" for c in ERROR_CLASSES if c.__module__ != errors.__name__
    ]
    assert not elsewhere


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_only_contention_is_transient(cls: type[PipelineError]) -> None:
    assert cls in EXAMPLES, f"{cls.__name__}: add an example and decide whether it is transient"
    exc = EXAMPLES[cls]
    assert type(exc) is cls
    expected = cls in TRANSIENT
    assert is_transient(exc) is expected
    assert retry_unless_deterministic(None, None, Failed(data=exc)) is expected  # type: ignore[arg-type]
    # The class decides, whatever caused it: a network error under a bad file is no reason to
    # read the file again, and a conflict is contention even when raised from a plain error.
    try:
        raise exc from raised(connect_to_closed_port)
    except PipelineError as chained:
        assert is_transient(chained) is expected
