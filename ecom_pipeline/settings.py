"""Settings from ``ECOM_*`` environment variables (and a local ``.env``), validated at start-up.

Secrets are `SecretStr`: they never print in a repr, a log line or an artifact.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ecom_pipeline.contracts.csv_reader import BLOCK_BYTES
from ecom_pipeline.contracts.datasets import Dataset
from ecom_pipeline.errors import ConfigurationError

#: The local quick start keeps its generated PII key here (never committed: see .gitignore).
LOCAL_KEY_FILE = ".ecom-pii-key"
MIN_KEY_LENGTH = 16
MIN_KEY_DISTINCT_CHARACTERS = 8
_SNS_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
_IDENTIFIER_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
#: Days up to this size overlap their datasets (about 11 M orders). Measured, lanes against one
#: dataset at a time: a 1 M-order day (180 MB of CSV) 8.9 s against 12.3 s, peak 1.0 against
#: 0.9 GiB; a 10 M-order day (1.8 GB) 55.2 s against 74.7 s, peak 2.7 against 2.3 GiB, inside
#: the daily deployment's 4 GB. Memory grows with the day: a larger one runs one at a time.
LANES_MAX_BYTES = 2 * 1024 * 1024 * 1024


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
        BLOCK_BYTES,
        ge=1024,
        description="raw files are read and validated in blocks of about this many bytes",
    )
    lanes_max_bytes: int = Field(
        LANES_MAX_BYTES,
        ge=0,
        description="a day whose files total at most this many bytes processes its datasets "
        "in two lanes at once (customers then orders, beside payments then employees); a larger "
        "day, one dataset at a time, so that memory holds one dataset's merge",
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
        if value.startswith("s3://"):
            check_s3_root(value)
        return value.rstrip("/") or "/"

    @field_validator("aws_endpoint_url")
    @classmethod
    def _endpoint_is_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise ValueError(f"must be http(s)://host[:port], got {value!r}")
        return value

    @field_validator("sns_topic_arn")
    @classmethod
    def _topic_is_an_sns_arn(cls, value: str | None) -> str | None:
        if value is not None and not _SNS_ARN.fullmatch(value):
            raise ValueError(
                f"must be an SNS topic ARN (arn:aws:sns:region:account:name), got {value!r}"
            )
        return value

    @field_validator("warehouse_url")
    @classmethod
    def _warehouse_url_is_usable(cls, value: SecretStr) -> SecretStr:
        check_warehouse_url(value.get_secret_value())
        return value

    @field_validator("warehouse_schema")
    @classmethod
    def _schema_is_plain_identifier(cls, value: str) -> str:
        # Quoting keeps any name safe in SQL; this keeps names portable across all three engines.
        if not value or not set(value) <= _IDENTIFIER_CHARS or value[0].isdigit():
            raise ValueError(
                f"must be a lower-case identifier (letters, digits, underscore), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _effective_settings_are_complete(self) -> Settings:
        # The key is checked once, whatever its source: the environment, .env, or the local
        # key file (read here, before the check, so a short or blank file is refused too).
        if self.pii_hash_key is None and self.environment == "local":
            key_file = Path(LOCAL_KEY_FILE)
            if key_file.exists():
                try:
                    text = key_file.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ValueError(
                        f"{LOCAL_KEY_FILE}: cannot be read ({type(exc).__name__})"
                    ) from None
                self.pii_hash_key = SecretStr(text.strip())
                source = LOCAL_KEY_FILE
            else:
                source = ""
        else:
            source = "ECOM_PII_HASH_KEY"
        if self.pii_hash_key is not None:
            check_pii_key(self.pii_hash_key.get_secret_value(), source)
        if self.warehouse_url.get_secret_value().startswith("redshift"):
            from ecom_pipeline.warehouse.sql import check_iam_role

            if not self.redshift_iam_role:
                raise ValueError(
                    "ECOM_REDSHIFT_IAM_ROLE: a Redshift warehouse needs the IAM role ARN that "
                    "COPY assumes to read the gold files from S3"
                )
            try:
                check_iam_role(self.redshift_iam_role)
            except ValueError as exc:
                raise ValueError(f"ECOM_REDSHIFT_IAM_ROLE: {exc}") from None
        return self

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


def check_pii_key(key: str, source: str) -> str:
    """The HMAC key as given, or ValueError naming its source (never the key)."""
    where = f"{source}: " if source else ""
    if key != key.strip():
        raise ValueError(
            f"{where}the PII key starts or ends with whitespace; remove it (a trimmed copy "
            "elsewhere would hash every name differently)"
        )
    if len(key) < MIN_KEY_LENGTH or len(set(key)) < MIN_KEY_DISTINCT_CHARACTERS:
        raise ValueError(
            f"{where}the PII key must be at least {MIN_KEY_LENGTH} characters long, with at "
            f"least {MIN_KEY_DISTINCT_CHARACTERS} different characters (e.g. "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return key


#: S3 bucket names (the general purpose bucket rules): 3–63 of a-z 0-9 . -, letter or digit at
#: both ends.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_s3_root(uri: str) -> None:
    """Refuse an ``s3://`` lake root whose bucket or prefix S3 would reject or misread."""
    bucket, _, prefix = uri.removeprefix("s3://").rstrip("/").partition("/")
    if not bucket:
        raise ValueError(f"names no bucket: {uri!r} (expected s3://bucket[/prefix])")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _looks_like_ip(bucket):
        raise ValueError(
            f"invalid S3 bucket name {bucket!r}: 3 to 63 lower-case letters, digits, dots and "
            "hyphens, starting and ending with a letter or digit"
        )
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"invalid prefix in {uri!r}: empty, '.' or '..' part")


def _looks_like_ip(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def check_warehouse_url(url: str) -> None:
    """Refuse a warehouse URL that is not one of the three engines with an installed driver.

    Messages never repeat the URL: it may hold a password.
    """
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = sa.make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(
            "not a valid SQLAlchemy URL (expected e.g. duckdb:///warehouse.duckdb, "
            "postgresql+psycopg://user@host/db or redshift+redshift_connector://user@host:5439/db)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in WAREHOUSE_DRIVERS:
        raise ValueError(
            f"unsupported warehouse {backend!r}: expected duckdb, postgresql or redshift"
        )
    driver = WAREHOUSE_DRIVERS[backend]
    # A bare postgresql:// is rewritten to psycopg by the warehouse; a bare redshift:// would
    # mean psycopg2, which is not what the Redshift load is built on.
    if parsed.drivername != driver and not (parsed.drivername == backend and backend != "redshift"):
        raise ValueError(f"unsupported driver {parsed.drivername!r}: use {driver}://")
    try:
        parsed.set(drivername=driver).get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError):
        raise ValueError(f"the {driver} driver is not installed") from None


#: The SQLAlchemy driver each warehouse engine is used with.
WAREHOUSE_DRIVERS: dict[str, str] = {
    "duckdb": "duckdb",
    "postgresql": "postgresql+psycopg",
    "redshift": "redshift+redshift_connector",
}


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; a bad value becomes one readable ConfigurationError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            field = ".".join(str(p) for p in error["loc"])
            problems.append(f"ECOM_{field.upper()}: {message}" if field else message)
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
