"""``python -m deployments.automations apply``: create or update the pipeline's automations."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prefect.client.orchestration import get_client

from deployments.automations import AUTOMATIONS_DIR, apply_automations, load_automations
from ecom_pipeline.errors import PipelineError
from ecom_pipeline.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.automations",
        description="Apply the automations in deployments/automations/ to the Prefect API in "
        "PREFECT_API_URL (create or update by name; safe to repeat).",
    )
    parser.add_argument("command", choices=["apply"])
    parser.parse_args(argv)
    try:
        sla = load_settings().task_sla_seconds
        with get_client(sync_client=True) as client:
            applied = apply_automations(client, load_automations(client, sla, AUTOMATIONS_DIR))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for item in applied:
        print(f"{item.action}: {item.name} ({item.id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
