"""Lake storage: the layers of SPEC §2 on a local folder or on S3, through one interface.

Every key is relative to the lake root (``raw/orders/dt=2026-11-21/orders.csv``). The base class
holds everything that is not a storage primitive (Parquet, JSON, key checks), so the local folder
and S3 behave identically; subclasses only implement five byte-level operations (and
`Lake.open_random_access` where the store can read ranges: S3 reads go through Arrow's S3
filesystem, so Parquet fetches only the column chunks it needs and raw CSV is streamed).
A local lake lists symbolic links as objects and never follows one out of its root.

Two primitives carry the lake lock (``ecom_pipeline.lake.lock``): ``write_bytes``
replaces an object whole or not at all, and ``put_if_absent`` creates an object only if no object
has that key (``O_EXCL`` link locally, ``If-None-Match: *`` on S3). Silver's Delta tables are
written by delta-rs itself, given `Lake.table_uri` and `Lake.delta_storage_options`.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import stat
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ecom_pipeline.errors import (
    ACCESS_REFUSED_AWS_CODES,
    ConfigurationError,
    LakeAccessError,
    LakeKeyError,
)

#: Silver and gold files: zstd, and row groups large enough for analytics.
PARQUET_COMPRESSION = "zstd"
PARQUET_ROW_GROUP_SIZE = 256 * 1024
_FOLDER_RACE_RETRIES = 50
#: Local copies stream in blocks of this size.
COPY_BLOCK_BYTES = 8 << 20
#: A local write stages its bytes under this name first; listings never show such files.
_STAGING_PREFIX = ".ecom-lake-write-"
_STAGING_SUFFIX = ".part"
_BODY_READ_ATTEMPTS = 3


@dataclass(frozen=True)
class LakeObject:
    """One listed object. ``link``: a symbolic link in a local lake (to a file or a folder),
    listed so that nothing under a folder goes unseen, never followed out of the root."""

    key: str
    size: int
    modified: datetime
    link: bool = False


def check_key(key: str) -> str:
    """Refuse keys that could escape the root: absolute, empty segments, ``.`` or ``..``."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise LakeKeyError(key, "invalid: must be a relative path without empty, '.' or '..' parts")
    if "\\" in key or "\x00" in key:
        raise LakeKeyError(key, "invalid: backslash or NUL")
    return key


