"""Run the pipeline from Python: `run_pipeline("path/or/s3://bucket")` processes everything pending.

Everything here runs through the Dagster definitions, in one persistent Dagster instance that the CLI
and `dagster dev` share ($DAGSTER_HOME, else ./.dagster_home), so every run shows in the UI. What a run
did is read back from its records: each asset's structured `summary` metadata and its check results.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Callable, NamedTuple

import dagster as dg
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ctr_assets.definitions import DASHBOARD_JOB, ETL_JOB, build_definitions, covering
from ctr_assets.defs.assets import CTR, FLATTENED, PROGRESS, SCHEMA_FILE, SUMMARY
from ctr_assets.defs.dashboards import DASHBOARD_FILE
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.iceberg import load_table
from ctr_assets.lake.layout import RAW, partition_of_hour
from ctr_assets.lake.pipeline import pending_raw_keys
from ctr_assets.lake.quarantine import quarantined_hours
from ctr_assets.lake.storage import Storage, StorageError, process_alive
from ctr_assets.metrics.warehouse import spill_folder
from ctr_assets.settings import CtrSettings

DEFAULT_DAGSTER_HOME = ".dagster_home"
# Runs started by this package in its own process carry where that process is, so a later call can tell a
# run that is still going from one whose process was killed.
PROCESS_TAG, HOST_TAG = "ctr-assets/pid", "ctr-assets/host"
# Quiet: failures are summarized in one line each (PipelineSummary.failed_runs) instead of Dagster's stack traces.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
PROGRESS_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
# The logger that hands step starts and ends and the flatten step's counts to the caller as they happen.
PROGRESS_LOGGER = "ctr_assets_progress"
# The error DuckDB raises when a query outgrows its memory limit and cannot spill (duckdb.OutOfMemoryException).
OUT_OF_MEMORY = "OutOfMemoryException"
# How Dagster reports a step stopped by Ctrl-C (SIGINT), by the error's class name.
INTERRUPTED = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")
Say = Callable[[str], None]
Show = Callable[[dict], None]


class StepFailure(NamedTuple):
    """One failed step of a run: which, why (one line), and what the user can do about it."""

    run_id: str
    step: str
    reason: str
    remedy: str

    def __str__(self) -> str:
        return f"{self.run_id}: {self.step}: {self.reason}"


def dagster_home() -> Path:
    """The instance folder the CLI, the API and `ctr-assets ui` share: $DAGSTER_HOME, else ./.dagster_home."""
    return Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()


def persistent_instance() -> dg.DagsterInstance:
    """The shared Dagster instance, created with this package's instance settings (dagster.yaml) if new."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(resources.files("ctr_assets").joinpath("dagster.yaml").read_text())
    return dg.DagsterInstance.from_config(str(home))


@dataclass
class PipelineSummary:
    """What one `run_pipeline` (or `replay_quarantine`) call did, as the runs' records say."""

    storage_url: str
    hours_processed: int = 0
    runs: list[str] = field(default_factory=list)  # run ids, in the order they ran
    flattened: dict[str, int] = field(default_factory=dict)  # objects and records: in, written, quarantined
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    merged: dict[str, int] = field(default_factory=dict)  # rows inserted, updated, moved; duplicates collapsed
    replayed: dict[str, int] = field(default_factory=dict)  # quarantine replay: items examined, replayed
    table_rows: int = 0
    failed_checks: list[str] = field(default_factory=list)
    failed_steps: list[StepFailure] = field(default_factory=list)
    dashboard: str | None = None

    @property
    def failed_runs(self) -> list[str]:
        """One "run id: step: why" line per failed step."""
        return [str(failure) for failure in self.failed_steps]

    @property
    def ok(self) -> bool:
        return not self.failed_checks and not self.failed_steps


