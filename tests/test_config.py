"""Settings (SPEC §8): defaults, validation with readable errors, secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecom_pipeline.errors import ConfigurationError
from ecom_pipeline.settings import LOCAL_KEY_FILE, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("ECOM_")]:
        monkeypatch.delenv(name)


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings()
    assert settings.lake_uri == "./lake"
    assert settings.warehouse_url.get_secret_value() == "duckdb:///warehouse.duckdb"
    assert settings.quarantine_threshold == 0.05
    assert settings.sns_topic_arn is None
    assert settings.pii_hash_key is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ECOM_LAKE_URI", "gs://bucket", "must be a folder or s3://"),
        ("ECOM_LAKE_URI", "s3://", "names no bucket"),
        ("ECOM_QUARANTINE_THRESHOLD", "1.5", "ECOM_QUARANTINE_THRESHOLD"),
        ("ECOM_QUARANTINE_THRESHOLDS", '{"refunds": 0.1}', "unknown dataset 'refunds'"),
        ("ECOM_WAREHOUSE_SCHEMA", 'gold"; drop', "ECOM_WAREHOUSE_SCHEMA"),
        ("ECOM_PII_HASH_KEY", "short", "at least 16 characters"),
        ("ECOM_ENVIRONMENT", "staging", "ECOM_ENVIRONMENT"),
    ],
)
def test_bad_values_fail_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        load_settings()


def test_secrets_never_show_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_PII_HASH_KEY", "super-secret-key-123456")
    monkeypatch.setenv("ECOM_WAREHOUSE_URL", "postgresql+psycopg://u:hunter2@db/x")
    settings = load_settings()
    assert "super-secret" not in repr(settings) and "hunter2" not in repr(settings)
    assert settings.require_pii_key() == b"super-secret-key-123456"


def test_a_missing_key_is_explained_and_the_local_key_file_is_used_locally_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="ECOM_PII_HASH_KEY is not set"):
        load_settings().require_pii_key()
    Path(LOCAL_KEY_FILE).write_text("local-try-out-key-0123456789\n")
    assert load_settings().require_pii_key() == b"local-try-out-key-0123456789"
    monkeypatch.setenv("ECOM_ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError):
        load_settings().require_pii_key()


def test_per_dataset_thresholds_override_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_QUARANTINE_THRESHOLDS", '{"employees": 0.0}')
    settings = load_settings()
    assert settings.threshold_for("employees") == 0.0
    assert settings.threshold_for("orders") == 0.05


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3:///prefix", "names no bucket"),
        ("s3://Upper-Case", "invalid S3 bucket name 'Upper-Case'"),
        ("s3://ab", "invalid S3 bucket name"),
        ("s3://bucket_with_underscore/x", "invalid S3 bucket name"),
        ("s3://192.168.1.10", "invalid S3 bucket name"),
        ("s3://my..bucket", "invalid S3 bucket name"),
        ("s3://bucket//x", "empty, '.' or '..' part"),
        ("s3://bucket/a/../b", "empty, '.' or '..' part"),
    ],
)
def test_s3_lake_roots_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, uri: str, message: str
) -> None:
    monkeypatch.setenv("ECOM_LAKE_URI", uri)
    with pytest.raises(ConfigurationError, match=f"ECOM_LAKE_URI: .*{message}"):
        load_settings()


def test_good_s3_roots_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_LAKE_URI", "s3://ecommerce-data.prod/team-a/lake/")
    assert load_settings().lake_uri == "s3://ecommerce-data.prod/team-a/lake"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a valid SQLAlchemy URL"),
        ("mysql://admin:hunter2@db/x", "unsupported warehouse 'mysql'"),
        ("sqlite:///w.db", "unsupported warehouse 'sqlite'"),
        ("postgresql+asyncpg://admin:hunter2@db/x", "use postgresql\\+psycopg://"),
        ("redshift://admin:hunter2@cluster:5439/dev", "use redshift\\+redshift_connector://"),
        ("duckdb+nope:///w.duckdb", "unsupported driver"),
    ],
)
def test_warehouse_url_and_driver_are_checked_at_start_without_echoing_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.setenv("ECOM_WAREHOUSE_URL", url)
    with pytest.raises(ConfigurationError, match=f"ECOM_WAREHOUSE_URL: .*{message}") as failed:
        load_settings()
    assert "hunter2" not in str(failed.value)
    assert not Path("w.duckdb").exists() and not Path("w.db").exists()


def test_redshift_needs_its_iam_role_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_WAREHOUSE_URL", "redshift+redshift_connector://u@cluster:5439/dev")
    with pytest.raises(ConfigurationError, match="ECOM_REDSHIFT_IAM_ROLE"):
        load_settings()
    monkeypatch.setenv("ECOM_REDSHIFT_IAM_ROLE", "arn:aws:iam::1:role/x' --")
    with pytest.raises(ConfigurationError, match="ECOM_REDSHIFT_IAM_ROLE: invalid Redshift IAM"):
        load_settings()
    monkeypatch.setenv("ECOM_REDSHIFT_IAM_ROLE", "arn:aws:iam::123456789012:role/copy")
    assert load_settings().redshift_iam_role


@pytest.mark.parametrize(
    "key",
    [" " * 16, "\t" * 20, "0123456789abcdef ", " 0123456789abcdef", "a" * 32, "abcabcabcabcabcabc"],
)
def test_weak_or_padded_keys_are_refused_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("ECOM_PII_HASH_KEY", key)
    with pytest.raises(ConfigurationError, match="ECOM_PII_HASH_KEY: the PII key") as failed:
        load_settings()
    assert key not in str(failed.value)  # the message never repeats the key


@pytest.mark.parametrize("content", ["", "\n", "short\n", " " * 16 + "\n", "a" * 40])
def test_the_local_key_file_gets_the_same_check(content: str) -> None:
    Path(LOCAL_KEY_FILE).write_text(content)
    with pytest.raises(ConfigurationError, match=f"{LOCAL_KEY_FILE}: the PII key"):
        load_settings()


def test_an_unreadable_key_file_is_a_configuration_error() -> None:
    Path(LOCAL_KEY_FILE).write_bytes(b"\xff\xfe not utf-8 0123456789")
    with pytest.raises(ConfigurationError, match=f"{LOCAL_KEY_FILE}: cannot be read"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ECOM_AWS_ENDPOINT_URL", "localhost:9000"),
        ("ECOM_AWS_ENDPOINT_URL", "ftp://minio:9000"),
        ("ECOM_AWS_ENDPOINT_URL", "http://minio:9000/bucket"),
        ("ECOM_SNS_TOPIC_ARN", "ecom-alerts"),
        ("ECOM_SNS_TOPIC_ARN", "arn:aws:sqs:us-east-1:123456789012:queue"),
    ],
)
def test_endpoint_and_topic_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


def test_good_endpoint_and_topic_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECOM_AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("ECOM_SNS_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:ecom-alerts")
    settings = load_settings()
    assert settings.aws_endpoint_url == "http://127.0.0.1:9000" and settings.sns_topic_arn


def test_metrics_go_to_cloudwatch_in_production_and_to_the_log_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().metrics_sink == "log"
    assert load_settings().metrics_namespace == "EcomPipeline"
    monkeypatch.setenv("ECOM_ENVIRONMENT", "production")
    monkeypatch.setenv("ECOM_PII_HASH_KEY", "kq7Zp2Lm9Xr4Tb8Vn1Wc6Yd3")
    assert load_settings().metrics_sink == "cloudwatch"
    monkeypatch.setenv("ECOM_METRICS", "log")
    assert load_settings().metrics_sink == "log"
    monkeypatch.setenv("ECOM_METRICS", "statsd")
    with pytest.raises(ConfigurationError, match="ECOM_METRICS"):
        load_settings()
