"""A whole run over hostile input, then a scan of everything it left for secrets and PII.

One ``ecom-pipeline run`` (a subprocess, as users run it: its own ephemeral Prefect server,
whose SQLite database keeps the run's logs, states and artifacts) over a day that holds, next to
a generated clean day: a customers file without its header row (its first line is a person), a
PII value in a non-PII column, region values that try to escape their partition (``../``,
``%2e%2e``, a case twin, a full-width Unicode twin), a gzip file named ``.csv``, a file named
like a spreadsheet formula holding a CSV-injection order id, and file names with a newline and
with compatibility Unicode. Afterwards the lake (every layer), the warehouse file, Prefect's
database, stdout and stderr are searched for the PII key and for every raw name and e-mail.
"""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from devtools.generate import GeneratorConfig, generate_day, write_raw_files
from ecom_pipeline.contracts.datasets import REGIONS, SOURCE_FILE, SOURCE_LINE
from ecom_pipeline.lake.storage import LocalLake

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 20)
CANARY_KEY = "canary-pii-key-7f3a9c41e2b85d06"
INJECTION = '=HYPERLINK("http://evil.example/x","click")'
#: The value as a CSV field: quoted, its quotes doubled.
INJECTION_FIELD = '"' + INJECTION.replace('"', '""') + '"'
HOSTILE_REGIONS = ["../../escaped", "%2e%2e", "eu", "\uff25\uff35"]  # the last is "ＥＵ"
CUSTOMERS_HEADER = "customer_id,first_name,last_name,email,customer_region,signup_date,updated_at"
ORDERS_HEADER = "order_id,customer_id,order_date,order_status,total_amount,updated_at"
PAYMENTS_HEADER = "payment_id,order_id,payment_date,payment_method,payment_status,amount,updated_at"
STAMP = f"{DAY}T10:00:00Z"


@dataclass
class HostileRun:
    root: Path
    result: subprocess.CompletedProcess[str]
    pii_values: set[str]

    @property
    def lake(self) -> Path:
        return self.root / "lake"


def _hostile_files(day_folder: Callable[[str], Path]) -> set[str]:
    """Writes the hostile files of the day; returns the clear PII values they hold."""
    customers = day_folder("customers")
    person = "C20261120999001,Zebulon,Canarywood,zebulon.canarywood@leak-test.example"
    # No header row: the "header" the reader finds is a person.
    (customers / "customers-no-header.csv").write_text(f"{person},EU,{DAY},{STAMP}\n")
    rows = [
        CUSTOMERS_HEADER,
        f"C20261120999002,Ottoline,Finchbury,ottoline.finchbury@leak-test.example,EU,{DAY},{STAMP}",
        # An e-mail in signup_date: quarantined, and never in clear past validate.
        "C20261120999003,Perpetua,Quillfeather,perpetua.q@leak-test.example,EU,"
        f"misplaced.mail@leak-test.example,{STAMP}",
    ]
    rows += [
        f"C2026112099901{i},Hostile{i},Regionson,hostile{i}@leak-test.example,{region},{DAY},{STAMP}"
        for i, region in enumerate(HOSTILE_REGIONS)
    ]
    (customers / "customers-hostile.csv").write_text("\n".join(rows) + "\n")

    orders = day_folder("orders")
    order = f"{INJECTION_FIELD},C20261120999002,{DAY},placed,10.00,{STAMP}"
    (orders / "orders-gzip.csv").write_bytes(
        gzip.compress(f"{ORDERS_HEADER}\nO1,C1,{DAY},placed,1.00,{STAMP}\n".encode())
    )
    (orders / "=cmd|' -C calc'!A0.csv").write_text(f"{ORDERS_HEADER}\n{order}\n")

    payments = day_folder("payments")
    payment = f"P999001,{INJECTION_FIELD},{DAY},card,succeeded,10.00,{STAMP}"
    (payments / "pay\nments-forged-line.csv").write_text(f"{PAYMENTS_HEADER}\n{payment}\n")
    (payments / "\uff50ayments-\ufb01.csv").write_text(f"{PAYMENTS_HEADER}\n{payment}\n")

    values = {person.split(",")[i] for i in (1, 2, 3)}
    for row in rows[1:]:
        fields = row.split(",")
        values.update(fields[1:4])
    values.add("misplaced.mail@leak-test.example")
    return values


