"""A backfill: the days of a range, what became of each, and the summary people read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from ecom_pipeline.errors import ConfigurationError, RunFailedError
from ecom_pipeline.run.notifier import Alert
from ecom_pipeline.run.report import RunReport, markdown_text

if TYPE_CHECKING:
    from prefect.states import State

MAX_DAYS = 366


@dataclass
class DayOutcome:
    day: date
    state: str
    message: str = ""
    flow_run_id: str | None = None
    #: Rows read, written, quarantined and superseded (when the day's report came back), and
    #: wall time.
    rows_read: int | None = None
    rows_written: int | None = None
    rows_quarantined: int | None = None
    rows_superseded: int | None = None
    seconds: float | None = None

    def line(self) -> str:
        """``2026-11-18: COMPLETED, 1136 rows in, 1128 out, 3 quarantined, 5 superseded, 5.2 s``."""
        parts = [f"{self.day}: {self.state}"]
        if self.rows_read is not None:
            parts.append(
                f"{self.rows_read} rows in, {self.rows_written} out, "
                f"{self.rows_quarantined} quarantined, {self.rows_superseded} superseded"
            )
        if self.seconds is not None:
            parts.append(f"{self.seconds:.1f} s")
        return ", ".join(parts) + (f" — {self.message}" if self.message else "")


def day_outcome(day: date, state: State, seconds: float) -> DayOutcome:
    """What a daily run's final state says of its day (row counts if its report came back)."""
    outcome = DayOutcome(day, state.type.value, state.message or "", seconds=seconds)
    if state.is_completed():
        report = state.result()
        if isinstance(report, RunReport):
            outcome.rows_read = report.total("rows_read")
            outcome.rows_written = report.total("rows_written")
            outcome.rows_quarantined = report.total("rows_quarantined")
            outcome.rows_superseded = report.total("rows_superseded")
    return outcome


@dataclass
class BackfillSummary:
    days: list[DayOutcome] = field(default_factory=list)

    @property
    def failed_days(self) -> list[date]:
        return [d.day for d in self.days if d.state != "COMPLETED"]

    @property
    def succeeded(self) -> bool:
        return not self.failed_days

    def lines(self) -> list[str]:
        return [d.line() for d in self.days] + self.rerun_hint()

    def rerun_hint(self) -> list[str]:
        if not self.failed_days:
            return []
        days = " ".join(str(d) for d in self.failed_days)
        return [f"re-run the failed day(s) with: ecom-pipeline run --date <day> ({days})"]

    def closing_lines(self) -> list[str]:
        """The totals over the days, then how to re-run failed days (the days were shown)."""
        failed = len(self.failed_days)
        total = f"{len(self.days)} day(s): {len(self.days) - failed} completed, {failed} failed"
        counted = [d for d in self.days if d.rows_read is not None]
        if counted:
            total += (
                f"; {sum(d.rows_read or 0 for d in counted)} rows in, "
                f"{sum(d.rows_written or 0 for d in counted)} out, "
                f"{sum(d.rows_quarantined or 0 for d in counted)} quarantined, "
                f"{sum(d.rows_superseded or 0 for d in counted)} superseded"
            )
        return [total, *self.rerun_hint()]

    def to_markdown(self) -> str:
        """The backfill's Prefect artifact: one line per day, then how to re-run failed days."""
        return "\n".join(["# Backfill", "", *(f"- {markdown_text(line)}" for line in self.lines())])

    def failure(self) -> RunFailedError:
        """The error the backfill ends with when a day failed (the failure alert carries it)."""
        return RunFailedError(
            [
                f"{len(self.failed_days)} of {len(self.days)} day(s) failed: "
                + ", ".join(str(d) for d in self.failed_days)
            ]
        )

    def success_alert(self, run_name: str, flow_run_id: str, flow_run_url: str | None) -> Alert:
        """The one notice of a backfill whose days all succeeded."""
        return Alert(
            kind="success",
            subject=f"[ecom-pipeline] {run_name} succeeded",
            body="\n".join([f"All {len(self.days)} day(s) succeeded.", *self.lines()]),
            flow_run_url=flow_run_url,
            details={"flow_run_id": flow_run_id, "days": len(self.days)},
        )


def days_between(start: date, end: date) -> list[date]:
    if end < start:
        raise ConfigurationError(f"end_date {end} is before start_date {start}")
    count = (end - start).days + 1
    if count > MAX_DAYS:
        raise ConfigurationError(f"{count} days requested; a backfill covers at most {MAX_DAYS}")
    return [start + timedelta(days=i) for i in range(count)]
