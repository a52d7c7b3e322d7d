"""The pipeline's steps on a storage, without Dagster: the assets call these, and so can tests and scripts.

Crash safety comes from the order of the writes, each published in one step: an object's quarantine
entries, then its flatfile; the table's commit (which lists the flatfiles it merged in its snapshot
summary), then the ledger of merged flatfiles. A raw object counts as done only once its flatfile is merged,
so a run killed anywhere is finished by the next one, and every step is idempotent, so redoing part of it
changes nothing.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import io
import json
import multiprocessing
import os
import signal
import sys
import time
import uuid
from collections import defaultdict, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Callable, Container, Iterable, Iterator

import orjson

from ctr_assets.lake.iceberg import TableLocation
from ctr_assets.lake.layout import (
    FLATFILES,
    MERGED,
    RAW,
    SET_ASIDE,
    arrival_day_of_flat_key,
    flat_key,
    flat_prefix,
    hour_label,
    hour_of_raw_key,
    merged_key,
    merged_prefix,
    quarantine_key,
    quarantine_prefix,
    raw_prefix,
    set_aside_key,
)
from ctr_assets.lake.storage import ObjectInfo, Storage, describe_error
from ctr_assets.lake.table import MergeResult, merge_flatfiles, merged_by_snapshots
from ctr_assets.records.flatten import FlattenStats, flatten_object
from ctr_assets.records.phones import Protect

Progress = Callable[[int, int, FlattenStats], None]
LISTING_BUDGET = 10_000  # raw keys one sensor tick lists at most: ten ListObjectsV2 pages, seconds not minutes
SETTLE_SECONDS = 600  # an object shows in listings within this long of its modification time (S3's is its upload's start)


class ObjectFailed(RuntimeError):
    """Processing one raw object failed; the message names the object and the reason."""

    def __init__(self, key: str, error: BaseException):
        self.key = key
        self.reason = describe_error(error)
        super().__init__(f"{key}: {self.reason}")


@dataclass
class FlattenReport:
    """The flatten step over some hours: totals, and each processed object's own counts."""

    objects: list[FlattenStats] = field(default_factory=list)
    skipped: int = 0
    set_aside: dict[str, str] = field(default_factory=dict)  # raw objects never read: key -> why
    abandoned_staging_removed: int = 0

    @property
    def totals(self) -> FlattenStats:
        total = FlattenStats(source_key="*")
        for stats in self.objects:
            total.add(stats)
        return total


@dataclass
class FlattenProgress:
    """Where a flatten step stands, for the progress a person watches: objects done of all, the records of
    those objects, seconds since it began. `add` says when the next report is worth making: at most every
    `every` seconds, and the last one, so a backlog of thousands of objects gives a few lines, not thousands."""

    every: float = 1.0
    objects_total: int = 0
    objects_done: int = 0
    records_in: int = 0
    records_written: int = 0
    records_quarantined: int = 0
    seconds: float = 0.0
    _started: float = field(default_factory=time.monotonic, repr=False)
    _reported: float = field(default=float("-inf"), repr=False)

    def add(self, done: int, total: int, stats: FlattenStats) -> bool:
        """Count one more object (the `Progress` callback's arguments); True when a report is due."""
        self.objects_done, self.objects_total = done, total
        self.records_in += stats.records_in
        self.records_written += stats.records_written
        self.records_quarantined += stats.records_quarantined
        now = time.monotonic()
        self.seconds = now - self._started
        if done < total and now - self._reported < self.every:
            return False
        self._reported = now
        return True

    def counts(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name in ("objects_done", "objects_total", "records_in",
                                                      "records_written", "records_quarantined", "seconds")}


def raw_objects(storage: Storage, hour: datetime) -> list[ObjectInfo]:
    """The raw objects Firehose delivered in one arrival hour."""
    return [item for item in storage.list(raw_prefix(hour)) if hour_of_raw_key(item.key) == hour]


# Flatfiles are written through a buffer this large: one system call per 8 KiB (the default) cost more
# than splitting and normalizing the records.
WRITE_BUFFER_BYTES = 1024 * 1024


