"""deployments/stack.yaml through `python -m deployments.stack`, against moto's server.

The stack is deployed with the README's command into moto's CloudFormation (in an account of
its own, see aws_stack.py), then what it created is read back through each service's API:
bucket encryption, topic and subscription, repository, cluster, log group, the ECS events
queue and its EventBridge rule, the roles and their policies, the dashboard, the outputs.

moto's CloudFormation (5.2) does not create everything the template declares: it skips the
resource types in MOTO_SKIPPED_TYPES and ignores some properties of the bucket
(MOTO_IGNORED_BUCKET_PROPERTIES). Those are checked in the template itself (as CloudFormation
receives it, decoded by cfn-lint), cfn-lint checks them against CloudFormation's resource
schemas, and `test_moto_still_skips_what_is_checked_in_the_template` fails the day moto starts
creating them, so that the check can move to the live side.
"""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import prefect_aws
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from cfnlint.decode import decode_str
from prefect_aws.settings import EcsObserverSqsSettings

from deployments import stack as stack_cli_module
from ecom_pipeline.gold.tables import GOLD_TABLES, MONTH

from .aws_stack import ACCOUNT, REGION, Account, deploy_stack, open_account, stack_cli
from .conftest import PROJECT_ROOT, VENV_BIN

TEMPLATE_FILE = PROJECT_ROOT / "deployments" / "stack.yaml"
GRAFANA_FILE = PROJECT_ROOT / "deployments" / "grafana-dashboard.json"
BUCKET = "ecom-stack-test-lake"
EMAIL = "data-oncall@example.com"
PARAMS = (f"LakeBucketName={BUCKET}", f"AlertEmail={EMAIL}")

#: The metrics the pipeline emits (namespace EcomPipeline): name → its one dimension.
METRICS: dict[str, str | None] = {
    "RowsRead": "Dataset",
    "RowsWritten": "Dataset",
    "RowsQuarantined": "Dataset",
    "RowsSuperseded": "Dataset",
    "StageSeconds": "Stage",
    "RunSucceeded": "Flow",
    "FreshnessSeconds": None,
}
#: Resource types moto's CloudFormation skips with "No Moto CloudFormation support for …".
MOTO_SKIPPED_TYPES = {
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::Glue::Database",
    "AWS::Glue::Table",
    "AWS::CloudWatch::Alarm",
}
#: AWS::S3::Bucket properties moto's CloudFormation ignores (it applies encryption and tags).
MOTO_IGNORED_BUCKET_PROPERTIES = {
    "LifecycleConfiguration",
    "PublicAccessBlockConfiguration",
    "OwnershipControls",
}
#: Allow statements on every resource ("*"), each because the action takes no resource (or
#: no useful one), and the condition key that narrows it where one exists.
WILDCARD_ALLOWED = {
    "ecr:GetAuthorizationToken": None,
    "cloudwatch:PutMetricData": "cloudwatch:namespace",
    "ecs:RegisterTaskDefinition": None,
    "ecs:DeregisterTaskDefinition": None,
    "ecs:DescribeTaskDefinition": None,
    "ecs:RunTask": "ecs:cluster",
    "ecs:DescribeTasks": "ecs:cluster",
    "ecs:StopTask": "ecs:cluster",
    "ecs:TagResource": "ecs:CreateAction",
    "ec2:DescribeVpcs": None,
    "ec2:DescribeSubnets": None,
}
LAKE_ARN = f"arn:aws:s3:::{BUCKET}"

# moto warns for every resource type its CloudFormation skips; the gaps are tested below.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Tried to parse .* not supported by moto:UserWarning"
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, errors = decode_str(TEMPLATE_FILE.read_text(encoding="utf-8"))
    assert not errors, errors
    return json.loads(json.dumps(decoded))  # plain dicts


@pytest.fixture(scope="module")
def account(moto_endpoint: str) -> Account:
    return open_account(moto_endpoint)


@pytest.fixture(scope="module")
def outputs(account: Account) -> dict[str, str]:
    """The README's first step: deploy the stack (a create here)."""
    return deploy_stack(account, PARAMS)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


# ------------------------------------------------------------------------------ deploy


