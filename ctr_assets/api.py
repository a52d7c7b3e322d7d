"""Run the pipeline from Python: `run_pipeline("path/or/s3://bucket")` processes everything pending."""

import os
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ctr_assets.definitions import DASHBOARD_JOB, ETL_JOB, build_definitions
from ctr_assets.defs.assets import CTR, FLATTENED
from ctr_assets.defs.dashboards import DASHBOARD_FILE
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.layout import partition_of_hour
from ctr_assets.lake.pipeline import pending_raw_keys
from ctr_assets.lake.storage import StorageError
from ctr_assets.lake.table import TABLE_PREFIX, table_files
from ctr_assets.metrics.warehouse import refresh_ctr_view, scratch_connection
from ctr_assets.settings import CtrSettings

COUNTED = {
    FLATTENED: ("objects flattened", "records in", "records written", "records quarantined", "key collisions"),
    CTR: ("rows inserted", "rows updated", "rows moved to another date", "duplicates collapsed in batch"),
}
# Quiet: failures are summarized in one line each (PipelineSummary.failed_runs) instead of Dagster's stack traces.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
PROGRESS_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class PipelineSummary:
    """What one `run_pipeline` call did."""

    storage_url: str
    hours_processed: int = 0
    runs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    table_rows: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)  # "run id: step: why", one per failed step
    dashboard: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed_checks and not self.failed_runs


def run_pipeline(
    storage_url: str | None = None,
    *,
    instance: dg.DagsterInstance | None = None,
    verbose: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> PipelineSummary:
    """Flatten and merge every arrival hour with raw objects not yet flattened, then refresh the catalog,
    aggregates and dashboard, all through Dagster in this process. Safe to repeat: a second call finds
    nothing pending and changes nothing. A storage problem inside a run is raised as the StorageError it
    was, so callers see the same one line whether it happened before a run or in one."""
    settings = CtrSettings.from_env(storage_url=storage_url)
    definitions = build_definitions(settings)
    storage = storage_for(settings)
    summary = PipelineSummary(storage_url=storage.url)
    instance = instance or (dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral())
    logs = PROGRESS_LOGS if verbose else QUIET_LOGS

    pending = pending_raw_keys(storage)
    ranges = contiguous_ranges(list(pending))
    say(f"{sum(map(len, pending.values()))} raw objects pending in {len(pending)} arrival hours "
        f"({len(ranges)} run{'s' if len(ranges) != 1 else ''})")
    etl_job = definitions.resolve_job_def(ETL_JOB)
    for number, (first, last) in enumerate(ranges, start=1):
        say(f"[{number}/{len(ranges)}] hours {partition_of_hour(first)} .. {partition_of_hour(last)}")
        tags = {ASSET_PARTITION_RANGE_START_TAG: partition_of_hour(first), ASSET_PARTITION_RANGE_END_TAG: partition_of_hour(last)}
        result = etl_job.execute_in_process(instance=instance, tags=tags, run_config=logs, raise_on_error=False)
        _collect(summary, result)
        summary.hours_processed += int((last - first) / timedelta(hours=1)) + 1
        say(_progress_line(summary))

    if table_files(storage) and (summary.runs or _dashboard_older_than_table(storage)):
        say("refreshing catalog, aggregates and dashboard")
        result = definitions.resolve_job_def(DASHBOARD_JOB).execute_in_process(
            instance=instance, run_config=logs, raise_on_error=False)
        _collect(summary, result)
    if table_files(storage):
        with closing(scratch_connection()) as connection:
            refresh_ctr_view(connection, storage)
            summary.table_rows = connection.sql("SELECT count(*) FROM ctr").fetchall()[0][0]
    if storage.exists(DASHBOARD_FILE):
        summary.dashboard = storage.uri(DASHBOARD_FILE)
    return summary


def _dashboard_older_than_table(storage) -> bool:
    """The table changed since the dashboard was built (or there is none), e.g. by a quarantine replay."""
    built = [item.last_modified for item in storage.list(DASHBOARD_FILE)]
    changed = [item.last_modified for item in storage.list(TABLE_PREFIX) if item.key.endswith(".parquet")]
    return not built or any(moment > built[0] for moment in changed)


def contiguous_ranges(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours grouped into (first, last) ranges: one run per range, not one per hour."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(hours):
        if ranges and hour - ranges[-1][1] == timedelta(hours=1):
            ranges[-1] = (ranges[-1][0], hour)
        else:
            ranges.append((hour, hour))
    return ranges


def _collect(summary: PipelineSummary, result: dg.ExecuteInProcessResult) -> None:
    summary.runs += 1
    failures = [event for event in result.all_events if event.is_step_failure]
    _raise_setting_errors(failures)
    summary.failed_runs += [f"{result.run_id}: {event.step_key}: {_failure_reason(event)}" for event in failures]
    if not result.success and not failures:
        summary.failed_runs.append(result.run_id)
    # A single-run range reports one materialization per partition, all with the run's metadata.
    per_asset = {event.asset_key: event.step_materialization_data.materialization
                 for event in result.get_asset_materialization_events()}
    for asset_key, materialization in per_asset.items():
        for name in COUNTED.get(asset_key, ()):
            value = materialization.metadata.get(name)
            if value is not None:
                summary.counts[name] = summary.counts.get(name, 0) + int(value.value)
    flattened = per_asset.get(FLATTENED)
    reasons = flattened.metadata.get("quarantine by reason") if flattened else None
    for reason, count in (reasons.value if reasons else {}).items():
        summary.quarantined_by_reason[reason] = summary.quarantined_by_reason.get(reason, 0) + count
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            summary.failed_checks.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")


def _failure_reason(event: dg.DagsterEvent) -> str:
    """What went wrong, in one line: a `Failure`'s description, else the innermost error's message."""
    failure = event.step_failure_data
    if failure.user_failure_data and failure.user_failure_data.description:
        return failure.user_failure_data.description
    error = failure.error
    while error.cause is not None:
        error = error.cause
    return f"{error.cls_name}: {error.message.split(': ', 1)[-1].strip()}"


def _raise_setting_errors(failures: list[dg.DagsterEvent]) -> None:
    """A storage misconfiguration (missing bucket, denied permission) inside a run is the user's one line to
    fix, not a failed run: raise it as it was raised. Transient errors that outlasted their retries
    (`StorageUnavailable`) stay failed runs, so a rerun can finish the work."""
    for event in failures:
        error = event.step_failure_data.error
        while error is not None:
            if error.cls_name == StorageError.__name__:
                raise StorageError(error.message.split(": ", 1)[-1].strip())
            error = error.cause


def _progress_line(summary: PipelineSummary) -> str:
    counts = summary.counts
    return (f"    {counts.get('objects flattened', 0)} objects, {counts.get('records written', 0)} records written, "
            f"{counts.get('records quarantined', 0)} quarantined, {counts.get('rows inserted', 0)} rows inserted, "
            f"{counts.get('rows updated', 0)} updated")