def flatten_raw_object(
    storage: Storage, key: str, protect_phone: Protect | None = None, quarantined_before: bool = True
) -> FlattenStats:
    """Flatten one raw object: its quarantine entries are published first, its flatfile last, so an
    existing flatfile always means the object was completely processed. `quarantined_before` False says
    there is no earlier quarantine file to remove (saving a request per object on S3)."""
    data = storage.read(key)
    quarantined = io.BytesIO()
    with storage.writer(flat_key(key)) as staged:
        with staged.open("wb", buffering=WRITE_BUFFER_BYTES) as flat_out:
            stats = flatten_object(data, key, flat_out, quarantined, protect_phone)
        if stats.records_quarantined:
            storage.write(quarantine_key(key), quarantined.getvalue())
        elif quarantined_before:
            storage.delete(quarantine_key(key))
    return stats


def flatten_hours(
    storage: Storage,
    hours: Iterable[datetime],
    reprocess: bool = False,
    progress: Progress | None = None,
    protect_phone: Protect | None = None,
    workers: int | None = None,
    merged: Container[str] = frozenset(),
) -> FlattenReport:
    """Flatten every raw object of the given arrival hours; objects already flattened (or whose flatfile is
    in `merged`, the flatfiles already in the table, possibly expired since) are skipped unless `reprocess`
    is set (their flatfile has a deterministic name, so redoing them is harmless). Objects are flattened in `workers` processes
    (default: one per available core). A failure names the object it happened on (`ObjectFailed`);
    objects done before it stay done."""
    report = FlattenReport(abandoned_staging_removed=storage.remove_abandoned_staging())
    todo: list[str] = []
    quarantined: set[str] = set()
    for hour in hours:
        keys = [item.key for item in raw_objects(storage, hour)]
        done = set() if reprocess else {item.key for item in storage.list(flat_prefix(hour))}
        pending = [key for key in keys if flat_key(key) not in done and (reprocess or flat_key(key) not in merged)]
        report.skipped += len(keys) - len(pending)
        report.set_aside.update(set_aside(storage, pending))
        pending = [key for key in pending if key not in report.set_aside]
        todo.extend(pending)
        if pending:
            quarantined.update(item.key for item in storage.list(quarantine_prefix(hour)))
    flatten_one = partial(_flatten_one, storage, protect_phone, frozenset(quarantined))
    for number, stats in enumerate(_flatten_objects(flatten_one, todo, workers or available_cores()), start=1):
        report.objects.append(stats)
        if progress is not None:
            progress(number, len(todo), stats)
    return report


def set_aside(storage: Storage, keys: Iterable[str]) -> dict[str, str]:
    """Set aside the raw objects among `keys` that the storage refuses to read (key -> why): each gets a
    record, is never read, and stops counting as pending, so one such object never fails a run."""
    refused = {key: reason for key in keys if (reason := storage.unreadable(key))}
    recorded = {item.key for item in storage.list(SET_ASIDE)} if refused else set()
    for key, reason in refused.items():
        if set_aside_key(key) not in recorded:
            storage.write(set_aside_key(key), orjson.dumps({"key": key, "reason": reason}))
    return refused


def set_aside_objects(storage: Storage) -> dict[str, str]:
    """The raw objects set aside that are still there and still unreadable (key -> why): one that became
    readable (a link replaced by its file) is pending again, like any object not in the table."""
    recorded = [orjson.loads(storage.read(item.key))["key"] for item in storage.list(SET_ASIDE)]
    hours = {hour_of_raw_key(key) for key in recorded}
    present = {item.key for hour in hours if hour for item in storage.list(raw_prefix(hour))}
    return {key: reason for key in sorted(recorded) if key in present and (reason := storage.unreadable(key))}


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _flatten_one(storage: Storage, protect_phone: Protect | None, quarantined: frozenset[str], key: str) -> FlattenStats:
    return flatten_raw_object(storage, key, protect_phone, quarantined_before=quarantine_key(key) in quarantined)