class Lake(ABC):
    """The lake root, a local folder or an S3 prefix."""

    #: The root as configured: a folder path or ``s3://bucket[/prefix]``.
    root: str
    #: Requests sent again after a transient failure (throttling, 5xx, a reset): boto3's own
    #: retries, reads of a body cut short, and the silver step's Delta operations repeated
    #: after a read cut short (see `record_retries`; Arrow's and delta-rs' internal retries
    #: are not reported to us). The run manifest records it.
    request_retries: int = 0
    _retries_lock = threading.Lock()  # tasks of one run share the lake from several threads

    def record_retries(self, count: int = 1) -> None:
        """Count ``count`` more requests repeated after a transient failure."""
        with self._retries_lock:
            self.request_retries += count

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
        """Create the object only if the key is free; False (and no change) if it exists.

        ``data`` must be unique to the caller (a token, a run id): an object with the very same
        bytes counts as this caller's own create, whose reply a retry may have lost."""

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

    @abstractmethod
    def arrow_filesystem(self, key: str) -> pafs.FileSystem:
        """Arrow's filesystem rooted at the folder ``key``: Parquet under it is read natively,
        in column ranges (about 3 × less CPU than through delta-rs's Python file handler)."""

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

    def open_random_access(self, key: str) -> Any:
        """The object as a seekable file, for formats read in ranges (Parquet reads only the
        column chunks it needs); FileNotFoundError if there is none. The caller closes it."""
        return io.BytesIO(self.read_bytes(key))

    def copy(self, source: str, target: str) -> None:
        """Copy an object within the lake, atomically like `write_bytes`, without holding it
        in memory where the store allows (a server-side copy on S3, a streamed one locally)."""
        self.write_bytes(target, self.read_bytes(source))

    def read_parquet(
        self, keys: Iterable[str], columns: builtins.list[str] | None = None
    ) -> pa.Table:
        """Concatenate these Parquet objects (schemas must agree; at least one key)."""
        tables = []
        for key in keys:
            with self.open_random_access(key) as source:
                tables.append(pq.read_table(source, columns=columns))
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

    def _path(self, key: str, *, follow_last: bool = True) -> Path:
        """The key's path, refused if it resolves out of the root: a link under the lake
        (to a file or a folder) must not make the pipeline read or write elsewhere."""
        path = self.path / check_key(key)
        real = Path(os.path.realpath(path if follow_last else path.parent))
        if real != self.path and self.path not in real.parents:
            raise LakeKeyError(key, "a link that leads out of the lake root: not followed")
        return path

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def open_binary(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def open_random_access(self, key: str) -> Any:
        return self._path(key).open("rb")

    def _stage(self, target: Path, data: bytes | BinaryIO) -> Path:
        # A concurrent delete may remove the folder the moment it empties (see `delete`):
        # make it again and retry, a bounded number of times in case something else is wrong.
        for attempt in range(_FOLDER_RACE_RETRIES):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(
                    dir=target.parent, prefix=_STAGING_PREFIX, suffix=_STAGING_SUFFIX
                )
                break
            except (FileNotFoundError, FileExistsError):
                if attempt == _FOLDER_RACE_RETRIES - 1:
                    raise
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                shutil.copyfileobj(data, handle, COPY_BLOCK_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
        return Path(tmp)

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        tmp = self._stage(target, data)
        os.replace(tmp, target)  # atomic on POSIX

    def copy(self, source: str, target: str) -> None:
        with self._path(source).open("rb") as reader:
            destination = self._path(target)
            tmp = self._stage(destination, reader)
        os.replace(tmp, destination)

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
        # Links are listed, not entered (followlinks=False): a linked folder shows as one object.
        for dirpath, dirs, files in os.walk(folder):
            linked = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
            for name in files + linked:
                if name.startswith(_STAGING_PREFIX) and name.endswith(_STAGING_SUFFIX):
                    continue  # a write in progress: on S3 it would not be visible either
                full = Path(dirpath) / name
                key = full.relative_to(base).as_posix()
                if key.startswith(prefix):
                    try:
                        info = full.lstat()
                    except FileNotFoundError:
                        continue  # deleted since the folder was read: S3 would not list it now
                    found.append(
                        LakeObject(
                            key,
                            info.st_size,
                            datetime.fromtimestamp(info.st_mtime, UTC),
                            link=stat.S_ISLNK(info.st_mode),
                        )
                    )
        return sorted(found, key=lambda o: o.key)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key, follow_last=False)  # a link is removed, not followed
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

    def arrow_filesystem(self, key: str) -> pafs.FileSystem:
        return pafs.SubTreeFileSystem(str(self._path(key)), pafs.LocalFileSystem())


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
        self.client.meta.events.register("after-call.s3", self._count_retries)
        self.client.meta.events.register("after-call.s3", self._refuse_access)
        self._arrow: pafs.S3FileSystem | None = None

    def _count_retries(self, parsed: dict[str, Any], **_: Any) -> None:
        retried = int(parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0))
        if retried:
            self.record_retries(retried)

    def _refuse_access(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        """A refused credential or permission fails as one `LakeAccessError` naming the lake
        and the action, wherever boto3 met it (its own error names neither)."""
        error = parsed.get("Error", {})
        if error.get("Code") in ACCESS_REFUSED_AWS_CODES:
            raise LakeAccessError(self.root, model.name, error["Code"], error.get("Message", ""))

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _arrow_fs(self) -> pafs.S3FileSystem:
        """Arrow's S3 client: streams and ranged reads, so large objects are never fetched
        whole (credentials from the standard AWS chain, as boto3's)."""
        if self._arrow is None:
            options: dict[str, Any] = {"region": self.region}
            if self.endpoint_url:
                endpoint = urlsplit(self.endpoint_url)
                options["endpoint_override"] = endpoint.netloc
                options["scheme"] = endpoint.scheme or "https"
            self._arrow = pafs.S3FileSystem(**options)
        return self._arrow

    def _arrow_path(self, key: str) -> str:
        return f"{self.bucket}/{self._key(key)}"

    def arrow_filesystem(self, key: str) -> pafs.FileSystem:
        return pafs.SubTreeFileSystem(self._arrow_path(key), self._arrow_fs())

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

        # botocore retries a request, not the read of its body: a body cut short is read again.
        for attempt in range(_BODY_READ_ATTEMPTS):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                # By status: a 404 whose error body was cut short has no "NoSuchKey" code.
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    raise FileNotFoundError(self.uri(key)) from None
                raise
            try:
                return bytes(response["Body"].read())
            except (IncompleteReadError, ResponseStreamingError):
                if attempt == _BODY_READ_ATTEMPTS - 1:
                    raise
                self.record_retries()
        raise AssertionError("unreachable")

    def open_binary(self, key: str) -> BinaryIO:
        try:
            stream = self._arrow_fs().open_input_stream(self._arrow_path(key))
        except FileNotFoundError:
            raise FileNotFoundError(self.uri(key)) from None
        return cast(BinaryIO, stream)  # an Arrow NativeFile: read(n), close(), a context manager

    def open_random_access(self, key: str) -> Any:
        try:
            return self._arrow_fs().open_input_file(self._arrow_path(key))
        except FileNotFoundError:
            raise FileNotFoundError(self.uri(key)) from None

    def copy(self, source: str, target: str) -> None:
        # boto3's managed copy: server-side, in parts above its multipart threshold.
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": self._key(source)}, self.bucket, self._key(target)
            )
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(self.uri(source)) from None
            raise

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
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 412 and code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            # The client retries a PUT whose reply was lost, and the retry's 412 may answer our
            # own create. Callers' data is unique (a lock token, a run id): equal bytes mean the
            # object is ours.
            try:
                return self.read_bytes(key) == data
            except FileNotFoundError:
                return False
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
    from ecom_pipeline.lake.failpoints import with_failpoints

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