def open_storage(settings: CtrSettings, create: bool = False) -> Storage:
    """The storage the settings name, once it is known to exist: a mistyped --storage must not pass for an
    empty storage (or, on a folder, silently become one). It exists when a folder has raw/ in it, or when a
    bucket prefix holds raw objects or the table (S3 has no folders). `create` starts an empty one there."""
    storage = storage_for(settings)
    if settings.is_s3:
        if not create and next(storage.list(RAW), None) is None and load_table(table_for(settings, storage)) is None:
            raise StorageError(f"CTR_STORAGE_URL: {storage.uri(RAW)} holds no objects and {storage.url} no table: "
                               "check --storage (or CTR_STORAGE_URL), or pass --create to start there")
        return storage
    root = Path(storage.url)
    if root.exists() and not root.is_dir():
        raise StorageError(f"CTR_STORAGE_URL: {root} is a file, not a storage folder: check --storage (or CTR_STORAGE_URL)")
    if not (root / RAW).is_dir():
        if not create:
            raise StorageError(f"CTR_STORAGE_URL: {root} has no {RAW} folder: check --storage (or CTR_STORAGE_URL), "
                               "or pass --create to start a storage there")
        (root / RAW).mkdir(parents=True)
    return storage


def run_pipeline(
    storage_url: str | None = None,
    *,
    settings: CtrSettings | None = None,
    instance: dg.DagsterInstance | None = None,
    verbose: bool = False,
    create: bool = False,
    say: Say = lambda line: None,
    show: Show = lambda counts: None,
) -> PipelineSummary:
    """Flatten and merge every arrival hour with raw objects not yet in the table, then refresh the catalog,
    aggregates and dashboard, all through Dagster in this process. Safe to repeat: a second call finds
    nothing pending and changes nothing. A storage problem inside a run is raised as the StorageError it
    was, so callers see the same one line whether it happened before a run or in one. `settings` replaces
    the CTR_* variables (and `storage_url`) when given; a storage that does not exist is refused unless
    `create`. While it works, `say` gets a line per step started and finished, `show` the flatten step's
    counts (FlattenProgress.counts) about once a second: a long backlog is never silent."""
    settings = settings or CtrSettings.from_env(storage_url=storage_url)
    runner = _Runner(settings, instance or persistent_instance(), verbose, create, say, show)
    pending = pending_raw_keys(runner.storage, runner.table)
    ranges = backlog_range(list(pending))
    say(f"{sum(map(len, pending.values()))} raw objects pending in {len(pending)} arrival hours "
        f"({len(ranges)} run{'s' if len(ranges) != 1 else ''})")
    runner.run_etl(ranges, {})
    return runner.finish()


def replay_quarantine(
    storage_url: str | None = None,
    reason: str | None = None,
    *,
    settings: CtrSettings | None = None,
    instance: dg.DagsterInstance | None = None,
    verbose: bool = False,
    say: Say = lambda line: None,
    show: Show = lambda counts: None,
) -> PipelineSummary:
    """Rerun quarantined items (those of `reason`, when given) through the current record rules, as ETL runs
    over the hours holding them: what now passes reaches the table and the dashboards. `say` and `show` as
    for `run_pipeline`."""
    settings = settings or CtrSettings.from_env(storage_url=storage_url)
    runner = _Runner(settings, instance or persistent_instance(), verbose, False, say, show)
    ranges = backlog_range(quarantined_hours(runner.storage, reason))
    config = {"ops": {FLATTENED.path[-1]: {"config": {"replay_quarantine": True, "replay_reason": reason or ""}}}}
    runner.run_etl(ranges, config)
    return runner.finish()


