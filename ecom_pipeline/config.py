"""Settings from ``ECOM_*`` environment variables (and a local ``.env``), validated at start-up.

Secrets are `SecretStr`: they never print in a repr, a log line or an artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ecom_pipeline.datasets import Dataset
from ecom_pipeline.errors import ConfigurationError

#: The local quick start keeps its generated PII key here (never committed: see .gitignore).
LOCAL_KEY_FILE = ".ecom-pii-key"
MIN_KEY_LENGTH = 16
_IDENTIFIER_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class Settings(BaseSettings):
    """The pipeline's configuration (SPEC §8)."""

    model_config = SettingsConfigDict(
        env_prefix="ECOM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    lake_uri: str = Field("./lake", description="lake root: a folder or s3://bucket[/prefix]")
    warehouse_url: SecretStr = Field(
        SecretStr("duckdb:///warehouse.duckdb"),
        description="SQLAlchemy URL of the warehouse (may hold a password)",
    )
    warehouse_schema: str = Field("gold", description="warehouse schema of the gold tables")
    pii_hash_key: SecretStr | None = Field(None, description="HMAC-SHA256 key for PII columns")
    sns_topic_arn: str | None = Field(None, description="SNS topic for alerts")
    aws_endpoint_url: str | None = Field(None, description="S3/SNS/CloudWatch endpoint override")
    aws_region: str = Field("us-east-1", description="AWS region of S3, SNS and Redshift")
    quarantine_threshold: float = Field(
        0.05, ge=0.0, le=1.0, description="share of quarantined rows that fails a dataset"
    )
    quarantine_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description='per-dataset overrides as JSON, e.g. {"employees": 0.0}',
    )
    metrics: Literal["cloudwatch", "log"] | None = Field(
        None,
        description="where run metrics go: cloudwatch, or log; default cloudwatch in "
        "production, log locally",
    )
    metrics_namespace: str = Field(
        "EcomPipeline", min_length=1, description="CloudWatch namespace of the run metrics"
    )
    redshift_iam_role: str | None = Field(
        None, description="IAM role ARN Redshift assumes to COPY the gold files from S3"
    )
    task_sla_seconds: float = Field(
        7200.0, gt=0, description="a task still running after this long raises an SLA alert"
    )
    scratch_dir: str | None = Field(
        None,
        description="local folder for a run's validated rows between stages (default: the "
        "system temporary folder); needs about the size of a day's raw CSV",
    )
    read_block_bytes: int = Field(
        32 << 20,
        ge=1024,
        description="raw files are read and validated in blocks of about this many bytes",
    )
    merge_batch_rows: int = Field(
        1_000_000,
        ge=10,
        description="rows per step of the silver merge and largest silver file written; "
        "bounds the memory of a run whatever the day's size",
    )
    environment: Literal["local", "production"] = Field(
        "local", description="production refuses to invent a PII key"
    )

    @field_validator("lake_uri")
    @classmethod
    def _lake_uri_is_folder_or_s3(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must be a folder or s3://bucket[/prefix], got an empty string")
        if "://" in value and not value.startswith("s3://"):
            raise ValueError(f"must be a folder or s3://bucket[/prefix], got {value!r}")
        if value.startswith("s3://") and not value.removeprefix("s3://").strip("/"):
            raise ValueError(f"names no bucket: {value!r}")
        return value.rstrip("/") or "/"

    @field_validator("warehouse_schema")
    @classmethod
    def _schema_is_plain_identifier(cls, value: str) -> str:
        # Quoting keeps any name safe in SQL; this keeps names portable across all three engines.
        if not value or not set(value) <= _IDENTIFIER_CHARS or value[0].isdigit():
            raise ValueError(
                f"must be a lower-case identifier (letters, digits, underscore), got {value!r}"
            )
        return value

    @field_validator("pii_hash_key")
    @classmethod
    def _key_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_KEY_LENGTH} characters long")
        return value

    @field_validator("quarantine_thresholds")
    @classmethod
    def _thresholds_name_datasets(cls, value: dict[str, float]) -> dict[str, float]:
        known = {d.value for d in Dataset}
        for name, share in value.items():
            if name not in known:
                raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(known))}")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name}: a share between 0 and 1, got {share}")
        return value

    @property
    def metrics_sink(self) -> Literal["cloudwatch", "log"]:
        """Where metrics go: as configured, else CloudWatch in production and the log locally."""
        if self.metrics is not None:
            return self.metrics
        return "cloudwatch" if self.environment == "production" else "log"

    def threshold_for(self, dataset: str) -> float:
        """The quarantined share above which ``dataset`` fails the run."""
        return self.quarantine_thresholds.get(dataset, self.quarantine_threshold)

    def require_pii_key(self) -> bytes:
        """The PII key, or a clear error telling where it has to come from."""
        if self.pii_hash_key is None:
            raise ConfigurationError(
                "ECOM_PII_HASH_KEY is not set: silver stores names and e-mails as HMAC-SHA256 "
                "hashes and needs a secret key (at least 16 characters) from the environment, "
                "a .env file, or a Prefect Secret block in production. For a local try-out, "
                "`ecom-pipeline init-local` creates one."
            )
        return self.pii_hash_key.get_secret_value().encode("utf-8")


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; a bad value becomes one readable ConfigurationError."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "settings"
            problems.append(f"ECOM_{field.upper()}: {error['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
    if settings.pii_hash_key is None and settings.environment == "local":
        key_file = Path(LOCAL_KEY_FILE)
        if key_file.exists():
            key = key_file.read_text(encoding="utf-8").strip()
            settings.pii_hash_key = SecretStr(key)
    return settings