def test_deploy_creates_the_stack_and_prints_its_outputs(
    account: Account, outputs: dict[str, str]
) -> None:
    (stack,) = account.client("cloudformation").describe_stacks(StackName="ecom-pipeline")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["LakeBucketName"] == BUCKET and params["AlertEmail"] == EMAIL
    role = f"arn:aws:iam::{ACCOUNT}:role"
    assert outputs["LakeUri"] == f"s3://{BUCKET}"
    assert outputs["AlertsTopicArn"] == f"arn:aws:sns:{REGION}:{ACCOUNT}:ecom-pipeline-alerts"
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert outputs["ImageRepositoryUri"] == f"{registry}/ecom-pipeline"
    assert outputs["ClusterName"] == "ecom-pipeline"
    # The names prefect.yaml builds from AWS_ACCOUNT_ID.
    assert outputs["TaskRoleArn"] == f"{role}/ecom-pipeline-task"
    assert outputs["TaskExecutionRoleArn"] == f"{role}/ecom-pipeline-task-execution"
    assert outputs["RedshiftCopyRoleArn"] == f"{role}/ecom-pipeline-redshift-copy"
    assert outputs["FlowRunLogGroupName"] == "/ecs/ecom-pipeline"
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:prefect-ecs-tasks-events"
    assert outputs["EcsEventsQueueArn"] == queue
    assert outputs["DashboardName"] == "ecom-pipeline"


def test_redeploy_is_idempotent_and_keeps_parameters_not_given(
    account: Account, outputs: dict[str, str]
) -> None:
    assert deploy_stack(account, PARAMS) == outputs  # nothing changed: success, same outputs
    # An update with one parameter keeps the others (no silent reset to the defaults) and
    # reaches the resources that use it.
    other = "someone-else@example.com"
    assert deploy_stack(account, [f"AlertEmail={other}"]) == outputs
    (stack,) = account.client("cloudformation").describe_stacks(StackName="ecom-pipeline")["Stacks"]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["AlertEmail"] == other and params["LakeBucketName"] == BUCKET
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    sns = account.client("sns")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=outputs["AlertsTopicArn"])
    assert [s["Endpoint"] for s in subscriptions["Subscriptions"]] == [other]
    deploy_stack(account, [f"AlertEmail={EMAIL}"])  # back, for the other tests


def test_deploy_rejects_an_unknown_parameter_before_touching_the_stack(
    account: Account, outputs: dict[str, str]
) -> None:
    result = stack_cli(account, "deploy", "--param", "AlertEmial=x@example.com", check=False)
    assert result.returncode == 1
    assert "AlertEmial" in result.stderr and "AlertEmail" in result.stderr


# ------------------------------------------------------------------------------ the lake


def test_lake_bucket_is_encrypted(account: Account, outputs: dict[str, str]) -> None:
    s3 = account.client("s3")
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags["project"] == "ecom-pipeline"


def test_repository_scans_on_push(template: dict[str, Any]) -> None:
    """Template side: moto's CloudFormation passes `ScanOnPush` on in CloudFormation's casing,
    which its ECR API then does not read back (describe_repositories shows nothing)."""
    repository = template["Resources"]["ImageRepository"]["Properties"]
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repository["EncryptionConfiguration"] == {"EncryptionType": "AES256"}


def test_lake_bucket_blocks_public_access_and_denies_plain_http(template: dict[str, Any]) -> None:
    """Template side (moto's CloudFormation skips these; see the module docstring)."""
    bucket = template["Resources"]["LakeBucket"]
    assert bucket["DeletionPolicy"] == "Retain"  # deleting the stack never deletes the lake
    block = bucket["Properties"]["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert bucket["Properties"]["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}
    ]
    (policy,) = _resources(template, "AWS::S3::BucketPolicy").values()
    assert policy["Bucket"] == {"Ref": "LakeBucket"}
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [
        {"Fn::GetAtt": ["LakeBucket", "Arn"]},
        {"Fn::Sub": "${LakeBucket.Arn}/*"},
    ]


