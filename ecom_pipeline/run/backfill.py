"""A backfill: the days of a range, what became of each, and the summary people read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from ecom_pipeline.errors import ConfigurationError, RunFailedError
from ecom_pipeline.run.notifier import Alert
from ecom_pipeline.run.report import markdown_text

MAX_DAYS = 366


@dataclass
class DayOutcome:
    day: date
    state: str
    message: str = ""
    flow_run_id: str | None = None


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
        lines = [f"{d.day}: {d.state}{' — ' + d.message if d.message else ''}" for d in self.days]
        if self.failed_days:
            days = " ".join(str(d) for d in self.failed_days)
            lines.append(f"re-run the failed day(s) with: ecom-pipeline run --date <day> ({days})")
        return lines

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
