"""The retry, timeout, SLA and caching policy every task of the pipeline shares (SPEC §7)."""

from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from prefect import Task, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext
from prefect.states import State
from prefect.task_engine import TaskRunTimeoutError
from prefect.tasks import exponential_backoff

from ecom_pipeline.errors import is_transient
from ecom_pipeline.run.notifier import Alert
from ecom_pipeline.run.resources import Resources, build_resources
from ecom_pipeline.settings import Settings, load_settings

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

MAX_RETRIES = 3
#: Retries wait about 10 s, 20 s, 40 s, each ±50 % so that parallel runs do not retry in step.
BACKOFF_FACTOR_SECONDS = 10
JITTER_FACTOR = 0.5
#: A hung task is stopped after this long (the SLA alert comes earlier, while it still runs).
TASK_TIMEOUT = timedelta(hours=3)
#: Retries granted per (flow run id, task run name), counted where they are decided.
_granted: Counter[tuple[str, str]] = Counter()
_granted_lock = threading.Lock()


def retry_unless_deterministic(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Retry only transient failures (`is_transient`: network, throttling, 5xx, a lost database
    connection). Bad data, a full disk, a parse error or a bug fail the same way again, and a
    task that ran into its own timeout would hang again: neither is retried."""
    try:
        state.result()
    except TaskRunTimeoutError:
        return False
    except Exception as exc:
        retry = is_transient(exc)
        if retry and task_run is not None:  # asked only while retries remain: one more try
            with _granted_lock:
                _granted[(str(task_run.flow_run_id), task_run.name)] += 1
        return retry
    return False


def retries_granted(flow_run_id: object) -> dict[str, int]:
    """Task run name → retries granted, for the task runs of one flow run (this process ran
    them); the run manifest records them. Taken once: a long-lived worker process that serves
    many runs does not keep their counts."""
    with _granted_lock:
        mine = sorted(key for key in _granted if key[0] == str(flow_run_id))
        return {name: _granted.pop((run, name)) for run, name in mine}


def deployment_id() -> str | None:
    """The deployment the current flow run belongs to, None for an ad-hoc run.

    Read from the flow run the engine holds: in a run without a deployment, Prefect's
    ``runtime.deployment.id`` reads the flow run from the API at every call.
    """
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        found = context.flow_run.deployment_id
        return str(found) if found is not None else None
    return runtime.deployment.id


def send_sla_alert(
    settings: Settings, task_name: str, flow_run_name: str, flow_run_url: str | None
) -> None:
    """Alert that a task is still running past its SLA (called from a timer thread)."""
    limit = settings.task_sla_seconds
    alert = Alert(
        kind="sla",
        subject=f"[ecom-pipeline] {flow_run_name}: {task_name} is past its SLA",
        body=(
            f"Task {task_name} of flow run {flow_run_name} has been running for more than "
            f"{limit:.0f} s (its SLA) and has not finished yet."
        ),
        flow_run_url=flow_run_url,
        details={"task": task_name, "flow_run": flow_run_name, "sla_seconds": limit},
    )
    try:
        build_resources(settings).notifier.send(alert)  # its own adapters: another thread
    except Exception:  # an alerting failure must not disturb the task
        log.exception("could not send the SLA alert for %s", task_name)


def run_settings(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Settings:
    """The settings of the run a task call belongs to: those of its `Resources` argument (every
    task of the pipeline takes one, built once by its flow); loaded here only for a task
    without one (the probes of the tests)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, Resources):
            return value.settings
    return load_settings()


def with_sla(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with a watchdog that alerts once if it outlives the SLA.

    Only for ad-hoc runs: a run of a deployment is watched by the proactive automation in
    ``deployments/automations/`` (which also fires when this process is gone), so a timer here
    would alert twice.
    """

    @functools.wraps(function)
    def watched(*args: P.args, **kwargs: P.kwargs) -> R:
        if deployment_id() is not None:
            return function(*args, **kwargs)
        settings = run_settings(args, kwargs)
        timer = threading.Timer(
            settings.task_sla_seconds,
            send_sla_alert,
            args=(
                settings,
                runtime.task_run.name or function.__name__,
                runtime.flow_run.name or "(no flow run)",
                runtime.flow_run.ui_url,
            ),
        )
        timer.daemon = True
        timer.start()
        try:
            return function(*args, **kwargs)
        finally:
            timer.cancel()

    return watched


def pipeline_task(name: str, **overrides: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``@task`` with the pipeline's policy: 3 retries with exponential backoff and jitter (only
    for transient failures), an SLA watchdog, a timeout, and no input caching (inputs are large
    tables and live adapters)."""
    options: dict[str, Any] = {
        "name": name,
        "task_run_name": name,
        "retries": MAX_RETRIES,
        "retry_delay_seconds": exponential_backoff(backoff_factor=BACKOFF_FACTOR_SECONDS),
        "retry_jitter_factor": JITTER_FACTOR,
        "retry_condition_fn": retry_unless_deterministic,
        "timeout_seconds": TASK_TIMEOUT.total_seconds(),
        "cache_policy": NO_CACHE,
        "persist_result": False,
    }
    options.update(overrides)

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        decorated: Task[P, R] = task(**options)(with_sla(function))
        return decorated

    return decorate
