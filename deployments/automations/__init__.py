"""Prefect automations of the pipeline, kept as files and applied by one idempotent command.

```bash
python -m deployments.automations apply            # after `prefect deploy --all`
```

Each ``*.yaml`` file here is one automation in Prefect's own schema (``AutomationCore``: name,
trigger, actions), with two kinds of placeholders filled in when applied:

- ``${deployment:FLOW/NAME}``: the id of that deployment on the server applied to (so the
  deployments must exist first);
- ``${task_sla_seconds}``: ``ECOM_TASK_SLA_SECONDS`` (7200 by default).

Automations are matched by name: a new one is created, an existing one is updated in place
(duplicates of one name are reduced to one), so applying twice changes nothing. The same files
work against a self-hosted server and Prefect Cloud (``PREFECT_API_URL`` decides).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.events.schemas.automations import AutomationCore
from prefect.exceptions import ObjectNotFound

from ecom_pipeline.errors import ConfigurationError

AUTOMATIONS_DIR = Path(__file__).resolve().parent
_PLACEHOLDER = re.compile(r"\$\{([a-z_]+)(?::([^}]+))?\}")


@dataclass(frozen=True)
class Applied:
    name: str
    id: UUID
    action: Literal["created", "updated"]


def render(text: str, *, deployment_ids: dict[str, UUID], task_sla_seconds: float) -> str:
    """Fill the ``${…}`` placeholders of one automation file.

    Raises:
        ConfigurationError: naming the placeholder that has no value.
    """

    def value(match: re.Match[str]) -> str:
        kind, argument = match.group(1), match.group(2)
        if kind == "deployment" and argument:
            if argument not in deployment_ids:
                raise ConfigurationError(
                    f"deployment {argument!r} is not on the server: run `prefect deploy --all` "
                    "before applying the automations"
                )
            return str(deployment_ids[argument])
        if kind == "task_sla_seconds" and argument is None:
            return f"{task_sla_seconds:g}"
        raise ConfigurationError(f"unknown placeholder {match.group(0)!r}")

    return _PLACEHOLDER.sub(value, _without_comments(text))


def _without_comments(text: str) -> str:
    """The file without its comment lines (which may mention placeholders)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def referenced_deployments(text: str) -> set[str]:
    return {
        m.group(2)
        for m in _PLACEHOLDER.finditer(_without_comments(text))
        if m.group(1) == "deployment"
    }


def load_automations(
    client: SyncPrefectClient, task_sla_seconds: float, folder: Path = AUTOMATIONS_DIR
) -> list[AutomationCore]:
    """Every automation file of ``folder``, rendered for the server ``client`` talks to."""
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigurationError(f"no automation files (*.yaml) in {folder}")
    texts = {path: path.read_text(encoding="utf-8") for path in files}
    names = set().union(*(referenced_deployments(t) for t in texts.values()))
    ids = {}
    for name in sorted(names):
        try:
            ids[name] = client.read_deployment_by_name(name).id
        except ObjectNotFound:  # reported below with the placeholder that needs it
            continue
    automations = []
    for path, text in texts.items():
        try:
            document: Any = yaml.safe_load(
                render(text, deployment_ids=ids, task_sla_seconds=task_sla_seconds)
            )
            automations.append(AutomationCore.model_validate(document))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path.name}: {exc}") from None
        except ValueError as exc:  # YAML or schema
            raise ConfigurationError(f"{path.name}: not a valid automation: {exc}") from None
    return automations


def apply_automations(
    client: SyncPrefectClient, automations: list[AutomationCore]
) -> list[Applied]:
    """Create or update each automation by name; returns what was done to each."""
    done = []
    for automation in automations:
        existing = client.read_automations_by_name(automation.name)
        if not existing:
            done.append(Applied(automation.name, client.create_automation(automation), "created"))
            continue
        keep, *extra = sorted(existing, key=lambda a: str(a.id))
        client.update_automation(keep.id, automation)
        for duplicate in extra:
            client.delete_automation(duplicate.id)
        done.append(Applied(automation.name, keep.id, "updated"))
    return done
