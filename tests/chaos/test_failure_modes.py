"""Faults no retry can cure end in one clear paragraph, with nothing half-committed (issue 14).

The lake is moto's S3 API (behind a proxy that plays IAM where a test needs it), the warehouse
PostgreSQL. One day is already processed; the run of the next day meets:

- a wrong access key or an expired session token: S3 answers ``InvalidAccessKeyId`` or
  ``ExpiredToken`` to every request;
- a lake that becomes read-only mid-run: right after the customers' silver commit, every write
  is answered ``AccessDenied`` (a bucket policy changed under the run);
- a full disk under the scratch folder: the run's process may not write files past a few kB
  (``RLIMIT_FSIZE``; the lake and warehouse are servers, so only local scratch is hit).

Each run ends with exit code 1 and one paragraph on stderr that says what failed (no traceback),
and leaves nothing half-committed: every silver table is unchanged or at a complete new version,
the ledger is not ahead of silver, gold or the warehouse. A re-run once the fault is gone then
equals a clean run.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import boto3
import pytest
from prefect.settings import PREFECT_API_URL

from devtools.generate import generate_day, write_raw_files
from ecom_pipeline.lake.storage import Lake, open_lake
from flows.daily import daily
from tests.chaos.http_faults import FaultyHttpProxy
from tests.chaos.test_kill_sweep import (
    Clean,
    assert_ledger_not_ahead,
    copy_schema,
    drop_schemas,
    same_tables,
    silver_by_source,
)
from tests.conftest import BUCKET, TEST_PII_KEY
from tests.flows.test_crash_safety import (
    CONFIG,
    FIRST,
    SECOND,
    copy_prefix,
    gold_state,
    silver_state,
)
from tests.flows.test_daily import warehouse_rows

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

GOOD_KEY = os.environ["AWS_ACCESS_KEY_ID"]


class IamProxy(FaultyHttpProxy):
    """Answers as S3 does to a bad credential, and (once `deny_writes_after` matched a write)
    refuses every write as a bucket policy denying ``s3:PutObject``/``DeleteObject`` would."""

    def __init__(self, upstream: str, *, deny_writes_after: str | None = None) -> None:
        super().__init__(upstream)
        self.deny_writes_after = re.compile(deny_writes_after) if deny_writes_after else None
        self.read_only = threading.Event()
        self.refused = 0

    def refusal(self, method: str, path: str, headers: Message) -> tuple[int, str, str] | None:
        answer = self._answer(method, path, headers)
        if answer is not None:
            self.refused += 1
        return answer

    def _answer(self, method: str, path: str, headers: Message) -> tuple[int, str, str] | None:
        if headers.get("X-Amz-Security-Token"):
            return 400, "ExpiredToken", "The provided token has expired."
        credential = re.search(r"Credential=([^/]+)/", headers.get("Authorization", ""))
        if credential is None or credential.group(1) != GOOD_KEY:
            return (
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        if method in ("PUT", "POST", "DELETE"):
            if self.read_only.is_set():
                return 403, "AccessDenied", "Access Denied"
            if self.deny_writes_after and self.deny_writes_after.search(path):
                self.read_only.set()  # this write goes through; the next ones do not
        return None


@dataclass
class Setup:
    clean: Clean
    endpoint: str
    postgres_url: str
    base_uri: str
    base_schema: str
    schemas: list[str]
    root: Path

    def scenario(self, name: str) -> tuple[str, str]:
        """A copy of the base lake and warehouse schema: (lake URI, schema)."""
        uri = self.base_uri.replace("/base", f"/{name}")
        schema = self.base_schema.replace("_base", f"_{name.replace('-', '_')}")
        self.schemas.append(schema)
        copy_prefix(self.endpoint, self.base_uri, uri)
        copy_schema(self.postgres_url, self.base_schema, schema)
        return uri, schema


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, postgres_url: str
) -> Iterator[Setup]:
    """FIRST processed into ``base``; a copy with SECOND processed too is the clean result."""
    root = tmp_path_factory.mktemp("failure-modes")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("ECOM_"):
                patch.delenv(name)
        patch.chdir(root)
        patch.setenv("ECOM_PII_HASH_KEY", TEST_PII_KEY)
        patch.setenv("ECOM_AWS_ENDPOINT_URL", moto_endpoint)
        patch.setenv("ECOM_WAREHOUSE_URL", postgres_url)
        patch.setenv("ECOM_SCRATCH_DIR", str(root / "scratch"))
        s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=BUCKET)
        tag = uuid.uuid4().hex[:8]
        base_uri, base_schema = f"s3://{BUCKET}/fail-{tag}/base", f"fail_{tag}_base"
        lake = open_lake(base_uri, endpoint_url=moto_endpoint)
        for day in (FIRST, SECOND):
            write_raw_files(lake, generate_day(day, CONFIG, first_day=FIRST))
        patch.setenv("ECOM_LAKE_URI", base_uri)
        patch.setenv("ECOM_WAREHOUSE_SCHEMA", base_schema)
        assert daily(run_date=FIRST).succeeded
        state = Setup(
            Clean(root, root / "scratch", {}, {}, {}, {}),
            moto_endpoint,
            postgres_url,
            base_uri,
            base_schema,
            [base_schema],
            root,
        )
        uri, schema = state.scenario("reference")
        patch.setenv("ECOM_LAKE_URI", uri)
        patch.setenv("ECOM_WAREHOUSE_SCHEMA", schema)
        assert daily(run_date=SECOND).succeeded
        done = open_lake(uri, endpoint_url=moto_endpoint)
        state.clean = Clean(
            root,
            root / "scratch",
            silver_state(done),
            gold_state(done),
            warehouse_rows(postgres_url, schema),
            silver_by_source(done),
        )
        try:
            yield state
        finally:
            drop_schemas(postgres_url, state.schemas)


LIMITED_CLI = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
    "sys.argv[0] = 'ecom-pipeline'; "
    "runpy.run_module('ecom_pipeline.cli', run_name='__main__', alter_sys=True)"
)


def run_failing(
    setup: Setup,
    lake_uri: str,
    schema: str,
    endpoint: str,
    *,
    file_size_limit: int | None = None,
    **extra_env: str,
) -> str:
    """Run SECOND in a subprocess that must fail; returns its closing paragraph."""
    env = {
        **os.environ,
        "ECOM_PII_HASH_KEY": TEST_PII_KEY,
        "ECOM_LAKE_URI": lake_uri,
        "ECOM_AWS_ENDPOINT_URL": endpoint,
        "ECOM_WAREHOUSE_URL": setup.postgres_url,
        "ECOM_WAREHOUSE_SCHEMA": schema,
        "ECOM_SCRATCH_DIR": str(setup.root / "scratch"),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        **extra_env,
    }

    command = [sys.executable, "-m", "ecom_pipeline.cli", "run", "--date", SECOND.isoformat()]
    if file_size_limit is not None:
        # The child limits itself, then runs the CLI: no file of it may grow past the limit
        # (writes fail with EFBIG; Python ignores SIGXFSZ).
        command[1:3] = ["-c", LIMITED_CLI.format(limit=file_size_limit)]
    result = subprocess.run(
        command,
        env=env,
        cwd=setup.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    paragraph = result.stderr.strip().splitlines()[-1]
    assert paragraph.startswith("ecom-pipeline run failed: "), result.stderr[-3000:]
    print(f"\n[chaos] closing paragraph: {paragraph}")
    return paragraph


def nothing_half_committed(setup: Setup, lake: Lake, schema: str, before: Lake) -> None:
    """Each silver table as before or as after a clean run; the ledger not ahead."""
    now, old = silver_state(lake), silver_state(before)
    for dataset, rows in now.items():
        assert rows in (old[dataset], setup.clean.silver[dataset]), dataset
    assert_ledger_not_ahead(
        lake, setup.clean, warehouse_rows(setup.postgres_url, schema), "failure"
    )


def heals(setup: Setup, monkeypatch: pytest.MonkeyPatch, lake_uri: str, schema: str) -> None:
    """Once the fault is gone, a re-run equals a clean run."""
    for name, value in {
        "ECOM_PII_HASH_KEY": TEST_PII_KEY,
        "ECOM_LAKE_URI": lake_uri,
        "ECOM_AWS_ENDPOINT_URL": setup.endpoint,
        "ECOM_WAREHOUSE_URL": setup.postgres_url,
        "ECOM_WAREHOUSE_SCHEMA": schema,
        "ECOM_SCRATCH_DIR": str(setup.root / "scratch"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(setup.root)
    assert daily(run_date=SECOND).succeeded
    lake = open_lake(lake_uri, endpoint_url=setup.endpoint)
    assert silver_state(lake) == setup.clean.silver
    assert gold_state(lake) == setup.clean.gold
    assert same_tables(warehouse_rows(setup.postgres_url, schema), setup.clean.warehouse)


@pytest.mark.parametrize(
    ("name", "credentials", "expected"),
    [
        ("wrong-key", {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0"}, "InvalidAccessKeyId"),
        pytest.param(
            "expired-token",
            {"AWS_SESSION_TOKEN": "expired-session-token"},
            "ExpiredToken",
            marks=pytest.mark.chaos_full,
        ),
    ],
)
def test_a_wrong_or_expired_credential_fails_in_one_paragraph_and_writes_nothing(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    fault_tally: dict[str, int],
    name: str,
    credentials: dict[str, str],
    expected: str,
) -> None:
    uri, schema = setup.scenario(name)
    with IamProxy(setup.endpoint) as proxy:
        paragraph = run_failing(setup, uri, schema, proxy.endpoint, **credentials)
    assert expected in paragraph, paragraph
    assert f"the lake {uri} refused" in paragraph, paragraph  # names the lake, not boto3
    assert "credentials" in paragraph, paragraph
    lake = open_lake(uri, endpoint_url=setup.endpoint)
    base = open_lake(setup.base_uri, endpoint_url=setup.endpoint)
    assert silver_state(lake) == silver_state(base)
    assert [o.key for o in lake.list("")] == [o.key for o in base.list("")]
    nothing_half_committed(setup, lake, schema, base)
    heals(setup, monkeypatch, uri, schema)
    fault_tally.update(refused=proxy.refused, rows_lost=0)


def test_a_lake_that_turns_read_only_mid_run_fails_in_one_paragraph_and_commits_no_half(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, fault_tally: dict[str, int]
) -> None:
    uri, schema = setup.scenario("read-only")
    customers_commit = r"/processed/customers/_delta_log/0+\d+\.json"
    with IamProxy(setup.endpoint, deny_writes_after=customers_commit) as proxy:
        paragraph = run_failing(setup, uri, schema, proxy.endpoint)
    assert proxy.read_only.is_set()
    assert "AccessDenied" in paragraph or "Access Denied" in paragraph, paragraph
    lake = open_lake(uri, endpoint_url=setup.endpoint)
    base = open_lake(setup.base_uri, endpoint_url=setup.endpoint)
    # Customers committed before the bucket turned read-only: a complete new version.
    assert silver_state(lake)["customers"] == setup.clean.silver["customers"]
    nothing_half_committed(setup, lake, schema, base)
    heals(setup, monkeypatch, uri, schema)
    fault_tally.update(refused=proxy.refused, rows_lost=0)


def test_a_full_scratch_disk_fails_in_one_paragraph_and_commits_nothing(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, fault_tally: dict[str, int]
) -> None:
    uri, schema = setup.scenario("disk-full")
    paragraph = run_failing(setup, uri, schema, setup.endpoint, file_size_limit=16 * 1024)
    assert "File too large" in paragraph, paragraph
    assert f"the scratch folder {setup.root / 'scratch'}" in paragraph, paragraph
    assert "ECOM_SCRATCH_DIR" in paragraph, paragraph
    lake = open_lake(uri, endpoint_url=setup.endpoint)
    base = open_lake(setup.base_uri, endpoint_url=setup.endpoint)
    nothing_half_committed(setup, lake, schema, base)
    assert not any((setup.root / "scratch").iterdir())
    heals(setup, monkeypatch, uri, schema)
    fault_tally.update(rows_lost=0)


def test_a_scratch_folder_that_is_a_file_fails_in_one_paragraph_and_commits_nothing(
    setup: Setup, fault_tally: dict[str, int]
) -> None:
    uri, schema = setup.scenario("scratch-file")
    in_the_way = setup.root / "scratch-file"
    in_the_way.write_text("not a folder")
    paragraph = run_failing(setup, uri, schema, setup.endpoint, ECOM_SCRATCH_DIR=str(in_the_way))
    assert f"the scratch folder {in_the_way} " in paragraph, paragraph
    assert "a file is in the way" in paragraph, paragraph
    lake = open_lake(uri, endpoint_url=setup.endpoint)
    base = open_lake(setup.base_uri, endpoint_url=setup.endpoint)
    assert silver_state(lake) == silver_state(base)
    nothing_half_committed(setup, lake, schema, base)
    fault_tally.update(rows_lost=0)