def _flatten_objects(flatten_one: Callable[[str], FlattenStats], keys: list[str], workers: int) -> Iterator[FlattenStats]:
    """Each object's stats, in key order; a failure names its object. At most two objects per worker are
    submitted ahead, so memory is bounded by a few objects in flight whatever their number.

    A failure (or an interrupt) cancels the objects not started and lets the ones in flight finish: a
    worker is never killed in the middle of an object, so nothing is left half written and the pool's
    pipes are never left holding half a message (killing workers is how `multiprocessing.Pool` can hang)."""
    if workers <= 1 or len(keys) <= 1:
        keep_freed_memory()
        for key in keys:
            yield _named_result(key, partial(flatten_one, key))
        return
    # fork starts a worker in milliseconds with everything imported (spawn would import Dagster again in each).
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
    workers = min(workers, len(keys))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker) as pool:
        ahead: deque[tuple[str, Future[FlattenStats]]] = deque()
        try:
            for key in keys:
                ahead.append((key, pool.submit(flatten_one, key)))
                if len(ahead) > 2 * workers:
                    due, future = ahead.popleft()
                    yield _named_result(due, future.result)
            while ahead:
                due, future = ahead.popleft()
                yield _named_result(due, future.result)
        finally:
            for _, future in ahead:
                future.cancel()


def _start_worker() -> None:
    """gc.freeze keeps the collector from scanning, and so copying, the objects a forked worker inherits.
    A worker ignores Ctrl-C (the terminal sends it to the whole process group): the parent stops
    submitting and the worker finishes the object it holds, so an interrupt never cuts an object in half."""
    gc.freeze()
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# glibc's mallopt parameters, and the most its mmap threshold may be (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, KEPT_FREED_BYTES = -1, -3, 32 * 1024 * 1024


def keep_freed_memory() -> None:
    """Let this process reuse what it frees instead of returning it to the OS at once (glibc only).

    Flattening makes and frees buffers of about an object's size for every object (the object itself, the
    scanner's output, the write buffer); given back and asked for again, every 4 KiB of them is a page
    fault. With this, the split + normalize benchmark stage spends 0.7 s in the kernel instead of 1.3 s.
    The cost: up to 32 MiB of freed memory stays with the process."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its allocator decides for itself
        return
    mallopt(M_MMAP_THRESHOLD, KEPT_FREED_BYTES)
    mallopt(M_TRIM_THRESHOLD, KEPT_FREED_BYTES)


def _named_result(key: str, result: Callable[[], FlattenStats]) -> FlattenStats:
    """`result()`, with a failure named by the object it happened on."""
    try:
        return result()
    except Exception as error:
        raise ObjectFailed(key, error) from error


def conservation_problems(storage: Storage, objects: Iterable[FlattenStats]) -> list[str]:
    """Recount what was persisted for each object: flatfile lines plus quarantine entries must equal the
    records found in it. Returns one line per object that does not add up."""
    objects = list(objects)
    # One listing per hour says which files exist, instead of one existence check per object.
    hours = {hour_of_raw_key(stats.source_key) for stats in objects}
    stored = {item.key for hour in hours if hour for prefix in (flat_prefix(hour), quarantine_prefix(hour))
              for item in storage.list(prefix)}

    def count_lines(key: str) -> int:
        return storage.read(key).count(b"\n") if key in stored else 0

    problems = []
    for stats in objects:
        written = count_lines(flat_key(stats.source_key))
        quarantined = count_lines(quarantine_key(stats.source_key))
        if written + quarantined != stats.records_in:
            problems.append(
                f"{stats.source_key}: {stats.records_in} records in, {written} written + {quarantined} quarantined"
            )
    return problems


# A merge engine: (connection, storage, location, flatfiles, snapshot properties) -> what it did.
Merge = Callable[[Any, Storage, TableLocation, dict[str, int], dict[str, str] | None], MergeResult]


def merge_hours(storage: Storage, location: TableLocation, hours: Iterable[datetime], connection,
                properties: dict[str, str] | None = None, merge: Merge = merge_flatfiles) -> MergeResult | None:
    """Merge the flatfiles of the given arrival hours that are not in the table yet (at their current size)
    into it with `merge` (the local engine by default), then note them in the ledger of merged flatfiles.
    None when there is nothing to merge (the flatfiles may have expired: the table is then left exactly as
    it is). The local engine's snapshot summary lists the same flatfiles, so a run killed between its
    commit and the ledger still counts them as merged; another engine's merge of them again changes
    nothing."""
    hours = list(hours)
    merged = merged_flatfiles(storage, location, hours)
    flatfiles = {item.key: item.size for hour in hours for item in storage.list(flat_prefix(hour))
                 if item.size not in merged.get(item.key, ())}
    if not flatfiles:
        return None
    result = merge(connection, storage, location, flatfiles, properties)
    record_merged(storage, flatfiles, str(result.snapshot_id or uuid.uuid4().hex))
    return result


def record_merged(storage: Storage, flatfiles: dict[str, int], merge_id: str) -> None:
    """Note flatfiles (key -> size) as merged: one ledger file per arrival day, never rewritten, so
    concurrent merges never overwrite each other's entries."""
    by_day: dict[str, dict[str, int]] = defaultdict(dict)
    for key, size in flatfiles.items():
        by_day[arrival_day_of_flat_key(key)][key] = size
    for day, entries in sorted(by_day.items()):
        storage.write(merged_key(day, merge_id), orjson.dumps(entries))


