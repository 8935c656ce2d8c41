"""Flow hooks that alert the operators when a run fails or crashes (SPEC §7)."""

from __future__ import annotations

import logging
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import State

from ecom_pipeline.adapters.notifier import Alert
from ecom_pipeline.config import load_settings
from ecom_pipeline.errors import PipelineError
from ecom_pipeline.resources import build_resources

log = logging.getLogger(__name__)


def failed_task_names(flow_run: FlowRun) -> list[str]:
    """Names of the run's task runs that ended failed or crashed."""
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(
                    type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
                )
            ),
        )
    return sorted({run.name for run in task_runs})


def flow_run_url(flow_run: FlowRun) -> str | None:
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base}/runs/flow-run/{flow_run.id}" if base else None


def alert_on_failure(flow: Any, flow_run: FlowRun, state: State) -> None:
    """Send one failure alert naming the run, the failing task(s) and the error."""
    try:
        tasks = failed_task_names(flow_run)
    except Exception:  # the alert matters more than its detail
        tasks = []
    verb = "crashed" if state.type == StateType.CRASHED else "failed"
    body = (
        f"Flow run {flow_run.name} ({flow.name}) {verb}.\n"
        f"Failed task(s): {', '.join(tasks) or 'none (the flow itself)'}\n"
        f"Error: {state.message or state.name}"
    )
    alert = Alert(
        kind="failure",
        subject=f"[ecom-pipeline] {flow_run.name} {verb}",
        body=body,
        flow_run_url=flow_run_url(flow_run),
        details={"flow_run_id": str(flow_run.id), "failed_tasks": tasks, "state": state.name},
    )
    try:
        build_resources(load_settings()).notifier.send(alert)
    except PipelineError:
        log.exception("could not send the failure alert: %s", alert.subject)
