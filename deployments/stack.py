"""The AWS side of the pipeline as one CloudFormation stack (deployments/stack.yaml), and the
commands that hand its outputs to Prefect.

Every command talks to AWS through boto3 with the usual credential chain and region
(``AWS_PROFILE``, ``AWS_REGION``, …; ``AWS_ENDPOINT_URL`` points them at a local AWS API such
as moto's server, which is how tests/deployment runs them)::

    python -m deployments.stack deploy --param AlertEmail=oncall@example.com
    python -m deployments.stack secrets --set-warehouse-url     # prompts, not echoed
    python -m deployments.stack pool-template --output .prefect/ecom-ecs.json
    prefect work-pool create ecom-ecs --type ecs --base-job-template .prefect/ecom-ecs.json
    eval "$(python -m deployments.stack env)"
    prefect deploy --all

(``--stack-name`` defaults to ``ecom-pipeline``.)

``deploy`` creates the stack or updates it (parameters not given keep their current value;
"no updates are to be performed" is success), waits until it settles and prints the outputs.
It fails, with the events that say why, if the stack ends anywhere but ``*_COMPLETE``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_FILE = PROJECT_ROOT / "deployments" / "stack.yaml"
BASE_JOB_TEMPLATE = PROJECT_ROOT / "deployments" / "ecs-base-job-template.json"
DEFAULT_STACK_NAME = "ecom-pipeline"
#: The template names IAM roles (prefect.yaml refers to them by name).
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]
POLL_SECONDS = 5.0
TIMEOUT_SECONDS = 3600.0
NO_UPDATES = "No updates are to be performed"
#: Changing the PII key changes every hash in silver: it is created once and never replaced.
PII_KEY_BYTES = 32


class StackError(RuntimeError):
    """A stack operation that did not end in a usable stack; the message says why."""


# ------------------------------------------------------------------------------ deploy


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["Key=Value", …]`` → ``{"Key": "Value"}``; a malformed item is an error naming it."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StackError(f"--param {item!r}: expected KEY=VALUE")
        params[key] = value
    return params


def deploy(
    cloudformation: Any,
    stack_name: str,
    template_body: str,
    params: Mapping[str, str],
    *,
    poll_seconds: float = POLL_SECONDS,
    timeout: float = TIMEOUT_SECONDS,
) -> dict[str, str]:
    """Create or update ``stack_name`` from ``template_body`` and wait; returns its outputs.

    Parameters not in ``params`` keep their current value on an update (their template
    default on a create). An update with nothing to change is success.
    """
    defaults = template_parameters(template_body)
    declared = set(defaults)
    unknown = set(params) - declared
    if unknown:
        raise StackError(
            f"--param {', '.join(sorted(unknown))}: not a parameter of the template "
            f"(it has: {', '.join(sorted(declared))})"
        )
    existing = describe(cloudformation, stack_name)
    if existing is not None and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        raise StackError(
            f"stack {stack_name} is in ROLLBACK_COMPLETE (its creation failed and nothing is "
            f"left to update): delete it (aws cloudformation delete-stack --stack-name "
            f"{stack_name}) and deploy again"
        )
    if existing is None:
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=template_body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=CAPABILITIES,
            OnFailure="ROLLBACK",
            Tags=[{"Key": "project", "Value": "ecom-pipeline"}],
        )
    else:
        parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]
        # A parameter left out of an update takes its template default: carry over the
        # current values that differ from it.
        parameters += [
            previous_value(p)
            for p in existing.get("Parameters", [])
            if p["ParameterKey"] in declared - set(params)
            and p.get("ParameterValue") != defaults[p["ParameterKey"]]
        ]
        try:
            cloudformation.update_stack(
                StackName=stack_name,
                TemplateBody=template_body,
                Parameters=parameters,
                Capabilities=CAPABILITIES,
            )
        except ClientError as exc:
            if NO_UPDATES not in str(exc):
                raise
            return outputs_of(existing)
    stack = wait(cloudformation, stack_name, poll_seconds=poll_seconds, timeout=timeout)
    return outputs_of(stack)


def previous_value(parameter: Mapping[str, str]) -> dict[str, Any]:
    """Keep a stack parameter's current value on update: spelt out, except for NoEcho values
    (shown masked), which CloudFormation keeps with UsePreviousValue."""
    if parameter.get("ParameterValue") == "****":
        return {"ParameterKey": parameter["ParameterKey"], "UsePreviousValue": True}
    return {
        "ParameterKey": parameter["ParameterKey"],
        "ParameterValue": parameter["ParameterValue"],
    }


def template_parameters(template_body: str) -> dict[str, str | None]:
    """The template's parameters and their defaults as CloudFormation shows values (text).
    Short-form tags such as ``!Ref`` are read as plain values: only the top level matters."""
    template = yaml.load(template_body, Loader=_CfnLoader)  # nosec B506: a SafeLoader
    declared = (template or {}).get("Parameters") or {}
    return {
        name: None if "Default" not in spec else str(spec["Default"])
        for name, spec in declared.items()
    }


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation's short-form tags (``!Ref``, ``!Sub``, …)."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _any_tag)


def describe(cloudformation: Any, stack_name: str) -> dict[str, Any] | None:
    """The stack, or None when there is none (a deleted stack is none)."""
    try:
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return None if stack["StackStatus"] == "DELETE_COMPLETE" else stack


def wait(
    cloudformation: Any, stack_name: str, *, poll_seconds: float, timeout: float
) -> dict[str, Any]:
    """Poll until the stack leaves ``*_IN_PROGRESS``; a state other than create/update
    complete is a StackError carrying the failed resources' reasons."""
    deadline = time.monotonic() + timeout
    while True:
        stack = describe(cloudformation, stack_name)
        if stack is None:
            raise StackError(f"stack {stack_name} disappeared while deploying")
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise StackError(f"stack {stack_name} still {status} after {timeout:.0f} s")
        time.sleep(poll_seconds)
    if status in {"CREATE_COMPLETE", "UPDATE_COMPLETE"}:
        return stack
    reasons = failure_reasons(cloudformation, stack_name)
    raise StackError(f"stack {stack_name} ended in {status}:\n{reasons}")


