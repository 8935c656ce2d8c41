"""The README's "Operate on AWS" procedure, run line by line against moto and a Prefect server.

The bash block of that README section is read from README.md and run as it stands, in an
operator's shell (AWS credentials and region of a fresh moto account, `PREFECT_API_URL` of the
session's server), with only these substitutions:

- the `pip install` line is skipped: the test's venv has the project, prefect-aws and
  prefect-docker, and there is no network to install from;
- the warehouse URL is typed at a prompt in the README; here it comes from a file on stdin;
- `prefect deploy --all` deploys the same prefect.yaml without the Docker build and push
  (`deployments/variants.py skip-image-build`): there is no Docker engine here;
- the worker line gets `--run-once`, after a flow run of `daily` is created.

Then the ECS task the worker submitted is checked against the stack: the stack's cluster, its
two roles, its log group, its secrets, an image in its registry. moto never runs the container.

moto runs in a process of its own here: the stack creates the bucket `ecommerce-data`, and
bucket names are global (in moto as in AWS), so it cannot share the session's moto server,
where the S3 tests own that name.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .aws_stack import REGION, Account, open_account
from .conftest import PROJECT_ROOT, VENV_BIN, PrefectServer, free_port, start_process

README = PROJECT_ROOT / "README.md"
ACCOUNT = "410987654321"  # an account of its own: the procedure starts from nothing
IMAGE_TAG = "procedure-test-7"
RUN_DATE = "2026-11-20"
TIMEOUT = 600
#: The procedure as the README states it (without comments); the test fails when they part.
PROCEDURE = [
    "pip install -e . && pip install prefect-docker",
    "python -m deployments.stack deploy --param AlertEmail=data-oncall@example.com",
    "python -m deployments.stack secrets --set-warehouse-url",
    "python -m deployments.stack pool-template --output .prefect/ecom-ecs.json",
    "prefect work-pool create ecom-ecs --type ecs --base-job-template .prefect/ecom-ecs.json"
    " --overwrite",
    'eval "$(python -m deployments.stack env)"',
    "prefect deploy --all",
    "python -m deployments.automations apply",
    "prefect worker start --pool ecom-ecs --type ecs",
]
WORKER_LINE = PROCEDURE[-1]
AUTOMATIONS_LINE = "python -m deployments.automations apply"


def readme_procedure() -> list[str]:
    """The commands of the first bash block under "## Operate on AWS", comments removed."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Operate on AWS\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in README's Operate on AWS section"
    commands = []
    for line in block.group(1).splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command:
            commands.append(command)
    return commands


def test_readme_states_the_procedure_this_test_runs() -> None:
    assert readme_procedure() == PROCEDURE


def _substitute(command: str, work: Path) -> str:
    if command.startswith("pip install"):
        return ": 'pip install skipped: the test venv has everything, and no network'"
    if command == "python -m deployments.stack secrets --set-warehouse-url":
        return f'{command} < "{work / "warehouse-url"}"'
    if command == "prefect deploy --all":
        variant = work / "prefect.skip-image-build.yaml"
        return (
            f'python -m deployments.variants skip-image-build --output "{variant}" && '
            f'prefect --no-prompt deploy --all --prefect-file "{variant}"'
        )
    if command == AUTOMATIONS_LINE and not (PROJECT_ROOT / "deployments" / "automations").exists():
        # The automations command comes with deployments/automations/ (separate work); until
        # it is in this checkout the step is only checked to be in the README.
        return ": 'deployments.automations is not in this checkout'"
    return command


def _shell_env(account: Account, prefect_server: PrefectServer) -> dict[str, str]:
    """An operator's shell: the account's AWS settings, the Prefect API, the venv first."""
    env = account.env()
    env.update({k: v for k, v in prefect_server.client_env.items() if k.startswith("PREFECT_")})
    env.update(
        {
            "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            "IMAGE_TAG": IMAGE_TAG,
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "COLUMNS": "200",
            "DO_NOT_TRACK": "1",
        }
    )
    return env


def _bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if result.returncode != 0:
        pytest.fail(
            f"the procedure failed ({result.returncode}):\n{script}\n"
            f"stdout:\n{result.stdout[-6000:]}\nstderr:\n{result.stderr[-6000:]}",
            pytrace=False,
        )
    return result