def merged_flatfiles(storage: Storage, location: TableLocation, hours: Iterable[datetime] | None = None) -> dict[str, set[int]]:
    """The flatfiles already in the table, each with the sizes it was merged at (a flatfile grows when a
    quarantine replay adds records to it), of the arrival days of `hours`, or all: the ledger, and what the
    table's snapshots say they merged."""
    prefixes = [MERGED] if hours is None else sorted({merged_prefix(hour) for hour in hours})
    entries = merged_by_snapshots(location)
    entries += [orjson.loads(storage.read(item.key)) for prefix in prefixes for item in storage.list(prefix)]
    merged: dict[str, set[int]] = defaultdict(set)
    for flatfiles in entries:
        for key, size in flatfiles.items():
            merged[key].add(size)
    return dict(merged)


def pending_raw_objects(storage: Storage, location: TableLocation, hours: Iterable[datetime] | None = None) -> list[ObjectInfo]:
    """Raw objects not yet in the table: never flattened and never merged, or flattened but not merged at
    the flatfile's current size (a run stopped between flattening and merging, or a quarantine replay that
    added records); not those set aside. All of raw/ when `hours` is None."""
    if hours is None:
        raw = [item for item in storage.list(RAW) if hour_of_raw_key(item.key) is not None]
        flat = storage.list(FLATFILES)
    else:
        hours = list(hours)
        raw = [item for hour in hours for item in raw_objects(storage, hour)]
        flat = (item for hour in hours for item in storage.list(flat_prefix(hour)))
    sizes = {item.key: item.size for item in flat}
    merged = merged_flatfiles(storage, location, hours)
    aside = set_aside_objects(storage)

    def unmerged(key: str) -> bool:
        flat_size, merged_sizes = sizes.get(flat_key(key)), merged.get(flat_key(key), set())
        return not merged_sizes if flat_size is None else flat_size not in merged_sizes

    return [item for item in raw if unmerged(item.key) and item.key not in aside]


def pending_raw_keys(storage: Storage, location: TableLocation, hours: Iterable[datetime] | None = None) -> dict[datetime, list[str]]:
    """The keys of `pending_raw_objects`, by arrival hour."""
    pending: dict[datetime, list[str]] = defaultdict(list)
    for item in pending_raw_objects(storage, location, hours):
        pending[hour_of_raw_key(item.key)].append(item.key)
    return dict(sorted(pending.items()))


def fingerprint(key: str) -> str:
    """8 bytes of a key's hash, as hex: what the arrival sensor remembers of a key (a key is 75 bytes or more)."""
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


