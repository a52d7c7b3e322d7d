"""The pipeline run through Dagster in child processes, for the crash and concurrency tests: real processes
that are killed with SIGKILL, or that race each other on one storage.

Children come from a fork server that has imported this module (and Dagster) once, so each starts in
milliseconds instead of paying Python's and Dagster's start-up again.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import shutil
import signal
import time
from collections import Counter
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ctr_assets.api import QUIET_LOGS, backlog_range
from ctr_assets.definitions import ETL_JOB, build_definitions
from ctr_assets.defs.assets import FLATTENED
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.iceberg import TableLocation
from ctr_assets.lake.layout import FLATFILES, QUARANTINE, partition_of_hour
from ctr_assets.lake.pipeline import merged_flatfiles, pending_raw_keys
from ctr_assets.lake.storage import LocalStorage, Storage
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets.sample import write_firehose_objects
from ctr_assets.settings import CtrSettings
from ctr_assets_tests.helpers import (
    SAMPLE_START,
    ctr_record,
    firehose_object,
    raw_key,
    table_rows,
)

PROCESSES = multiprocessing.get_context("forkserver")
PROCESSES.set_forkserver_preload([__name__])
WAIT_SECONDS = 60


def write_crash_sample(storage: Storage) -> None:
    """Three arrival hours of sample traffic, plus what makes every kind of write happen when they are
    processed as `run_in_two` does: garbage (a quarantine file), a gzip object, an exact duplicate, an
    update in place, and a contact whose update moves it to the next date, leaving its old day empty."""
    write_firehose_objects(storage.write, SAMPLE_START, 2, 15, seed=3, batch_seconds=1800)
    late_evening = SAMPLE_START - timedelta(hours=8, minutes=2)  # 23:58 UTC the day before
    mover = ctr_record("mover", late_evening, Agent={"Username": "ann"})
    twin = ctr_record("twin", SAMPLE_START, Agent={"Username": "ann"})
    storage.write(raw_key(SAMPLE_START, 30, "extras-first"), firehose_object(mover, twin, twin) + b"\x00not json{")
    moved = ctr_record("mover", late_evening + timedelta(minutes=4), SAMPLE_START, Agent={"Username": "bob"})
    updated = ctr_record("twin", SAMPLE_START, SAMPLE_START + timedelta(hours=1), Channel="CHAT")
    storage.write(raw_key(SAMPLE_START + timedelta(hours=1), 40, "extras-later") + ".gz",
                  gzip.compress(firehose_object(moved, updated)))


def settings_of(target: str | Path | CtrSettings) -> CtrSettings:
    """Settings for a storage folder (one flatten process, so every write happens in the run's own process
    and can be counted), or the given settings."""
    if isinstance(target, CtrSettings):
        return target
    return CtrSettings.from_env({}, storage_url=str(target), first_hour="2026-01-01-00:00", flatten_workers=1)


def run_steps(settings: CtrSettings, hours: list[datetime], storage: Storage | None = None,
              assets: list[dg.AssetKey] | None = None) -> None:
    """One ETL run (flattened, then ctr; or only `assets`) through Dagster over the given arrival hours, as
    the arrival sensor or `ctr-assets run` starts one; `storage` replaces the settings' own (to count its
    writes)."""
    job = build_definitions(settings, storage).resolve_job_def(ETL_JOB)
    for first, last in backlog_range(hours):
        job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=QUIET_LOGS, asset_selection=assets,
                               tags={ASSET_PARTITION_RANGE_START_TAG: partition_of_hour(first),
                                     ASSET_PARTITION_RANGE_END_TAG: partition_of_hour(last)})


def run_all_pending(target: str | CtrSettings, storage: Storage | None = None) -> None:
    """Runs over every hour with raw objects not yet in the table (what `ctr-assets run` does)."""
    settings = settings_of(target)
    storage = storage or storage_for(settings)
    run_steps(settings, list(pending_raw_keys(storage, table_for(settings, storage))), storage)


def run_in_two(target: str | CtrSettings, storage: Storage | None = None) -> None:
    """A run for the first pending hour (as the arrival sensor starts), then runs for the rest."""
    settings = settings_of(target)
    storage = storage or storage_for(settings)
    run_steps(settings, list(pending_raw_keys(storage, table_for(settings, storage)))[:1], storage)
    run_all_pending(settings, storage)


# Objects published per storage root in this process. Not kept on the resource: Dagster builds its own
# copies of the resources for every run.
PUBLISHED: Counter = Counter()


class CountingStorage(LocalStorage):
    """Counts the objects a run publishes, so the tests know every write boundary there is to kill at."""

    @property
    def published(self) -> int:
        return PUBLISHED[self.root]

    def _publish(self, staged: Path, key: str) -> None:
        super()._publish(staged, key)
        PUBLISHED[self.root] += 1


class PausingStorage(CountingStorage):
    """Stops its process at one write: once the `pause_at`-th object (or the first whose key starts with
    `pause_prefix`) is staged (`phase` "staged") or published ("published"). It then touches
    `signal_file` and sleeps until the test kills it."""

    pause_at: int
    phase: str
    signal_file: str
    pause_prefix: str = ""

    def _publish(self, staged: Path, key: str) -> None:
        due = key.startswith(self.pause_prefix) if self.pause_prefix else self.published + 1 == self.pause_at
        if self.phase == "staged" and due:
            self._pause()
        super()._publish(staged, key)
        if self.phase == "published" and due:
            self._pause()

    def _pause(self) -> None:
        Path(self.signal_file).touch()
        time.sleep(WAIT_SECONDS)


def _run_until_paused(root: str, pause_at: int, phase: str, signal_file: str, prefix: str) -> None:
    run_in_two(root, PausingStorage(root=root, pause_at=pause_at, phase=phase, signal_file=signal_file,
                                    pause_prefix=prefix))


def kill_at(root: Path, pause_at: int, phase: str, prefix: str = "") -> bool:
    """`run_in_two` in a child process, SIGKILLed at the given write (the `pause_at`-th, or the first under
    `prefix`); False when it ended before it."""
    signal_file = root.parent / f"paused-{os.getpid()}-{pause_at}-{phase}"
    child = PROCESSES.Process(target=_run_until_paused, args=(str(root), pause_at, phase, str(signal_file), prefix))
    child.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not signal_file.exists() and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    paused = signal_file.exists()
    if child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join()
    signal_file.unlink(missing_ok=True)
    return paused


def _run_in_two_as(fields: dict, environ: dict[str, str]) -> None:
    os.environ.update(environ)  # the fork server's environment is the one it started with
    run_in_two(CtrSettings(**fields))


def run_concurrently(target: str | Path | CtrSettings, count: int) -> list[int]:
    """`count` child processes running `run_in_two` on one storage at once; their exit codes."""
    fields = settings_of(target).model_dump()
    children = [PROCESSES.Process(target=_run_in_two_as, args=(fields, dict(os.environ))) for _ in range(count)]
    for child in children:
        child.start()
    for child in children:
        child.join(WAIT_SECONDS * 3)
    return [child.exitcode for child in children]


def _flatten_hour_as(fields: dict, environ: dict[str, str], hour: datetime, start) -> None:
    os.environ.update(environ)
    settings = CtrSettings(**fields)
    start.wait(WAIT_SECONDS)
    run_steps(settings, [hour], assets=[FLATTENED])


def flatten_concurrently(target: str | Path | CtrSettings, hours: list[datetime]) -> list[int]:
    """One child process per arrival hour, each a run flattening its hour, all started at once (as runs on
    a cluster are); their exit codes."""
    fields, start = settings_of(target).model_dump(), PROCESSES.Barrier(len(hours))
    children = [PROCESSES.Process(target=_flatten_hour_as, args=(fields, dict(os.environ), hour, start)) for hour in hours]
    for child in children:
        child.start()
    for child in children:
        child.join(WAIT_SECONDS * 3)
    return [child.exitcode for child in children]


def copy_raw(source: Path, target: Path) -> None:
    shutil.copytree(source / "raw", target / "raw")


def derived_state(storage: Storage, table: TableLocation | None = None) -> dict:
    """Everything a run derives from raw/: flatfiles and quarantine byte for byte, which flatfiles are merged
    (at which size), and the table's rows by value (a Parquet file's bytes may differ between two writes of
    the same rows, and its lineage of which merge wrote what does not matter)."""
    table = table or table_for(settings_of(storage.root), storage)
    files = {item.key: storage.read(item.key) for prefix in (FLATFILES, QUARANTINE) for item in storage.list(prefix)}
    return {"files": files, "merged": merged_flatfiles(storage, table), "table": table_contents(storage, table)}


def table_contents(storage: Storage, table: TableLocation) -> list[tuple]:
    with closing(scratch_connection()) as connection:
        return [tuple(sorted(row.items())) for row in table_rows(connection, storage, table)]