class _Runner:
    """Runs the definitions' jobs in one instance and gathers what their records say."""

    def __init__(self, settings: CtrSettings, instance: dg.DagsterInstance, verbose: bool, create: bool,
                 say: Say, show: Show):
        self.storage = open_storage(settings, create)
        self.settings = settings
        self.definitions = build_definitions(settings, self.storage)
        self.table = table_for(settings, self.storage)
        self.instance = instance
        self.logs = {"loggers": {**(PROGRESS_LOGS if verbose else QUIET_LOGS)["loggers"], PROGRESS_LOGGER: {}}}
        self.progress = _progress_logger(say, show)
        self.say = say
        self.summary = PipelineSummary(storage_url=self.storage.url)
        release_runs_of_dead_processes(instance)

    def run_etl(self, ranges: list[tuple[datetime, datetime]], config: dict) -> None:
        settings = covering(self.settings, self.storage, [hour for hours in ranges for hour in hours])
        if settings is not self.settings:
            self.definitions = build_definitions(settings, self.storage)
        job = self._with_progress(self.definitions.resolve_job_def(ETL_JOB))
        for number, (first, last) in enumerate(ranges, start=1):
            self.say(f"[{number}/{len(ranges)}] hours {partition_of_hour(first)} .. {partition_of_hour(last)}")
            tags = {ASSET_PARTITION_RANGE_START_TAG: partition_of_hour(first),
                    ASSET_PARTITION_RANGE_END_TAG: partition_of_hour(last)}
            failed = len(self.summary.failed_steps)
            self._execute(job, tags, {**self.logs, **config})
            self.summary.hours_processed += int((last - first) / timedelta(hours=1)) + 1
            if len(self.summary.failed_steps) == failed:  # a failed run's counts would read like a result
                self.say(_progress_line(self.summary))

    def finish(self) -> PipelineSummary:
        """Refresh the dashboards when the table changed since they were built, and count the table."""
        table = load_table(self.table)
        snapshot = table.current_snapshot() if table is not None else None
        if snapshot is not None and _older_than(self.storage, [DASHBOARD_FILE, SCHEMA_FILE], snapshot.timestamp_ms):
            self.say("refreshing catalog, aggregates and dashboard")
            self._execute(self._with_progress(self.definitions.resolve_job_def(DASHBOARD_JOB)), {}, self.logs)
        self.summary.table_rows = int(snapshot.summary["total-records"]) if snapshot and snapshot.summary else 0
        if self.storage.exists(DASHBOARD_FILE):
            self.summary.dashboard = self.storage.uri(DASHBOARD_FILE)
        return self.summary

    def _with_progress(self, job: dg.JobDefinition) -> dg.JobDefinition:
        return job.with_logger_defs({**job.loggers, PROGRESS_LOGGER: self.progress})

    def _execute(self, job, tags: dict[str, str], run_config: dict) -> None:
        tags = {**tags, PROCESS_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
        result = job.execute_in_process(instance=self.instance, tags=tags, run_config=run_config, raise_on_error=False)
        _collect(self.summary, result, self.settings)


def _progress_logger(say: Say, show: Show) -> dg.LoggerDefinition:
    """A Dagster logger passing what a run does to the caller while it runs (the runs execute in this
    process): each step's start and end to `say`, the flatten step's counts to `show`."""

    started: dict[str, float] = {}

    class Progress(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            counts = getattr(record, PROGRESS, None)
            event = (getattr(record, LOG_RECORD_METADATA_ATTR, None) or {}).get("dagster_event")
            if counts is not None:
                show(counts)
            elif event is not None and event.is_step_start:
                started[event.step_key] = record.created
                say(f"    {event.step_key}: started")
            elif event is not None and event.is_step_success:
                say(f"    {event.step_key}: done in {record.created - started.get(event.step_key, record.created):.1f} s")

    def build(_context) -> logging.Logger:
        logger = logging.Logger(PROGRESS_LOGGER, logging.DEBUG)  # step events are DEBUG
        logger.addHandler(Progress())
        return logger

    return dg.LoggerDefinition(build, description="step starts and ends and flatten counts, to the caller")


def release_runs_of_dead_processes(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs this package started on this machine whose process is gone (killed, or the
    machine restarted), freeing the concurrency slots they held: else the next run would wait for the
    ctr_table pool forever. Returns their ids."""
    released = []
    filters = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
                            tags={HOST_TAG: socket.gethostname()})
    for run in instance.get_runs(filters):
        if process_alive(int(run.tags.get(PROCESS_TAG, "0"))):
            continue
        instance.report_run_failed(run, f"the process running it ({run.tags.get(PROCESS_TAG)}) is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def _older_than(storage, keys: list[str], moment_ms: int) -> bool:
    """Some of `keys` were written before the table last changed (or are missing): the dashboards job's
    outputs are stale, e.g. after a quarantine replay or a failed refresh."""
    changed = datetime.fromtimestamp(moment_ms / 1000, timezone.utc)
    return any(not built or built[0] < changed for built in ([item.last_modified for item in storage.list(key)]
                                                              for key in keys))


def backlog_range(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """One run from the first to the last of `hours`, whatever lies between: an hour with nothing to do
    costs a listing, while each run more costs its launch and a merge rewriting the same days again."""
    return [(min(hours), max(hours))] if hours else []


def _collect(summary: PipelineSummary, result: dg.ExecuteInProcessResult, settings: CtrSettings) -> None:
    """Add one run's records to the summary: its assets' `summary` metadata, its failed steps and checks."""
    summary.runs.append(result.run_id)
    failures = [event for event in result.all_events if event.is_step_failure]
    _raise_setting_errors(failures)
    summary.failed_steps += [StepFailure(result.run_id, event.step_key, _failure_reason(event),
                                         _remedy(event, result.run_id, settings)) for event in failures]
    if not result.success and not failures:
        summary.failed_steps.append(StepFailure(result.run_id, "", "the run failed", _see_run(result.run_id)))
    # A single-run range reports one materialization per partition, all with the run's metadata: one each.
    reported = {event.asset_key: event.step_materialization_data.materialization.metadata.get(SUMMARY)
                for event in result.get_asset_materialization_events()}
    for asset_key, entry in reported.items():
        counts = dict(entry.value) if entry is not None else {}
        if asset_key == FLATTENED:
            reasons = counts.pop("quarantined_by_reason", {})
            still_failing = counts.pop("still_failing", {})
            counts.pop("flatfiles_written", None)
            target = summary.replayed if "replayed" in counts else summary.flattened
            _add(target, counts)
            _add(summary.quarantined_by_reason, reasons or still_failing)
        elif asset_key == CTR:
            _add(summary.merged, {name: value for name, value in counts.items() if isinstance(value, int)
                                  and name in ("records_read", "duplicates_in_batch", "rows_inserted",
                                               "rows_updated", "rows_moved")})
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            summary.failed_checks.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")


def _add(totals: dict[str, int], counts: dict[str, int]) -> None:
    for name, value in counts.items():
        totals[name] = totals.get(name, 0) + value


def _failure_reason(event: dg.DagsterEvent) -> str:
    """What went wrong, in one line: a `Failure`'s description, else the innermost error's message (its
    first line: DuckDB adds paragraphs of generic advice)."""
    failure = event.step_failure_data
    if failure.user_failure_data and failure.user_failure_data.description:
        return " ".join(failure.user_failure_data.description.split())
    error = _innermost(failure.error)
    message = error.message.split(": ", 1)[-1].strip()
    return f"{error.cls_name}: {message.splitlines()[0] if message else ''}".rstrip(": ")


def _innermost(error):
    while error.cause is not None:
        error = error.cause
    return error


def _remedy(event: dg.DagsterEvent, run_id: str, settings: CtrSettings) -> str:
    """What to do about a failed step: for DuckDB out of memory, the two knobs; else where the whole story is."""
    error = event.step_failure_data.error
    if error is not None and _innermost(error).cls_name == OUT_OF_MEMORY:
        return (f"raise CTR_DUCKDB_MEMORY_MB (now {settings.duckdb_memory_mb}) or free disk for DuckDB's temp "
                f"folder ({spill_folder()}), then run again")
    return _see_run(run_id)


def _see_run(run_id: str) -> str:
    return f"the Dagster run {run_id} has the details (`ctr-assets ui`); fix the cause, then run again"


def _raise_setting_errors(failures: list[dg.DagsterEvent]) -> None:
    """A storage misconfiguration (missing bucket, denied permission) inside a run is the user's one line to
    fix, not a failed run: raise it as it was raised. Transient errors that outlasted their retries
    (`StorageUnavailable`) stay failed runs, so a rerun can finish the work. A run interrupted by Ctrl-C
    raises KeyboardInterrupt: nothing failed, and the next run finishes the work."""
    for event in failures:
        error = event.step_failure_data.error
        while error is not None:
            if error.cls_name == StorageError.__name__:
                raise StorageError(error.message.split(": ", 1)[-1].strip())
            if error.cls_name in INTERRUPTED:  # Ctrl-C: the caller asked to stop, so stop as Python does
                raise KeyboardInterrupt
            error = error.cause


def _progress_line(summary: PipelineSummary) -> str:
    flattened, merged = summary.flattened, summary.merged
    return (f"    {flattened.get('objects_flattened', 0)} objects, {flattened.get('records_written', 0)} records "
            f"written, {flattened.get('records_quarantined', 0)} quarantined, {merged.get('rows_inserted', 0)} rows "
            f"inserted, {merged.get('rows_updated', 0)} updated")
