"""Alerts and run outcomes (SPEC §7): the `alert` flow the automations start, and flow hooks.

Who sends what, so that each failure is reported exactly once:

- A run of one of our **deployments** that ends Failed or Crashed, or turns Late, and a task of
  it still Running after the SLA, are caught by the Prefect automations in
  ``deployments/automations/`` (they fire even when the run's own process is gone: an OOM kill,
  a reclaimed Spot task, an image that cannot be pulled). They start the ``alert`` deployment,
  which reads the run, its failing tasks and their errors from the Prefect API and publishes one
  message.
- An **ad-hoc** run (``ecom-pipeline run`` on a laptop, no deployment) has no automation
  watching it: its own `report_outcome` hook sends the same message, composed the same way.

`report_outcome` also puts the ``RunSucceeded`` metric (1 or 0, per flow) for every run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, runtime
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import State

from ecom_pipeline.errors import ConfigurationError
from ecom_pipeline.run.metrics import Metric
from ecom_pipeline.run.notifier import Alert
from ecom_pipeline.run.resources import build_resources
from ecom_pipeline.settings import load_settings
from tasks.policy import deployment_id

log = logging.getLogger(__name__)

#: An error message longer than this is cut (a whole traceback does not belong in an e-mail).
MESSAGE_LIMIT = 1500


def flow_run_url(flow_run_id: UUID | str) -> str | None:
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base}/runs/flow-run/{flow_run_id}" if base else None


def _cut(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def failed_tasks(client: SyncPrefectClient, flow_run_id: UUID) -> list[TaskRun]:
    """The run's task runs that ended Failed or Crashed, by name."""
    task_runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        task_run_filter=TaskRunFilter(
            state=TaskRunFilterState(
                type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
            )
        ),
    )
    return sorted(task_runs, key=lambda run: run.name)


def run_state_alert(flow_run: FlowRun, flow_name: str, tasks: list[TaskRun]) -> Alert:
    """The one message about a run that failed, crashed or is late: run, failing task(s), error.

    Args:
        flow_run: the run as the Prefect API has it now.
        flow_name: its flow's name (``daily``, ``backfill``, ``retention``).
        tasks: its failed or crashed task runs.
    """
    state = flow_run.state
    state_name = state.name if state else "Unknown"
    if state and state.type == StateType.CRASHED:
        verb = "crashed"
    elif state_name == "Late":
        verb = "is late"
    else:
        verb = "failed"
    lines = [f"Flow run {flow_run.name} ({flow_name}) {verb}."]
    if verb == "is late":
        lines.append(
            f"It was due at {flow_run.expected_start_time} and has not started: is a worker "
            f"polling work pool {flow_run.work_pool_name or '(none)'}?"
        )
    else:
        names = ", ".join(t.name for t in tasks) or "none (the flow itself)"
        lines.append(f"Failed task(s): {names}")
        for task in tasks:
            lines.append(f"- {task.name}: {_cut(task.state.message if task.state else None)}")
        lines.append(f"Error: {_cut(state.message if state else None) or state_name}")
    return Alert(
        kind="failure",
        subject=f"[ecom-pipeline] {flow_run.name} {verb}",
        body="\n".join(lines),
        flow_run_url=flow_run_url(flow_run.id),
        details={
            "flow_run_id": str(flow_run.id),
            "flow": flow_name,
            "state": state_name,
            "failed_tasks": [t.name for t in tasks],
        },
    )


def sla_alert(flow_run: FlowRun, task_run: TaskRun, limit_seconds: float) -> Alert:
    """The message about a task still running past its SLA."""
    state = task_run.state.name if task_run.state else "Unknown"
    return Alert(
        kind="sla",
        subject=f"[ecom-pipeline] {flow_run.name}: {task_run.name} is past its SLA",
        body=(
            f"Task {task_run.name} of flow run {flow_run.name} has been running for more than "
            f"{limit_seconds:.0f} s (its SLA) without completing (now: {state})."
        ),
        flow_run_url=flow_run_url(flow_run.id),
        details={
            "task": task_run.name,
            "task_run_id": str(task_run.id),
            "flow_run": flow_run.name,
            "flow_run_id": str(flow_run.id),
            "sla_seconds": limit_seconds,
        },
    )


def _uuid(value: str, kind: str) -> UUID:
    """A run id, also as the event resource id the automations pass (``prefect.task-run.<id>``)."""
    return UUID(value.removeprefix(f"prefect.{kind}."))


def _alert_run_name() -> str:
    """``alert-{flow run id}`` for a run's alert, ``alert-sla-{task run id}`` for a task's."""
    params = runtime.flow_run.parameters
    if params.get("task_run_id"):
        return f"alert-sla-{_uuid(params['task_run_id'], 'task-run')}"
    return f"alert-{_uuid(params.get('flow_run_id') or '', 'flow-run')}"


