"""prefect.yaml and the ECS base job template, checked without a server.

`prefect deploy` silently ignores keys it does not know (a typo in `schedules` gives no
schedule, a typo in a job variable gives an ECS default), so these tests compare every key
with what Prefect and the ECS worker actually read, and run the build's shell steps and
templating the way `prefect deploy` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prefect.cli.deploy._models import (
    DeploymentConfig,
    PrefectYamlModel,
    RawScheduleConfig,
    WorkPoolConfig,
)
from prefect.deployments.steps.utility import run_shell_script
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.templating import apply_values
from prefect_aws.workers.ecs_worker import ECSWorker

from deployments import variants
from deployments.s3_trigger import DayBatch, prefect_event

from .conftest import PROJECT_ROOT

PREFECT_FILE = PROJECT_ROOT / "prefect.yaml"
TEMPLATE_FILE = PROJECT_ROOT / "deployments" / "ecs-base-job-template.json"
DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"
TOP_LEVEL_KEYS = {"name", "prefect-version", "build", "push", "pull", "deployments", "definitions"}
# Fargate's valid task sizes (cpu units → memory MiB); anything else fails at RunTask.
FARGATE_SIZES = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4096 + 1, 1024)),
    1024: set(range(2048, 8192 + 1, 1024)),
    2048: set(range(4096, 16384 + 1, 1024)),
    4096: set(range(8192, 30720 + 1, 1024)),
}
DEPLOY_ENV = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "ECOM_PII_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pii-AbCdEf",
    "ECOM_WAREHOUSE_URL_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wh-x",
}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def deployments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in config["deployments"]}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(TEMPLATE_FILE.read_text(encoding="utf-8"))


def _model_keys(model: type) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def test_parses_as_prefect_reads_it_with_no_unknown_key(config: dict[str, Any]) -> None:
    PrefectYamlModel.model_validate(config)  # the CLI's own model
    assert set(config) <= TOP_LEVEL_KEYS, set(config) - TOP_LEVEL_KEYS
    for deployment in config["deployments"]:
        unknown = set(deployment) - _model_keys(DeploymentConfig)
        assert not unknown, f"{deployment['name']}: keys prefect deploy ignores: {unknown}"
        assert set(deployment["work_pool"]) <= _model_keys(WorkPoolConfig)
        for schedule in deployment.get("schedules") or []:
            RawScheduleConfig.model_validate(schedule)  # extra="forbid": typos fail here


def test_no_sla_key_anywhere(config: dict[str, Any]) -> None:
    """`sla:` makes `prefect deploy` exit 1 on a self-hosted server (Cloud-only feature)."""
    text = PREFECT_FILE.read_text(encoding="utf-8")
    assert not re.search(r"^\s*-?\s*sla\s*:", text, re.MULTILINE)
    assert all("sla" not in d for d in config["deployments"])


def test_the_four_deployments_and_their_entrypoints_import(
    deployments: dict[str, dict[str, Any]],
) -> None:
    assert set(deployments) == {"daily", "backfill", "retention", "alert"}
    assert deployments["alert"]["entrypoint"] == "flows/alerts.py:alert"
    assert deployments["daily"]["entrypoint"] == "flows/daily.py:daily"
    assert deployments["backfill"]["entrypoint"] == "flows/backfill.py:backfill"
    assert deployments["retention"]["entrypoint"] == "flows/retention.py:retention"
    for name, deployment in deployments.items():
        flow = load_flow_from_entrypoint(str(PROJECT_ROOT / deployment["entrypoint"]))
        # Deployment "flow/name" addresses: backfill starts children of "daily/daily".
        assert flow.name == name
    from flows.backfill import DAILY_DEPLOYMENT

    assert DAILY_DEPLOYMENT == "daily/daily"


def test_schedules(deployments: dict[str, dict[str, Any]]) -> None:
    (daily,) = deployments["daily"]["schedules"]
    assert daily["cron"] == "0 2 * * *"
    assert daily["timezone"] == "UTC"
    assert daily["slug"] == "daily-0200-utc"
    assert not deployments["backfill"].get("schedules")
    (retention,) = deployments["retention"]["schedules"]
    assert retention["timezone"] == "UTC" and retention["slug"]
    slugs = [s["slug"] for d in deployments.values() for s in d.get("schedules") or []]
    assert len(slugs) == len(set(slugs))


def test_all_on_the_ecs_pool_with_valid_job_variables(
    deployments: dict[str, dict[str, Any]], template: dict[str, Any]
) -> None:
    known = set(template["variables"]["properties"])
    for name, deployment in deployments.items():
        pool = deployment["work_pool"]
        assert pool["name"] == "ecom-ecs"
        job_variables = pool["job_variables"]
        assert set(job_variables) <= known, f"{name}: unknown job variables"
        for key in (
            "image",
            "cpu",
            "memory",
            "cluster",
            "task_role_arn",
            "execution_role_arn",
            "configure_cloudwatch_logs",
            "cloudwatch_logs_options",
            "env",
            "container_secrets",
        ):
            assert key in job_variables, f"{name}: no {key}"
        assert job_variables["memory"] in FARGATE_SIZES[job_variables["cpu"]], name
        assert job_variables["env"]["ECOM_LAKE_URI"] == "s3://ecommerce-data"
        assert job_variables["env"]["ECOM_ENVIRONMENT"] == "production"
        # The heartbeat automation (deployments/automations/) needs runs that send heartbeats.
        assert int(job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) > 0
        # Secrets only by reference: never a value in prefect.yaml or the run's environment.
        secret_names = {s["name"] for s in job_variables["container_secrets"]}
        assert secret_names == {"ECOM_PII_HASH_KEY", "ECOM_WAREHOUSE_URL"}
        assert not secret_names & set(job_variables["env"])
        assert all(s["valueFrom"].startswith("{{ $") for s in job_variables["container_secrets"])


def test_build_push_pull(config: dict[str, Any]) -> None:
    steps = {next(iter(step)): next(iter(step.values())) for step in config["build"]}
    build = steps["prefect_docker.deployments.steps.build_docker_image"]
    assert build["dockerfile"] == "docker/Dockerfile"
    assert build["platform"] == "linux/amd64"
    assert build["id"] == "build-image"
    assert build["tag"] == "{{ image-tag.stdout }}"
    # Docker logs in to ECR, then pushes: in that order, and nothing else in the section.
    assert [next(iter(step)) for step in config["push"]] == [
        "prefect.deployments.steps.run_shell_script",
        "prefect_docker.deployments.steps.push_docker_image",
    ]
    login, push = config["push"]
    assert login["prefect.deployments.steps.run_shell_script"]["id"] == "ecr-login"
    push_step = push["prefect_docker.deployments.steps.push_docker_image"]
    assert push_step["image_name"] == "{{ build-image.image_name }}"
    assert push_step["tag"] == "{{ build-image.tag }}"
    (pull,) = config["pull"]
    directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert workdirs and workdirs[-1] == directory


def _shell_steps(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in config["build"] if "prefect.deployments.steps.run_shell_script" in s]


def run_steps(steps: list[dict[str, Any]], outputs: dict[str, Any]) -> dict[str, Any]:
    """The shell steps as prefect's ``run_step`` runs them (templated with earlier outputs,
    then the environment), minus its block/variable resolution, which needs an API server."""
    outputs = dict(outputs)
    for step in steps:
        (inputs,) = step.values()
        inputs = apply_values(apply_values(dict(inputs), outputs), dict(os.environ))
        step_id = inputs.pop("id", None)
        inputs.pop("requires", None)
        result = asyncio.run(run_shell_script(**inputs))
        if step_id:
            outputs[step_id] = result
    return outputs


def test_build_shell_steps_compute_defaults_and_templating_resolves(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the shell steps as `prefect deploy` does, then template the job variables."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "ECR_REGISTRY", "IMAGE_TAG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in DEPLOY_ENV.items():
        monkeypatch.setenv(name, value)
    outputs = run_steps(_shell_steps(config), {})
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert outputs["image-name"]["stdout"] == f"{registry}/ecom-pipeline"
    assert outputs["aws-region"]["stdout"] == "eu-west-1"
    tag = outputs["image-tag"]["stdout"]
    assert re.fullmatch(r"[0-9a-f]{12}|\d{8}T\d{4}", tag), tag

    # Same order as prefect deploy: environment placeholders first, then step outputs.
    daily = next(d for d in config["deployments"] if d["name"] == "daily")
    resolved = apply_values(apply_values(daily, dict(os.environ), remove_notset=False), outputs)
    job_variables = resolved["work_pool"]["job_variables"]
    assert job_variables["image"] == f"{registry}/ecom-pipeline:{tag}"
    assert job_variables["task_role_arn"] == "arn:aws:iam::123456789012:role/ecom-pipeline-task"
    assert job_variables["execution_role_arn"].endswith(":role/ecom-pipeline-task-execution")
    assert job_variables["cloudwatch_logs_options"]["awslogs-region"] == "eu-west-1"
    assert (
        job_variables["container_secrets"][0]["valueFrom"] == DEPLOY_ENV["ECOM_PII_KEY_SECRET_ARN"]
    )
    assert "{{" not in json.dumps(job_variables)
    assert resolved["version"] == tag

    monkeypatch.setenv("IMAGE_TAG", "release-7")
    monkeypatch.setenv("ECR_REGISTRY", "registry.example.com/team")
    outputs = run_steps(_shell_steps(config), {})
    assert outputs["image-tag"]["stdout"] == "release-7"
    assert outputs["image-name"]["stdout"] == "registry.example.com/team/ecom-pipeline"


def test_ecr_login_pipes_the_token_of_the_region_into_docker_login_for_the_registry(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The push section's login step, run as `prefect deploy` runs it, against stand-in
    `aws` and `docker` executables that record their arguments and standard input."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "calls"
    (bin_dir / "aws").write_text(
        f'#!/bin/sh\necho "aws $*" >> {record}\necho token-from-ecr\n', encoding="utf-8"
    )
    (bin_dir / "docker").write_text(
        f'#!/bin/sh\necho "docker $* stdin=$(cat)" >> {record}\necho "Login Succeeded"\n',
        encoding="utf-8",
    )
    for tool in ("aws", "docker"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "ECR_REGISTRY", "IMAGE_TAG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in DEPLOY_ENV.items():
        monkeypatch.setenv(name, value)

    outputs = run_steps(_shell_steps(config), {})
    login = [s for s in config["push"] if "prefect.deployments.steps.run_shell_script" in s]
    run_steps(login, outputs)
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert outputs["ecr-registry"]["stdout"] == registry
    assert record.read_text(encoding="utf-8").splitlines() == [
        "aws ecr get-login-password --region eu-west-1",
        f"docker login --username AWS --password-stdin {registry} stdin=token-from-ecr",
    ]


def test_build_refuses_to_start_without_required_environment(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in DEPLOY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ACCOUNT_ID")
    with pytest.raises(RuntimeError, match="export AWS_ACCOUNT_ID"):
        (run_steps(_shell_steps(config)[:1], {}))


def test_base_job_template_is_the_ecs_default_plus_our_settings(template: dict[str, Any]) -> None:
    default = ECSWorker.get_default_base_job_template()
    # Same job configuration keys and every default variable still there (prefect-aws drift).
    assert set(template["job_configuration"]) == set(default["job_configuration"])
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    jsonschema.Draft202012Validator.check_schema(template["variables"])

    task_definition = template["job_configuration"]["task_definition"]
    container = task_definition["containerDefinitions"][0]
    # moto (and EC2 launch types) need container-level cpu/memory.
    assert container["cpu"] == "{{ cpu }}" and container["memory"] == "{{ memory }}"
    assert container["secrets"] == "{{ container_secrets }}"
    assert task_definition["taskRoleArn"] == "{{ task_role_arn }}"
    assert task_definition["executionRoleArn"] == "{{ execution_role_arn }}"
    properties = template["variables"]["properties"]
    assert properties["cluster"]["default"] == "ecom-pipeline"
    assert properties["cpu"]["default"] == 1024
    assert properties["memory"]["default"] == 2048
    assert properties["configure_cloudwatch_logs"]["default"] is True
    assert properties["cloudwatch_logs_options"]["default"]["awslogs-group"] == "/ecs/ecom-pipeline"


def test_resolved_job_variables_validate_against_the_pool_schema(
    config: dict[str, Any], template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the server checks on deploy: the job variables against the pool's schema."""
    for name, value in DEPLOY_ENV.items():
        monkeypatch.setenv(name, value)
    outputs = run_steps(_shell_steps(config), {})
    validator = jsonschema.Draft202012Validator(template["variables"])
    for deployment in config["deployments"]:
        job_variables = apply_values(
            apply_values(
                deployment["work_pool"]["job_variables"], dict(os.environ), remove_notset=False
            ),
            outputs,
        )
        errors = [e.message for e in validator.iter_errors(job_variables)]
        assert not errors, f"{deployment['name']}: {errors}"


