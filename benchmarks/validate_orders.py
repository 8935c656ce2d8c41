"""How long the validate step takes on one million order rows (run by hand, not a test).

    .venv/bin/python benchmarks/validate_orders.py [--orders 1000000]

Generates one day of orders with the usual defects, then times `validate_file` on each file
(CSV parsing, the pandera contract, typing, quarantine rows), and prints rows, seconds (wall and
the process's CPU time: on a shared machine the CPU time is the steadier figure), rows per
second and the process's peak RSS. One small file is validated first so that one-time imports
(pandera's polars backend loads in about half a second) are not counted as throughput.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, date, datetime

from devtools.generate import GeneratorConfig, generate_day
from ecom_pipeline.contracts.datasets import SPECS, Dataset
from ecom_pipeline.contracts.validation import RunContext, validate_file

DAY = date(2026, 11, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    args = parser.parse_args()
    files = [
        f
        for f in generate_day(DAY, GeneratorConfig(orders_per_day=args.orders))
        if f.dataset == Dataset.ORDERS
    ]
    run = RunContext("benchmark", datetime.now(UTC))
    spec = SPECS[Dataset.ORDERS]
    warm = files[0].content[:10_000]
    warm = warm[: warm.rfind(b"\n") + 1]
    validate_file("warm-up.csv", warm, spec, file_day=DAY, pii_key=b"k" * 32, run=run)
    rows = quarantined = 0
    started, cpu = time.perf_counter(), time.process_time()
    for raw in files:
        result = validate_file(raw.key, raw.content, spec, file_day=DAY, pii_key=b"k" * 32, run=run)
        rows += result.rows_read
        quarantined += result.quarantine.num_rows
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"files            {len(files)}")
    print(f"rows             {rows:,}")
    print(f"quarantined      {quarantined:,}")
    print(f"seconds          {seconds:.2f}")
    print(f"CPU seconds      {cpu:.2f}")
    print(f"rows per second  {rows / seconds:,.0f}")
    print(f"peak RSS (MB)    {peak:,.0f}  (includes generating the files)")


if __name__ == "__main__":
    main()