def _subject(parameters: dict[str, Any]) -> tuple[str, str]:
    task_run_id = parameters.get("task_run_id")
    if task_run_id:
        return ("task-run", str(_uuid(str(task_run_id), "task-run")))
    return ("flow-run", str(_uuid(str(parameters.get("flow_run_id") or ""), "flow-run")))


def _first_about_its_subject(client: SyncPrefectClient) -> bool:
    """Whether this alert run is the first one about its flow run (or task run).

    Automation actions are delivered at least once (one state change has been seen to start
    two alert runs here): of the alert runs with the same parameters, only the earliest
    created that did not fail sends. Parameters are fixed at creation, so every duplicate
    reaches the same verdict whatever order they start in.
    """
    deployment = deployment_id()
    if deployment is None:  # started by hand, not by an automation
        return True
    mine = _subject(runtime.flow_run.parameters)
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(deployment)])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=200,
    )
    same = [
        run
        for run in runs
        if (run.parameters.get("flow_run_id") or run.parameters.get("task_run_id"))
        and _subject(run.parameters) == mine
        and (
            run.state is None
            or run.state.type not in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
        )
    ]
    if not same:
        return True
    first = min(
        same, key=lambda run: (run.created or datetime.max.replace(tzinfo=UTC), str(run.id))
    )
    return str(first.id) == str(runtime.flow_run.id)


@flow(
    name="alert",
    flow_run_name=_alert_run_name,
    description="Send one alert about a run of ours; started by deployments/automations/.",
)
def alert(flow_run_id: str | None = None, task_run_id: str | None = None) -> str:
    """Publish one alert about a flow run that failed, crashed or is late, or about a task run
    past its SLA; returns the subject sent, or why nothing was sent (an earlier alert run sent
    it; the task is no longer running; its flow run already ended).

    Args:
        flow_run_id: The run that failed, crashed or is late (the automation passes
            ``{{ event.resource.id }}``, ``prefect.flow-run.<id>``; a bare id works too).
        task_run_id: Instead, the task run past its SLA (``prefect.task-run.<id>``).
    """
    if not (flow_run_id or task_run_id):
        raise ConfigurationError("alert needs flow_run_id or task_run_id")
    settings = load_settings()
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        if not _first_about_its_subject(client):
            logger.info("an earlier alert run covers %s: not sent twice", runtime.flow_run.name)
            return "skipped: sent by an earlier alert run"
        if task_run_id:
            task_run = client.read_task_run(_uuid(task_run_id, "task-run"))
            if task_run.flow_run_id is None:
                return "skipped: the task run has no flow run"
            run = client.read_flow_run(task_run.flow_run_id)
            if task_run.state is None or not task_run.state.is_running():
                # It finished between the window's end and now (the trigger saw it late).
                return f"skipped: {task_run.name} is {task_run.state_name}"
            if run.state and run.state.is_final():
                # The run ended: its own alert (failed, crashed) covers the tasks it left
                # Running.
                logger.info("no SLA alert: flow run %s is %s", run.name, run.state.name)
                return f"skipped: {run.name} is {run.state.name}"
            message = sla_alert(run, task_run, settings.task_sla_seconds)
        else:
            run = client.read_flow_run(_uuid(flow_run_id or "", "flow-run"))
            flow_name = client.read_flow(run.flow_id).name
            message = run_state_alert(run, flow_name, failed_tasks(client, run.id))
    build_resources(settings).notifier.send(message)
    return message.subject


def report_outcome(flow: Any, flow_run: FlowRun, state: State) -> None:
    """Flow hook (completion, failure, crash): ``RunSucceeded`` and, for an ad-hoc run that did
    not complete, its failure alert (deployment runs get theirs from the automations)."""
    try:
        resources = build_resources(load_settings())
    except Exception:  # a broken configuration already failed the run with its own message
        log.exception("could not report the outcome of %s", flow_run.name)
        return
    succeeded = state.type == StateType.COMPLETED
    resources.metrics.put(
        [
            Metric(
                "RunSucceeded",
                1.0 if succeeded else 0.0,
                "None",
                datetime.now(UTC),
                {"Flow": flow.name},
            )
        ]
    )
    if succeeded or flow_run.deployment_id is not None:
        return
    try:
        with get_client(sync_client=True) as client:
            tasks = failed_tasks(client, flow_run.id)
    except Exception:  # the alert matters more than its detail
        tasks = []
    # The hook's state is newer than the run the engine handed over.
    current = flow_run.model_copy(update={"state": state})
    try:
        resources.notifier.send(run_state_alert(current, flow.name, tasks))
    except Exception:
        log.exception("could not send the failure alert for %s", flow_run.name)
