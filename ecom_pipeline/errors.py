"""Every error the pipeline raises on purpose; each message names what, where, expected, found.

All of them are here, whatever layer raises them, so that what is retried is decided in one
place: a `PipelineError` is deterministic (retrying repeats it) unless its class says
``transient = True`` (contention that a later attempt can win). See `is_transient`.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any, ClassVar


class PipelineError(Exception):
    """Base class: a failure the pipeline explains itself (the CLI prints it without a trace)."""

    #: True when a later attempt of the same work can succeed (contention, never bad input).
    transient: ClassVar[bool] = False


# -- configuration ------------------------------------------------------------------------
class ConfigurationError(PipelineError):
    """A setting is missing or invalid; raised at start-up, before any work."""


# -- the lake -----------------------------------------------------------------------------
class LakeKeyError(PipelineError):
    """A key that would leave the lake root or is not a plain relative path.

    ``reason`` says what is wrong without the key; the message names the key, escaped.
    """

    def __init__(self, key: str, reason: str = "invalid: not a plain relative path") -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"lake key {printable(key)!r}: {reason}")


class LakeAccessError(PipelineError):
    """The lake refused the run's credentials or permissions (a wrong key, an expired token,
    a denied action). Not transient: the same credentials are refused again."""

    def __init__(self, lake: str, operation: str, code: str, message: str) -> None:
        self.code = code
        super().__init__(
            f"the lake {printable(lake)} refused {operation}: {code} ({printable(message)}); "
            "check the AWS credentials the run uses (AWS_PROFILE, AWS_ACCESS_KEY_ID, the task "
            "role) and that its policy allows this action on the bucket"
        )


class LockTimeoutError(PipelineError):
    """The lock stayed held by another run for longer than we are willing to wait.

    Not transient: the wait (3 h by default) already was the retry; another attempt would wait
    as long again behind a holder that is alive and renewing its lease.
    """


class LockLostError(PipelineError):
    """The holder could not renew its lease in time: another run may have taken the lock.

    Transient: a renewal missed through a storage hiccup or a paused process; doing the locked
    work again under a fresh lock rebuilds it from silver.
    """

    transient = True


# -- input files and row accounting -------------------------------------------------------
class BadFileError(PipelineError):
    """A whole input file is unusable: it is quarantined and the run fails at the end.

    Args:
        source: the file's key relative to the lake root, e.g. ``raw/orders/dt=2026-11-21/a.csv``.
        reason: what is wrong, for people (one sentence).
        line: 1-based line number where the problem was seen, when it is known.
        column: the column concerned, when there is one.
    """

    def __init__(
        self, source: str, reason: str, *, line: int | None = None, column: str | None = None
    ) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        self.column = column
        where = printable(source)  # a newline in a file name must not forge a log line
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}")


class AccountingError(PipelineError):
    """rows_read != rows_written + rows_quarantined + rows_superseded for some input file."""


class QuarantineThresholdError(PipelineError):
    """A dataset's share of quarantined rows exceeded the configured threshold."""


# -- silver -------------------------------------------------------------------------------
class PartitionValueError(PipelineError):
    """A partition value that cannot safely name a folder."""


class CommitConflictError(PipelineError):
    """Other writers kept committing to a silver table first, too many times in a row.

    Transient: contention between concurrent runs (a parallel backfill); the merge is
    idempotent, so the task is retried later, once the other writers are done.
    """

    transient = True


class LegacySilverError(PipelineError):
    """Silver is still in the snapshot format of earlier versions."""


class MigrationError(PipelineError):
    """A silver folder that cannot be converted as it is."""


# -- the warehouse ------------------------------------------------------------------------
class WarehouseLoadError(PipelineError):
    """Staged rows are not a valid replacement of the months (a bug upstream); nothing changed."""


