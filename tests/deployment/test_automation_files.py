"""The automation files render into valid Prefect automations; missing deployments are named."""

from __future__ import annotations

from uuid import uuid4

import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore, Posture

from deployments.automations import AUTOMATIONS_DIR, referenced_deployments, render
from ecom_pipeline.errors import ConfigurationError

OURS = {"daily/daily", "backfill/backfill", "retention/retention", "alert/alert"}


def _rendered(sla: float = 7200) -> dict[str, AutomationCore]:
    ids = {name: uuid4() for name in OURS}
    automations = {}
    for path in sorted(AUTOMATIONS_DIR.glob("*.yaml")):
        text = render(path.read_text(), deployment_ids=ids, task_sla_seconds=sla)
        automations[path.name] = AutomationCore.model_validate(yaml.safe_load(text))
    return automations


def test_every_file_is_a_valid_automation_over_our_deployments() -> None:
    automations = _rendered()
    assert set(automations) == {
        "run-failed-crashed-or-late.yaml",
        "task-run-past-sla.yaml",
        "run-stopped-sending-heartbeats.yaml",
    }
    for path in AUTOMATIONS_DIR.glob("*.yaml"):
        assert referenced_deployments(path.read_text()) <= OURS
    reactive = automations["run-failed-crashed-or-late.yaml"].trigger
    assert reactive.posture == Posture.Reactive
    assert set(reactive.expect) == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.Late",
    }


def test_the_sla_window_is_the_setting_and_fires_once_per_task_run() -> None:
    trigger = _rendered(sla=90)["task-run-past-sla.yaml"].trigger
    assert trigger.posture == Posture.Proactive
    assert trigger.within.total_seconds() == 90
    assert trigger.for_each == {"prefect.resource.id"}
    assert "prefect.task-run.Running" in trigger.after


def test_a_deployment_missing_on_the_server_is_named() -> None:
    text = (AUTOMATIONS_DIR / "run-failed-crashed-or-late.yaml").read_text()
    ids = {name: uuid4() for name in OURS - {"alert/alert"}}
    with pytest.raises(ConfigurationError, match="'alert/alert' is not on the server"):
        render(text, deployment_ids=ids, task_sla_seconds=1)