def test_lifecycle_rules_implement_the_retention_of_spec_section_2(
    template: dict[str, Any],
) -> None:
    rules = template["Resources"]["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    expiring = {rule["Prefix"]: rule["ExpirationInDays"] for rule in rules if "Prefix" in rule}
    assert expiring == {"raw/": 30, "quarantine/": 365, "_runs/": 365, "gold/": 5 * 365}
    # Silver is Delta: its files and log live as long as the table references them; its 365
    # days are the retention flow's (drop old date partitions, then vacuum), never S3's.
    assert not any(prefix.startswith("processed") for prefix in expiring)
    (abort,) = [rule for rule in rules if "AbortIncompleteMultipartUpload" in rule]
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "Prefix" not in abort and "ExpirationInDays" not in abort  # the whole bucket


# ------------------------------------------------------------------------------ alerts, image, ECS


def test_alerts_topic_has_the_email_subscription(account: Account, outputs: dict[str, str]) -> None:
    sns = account.client("sns")
    topic = outputs["AlertsTopicArn"]
    assert topic in {t["TopicArn"] for t in sns.list_topics()["Topics"]}
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", EMAIL)]


def test_repository_cluster_and_log_group(account: Account, outputs: dict[str, str]) -> None:
    (repository,) = account.client("ecr").describe_repositories(repositoryNames=["ecom-pipeline"])[
        "repositories"
    ]
    assert repository["repositoryUri"] == outputs["ImageRepositoryUri"]
    assert repository["imageTagMutability"] == "IMMUTABLE"  # tags are commit hashes

    (cluster,) = account.client("ecs").describe_clusters(clusters=["ecom-pipeline"])["clusters"]
    assert cluster["status"] == "ACTIVE"
    assert cluster["clusterArn"] == outputs["ClusterArn"]

    (group,) = account.client("logs").describe_log_groups(logGroupNamePrefix="/ecs/ecom-pipeline")[
        "logGroups"
    ]
    assert group["logGroupName"] == "/ecs/ecom-pipeline"


def test_ecs_task_state_changes_go_to_the_observers_queue(
    account: Account, outputs: dict[str, str], template: dict[str, Any]
) -> None:
    sqs = account.client("sqs")
    url = sqs.get_queue_url(QueueName="prefect-ecs-tasks-events")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["QueueArn"] == outputs["EcsEventsQueueArn"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":prefect-ecs-tasks-events-dlq")

    events = account.client("events")
    rule = events.describe_rule(Name="ecom-pipeline-ecs-task-state")
    assert rule["State"] == "ENABLED"
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"clusterArn": [outputs["ClusterArn"]]},
    }
    (target,) = events.list_targets_by_rule(Rule="ecom-pipeline-ecs-task-state")["Targets"]
    assert target["Arn"] == outputs["EcsEventsQueueArn"]

    # What prefect-aws's observer reads by default, and the pattern of prefect-aws's own
    # events stack (templates/ecs/events-only.json), with our cluster.
    assert EcsObserverSqsSettings().queue_name == "prefect-ecs-tasks-events"
    reference = json.loads(
        (Path(prefect_aws.__file__).parent / "templates" / "ecs" / "events-only.json").read_text()
    )
    (upstream,) = [
        r["Properties"]["EventPattern"]
        for r in reference["Resources"].values()
        if r["Type"] == "AWS::Events::Rule"
    ]
    upstream["detail"]["clusterArn"] = [outputs["ClusterArn"]]
    assert json.loads(rule["EventPattern"]) == upstream

    # The queue policy that lets EventBridge deliver (template side: moto skips the type).
    (policy,) = _resources(template, "AWS::SQS::QueuePolicy").values()
    assert policy["Queues"] == [{"Ref": "EcsEventsQueue"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": ["EcsEventsQueue", "Arn"]}
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["EcsTaskStateRule", "Arn"]}}
    }


# ------------------------------------------------------------------------------ IAM


def _role_statements(iam: Any, role: str) -> list[dict[str, Any]]:
    """Every statement of the role's inline and attached policies, as IAM holds them."""
    statements: list[dict[str, Any]] = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        statements += _as_list(_as_json(document)["Statement"])
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(
            PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
        )["PolicyVersion"]
        statements += _as_list(_as_json(version["Document"])["Statement"])
    return statements