def test_daily_trigger_matches_the_lambda_event_and_renders_the_day(
    deployments: dict[str, dict[str, Any]],
) -> None:
    from datetime import UTC, date, datetime

    from prefect.events import DeploymentEventTrigger
    from prefect.server.events.schemas.automations import EventTrigger
    from prefect.server.events.schemas.events import ReceivedEvent

    (spec,) = deployments["daily"]["triggers"]
    trigger = DeploymentEventTrigger.model_validate(spec)  # what prefect deploy builds
    assert trigger.parameters == {"run_date": "{{ event.payload.day }}"}
    server_trigger = EventTrigger.model_validate(
        trigger.model_dump(
            exclude={
                "name",
                "description",
                "enabled",
                "parameters",
                "job_variables",
                "schedule_after",
            },
            mode="json",
        )
    )
    batch = DayBatch(day=date(2026, 11, 20), bucket="ecommerce-data")
    batch.keys.append("raw/orders/dt=2026-11-20/orders-0001.csv")
    batch.sequencers.append("0055AED6DCD90281E5")
    batch.datasets.add("orders")
    event = ReceivedEvent.model_validate(prefect_event(batch, datetime.now(UTC)))
    assert server_trigger.covers(event)
    assert event.payload["day"] == "2026-11-20"


def test_process_pool_variant_keeps_the_deployments_and_swaps_only_the_infrastructure(
    config: dict[str, Any], tmp_path: Path
) -> None:
    derived = variants.process_pool_variant(config, "local-process", tmp_path)
    path = variants.write_variant(derived, tmp_path / "prefect.local.yaml")
    reloaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    PrefectYamlModel.model_validate(reloaded)
    assert reloaded["build"] is None and reloaded["push"] is None
    assert reloaded["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(tmp_path)}}
    ]
    assert "definitions" not in reloaded and "&" not in path.read_text(encoding="utf-8")
    for original, variant in zip(config["deployments"], reloaded["deployments"], strict=True):
        assert variant["work_pool"] == {"name": "local-process", "job_variables": {}}
        for key in ("name", "entrypoint", "schedules", "triggers", "concurrency_limit", "tags"):
            assert variant.get(key) == original.get(key), (original["name"], key)


def test_skip_image_build_variant_drops_only_docker_steps(config: dict[str, Any]) -> None:
    derived = variants.skip_image_build_variant(config)
    assert derived["push"] is None  # ECR login and push: nothing to push without a build
    kept = [next(iter(step)) for step in derived["build"]]
    assert kept and all(k == "prefect.deployments.steps.run_shell_script" for k in kept)
    assert len(kept) == len(_shell_steps(config))
    assert derived["deployments"] == config["deployments"]
