"""The retry, timeout and caching policy every task of the pipeline shares (SPEC §7)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from ecom_pipeline.errors import PipelineError

MAX_RETRIES = 3
#: Retries wait about 10 s, 20 s, 40 s, each ±50 % so that parallel runs do not retry in step.
BACKOFF_FACTOR_SECONDS = 10
JITTER_FACTOR = 0.5
#: SPEC §7: each task of the daily flow has a 2-hour SLA; the same bound stops a hung task.
TASK_TIMEOUT = timedelta(hours=2)


def retry_unless_deterministic(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Retry I/O failures; never retry a `PipelineError` (bad data fails the same way again)."""
    try:
        state.result()
    except PipelineError:
        return False
    except Exception:
        return True
    return False


def pipeline_task(name: str, **overrides: Any) -> Callable[[Callable[..., Any]], Task[..., Any]]:
    """``@task`` with the pipeline's policy: 3 retries, exponential backoff with jitter, a 2-hour
    timeout, and no input caching (inputs are large tables and live adapters)."""
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
    return task(**options)