def _as_json(document: Any) -> dict[str, Any]:
    if isinstance(document, dict):
        return document
    try:
        return dict(json.loads(document))
    except json.JSONDecodeError:
        # moto's CloudFormation stores a role's inline policies as Python reprs (a moto quirk;
        # IAM returns JSON): read that, and nothing else, as a literal.
        return dict(ast.literal_eval(document))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Action → the resources it is allowed on."""
    grants: dict[str, set[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, set()).update(_as_list(statement["Resource"]))
    return grants


@pytest.mark.parametrize(
    "role",
    [
        "ecom-pipeline-task",
        "ecom-pipeline-task-execution",
        "ecom-pipeline-redshift-copy",
        "ecom-pipeline-worker",
    ],
)
def test_roles_grant_nothing_on_every_resource_but_what_has_no_resource(
    account: Account, outputs: dict[str, str], role: str
) -> None:
    statements = _role_statements(account.client("iam"), role)
    assert statements, f"{role} has no policy"
    for statement in statements:
        actions = _as_list(statement["Action"])
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement
        if "*" in _as_list(statement["Resource"]):
            for action in actions:
                assert action in WILDCARD_ALLOWED, f"{role}: {action} on *"
                key = WILDCARD_ALLOWED[action]
                if key:
                    conditions = {k for block in statement["Condition"].values() for k in block}
                    assert key in conditions, f"{role}: {action} on * without {key}"


def test_task_role_reaches_the_named_prefixes_the_topic_and_its_metrics(
    account: Account, outputs: dict[str, str]
) -> None:
    iam = account.client("iam")
    trust = iam.get_role(RoleName="ecom-pipeline-task")["Role"]["AssumeRolePolicyDocument"]
    (assume,) = _as_json(trust)["Statement"]
    assert assume["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    statements = _role_statements(iam, "ecom-pipeline-task")
    grants = _grants(statements)
    layers = {f"{LAKE_ARN}/{p}/*" for p in ("processed", "quarantine", "gold", "_runs")}
    assert grants["s3:GetObject"] == layers | {f"{LAKE_ARN}/raw/*"}
    assert grants["s3:DeleteObject"] == layers | {f"{LAKE_ARN}/raw/*"}
    assert grants["s3:PutObject"] == layers  # bronze is never written
    assert grants["s3:ListBucket"] == {LAKE_ARN}
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert set(listing["Condition"]["StringLike"]["s3:prefix"]) == {
        "raw/*",
        "processed/*",
        "quarantine/*",
        "gold/*",
        "_runs/*",
    }
    assert grants["sns:Publish"] == {outputs["AlertsTopicArn"]}
    (metrics,) = [s for s in statements if s["Action"] == "cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "EcomPipeline"}}
    assert not any(a.startswith(("secretsmanager:", "iam:", "ecs:")) for a in grants)


def test_execution_role_pulls_the_image_reads_the_two_secrets_writes_the_logs(
    account: Account, outputs: dict[str, str]
) -> None:
    grants = _grants(_role_statements(account.client("iam"), "ecom-pipeline-task-execution"))
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/ecom-pipeline"
    assert grants["ecr:BatchGetImage"] == {repository}
    assert grants["ecr:GetDownloadUrlForLayer"] == {repository}
    secrets = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecom-pipeline"
    assert grants["secretsmanager:GetSecretValue"] == {
        f"{secrets}/pii-hash-key-??????",
        f"{secrets}/warehouse-url-??????",
    }
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/ecom-pipeline"
    assert {r.removesuffix(":*") for r in grants["logs:PutLogEvents"]} == {
        log_group,
        f"{log_group}:log-stream",
    }
    assert not any(a.startswith(("s3:", "sns:", "sqs:")) for a in grants)


def test_worker_policy_runs_tasks_passes_only_the_two_roles_and_reads_the_events_queue(
    account: Account, outputs: dict[str, str]
) -> None:
    grants = _grants(_role_statements(account.client("iam"), "ecom-pipeline-worker"))
    assert grants["iam:PassRole"] == {outputs["TaskRoleArn"], outputs["TaskExecutionRoleArn"]}
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert grants[action] == {outputs["EcsEventsQueueArn"]}
    assert "ecs:RunTask" in grants and "ecs:RegisterTaskDefinition" in grants
    assert not any(a.startswith(("s3:", "secretsmanager:")) for a in grants)


def test_redshift_copy_role_reads_gold_only(account: Account, outputs: dict[str, str]) -> None:
    grants = _grants(_role_statements(account.client("iam"), "ecom-pipeline-redshift-copy"))
    assert grants == {"s3:ListBucket": {LAKE_ARN}, "s3:GetObject": {f"{LAKE_ARN}/gold/*"}}


# ------------------------------------------------------------------------------ Glue


_GLUE_TYPES = {
    pa.string(): "string",
    pa.int64(): "bigint",
    pa.date32(): "date",
    pa.decimal128(18, 2): "decimal(18,2)",
}


def test_glue_tables_describe_silver_delta_and_gold_parquet(template: dict[str, Any]) -> None:
    """Template side (moto's CloudFormation skips Glue): what Athena needs to read them."""
    (database,) = _resources(template, "AWS::Glue::Database").values()
    assert database["DatabaseInput"]["Name"] == "ecom_pipeline"
    tables = {
        t["TableInput"]["Name"]: t["TableInput"]
        for t in _resources(template, "AWS::Glue::Table").values()
    }
    silver = {"orders", "customers", "payments", "employees"}
    assert set(tables) == {f"silver_{d}" for d in silver} | {f"gold_{t.name}" for t in GOLD_TABLES}
    for dataset in silver:
        table = tables[f"silver_{dataset}"]
        # Athena's Delta reader: location + table_type only; schema from the _delta_log.
        assert table["Parameters"] == {"table_type": "DELTA"}
        assert table["StorageDescriptor"] == {
            "Location": {"Fn::Sub": f"s3://${{LakeBucketName}}/processed/{dataset}/"}
        }
    for gold in GOLD_TABLES:
        table = tables[f"gold_{gold.name}"]
        columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        expected = [(f.name, _GLUE_TYPES[f.type]) for f in gold.schema if f.name != MONTH]
        assert columns == expected, gold.name
        assert table["PartitionKeys"] == [{"Name": MONTH, "Type": "string"}]
        location = f"s3://${{LakeBucketName}}/gold/{gold.name}/"
        assert table["StorageDescriptor"]["Location"] == {"Fn::Sub": location}
        assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith(
            "ParquetHiveSerDe"
        )
        parameters = table["Parameters"]
        assert parameters["projection.enabled"] == "true"
        assert parameters["projection.month.format"] == "yyyy-MM"
        assert parameters["storage.location.template"] == {"Fn::Sub": location + "month=${!month}/"}


# ------------------------------------------------------------------------------ metrics


def _dashboard_metrics(body: dict[str, Any]) -> dict[str, str | None]:
    """Metric name → dimension of every metric a CloudWatch dashboard body shows."""
    found: dict[str, str | None] = {}
    for widget in body["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            for item in row:
                if isinstance(item, dict) and "expression" in item:
                    expression = item["expression"]
                    assert expression.startswith("SEARCH('{EcomPipeline,"), expression
                    dimension = expression.split(",", 1)[1].split("}", 1)[0]
                    name = expression.split('MetricName="', 1)[1].split('"', 1)[0]
                    found[name] = dimension
            if row and row[0] == "EcomPipeline":
                found[row[1]] = None
    return found


def test_cloudwatch_dashboard_shows_every_metric(account: Account, outputs: dict[str, str]) -> None:
    body = account.client("cloudwatch").get_dashboard(DashboardName="ecom-pipeline")[
        "DashboardBody"
    ]
    dashboard = json.loads(body)
    assert _dashboard_metrics(dashboard) == METRICS
    regions = {w["properties"].get("region") for w in dashboard["widgets"] if w["type"] == "metric"}
    assert regions == {REGION}


def test_grafana_dashboard_shows_the_same_metrics_from_cloudwatch() -> None:
    dashboard = json.loads(GRAFANA_FILE.read_text(encoding="utf-8"))
    found: dict[str, str | None] = {}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["type"] == "cloudwatch"
        for target in panel["targets"]:
            assert target["namespace"] == "EcomPipeline"
            assert target["datasource"] == {"type": "cloudwatch", "uid": "${datasource}"}
            dimensions = list(target["dimensions"])
            assert len(dimensions) <= 1
            found[target["metricName"]] = dimensions[0] if dimensions else None
            if dimensions:  # every value of the dimension, one series each
                assert target["dimensions"][dimensions[0]] == "*"
                assert target["matchExact"] is False
    assert found == METRICS
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "cloudwatch"


def test_freshness_alarm_pages_the_alerts_topic(template: dict[str, Any]) -> None:
    """Template side (moto's CloudFormation skips alarms)."""
    (alarm,) = _resources(template, "AWS::CloudWatch::Alarm").values()
    assert (alarm["Namespace"], alarm["MetricName"]) == ("EcomPipeline", "FreshnessSeconds")
    assert alarm["Threshold"] == {"Ref": "FreshnessAlarmSeconds"}
    assert template["Parameters"]["FreshnessAlarmSeconds"]["Default"] == 36 * 3600
    assert alarm["TreatMissingData"] == "breaching"  # no run at all is an alert too
    assert alarm["AlarmActions"] == [{"Ref": "AlertsTopic"}]


# ------------------------------------------------------------------------------ moto's gaps


def test_moto_still_skips_what_is_checked_in_the_template(
    account: Account, outputs: dict[str, str], template: dict[str, Any]
) -> None:
    """Fails once moto creates one of these from CloudFormation: then assert it live above."""
    declared = {r["Type"] for r in template["Resources"].values()}
    assert declared >= MOTO_SKIPPED_TYPES
    bucket_properties = set(template["Resources"]["LakeBucket"]["Properties"])
    assert bucket_properties >= MOTO_IGNORED_BUCKET_PROPERTIES

    stack_resources = account.client("cloudformation").list_stack_resources(
        StackName="ecom-pipeline"
    )["StackResourceSummaries"]
    created_types = {r["ResourceType"] for r in stack_resources}
    assert not created_types & MOTO_SKIPPED_TYPES, created_types & MOTO_SKIPPED_TYPES
    s3 = account.client("s3")
    for call, missing in (
        (s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration"),
        (s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration"),
        (s3.get_bucket_policy, "NoSuchBucketPolicy"),
    ):
        with pytest.raises(ClientError, match=missing):
            call(Bucket=BUCKET)
    with pytest.raises(ClientError, match="EntityNotFound"):
        account.client("glue").get_database(Name="ecom_pipeline")
    assert account.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


# ------------------------------------------------------------------------------ cfn-lint


def _cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "cfn-lint"), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_template_passes_cfn_lint() -> None:
    result = _cfn_lint(TEMPLATE_FILE)
    # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational.
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_lifecycle_rule(tmp_path: Path) -> None:
    """The lint test can fail: a rule with a misspelt property and a bad value is an error."""
    broken = TEMPLATE_FILE.read_text(encoding="utf-8").replace(
        "ExpirationInDays: 30", 'ExpirationInDay: "thirty"'
    )
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")
    result = _cfn_lint(path)
    assert result.returncode & 2, result.stdout
    assert "ExpirationInDay" in result.stdout


# ------------------------------------------------------------------------------ worker service


def test_worker_service_when_the_stack_is_given_the_prefect_api_image_and_network(
    moto_endpoint: str, template: dict[str, Any]
) -> None:
    account = open_account(moto_endpoint, account="510987654321")
    image = "510987654321.dkr.ecr.eu-west-1.amazonaws.com/ecom-pipeline:3f2a9c1d0b7e"
    deploy_stack(
        account,
        [
            "LakeBucketName=ecom-stack-test-lake-worker",
            "PrefectApiUrl=https://prefect.example.internal/api",
            f"WorkerImage={image}",
            "WorkerSubnetIds=subnet-aaa,subnet-bbb",
            "WorkerSecurityGroupIds=sg-ccc",
        ],
    )
    ecs = account.client("ecs")
    (service,) = ecs.describe_services(cluster="ecom-pipeline", services=["ecom-pipeline-worker"])[
        "services"
    ]
    assert service["status"] == "ACTIVE" and service["desiredCount"] == 1
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])[
        "taskDefinition"
    ]
    assert definition["family"] == "ecom-pipeline-worker"
    (container,) = definition["containerDefinitions"]
    assert container["image"] == image
    assert container["command"] == [
        "prefect", "worker", "start", "--pool", "ecom-ecs", "--type", "ecs"
    ]  # fmt: skip
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["PREFECT_API_URL"] == "https://prefect.example.internal/api"
    assert "secrets" not in container or not container["secrets"]  # no API key given
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/ecs/ecom-pipeline-worker"
    iam = account.client("iam")
    attached = iam.list_attached_role_policies(RoleName="ecom-pipeline-worker")
    assert [p["PolicyName"] for p in attached["AttachedPolicies"]] == ["ecom-pipeline-worker"]
    assert iam.get_role(RoleName="ecom-pipeline-worker-execution")["Role"]["RoleName"]

    # Template side: moto's CloudFormation drops these task definition and service settings.
    worker = template["Resources"]["WorkerTaskDefinition"]["Properties"]
    assert worker["RequiresCompatibilities"] == ["FARGATE"] and worker["NetworkMode"] == "awsvpc"
    assert worker["TaskRoleArn"] == {"Fn::GetAtt": ["WorkerRole", "Arn"]}
    assert worker["ExecutionRoleArn"] == {"Fn::GetAtt": ["WorkerExecutionRole", "Arn"]}
    network = template["Resources"]["WorkerService"]["Properties"]["NetworkConfiguration"]
    assert network["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"


def test_no_worker_service_without_the_prefect_api(
    account: Account, outputs: dict[str, str]
) -> None:
    services = account.client("ecs").list_services(cluster="ecom-pipeline")["serviceArns"]
    assert services == []
    with pytest.raises(ClientError, match="NoSuchEntity"):
        account.client("iam").get_role(RoleName="ecom-pipeline-worker-execution")


# ------------------------------------------------------------------------------ to Prefect


def _exports(text: str) -> dict[str, str]:
    """``export K=V`` lines as a shell would read them."""
    found = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export" and len(words) == 2, line
        name, _, value = words[1].partition("=")
        found[name] = value
    return found


def test_secrets_are_created_once_and_never_printed(
    account: Account, outputs: dict[str, str]
) -> None:
    secretsmanager = account.client("secretsmanager")
    # Without the warehouse URL: the PII key is created, and the error says what is missing.
    first = stack_cli(account, "secrets", check=False)
    assert first.returncode == 1
    assert "--set-warehouse-url" in first.stderr
    key = secretsmanager.get_secret_value(SecretId="ecom-pipeline/pii-hash-key")["SecretString"]
    assert len(key) == 64 and int(key, 16) >= 0  # 32 random bytes, hex

    url = "redshift+redshift_connector://loader:s3cr3t-pw@example.com:5439/analytics"
    second = stack_cli(account, "secrets", "--set-warehouse-url", stdin=url + "\n")
    stored = secretsmanager.get_secret_value(SecretId="ecom-pipeline/warehouse-url")
    assert stored["SecretString"] == url
    # A new URL replaces the old one; the PII key stays (a new key would change every hash).
    stack_cli(account, "secrets", "--set-warehouse-url", stdin=url.replace("pw", "pw2"))
    again = secretsmanager.get_secret_value(SecretId="ecom-pipeline/pii-hash-key")
    assert again["SecretString"] == key
    assert secretsmanager.get_secret_value(SecretId="ecom-pipeline/warehouse-url")[
        "SecretString"
    ].endswith("s3cr3t-pw2@example.com:5439/analytics")
    for result in (first, second):
        assert key not in result.stdout + result.stderr
        assert "s3cr3t" not in result.stdout + result.stderr
    assert f"ecom-pipeline/warehouse-url: {stored['ARN']}" in second.stdout.splitlines()


def test_env_exports_what_prefect_yaml_needs(account: Account, outputs: dict[str, str]) -> None:
    stack_cli(account, "secrets", "--set-warehouse-url", stdin="duckdb:///x.duckdb")
    secretsmanager = account.client("secretsmanager")
    exports = _exports(stack_cli(account, "env").stdout)
    assert exports == {
        "AWS_ACCOUNT_ID": ACCOUNT,
        "AWS_REGION": REGION,
        "ECR_REGISTRY": outputs["ImageRepositoryUri"].split("/")[0],
        "ECOM_PII_KEY_SECRET_ARN": secretsmanager.describe_secret(
            SecretId="ecom-pipeline/pii-hash-key"
        )["ARN"],
        "ECOM_WAREHOUSE_URL_SECRET_ARN": secretsmanager.describe_secret(
            SecretId="ecom-pipeline/warehouse-url"
        )["ARN"],
    }


def test_pool_template_carries_the_stacks_cluster_roles_logs_and_network(
    account: Account, outputs: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "ecom-ecs.json"
    printed = stack_cli(account, "pool-template", "--output", str(path)).stdout.strip()
    assert printed == str(path)
    written = json.loads(path.read_text(encoding="utf-8"))
    base = json.loads(stack_cli_module.BASE_JOB_TEMPLATE.read_text(encoding="utf-8"))
    properties = written["variables"]["properties"]
    assert properties["cluster"]["default"] == outputs["ClusterName"]
    assert properties["task_role_arn"]["default"] == outputs["TaskRoleArn"]
    assert properties["execution_role_arn"]["default"] == outputs["TaskExecutionRoleArn"]
    assert properties["cloudwatch_logs_options"]["default"] == {
        "awslogs-group": outputs["FlowRunLogGroupName"],
        "awslogs-region": REGION,
    }
    # Nothing else differs from the project's template.
    changed = ("cluster", "task_role_arn", "execution_role_arn", "cloudwatch_logs_options")
    for name in changed:
        properties[name]["default"] = base["variables"]["properties"][name]["default"]
    assert written == base

    stack_cli(
        account,
        "pool-template",
        "--output",
        str(path),
        "--subnet",
        "subnet-aaa",
        "--subnet",
        "subnet-bbb",
        "--security-group",
        "sg-ccc",
    )
    network = json.loads(path.read_text(encoding="utf-8"))["variables"]["properties"][
        "network_configuration"
    ]["default"]
    assert network == {
        "subnets": ["subnet-aaa", "subnet-bbb"],
        "securityGroups": ["sg-ccc"],
        "assignPublicIp": "DISABLED",
    }


# ------------------------------------------------------------------------------ CLI, offline


def test_parse_params_names_a_malformed_item() -> None:
    assert stack_cli_module.parse_params(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(stack_cli_module.StackError, match="'AlertEmail'"):
        stack_cli_module.parse_params(["AlertEmail"])


def _stubbed_stack(status: str) -> tuple[Any, Stubber]:
    """A CloudFormation client answering with AWS's own responses for the two cases moto
    does not produce: "No updates are to be performed." and a stack left in
    ROLLBACK_COMPLETE by a failed create (botocore's Stubber checks every request against
    the API model)."""
    client = boto3.client(
        "cloudformation",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stack = {
        "StackName": "ecom-pipeline",
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ecom-pipeline/1",
        "StackStatus": status,
        "CreationTime": "2026-12-01T00:00:00Z",
        "Parameters": [{"ParameterKey": "AlertEmail", "ParameterValue": EMAIL}],
        "Outputs": [{"OutputKey": "ClusterName", "OutputValue": "ecom-pipeline"}],
    }
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "ecom-pipeline"})
    return client, stubber


def test_an_update_with_nothing_to_change_is_success() -> None:
    client, stubber = _stubbed_stack("UPDATE_COMPLETE")
    stubber.add_client_error(
        "update_stack",
        service_error_code="ValidationError",
        service_message="No updates are to be performed.",
        http_status_code=400,
        expected_params={
            "StackName": "ecom-pipeline",
            "TemplateBody": TEMPLATE_FILE.read_text(encoding="utf-8"),
            "Parameters": [{"ParameterKey": "AlertEmail", "ParameterValue": EMAIL}],
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
        },
    )
    with stubber:
        outputs = stack_cli_module.deploy(
            client, "ecom-pipeline", TEMPLATE_FILE.read_text(encoding="utf-8"), {}
        )
    stubber.assert_no_pending_responses()
    assert outputs == {"ClusterName": "ecom-pipeline"}


def test_a_stack_whose_create_failed_is_not_updated_but_explained() -> None:
    client, stubber = _stubbed_stack("ROLLBACK_COMPLETE")
    with stubber, pytest.raises(stack_cli_module.StackError, match="delete-stack"):
        stack_cli_module.deploy(
            client, "ecom-pipeline", TEMPLATE_FILE.read_text(encoding="utf-8"), {}
        )


@pytest.fixture
def no_stack_account(moto_endpoint: str) -> Iterator[Account]:
    yield open_account(moto_endpoint, account="310987654321")


def test_commands_on_a_missing_stack_say_what_to_run(no_stack_account: Account) -> None:
    result = stack_cli(no_stack_account, "env", check=False)
    assert result.returncode == 1
    assert "no stack ecom-pipeline" in result.stderr
    assert "python -m deployments.stack deploy" in result.stderr