@dataclass
class HourScan:
    """What the arrival sensor knows of one arrival-hour folder: every object modified up to `floor` (epoch
    seconds) has been seen, `below` of them when the folder was last listed whole; of the objects modified
    later, the fingerprint, by second of modification."""

    floor: int = 0
    below: int = 0
    recent: dict[int, set[str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"floor": self.floor, "below": self.below,
                "recent": {str(second): "".join(sorted(prints)) for second, prints in sorted(self.recent.items())}}

    @classmethod
    def from_json(cls, state: dict) -> "HourScan":
        recent = {int(second): {prints[at:at + 16] for at in range(0, len(prints), 16)}
                  for second, prints in state["recent"].items()}
        return cls(state["floor"], state["below"], recent)


@dataclass
class ArrivalScan:
    """What the arrival sensor remembers between ticks: per arrival hour (`2026-03-02T08`) what it has seen,
    and where the last tick stopped when it ran out of listing budget."""

    hours: dict[str, HourScan] = field(default_factory=dict)
    resume: tuple[str, str] | None = None  # (hour, last key listed)

    @classmethod
    def from_json(cls, text: str | None) -> "ArrivalScan":
        state = json.loads(text) if text else {}
        resume = tuple(state["resume"]) if state.get("resume") else None
        if "seen" in state:  # the cursor of an earlier version: every key seen, in full
            return cls({label: HourScan(recent={0: set(map(fingerprint, keys))}) for label, keys in state["seen"].items()},
                       resume)
        return cls({label: HourScan.from_json(hour) for label, hour in state.get("hours", {}).items()}, resume)

    def to_json(self) -> str:
        return json.dumps({"hours": {label: hour.to_json() for label, hour in self.hours.items()},
                           "resume": self.resume}, separators=(",", ":"))


@dataclass
class Arrivals:
    """What one look at the arrival folders found."""

    new: dict[datetime, list[str]]  # new raw keys by arrival hour, in key order
    scan: ArrivalScan  # what to remember for the next look
    listed: int = 0
    late: int = 0  # objects that showed up over SETTLE_SECONDS after their modification time: left to etl_catchup


def find_new_arrivals(storage: Storage, scan: ArrivalScan, hours: list[datetime],
                      budget: int = LISTING_BUDGET) -> Arrivals:
    """Raw keys in the given hour folders that `scan` has not seen, and the scan to remember next.

    The scan remembers the keys modified in an hour folder in the last SETTLE_SECONDS before the newest
    one (by fingerprint), and counts the older ones: an object becomes visible within SETTLE_SECONDS of its
    modification time, so those older ones are all seen. So objects that share a second or arrive out of
    key order are never skipped, a key is never reported twice, and the state stays the size of ten minutes
    of arrivals. An object that shows up later than that (a longer upload) is counted as `late` and left to
    etl_catchup. At most `budget` keys are listed per call (on S3, one ListObjectsV2 request per 1,000
    keys); the next call carries on from where this one stopped, and only a folder listed whole from its
    start moves its floor."""
    labels = [hour_label(hour) for hour in hours]
    start, after = 0, ""
    if scan.resume and scan.resume[0] in labels:
        start, after = labels.index(scan.resume[0]), scan.resume[1]
    found = Arrivals({}, ArrivalScan({label: scan.hours[label] for label in labels if label in scan.hours}))
    for hour, label in zip(hours[start:], labels[start:]):
        state = found.scan.hours.setdefault(label, HourScan())
        known = set().union(*state.recent.values())
        fresh, seconds, above = [], [], []  # above: (second, fingerprint) of the keys past the floor
        for item in storage.list(raw_prefix(hour), start_after=after):
            found.listed += 1
            second = int(item.last_modified.timestamp())
            if hour_of_raw_key(item.key) == hour:
                seconds.append(second)
                if second > state.floor:
                    above.append((second, fingerprint(item.key)))
                    if above[-1][1] not in known:
                        fresh.append(item.key)
                        state.recent.setdefault(second, set()).add(above[-1][1])
            if found.listed >= budget:
                found.scan.resume = (label, item.key)
                break
        whole = not after and not found.scan.resume
        after = ""
        if fresh:
            found.new[hour] = fresh
        if whole:
            found.late += max(0, sum(second <= state.floor for second in seconds) - state.below)
            state.floor = max([state.floor] + [second - SETTLE_SECONDS for second in seconds])
            state.below = sum(second <= state.floor for second in seconds)
            state.recent = {}
            for second, print_ in above:
                if second > state.floor:
                    state.recent.setdefault(second, set()).add(print_)
        if not state.recent and not state.below:
            del found.scan.hours[label]
        if found.scan.resume:
            break
    return found