def _generated_pii(lake: Path) -> set[str]:
    values: set[str] = set()
    for path in (lake / "raw" / "customers" / f"dt={DAY}").glob("customers*.csv"):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("first_name") is None:
                    continue
                values.update(
                    v for k in ("first_name", "last_name", "email") if len(v := row[k]) > 3
                )
    return values


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    root = tmp_path_factory.mktemp("hostile-run")
    lake = root / "lake"
    write_raw_files(LocalLake(lake), generate_day(DAY, GeneratorConfig(orders_per_day=200, seed=5)))
    pii = _generated_pii(lake)

    def day_folder(dataset: str) -> Path:
        folder = lake / "raw" / dataset / f"dt={DAY}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    pii |= _hostile_files(day_folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOM_", "PREFECT_"))}
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        PREFECT_HOME=str(root / ".prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        ECOM_LAKE_URI=str(lake),
        ECOM_WAREHOUSE_URL=f"duckdb:///{root / 'warehouse.duckdb'}",
        ECOM_PII_HASH_KEY=CANARY_KEY,
    )
    result = subprocess.run(
        [sys.executable, "-m", "ecom_pipeline.cli", "run", "--date", DAY.isoformat()],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return HostileRun(root, result, pii)


def _readable(path: Path) -> str:
    """A file as text: Parquet decoded (its pages are compressed), anything else as bytes."""
    if path.suffix == ".parquet":
        return str(pq.read_table(path).to_pylist())
    return path.read_bytes().decode("latin-1")


def test_the_run_fails_on_the_bad_files_only_and_names_them_by_key(hostile_run: HostileRun) -> None:
    result = hostile_run.result
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    closing = [line for line in result.stderr.splitlines() if line.startswith("ecom-pipeline ")]
    assert len(closing) == 1 and closing[0].startswith("ecom-pipeline run failed: "), closing
    assert f"raw/orders/dt={DAY}/orders-gzip.csv" in result.stderr
    # Every other file was written: the clean day's orders reached gold and the warehouse.
    assert (hostile_run.lake / "gold" / "daily_revenue").is_dir()
    assert (hostile_run.root / "warehouse.duckdb").is_file()


def test_no_key_and_no_clear_pii_anywhere_the_run_wrote(hostile_run: HostileRun) -> None:
    """Lake (all layers but raw), warehouse, Prefect's database (logs, states, artifacts),
    stdout and stderr: zero hits for the key and for every raw name and e-mail."""
    root = hostile_run.root
    places: dict[str, str] = {
        "stdout": hostile_run.result.stdout,
        "stderr": hostile_run.result.stderr,
    }
    for path in hostile_run.lake.rglob("*"):
        if path.is_file() and "raw" not in path.relative_to(hostile_run.lake).parts[:1]:
            places[str(path.relative_to(root))] = _readable(path)
    warehouse_and_prefect = [root / "warehouse.duckdb", *(root / ".prefect").glob("*.db*")]
    assert any(p.name.startswith("prefect.db") for p in warehouse_and_prefect), list(
        (root / ".prefect").iterdir()
    )
    for path in warehouse_and_prefect:
        places[str(path.relative_to(root))] = path.read_bytes().decode("latin-1")
    assert len(hostile_run.pii_values) > 50
    hits = {
        (place, secret)
        for place, text in places.items()
        for secret in [CANARY_KEY, *hostile_run.pii_values]
        if secret in text
    }
    assert not hits, sorted(hits)[:10]


def test_partition_values_cannot_escape_or_twin(hostile_run: HostileRun) -> None:
    """Region values that name a path, or twin a real region by case or Unicode form, are
    quarantined by the contract; silver's partitions are the real regions only."""
    table = hostile_run.lake / "processed" / "customers"
    folders = {p.name for p in table.iterdir() if p.is_dir() and p.name != "_delta_log"}
    assert folders <= {f"customer_region={r}" for r in REGIONS}, folders
    outside = {p.name for p in hostile_run.root.iterdir()}
    assert outside <= {"lake", "warehouse.duckdb", ".prefect"}, outside
    quarantined = [
        row
        for path in (hostile_run.lake / "quarantine" / "customers").rglob("*.parquet")
        for row in pq.read_table(path).to_pylist()
    ]
    ours = [r for r in quarantined if r[SOURCE_FILE].endswith("customers-hostile.csv")]
    assert [(r[SOURCE_LINE], r["column"], r["rule"]) for r in ours if r[SOURCE_LINE] > 3] == [
        (4 + i, "customer_region", "one_of") for i in range(len(HOSTILE_REGIONS))
    ]


def test_a_csv_injection_value_is_stored_inert_and_odd_names_are_escaped(
    hostile_run: HostileRun,
) -> None:
    orders = DeltaTable(str(hostile_run.lake / "processed" / "orders")).to_pyarrow_table()
    stored = [v for v in orders.column("order_id").to_pylist() if v.startswith("=")]
    assert stored == [INJECTION]  # kept verbatim as text, never evaluated or altered
    # A newline in a file name never starts a line of its own in the output (no forged lines).
    output = hostile_run.result.stdout + hostile_run.result.stderr
    assert not any(line.startswith("ments-forged-line") for line in output.splitlines())
    manifests = list((hostile_run.lake / "_runs" / f"dt={DAY}").glob("*.json"))
    assert manifests
    text = manifests[0].read_text()
    assert "pay\\nments-forged-line.csv" in text  # JSON keeps the name, escaped
    payments = DeltaTable(str(hostile_run.lake / "processed" / "payments")).to_pyarrow_table()
    assert payments.column("payment_id").to_pylist().count("P999001") == 1  # two files, one row


def test_the_gzip_file_is_a_bad_file_whose_bytes_are_never_echoed(hostile_run: HostileRun) -> None:
    output = hostile_run.result.stdout + hostile_run.result.stderr
    assert "\x1f\ufffd" not in output and "\\x1f\\x8b" not in output
    quarantined_file = (
        hostile_run.lake / "quarantine" / "orders" / f"dt={DAY}" / "files" / "orders-gzip.csv"
    )
    assert quarantined_file.read_bytes()[:2] == b"\x1f\x8b"  # kept whole, for a person to see
