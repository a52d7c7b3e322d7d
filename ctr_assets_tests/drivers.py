"""The pipeline run in child processes, for the crash and concurrency tests: real processes that are killed
with SIGKILL, or that race each other on one storage folder.

Children come from a fork server that has imported this module once, so each starts in milliseconds
instead of paying Python's and Dagster's start-up again.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import shutil
import signal
import time
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import PrivateAttr

from ctr_assets.lake.layout import FLATFILES, MERGED, QUARANTINE
from ctr_assets.lake.pipeline import flatten_hours, merge_hours, pending_raw_keys
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.lake.table import TABLE_PREFIX, sql_text
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets.sample import write_firehose_objects
from ctr_assets_tests.helpers import SAMPLE_START, ctr_record, firehose_object, raw_key

PROCESSES = multiprocessing.get_context("forkserver")
PROCESSES.set_forkserver_preload([__name__])
WAIT_SECONDS = 60


def write_crash_sample(storage: LocalStorage) -> None:
    """Three arrival hours of sample traffic, plus what makes every kind of write happen when they are
    processed as `run_in_two` does: garbage (a quarantine file), a gzip object, an exact duplicate, an
    update in place, and a contact whose update moves it to the next date, leaving its old date's
    partition file empty (one file gains the row, another loses it)."""
    write_firehose_objects(storage.write, SAMPLE_START, 2, 15, seed=3, batch_seconds=1800)
    late_evening = SAMPLE_START - timedelta(hours=8, minutes=2)  # 23:58 UTC the day before
    mover = ctr_record("mover", late_evening, Agent={"Username": "ann"})
    twin = ctr_record("twin", SAMPLE_START, Agent={"Username": "ann"})
    storage.write(raw_key(SAMPLE_START, 30, "extras-first"), firehose_object(mover, twin, twin) + b"\x00not json{")
    moved = ctr_record("mover", late_evening + timedelta(minutes=4), SAMPLE_START, Agent={"Username": "bob"})
    updated = ctr_record("twin", SAMPLE_START, SAMPLE_START + timedelta(hours=1), Channel="CHAT")
    storage.write(raw_key(SAMPLE_START + timedelta(hours=1), 40, "extras-later") + ".gz",
                  gzip.compress(firehose_object(moved, updated)))


def run_steps(storage: LocalStorage, hours: list[datetime]) -> None:
    """Flatten then merge the given hours, without Dagster (what one run of the ETL job does)."""
    flatten_hours(storage, hours)
    with closing(scratch_connection()) as connection:
        merge_hours(storage, hours, connection)


def run_all_pending(root: str, storage: LocalStorage | None = None) -> None:
    """One run over every hour with raw objects not yet in the table (what `ctr-assets run` does)."""
    storage = storage or LocalStorage(root=root)
    run_steps(storage, list(pending_raw_keys(storage)))


def run_in_two(root: str, storage: LocalStorage | None = None) -> None:
    """A run for the first pending hour (as the arrival sensor starts), then one for the rest."""
    storage = storage or LocalStorage(root=root)
    run_steps(storage, list(pending_raw_keys(storage))[:1])
    run_all_pending(root, storage)


class CountingStorage(LocalStorage):
    """Counts the objects a run publishes, so the tests know every write boundary there is to kill at."""

    _published: int = PrivateAttr(default=0)

    def _publish(self, staged: Path, key: str) -> None:
        super()._publish(staged, key)
        self._published += 1


class PausingStorage(CountingStorage):
    """Stops its process at one write: once the `pause_at`-th object is staged (`phase` "staged") or once
    it is published ("published"). It then touches `signal_file` and sleeps until the test kills it."""

    pause_at: int
    phase: str
    signal_file: str

    def _publish(self, staged: Path, key: str) -> None:
        if self.phase == "staged" and self._published + 1 == self.pause_at:
            self._pause()
        super()._publish(staged, key)
        if self.phase == "published" and self._published == self.pause_at:
            self._pause()

    def _pause(self) -> None:
        Path(self.signal_file).touch()
        time.sleep(WAIT_SECONDS)


def _run_until_paused(root: str, pause_at: int, phase: str, signal_file: str) -> None:
    run_in_two(root, PausingStorage(root=root, pause_at=pause_at, phase=phase, signal_file=signal_file))


def kill_at(root: Path, pause_at: int, phase: str) -> bool:
    """`run_in_two` in a child process, SIGKILLed at the given write; False when it ended before it."""
    signal_file = root.parent / f"paused-{os.getpid()}-{pause_at}-{phase}"
    child = PROCESSES.Process(target=_run_until_paused, args=(str(root), pause_at, phase, str(signal_file)))
    child.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not signal_file.exists() and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    paused = signal_file.exists()
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    signal_file.unlink(missing_ok=True)
    return paused


def run_concurrently(root: Path, count: int) -> list[int]:
    """`count` child processes running `run_in_two` on one folder at once; their exit codes."""
    children = [PROCESSES.Process(target=run_in_two, args=(str(root),)) for _ in range(count)]
    for child in children:
        child.start()
    for child in children:
        child.join(WAIT_SECONDS)
    return [child.exitcode for child in children]


def copy_raw(source: Path, target: Path) -> None:
    shutil.copytree(source / "raw", target / "raw")


def derived_state(storage: LocalStorage) -> dict:
    """Everything a run derives from raw/: flatfiles, quarantine and ledgers byte for byte, and the
    table's rows by value (a Parquet file's bytes may differ between two writes of the same rows)."""
    files = {item.key: storage.read(item.key)
             for prefix in (FLATFILES, QUARANTINE, MERGED) for item in storage.list(prefix)}
    return {"files": files, "table": table_rows(storage)}


def table_rows(storage: LocalStorage) -> list[tuple]:
    with closing(scratch_connection()) as connection:
        relation = connection.sql(
            f"SELECT contactid, * EXCLUDE (contactid) FROM read_parquet({sql_text(storage.uri(TABLE_PREFIX) + '*/*.parquet')}, "
            "hive_partitioning = true, union_by_name = true) ORDER BY contactid")
        return relation.fetchall()
