"""Helpers of the stack tests: an AWS account of their own on moto's server, and the CLI.

The stack names IAM roles, a cluster and a bucket; other tests of the session create some of
the same names by hand in moto's default account. So the stack tests work in another account
(moto maps assumed-role credentials to the role's account), like a fresh AWS account would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from .conftest import PROJECT_ROOT

ACCOUNT = "210987654321"
REGION = "eu-west-1"


@dataclass(frozen=True)
class Account:
    """Credentials of one moto account, for boto3 here and for the CLI's subprocesses."""

    endpoint: str
    credentials: Mapping[str, str]

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.credentials["AccessKeyId"],
            aws_secret_access_key=self.credentials["SecretAccessKey"],
            aws_session_token=self.credentials["SessionToken"],
        )

    def env(self) -> dict[str, str]:
        """An operator's shell: this account's credentials, the region, the local endpoint."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_"))}
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.credentials["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": self.credentials["SecretAccessKey"],
                "AWS_SESSION_TOKEN": self.credentials["SessionToken"],
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
            }
        )
        return env


def open_account(endpoint: str, account: str = ACCOUNT) -> Account:
    sts = boto3.client(
        "sts",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/operator", RoleSessionName="stack-tests"
    )["Credentials"]
    opened = Account(endpoint=endpoint, credentials=credentials)
    assert opened.client("sts").get_caller_identity()["Account"] == account
    return opened


def stack_cli(
    account: Account, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python -m deployments.stack <args>`` from the project root, as the README runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "deployments.stack", *args],
        cwd=PROJECT_ROOT,
        env=account.env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"`python -m deployments.stack {' '.join(args)}` exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


def deploy_stack(account: Account, params: Sequence[str]) -> dict[str, str]:
    args = ["deploy", "--stack-name", "ecom-pipeline"]
    for param in params:
        args += ["--param", param]
    outputs: dict[str, str] = json.loads(stack_cli(account, *args).stdout)
    return outputs
