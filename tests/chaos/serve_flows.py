"""Serve the ``daily`` and ``backfill`` deployments from this process (Prefect's runner).

Run from the project root as ``python -m tests.chaos.serve_flows`` with ``PREFECT_API_URL``
and the ``ECOM_*`` settings in the environment: the runner starts every flow run (the backfill
and the daily child runs it fans out to) as a subprocess of its own, as a process worker does,
so ``backfill(max_parallel=N)`` really runs N days at once.
"""

from __future__ import annotations

from prefect import serve

from flows.backfill import DAILY_DEPLOYMENT, backfill
from flows.daily import daily

if __name__ == "__main__":
    flow_name, _, deployment_name = DAILY_DEPLOYMENT.partition("/")
    assert flow_name == daily.name
    serve(
        daily.to_deployment(name=deployment_name),
        backfill.to_deployment(name="backfill"),
        limit=16,
        print_starting_message=False,
    )