@pytest.fixture(scope="module")
def own_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server in a separate process: an AWS of its own, empty."""
    port = free_port()
    process = start_process(
        "moto-server",
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        {**os.environ},
        tmp_path_factory.mktemp("own-moto"),
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{endpoint}/moto-api/", timeout=2.0).status_code == 200:
                    break
            if process.returncode is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start:\n{process.output()}", pytrace=False)
            time.sleep(0.3)
        yield endpoint
    finally:
        process.stop()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto:UserWarning")
def test_the_readme_procedure_from_an_empty_account_to_a_submitted_flow_run(
    own_moto: str, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    account = open_account(own_moto, account=ACCOUNT)
    env = _shell_env(account, prefect_server)
    url = "redshift+redshift_connector://loader:pw@example.com:5439/analytics"
    (tmp_path / "warehouse-url").write_text(url, encoding="utf-8")

    commands = readme_procedure()
    setup = [_substitute(c, tmp_path) for c in commands if c != WORKER_LINE]
    try:
        _bash("\n".join(setup), env)
    finally:
        # The procedure applies the automations to the session's server: remove them so that
        # they do not act on the runs of later test modules.
        prefect_server.delete_automations()

    daily = prefect_server.deployment("daily", "daily")
    assert daily["work_pool_name"] == "ecom-ecs"
    run = prefect_server.create_run(daily["id"], {"run_date": RUN_DATE})
    _bash(f"{WORKER_LINE} --run-once", env)

    _check_task_against_the_stack(account, prefect_server, run["id"])


def _check_task_against_the_stack(
    account: Account, prefect_server: PrefectServer, flow_run_id: str
) -> None:
    cloudformation = account.client("cloudformation")
    (stack,) = cloudformation.describe_stacks(StackName="ecom-pipeline")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    secretsmanager = account.client("secretsmanager")
    secret_arns = {
        name: secretsmanager.describe_secret(SecretId=f"ecom-pipeline/{name}")["ARN"]
        for name in ("pii-hash-key", "warehouse-url")
    }

    # The work pool carries the stack's values as its defaults.
    pool = prefect_server.get("/work_pools/ecom-ecs")
    defaults = {
        k: v.get("default") for k, v in pool["base_job_template"]["variables"]["properties"].items()
    }
    assert defaults["task_role_arn"] == outputs["TaskRoleArn"]
    assert defaults["execution_role_arn"] == outputs["TaskExecutionRoleArn"]

    ecs = account.client("ecs")
    arns = ecs.list_tasks(cluster=outputs["ClusterName"])["taskArns"]
    tasks = ecs.describe_tasks(cluster=outputs["ClusterName"], tasks=arns)["tasks"]
    ours = [t for t in tasks if _flow_run_of(t) == flow_run_id]
    assert len(ours) == 1, f"{len(ours)} tasks for flow run {flow_run_id} among {len(tasks)}"
    (task,) = ours
    assert task["clusterArn"] == outputs["ClusterArn"]
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])[
        "taskDefinition"
    ]
    assert definition["taskRoleArn"] == outputs["TaskRoleArn"]
    assert definition["executionRoleArn"] == outputs["TaskExecutionRoleArn"]
    (container,) = definition["containerDefinitions"]
    assert container["image"] == f"{outputs['ImageRepositoryUri']}:{IMAGE_TAG}"
    assert (
        container["logConfiguration"]["options"]["awslogs-group"]
        == (outputs["FlowRunLogGroupName"])
    )
    assert container["logConfiguration"]["options"]["awslogs-region"] == REGION
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == {
        "ECOM_PII_HASH_KEY": secret_arns["pii-hash-key"],
        "ECOM_WAREHOUSE_URL": secret_arns["warehouse-url"],
    }
    (override,) = task["overrides"]["containerOverrides"]
    environment = {e["name"]: e["value"] for e in override["environment"]}
    assert environment["ECOM_SNS_TOPIC_ARN"] == outputs["AlertsTopicArn"]
    assert environment["ECOM_REDSHIFT_IAM_ROLE"] == outputs["RedshiftCopyRoleArn"]
    assert environment["ECOM_LAKE_URI"] == outputs["LakeUri"] == "s3://ecommerce-data"


def _flow_run_of(task: dict[str, Any]) -> str | None:
    for override in task["overrides"]["containerOverrides"]:
        for item in override.get("environment", []):
            if item["name"] == "PREFECT__FLOW_RUN_ID":
                return str(item["value"])
    return None