# -- the run ------------------------------------------------------------------------------
class RunFailedError(PipelineError):
    """The run wrote what was valid but must end failed; the message lists every reason."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


def printable(name: str) -> str:
    """A file name or key made safe for one log line: control characters (a newline would
    forge a log line), backslashes and non-printable characters are escaped, the rest kept.
    """
    return "".join(
        c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")
        for c in name
    )


#: Throttling and server-side failures of AWS APIs: the same call succeeds later.
TRANSIENT_AWS_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
#: AWS answers to a request whose credentials or permissions are wrong: no retry cures them.
ACCESS_REFUSED_AWS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
#: How Arrow's S3 client words a network failure, throttling or a server error.
_ARROW_TRANSIENT = re.compile(
    r"AWS Error (NETWORK_CONNECTION|THROTTLING|SLOW_DOWN|SERVICE_UNAVAILABLE|INTERNAL_FAILURE)"
    r"|HTTP status (5\d\d|429)"
)
#: How delta-rs (its object_store) words a transport failure (a reset, a body cut short) or a
#: 5xx/429 answer; it retries some itself but never a body cut short, so one truncated reply
#: would otherwise fail the task. ANSI colour codes are removed before matching.
_OBJECT_STORE_TRANSIENT = re.compile(
    r"Generic S3 error.*?(\bHTTP error\b|Server returned non-2xx status code\W+(5\d\d|429)\b)",
    re.DOTALL,
)
_ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
#: Socket errors that are not `ConnectionError` subclasses but mean the network, not the input.
_TRANSIENT_ERRNOS = frozenset(
    {errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN}
)


class ScratchSpaceError(PipelineError):
    """The scratch folder cannot be used (full disk, file size limit, not a folder, no
    permission). Retrying does not help; the message says which folder and why."""

    def __init__(self, folder: Path, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        remedy = "free space there"
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason, remedy = f"{reason}: a file is in the way of the folder", "move the file"
        super().__init__(
            f"the scratch folder {folder} cannot hold the run's staged rows ({reason}); "
            f"{remedy} or set ECOM_SCRATCH_DIR to a folder on a disk with room"
        )


def is_transient(exc: BaseException) -> bool:
    """True only for failures that retrying can cure: the network (refused, reset, timed out,
    unreachable, DNS "try again"), AWS throttling and 5xx answers (boto3 or Arrow's S3), and a
    lost or unavailable database connection, and the few `PipelineError` classes marked
    ``transient`` (contention: `CommitConflictError`, `LockLostError`). Everything else is
    deterministic: bad input or configuration (every other `PipelineError`), a full disk, a
    permission, a parse error, a bug — retrying repeats it.

    The exception's causes are followed: a wrapper raised ``from`` a connection error is
    transient too, but a `PipelineError` decides for itself (a bad file stays bad even when
    its read was cut short).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PipelineError):
            return current.transient
        if _transient_itself(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_itself(exc: BaseException) -> bool:
    import socket

    from botocore.exceptions import ClientError, ResponseStreamingError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from sqlalchemy.exc import DisconnectionError, OperationalError

    if isinstance(exc, socket.gaierror):  # a name that does not resolve stays unresolved
        return exc.errno == socket.EAI_AGAIN
    if isinstance(exc, ClientError):
        response: dict[str, Any] = dict(exc.response)
        code = response.get("Error", {}).get("Code", "")
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in TRANSIENT_AWS_CODES or status >= 500 or status == 429
    transient_types = (
        ConnectionError,
        TimeoutError,
        BotoConnectionError,
        ResponseStreamingError,
        OperationalError,
        DisconnectionError,
    )
    if isinstance(exc, transient_types):
        return True
    if isinstance(exc, OSError) and (
        exc.errno in _TRANSIENT_ERRNOS or _ARROW_TRANSIENT.search(str(exc)) is not None
    ):
        return True
    from deltalake.exceptions import DeltaError

    text = _ANSI_CODES.sub("", str(exc))
    return isinstance(exc, OSError | DeltaError) and bool(_OBJECT_STORE_TRANSIENT.search(text))
