"""Settings (SPEC §8): defaults, validation with readable errors, secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecom_pipeline.config import LOCAL_KEY_FILE, load_settings
from ecom_pipeline.errors import ConfigurationError


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


def test_metrics_go_to_cloudwatch_in_production_and_to_the_log_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().metrics_sink == "log"
    assert load_settings().metrics_namespace == "EcomPipeline"
    monkeypatch.setenv("ECOM_ENVIRONMENT", "production")
    monkeypatch.setenv("ECOM_PII_HASH_KEY", "k" * 32)
    assert load_settings().metrics_sink == "cloudwatch"
    monkeypatch.setenv("ECOM_METRICS", "log")
    assert load_settings().metrics_sink == "log"
    monkeypatch.setenv("ECOM_METRICS", "statsd")
    with pytest.raises(ConfigurationError, match="ECOM_METRICS"):
        load_settings()
