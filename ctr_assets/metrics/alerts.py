"""Alerts: the queues whose latest complete interval crosses the service-level target or the abandonment limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ctr_assets.metrics.warehouse import fetch_table, metric_sql


@dataclass(frozen=True)
class QueueInterval:
    """One queue in the latest complete interval (sql/queue_alerts.sql), with what crosses a threshold."""

    interval_start: datetime
    interval_end: datetime
    queue_arn: str
    queue_name: str
    contacts_queued: int
    contacts_within_service_level: int
    contacts_abandoned: int
    service_level: float | None
    abandonment_rate: float | None
    service_level_alert: bool
    abandonment_alert: bool
    service_level_target: float
    abandonment_rate_limit: float
    alert_min_queued: int

    def describe(self, kind: str) -> str:
        """One line a person reads: the queue, its rate, the threshold it crossed, out of how many contacts."""
        if kind == "service_level":
            return (f"{self.queue_name}: service level {self.service_level * 100:.1f}% < target "
                    f"{self.service_level_target:g}% ({self.contacts_within_service_level} of {self.contacts_queued} "
                    "queued in time)")
        return (f"{self.queue_name}: abandonment {self.abandonment_rate * 100:.1f}% > limit "
                f"{self.abandonment_rate_limit:g}% ({self.contacts_abandoned} of {self.contacts_queued} queued)")


def latest_interval(connection: Any) -> list[QueueInterval]:
    """Every queue of the latest complete interval, from `queue_interval_metrics` and `metric_settings`."""
    columns, rows = fetch_table(connection, metric_sql("queue_alerts"))
    return [QueueInterval(**dict(zip(columns, row))) for row in rows]


def interval_label(queues: list[QueueInterval]) -> str:
    if not queues:
        return "no complete interval yet"
    return f"{queues[0].interval_start:%Y-%m-%d %H:%M}–{queues[0].interval_end:%H:%M}"
