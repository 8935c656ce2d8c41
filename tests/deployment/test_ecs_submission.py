"""The ECS path end to end up to AWS's API: pool → `prefect deploy` → ECS worker → RunTask.

Against moto's server (real HTTP, like AWS): the work pool is created from
deployments/ecs-base-job-template.json with the README's command, the `daily` deployment from
the project's prefect.yaml with the CLI (only the Docker build/push steps left out: there is no
Docker engine; the image reference is computed by the same shell steps), a flow run is created,
and `prefect worker start --type ecs --run-once` submits it. moto never runs containers, so the
test asserts what was asked of ECS: the task definition and the RunTask request.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from .conftest import PREFECT, PROJECT_ROOT, PrefectServer, start_process

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
POOL = "ecom-ecs"
CLUSTER = "ecom-pipeline"
LOG_GROUP = "/ecs/ecom-pipeline"
IMAGE_TAG = "test-3f2a9c1d0b7e"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
RUN_DATE = "2026-11-20"
WORKER_TIMEOUT = 180
ASSUME_ECS_TASKS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def aws(moto_endpoint: str) -> dict[str, str]:
    """The AWS side prefect.yaml expects: cluster, roles, log group, secrets."""
    _client("ecs", moto_endpoint).create_cluster(clusterName=CLUSTER)
    iam = _client("iam", moto_endpoint)
    for role in ("ecom-pipeline-task", "ecom-pipeline-task-execution"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=ASSUME_ECS_TASKS)
    _client("logs", moto_endpoint).create_log_group(logGroupName=LOG_GROUP)
    secrets = _client("secretsmanager", moto_endpoint)
    arns = {
        name: secrets.create_secret(Name=f"ecom-pipeline/{name}", SecretString="never-read")["ARN"]
        for name in ("pii-hash-key", "warehouse-url")
    }
    return {
        # What an operator exports before `prefect deploy` (prefect.yaml's header).
        "AWS_ACCOUNT_ID": ACCOUNT,
        "AWS_REGION": REGION,
        "ECR_REGISTRY": REGISTRY,
        "IMAGE_TAG": IMAGE_TAG,
        "ECOM_PII_KEY_SECRET_ARN": arns["pii-hash-key"],
        "ECOM_WAREHOUSE_URL_SECRET_ARN": arns["warehouse-url"],
    }


@pytest.mark.slow
def test_worker_registers_the_task_definition_and_runs_the_task(
    prefect_server: PrefectServer,
    deploy_variant: Callable[..., dict[str, dict[str, Any]]],
    moto_endpoint: str,
    aws: dict[str, str],
    tmp_path: Any,
) -> None:
    template = PROJECT_ROOT / "deployments" / "ecs-base-job-template.json"
    # The README's command, verbatim but for the path.
    prefect_server.ensure_pool(POOL, "--type", "ecs", "--base-job-template", str(template))
    deployed = deploy_variant("skip-image-build", "--name", "daily", env=aws)
    daily = deployed["daily"]
    assert daily["work_pool_name"] == POOL
    assert daily["job_variables"]["image"] == f"{REGISTRY}/ecom-pipeline:{IMAGE_TAG}"
    run = prefect_server.create_run(daily["id"], {"run_date": RUN_DATE})

    worker_env = {
        **prefect_server.client_env,
        # boto3 honours AWS_ENDPOINT_URL for every client: ECS, EC2 (default VPC), logs.
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    worker = start_process(
        "ecs-worker",
        [PREFECT, "worker", "start", "--pool", POOL, "--type", "ecs", "--run-once"],
        worker_env,
        tmp_path,
    )
    try:
        worker.popen.wait(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"`prefect worker start --run-once` still running after {WORKER_TIMEOUT} s:\n"
            f"{worker.output()}",
            pytrace=False,
        )
    finally:
        worker.stop()
    try:
        _check_submission(moto_endpoint, prefect_server, run["id"], aws, worker.returncode)
    except AssertionError as exc:  # the worker's log says why far better than a diff
        raise AssertionError(f"{exc}\n--- ECS worker output ---\n{worker.output()}") from None


def _task_of(ecs: Any, flow_run_id: str) -> dict[str, Any]:
    """The ECS task started for ``flow_run_id`` (found by the flow run id in its overrides)."""
    arns = ecs.list_tasks(cluster=CLUSTER)["taskArns"]
    assert arns, "RunTask was not called"
    tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
    ours = [
        task
        for task in tasks
        for override in task["overrides"]["containerOverrides"]
        for item in override.get("environment", [])
        if item["name"] == "PREFECT__FLOW_RUN_ID" and item["value"] == flow_run_id
    ]
    assert len(ours) == 1, f"{len(ours)} tasks for flow run {flow_run_id} among {len(tasks)}"
    return ours[0]


def _check_submission(
    moto_endpoint: str,
    prefect_server: PrefectServer,
    flow_run_id: str,
    aws: dict[str, str],
    worker_returncode: int | None,
) -> None:
    assert worker_returncode == 0, f"the worker exited {worker_returncode}"
    ecs = _client("ecs", moto_endpoint)
    task = _task_of(ecs, flow_run_id)
    task_arn = task["taskArn"]
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])[
        "taskDefinition"
    ]

    # The task definition: our image, size, roles, logs and secrets (by reference only).
    (container,) = definition["containerDefinitions"]
    assert container["image"] == f"{REGISTRY}/ecom-pipeline:{IMAGE_TAG}"
    assert definition["cpu"] == "1024" and definition["memory"] == "4096"
    assert container["cpu"] == 1024 and container["memory"] == 4096
    # Read-only root filesystem; the image's one writable folder is the scratch volume.
    assert container["readonlyRootFilesystem"] is True
    assert container["mountPoints"] == [
        {"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": False}
    ]
    assert [volume["name"] for volume in definition["volumes"]] == ["scratch"]
    assert definition["taskRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/ecom-pipeline-task"
    assert definition["executionRoleArn"] == (
        f"arn:aws:iam::{ACCOUNT}:role/ecom-pipeline-task-execution"
    )
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["networkMode"] == "awsvpc"
    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == LOG_GROUP
    assert logs["options"]["awslogs-region"] == REGION
    assert logs["options"]["awslogs-stream-prefix"].startswith(f"prefect-logs_{POOL}")
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == {
        "ECOM_PII_HASH_KEY": aws["ECOM_PII_KEY_SECRET_ARN"],
        "ECOM_WAREHOUSE_URL": aws["ECOM_WAREHOUSE_URL_SECRET_ARN"],
    }

    # The RunTask request: on our cluster, Fargate, the flow-run command and its environment.
    assert task["clusterArn"].endswith(f"cluster/{CLUSTER}")
    assert task["launchType"] == "FARGATE"
    (override,) = task["overrides"]["containerOverrides"]
    assert override["command"] == ["prefect", "flow-run", "execute"]
    environment = {item["name"]: item["value"] for item in override["environment"]}
    assert environment["PREFECT__FLOW_RUN_ID"] == flow_run_id
    assert environment["PREFECT_API_URL"] == prefect_server.api_url
    assert environment["ECOM_LAKE_URI"] == "s3://ecommerce-data"
    assert environment["ECOM_ENVIRONMENT"] == "production"
    assert environment["ECOM_SNS_TOPIC_ARN"] == (
        f"arn:aws:sns:{REGION}:{ACCOUNT}:ecom-pipeline-alerts"
    )
    assert not {"ECOM_PII_HASH_KEY", "ECOM_WAREHOUSE_URL"} & set(environment)
    assert task["overrides"]["taskRoleArn"] == definition["taskRoleArn"]

    # Prefect's side: the run was handed to infrastructure (moto never starts it).
    submitted = prefect_server.get(f"/flow_runs/{flow_run_id}")
    assert submitted["state_type"] == "PENDING", submitted["state"]
    assert submitted["infrastructure_pid"] and task_arn in submitted["infrastructure_pid"]
    assert submitted["parameters"] == {"run_date": RUN_DATE}
