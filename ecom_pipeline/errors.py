"""Every error the pipeline raises on purpose; each message names what, where, expected, found."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a failure the pipeline explains itself (the CLI prints it without a trace)."""


class ConfigurationError(PipelineError):
    """A setting is missing or invalid; raised at start-up, before any work."""


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
        where = source
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}")


class AccountingError(PipelineError):
    """rows_read != rows_written + rows_quarantined + rows_superseded for some input file."""


class QuarantineThresholdError(PipelineError):
    """A dataset's share of quarantined rows exceeded the configured threshold."""


class CommitConflictError(PipelineError):
    """Other writers kept committing to a silver table first, too many times in a row."""


class RunFailedError(PipelineError):
    """The run wrote what was valid but must end failed; the message lists every reason."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))
