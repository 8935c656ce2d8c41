"""Lake storage: the layers of SPEC §2 on a local folder or on S3, through one interface.

Every key is relative to the lake root (``raw/orders/dt=2026-11-21/orders.csv``). The base class
holds everything that is not a storage primitive (Parquet, JSON, key checks), so the local folder
and S3 behave identically; subclasses only implement five byte-level operations.

Two primitives carry the lake lock (``ecom_pipeline.adapters.lake_lock``): ``write_bytes``
replaces an object whole or not at all, and ``put_if_absent`` creates an object only if no object
has that key (``O_EXCL`` link locally, ``If-None-Match: *`` on S3). Silver's Delta tables are
written by delta-rs itself, given `Lake.table_uri` and `Lake.delta_storage_options`.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ecom_pipeline.errors import ConfigurationError, PipelineError

#: Silver and gold files: zstd, and row groups large enough for analytics.
PARQUET_COMPRESSION = "zstd"
PARQUET_ROW_GROUP_SIZE = 256 * 1024
_FOLDER_RACE_RETRIES = 50


@dataclass(frozen=True)
class LakeObject:
    key: str
    size: int
    modified: datetime


class LakeKeyError(PipelineError):
    """A key that would leave the lake root or is not a plain relative path."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the root: absolute, empty segments, ``.`` or ``..``."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise LakeKeyError(f"invalid lake key {key!r}: must be a relative path without '..'")
    if "\\" in key or "\x00" in key:
        raise LakeKeyError(f"invalid lake key {key!r}: backslash or NUL")
    return key


class Lake(ABC):
    """The lake root, a local folder or an S3 prefix."""

    #: The root as configured: a folder path or ``s3://bucket[/prefix]``.
    root: str

    # -- storage primitives -------------------------------------------------------------
    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The object's content; FileNotFoundError if there is none."""

    @abstractmethod
    def open_binary(self, key: str) -> BinaryIO:
        """The object's content as a stream, read in blocks (large raw files are never held
        whole); FileNotFoundError if there is none. The caller closes it."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or replace the object atomically: readers see the old or the new content."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if the key is free; False (and no change) if it exists."""

    @abstractmethod
    def list(self, prefix: str) -> builtins.list[LakeObject]:
        """Every object whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete these objects; a missing one is not an error."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The object's address for other tools (an absolute path or ``s3://…``)."""

    # -- Delta tables (silver) --------------------------------------------------------------
    def table_uri(self, key: str) -> str:
        """The address delta-rs opens the table under ``key`` by."""
        return self.uri(key)

    def delta_storage_options(self) -> dict[str, str]:
        """delta-rs storage options for this lake (credentials come from the environment)."""
        return {}

    # -- built on the primitives ----------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            self.read_bytes(key)
        except FileNotFoundError:
            return False
        return True

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, document: Any) -> None:
        self.write_bytes(key, json_bytes(document))

    def read_parquet(
        self, keys: Iterable[str], columns: builtins.list[str] | None = None
    ) -> pa.Table:
        """Concatenate these Parquet objects (schemas must agree; at least one key)."""
        tables = [pq.read_table(io.BytesIO(self.read_bytes(key)), columns=columns) for key in keys]
        if not tables:
            raise ValueError("read_parquet needs at least one key")
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def write_parquet(self, key: str, table: pa.Table) -> int:
        """Write one Parquet object atomically; returns its size in bytes."""
        buffer = io.BytesIO()
        pq.write_table(
            table,
            buffer,
            compression=PARQUET_COMPRESSION,
            row_group_size=PARQUET_ROW_GROUP_SIZE,
        )
        data = buffer.getvalue()
        self.write_bytes(key, data)
        return len(data)


def json_bytes(document: Any) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True, default=str).encode("utf-8")


class LocalLake(Lake):
    """A folder on this machine (the embedded default, ``./lake``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).resolve()
        self.root = str(self.path)

    def _path(self, key: str) -> Path:
        return self.path / check_key(key)

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def open_binary(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def _stage(self, target: Path, data: bytes) -> Path:
        # A concurrent delete may remove the folder the moment it empties (see `delete`):
        # make it again and retry, a bounded number of times in case something else is wrong.
        for attempt in range(_FOLDER_RACE_RETRIES):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
                break
            except (FileNotFoundError, FileExistsError):
                if attempt == _FOLDER_RACE_RETRIES - 1:
                    raise
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return Path(tmp)

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        tmp = self._stage(target, data)
        os.replace(tmp, target)  # atomic on POSIX

    def put_if_absent(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        tmp = self._stage(target, data)
        try:
            os.link(tmp, target)  # fails if the target exists; content is complete when visible
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True

    def list(self, prefix: str) -> builtins.list[LakeObject]:
        base = self.path
        # Walk only below the deepest folder the prefix names.
        folder = base / prefix.rsplit("/", 1)[0] if "/" in prefix else base
        if not folder.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(base).as_posix()
                if key.startswith(prefix):
                    stat = full.stat()
                    found.append(
                        LakeObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
                    )
        return sorted(found, key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Folders are not objects: drop the ones left empty, as S3 would show none.
            for folder in path.parents:
                if folder == self.path:
                    break
                try:
                    folder.rmdir()
                except OSError:
                    break

    def uri(self, key: str) -> str:
        return str(self._path(key))


class S3Lake(Lake):
    """An S3 bucket and optional prefix; ``endpoint_url`` points at any S3 API (moto, MinIO)."""

    def __init__(
        self,
        root: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client: Any | None = None,
    ) -> None:
        import boto3

        self.root = root.rstrip("/")
        bucket_and_prefix = self.root.removeprefix("s3://")
        self.bucket, _, prefix = bucket_and_prefix.partition("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.region = region
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def read_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(self.uri(key)) from None
        return bytes(response["Body"].read())

    def open_binary(self, key: str) -> BinaryIO:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(self.uri(key)) from None
        body: BinaryIO = response["Body"]  # botocore's StreamingBody: read(n) and close()
        return body

    def write_bytes(self, key: str, data: bytes) -> None:
        # A PUT replaces an object whole: readers get the old or the new version, never a mix.
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def list(self, prefix: str) -> builtins.list[LakeObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                found.append(
                    LakeObject(item["Key"][len(self.prefix) :], item["Size"], item["LastModified"])
                )
        return sorted(found, key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> None:
        batch: builtins.list[dict[str, str]] = []
        for key in keys:
            batch.append({"Key": self._key(key)})
            if len(batch) == 1000:  # the API's limit per request
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, batch: builtins.list[dict[str, str]]) -> None:
        self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def delta_storage_options(self) -> dict[str, str]:
        # Commits use S3's conditional put (delta-rs 1.x default): no locking provider, no
        # DynamoDB. A local S3 API (moto, MinIO) is reached over plain HTTP.
        options = {"AWS_REGION": self.region}
        if self.endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        return options


def open_lake(lake_uri: str, *, endpoint_url: str | None = None, region: str = "us-east-1") -> Lake:
    """The lake for a configured root: ``s3://…`` on S3, anything else a local folder."""
    from ecom_pipeline.adapters.failpoints import with_failpoints

    lake: Lake
    if lake_uri.startswith("s3://"):
        lake = S3Lake(lake_uri, endpoint_url=endpoint_url, region=region)
    elif "://" in lake_uri:
        raise ConfigurationError(f"ECOM_LAKE_URI must be a folder or s3://…, got {lake_uri!r}")
    else:
        lake = LocalLake(lake_uri)
    return with_failpoints(lake)


def unique_name(prefix: str, suffix: str) -> str:
    """A file name no other writer will pick: data files are immutable once written."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}{suffix}"