def failure_reasons(cloudformation: Any, stack_name: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
    failed = [
        f"  {e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason', '')}"
        for e in events
        if e["ResourceStatus"].endswith("_FAILED")
    ]
    return "\n".join(failed) or "  (no failed resource events)"


def outputs_of(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_outputs(cloudformation: Any, stack_name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The settled stack and its outputs; a missing stack is a StackError saying what to run."""
    stack = describe(cloudformation, stack_name)
    if stack is None:
        raise StackError(
            f"no stack {stack_name}: run `python -m deployments.stack deploy --stack-name "
            f"{stack_name}` first"
        )
    return stack, outputs_of(stack)


# ------------------------------------------------------------------------------ secrets


def ensure_secrets(
    secretsmanager: Any, outputs: Mapping[str, str], warehouse_url: str | None
) -> dict[str, str]:
    """Create the PII key secret if it is missing (a random key nobody sees; an existing key
    is never replaced: that would change every hash in silver) and, given ``warehouse_url``,
    create or update the warehouse URL secret. Returns the secrets' ARNs by name."""
    pii_name = outputs["PiiKeySecretName"]
    warehouse_name = outputs["WarehouseUrlSecretName"]
    arns: dict[str, str] = {}
    arn = secret_arn(secretsmanager, pii_name)
    if arn is None:
        arn = secretsmanager.create_secret(
            Name=pii_name,
            Description="ecom-pipeline: HMAC key of the PII columns in silver. Never change it.",
            SecretString=secrets.token_hex(PII_KEY_BYTES),
        )["ARN"]
    arns[pii_name] = arn
    arn = secret_arn(secretsmanager, warehouse_name)
    if warehouse_url is not None:
        if not warehouse_url.strip():
            raise StackError("--set-warehouse-url: standard input was empty")
        if arn is None:
            arn = secretsmanager.create_secret(
                Name=warehouse_name,
                Description="ecom-pipeline: SQLAlchemy URL of the warehouse (with its password).",
                SecretString=warehouse_url.strip(),
            )["ARN"]
        else:
            secretsmanager.put_secret_value(SecretId=arn, SecretString=warehouse_url.strip())
    if arn is None:
        raise StackError(
            f"secret {warehouse_name} does not exist: pass the warehouse URL on standard input "
            "with --set-warehouse-url"
        )
    arns[warehouse_name] = arn
    return arns


def read_warehouse_url() -> str:
    """The URL from standard input; on a terminal, asked for without echo (it holds a password
    that does not belong in the shell's history)."""
    if sys.stdin.isatty():
        return getpass.getpass("Warehouse SQLAlchemy URL (not echoed): ")
    return sys.stdin.read()


def secret_arn(secretsmanager: Any, name: str) -> str | None:
    try:
        return str(secretsmanager.describe_secret(SecretId=name)["ARN"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise


# ------------------------------------------------------------------------------ Prefect side


def account_and_region(stack: Mapping[str, Any]) -> tuple[str, str]:
    """From the stack id, ``arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/ID``."""
    parts = str(stack["StackId"]).split(":")
    return parts[4], parts[3]


def pool_template(
    outputs: Mapping[str, str],
    region: str,
    base: Mapping[str, Any],
    subnets: Sequence[str] = (),
    security_groups: Sequence[str] = (),
) -> dict[str, Any]:
    """The ECS work pool's base job template with the stack's cluster, roles and log group as
    defaults (and, given subnets, the network the flow runs use)."""
    template = json.loads(json.dumps(base))
    properties = template["variables"]["properties"]
    properties["cluster"]["default"] = outputs["ClusterName"]
    properties["task_role_arn"]["default"] = outputs["TaskRoleArn"]
    properties["execution_role_arn"]["default"] = outputs["TaskExecutionRoleArn"]
    properties["cloudwatch_logs_options"]["default"] = {
        "awslogs-group": outputs["FlowRunLogGroupName"],
        "awslogs-region": region,
    }
    if subnets:
        network: dict[str, Any] = {"subnets": list(subnets), "assignPublicIp": "DISABLED"}
        if security_groups:
            network["securityGroups"] = list(security_groups)
        properties["network_configuration"]["default"] = network
    elif security_groups:
        raise StackError("--security-group needs --subnet too")
    return template


def deploy_environment(
    stack: Mapping[str, Any], outputs: Mapping[str, str], secretsmanager: Any
) -> dict[str, str]:
    """What prefect.yaml reads from the environment, from the stack and its secrets."""
    account, region = account_and_region(stack)
    registry = outputs["ImageRepositoryUri"].split("/", 1)[0]
    found = {}
    for variable, output in (
        ("ECOM_PII_KEY_SECRET_ARN", "PiiKeySecretName"),
        ("ECOM_WAREHOUSE_URL_SECRET_ARN", "WarehouseUrlSecretName"),
    ):
        arn = secret_arn(secretsmanager, outputs[output])
        if arn is None:
            raise StackError(
                f"secret {outputs[output]} does not exist: run `python -m deployments.stack "
                "secrets` first"
            )
        found[variable] = arn
    return {
        "AWS_ACCOUNT_ID": account,
        "AWS_REGION": region,
        "ECR_REGISTRY": registry,
        **found,
    }


# ------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.stack",
        description="Deploy the ecom-pipeline stack and hand its outputs to Prefect.",
    )
    parser.add_argument("--region", default=None, help="AWS region (default: boto3's)")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
        return sub

    deploy_cmd = add("deploy", "create or update the stack, wait, print its outputs")
    deploy_cmd.add_argument("--template", type=Path, default=TEMPLATE_FILE)
    deploy_cmd.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a stack parameter"
    )
    add("outputs", "print the stack's outputs as JSON")
    secrets_cmd = add("secrets", "create the PII key (once) and set the warehouse URL")
    secrets_cmd.add_argument(
        "--set-warehouse-url",
        action="store_true",
        help="read the warehouse's SQLAlchemy URL from standard input (a prompt on a terminal)",
    )
    pool_cmd = add("pool-template", "write the ECS pool's job template with the stack's values")
    pool_cmd.add_argument("--base", type=Path, default=BASE_JOB_TEMPLATE)
    pool_cmd.add_argument("--output", type=Path, required=True)
    pool_cmd.add_argument("--subnet", action="append", default=[], help="subnet of the flow runs")
    pool_cmd.add_argument("--security-group", action="append", default=[])
    add("env", "print `export` lines of what prefect.yaml needs (eval them)")
    args = parser.parse_args(argv)

    session = boto3.session.Session(region_name=args.region)
    cloudformation = session.client("cloudformation")
    try:
        if args.command == "deploy":
            template_body = args.template.read_text(encoding="utf-8")
            outputs = deploy(
                cloudformation, args.stack_name, template_body, parse_params(args.param)
            )
            print(json.dumps(outputs, indent=2, sort_keys=True))
            return 0
        stack, outputs = stack_outputs(cloudformation, args.stack_name)
        if args.command == "outputs":
            print(json.dumps(outputs, indent=2, sort_keys=True))
        elif args.command == "secrets":
            url = read_warehouse_url() if args.set_warehouse_url else None
            arns = ensure_secrets(session.client("secretsmanager"), outputs, url)
            for name, arn in arns.items():
                print(f"{name}: {arn}")
        elif args.command == "pool-template":
            base = json.loads(args.base.read_text(encoding="utf-8"))
            _, region = account_and_region(stack)
            template = pool_template(outputs, region, base, args.subnet, args.security_group)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
            print(args.output)
        else:  # env
            environment = deploy_environment(stack, outputs, session.client("secretsmanager"))
            for name, value in environment.items():
                print(f"export {name}={shlex.quote(value)}")
    except (StackError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
