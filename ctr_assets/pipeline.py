"""The pipeline's steps on a storage, without Dagster: the assets call these, and so can tests and scripts."""

from __future__ import annotations

import gc
import io
import multiprocessing
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Callable, Iterable, Iterator

from ctr_assets.layout import (
    FLATFILES,
    RAW,
    flat_key,
    flat_prefix,
    hour_of_raw_key,
    quarantine_key,
    raw_prefix,
)
from ctr_assets.records.flatten import FlattenStats, flatten_object
from ctr_assets.records.table import MergeResult, merge_flatfiles
from ctr_assets.storage import Storage

Progress = Callable[[int, int, FlattenStats], None]


@dataclass
class FlattenReport:
    """The flatten step over some hours: totals, and each processed object's own counts."""

    objects: list[FlattenStats] = field(default_factory=list)
    skipped: int = 0

    @property
    def totals(self) -> FlattenStats:
        total = FlattenStats(source_key="*")
        for stats in self.objects:
            total.add(stats)
        return total


def raw_keys(storage: Storage, hour: datetime) -> list[str]:
    """The raw objects Firehose delivered in one arrival hour."""
    return [item.key for item in storage.list(raw_prefix(hour)) if hour_of_raw_key(item.key) == hour]


def flatten_raw_object(storage: Storage, key: str) -> FlattenStats:
    """Flatten one raw object: its quarantine entries are published first, its flatfile last, so an
    existing flatfile always means the object was completely processed."""
    data = storage.read(key)
    quarantined = io.BytesIO()
    with storage.writer(flat_key(key)) as staged:
        with staged.open("wb") as flat_out:
            stats = flatten_object(data, key, flat_out, quarantined)
        if stats.records_quarantined:
            storage.write(quarantine_key(key), quarantined.getvalue())
        else:
            storage.delete(quarantine_key(key))
    return stats


def flatten_hours(
    storage: Storage,
    hours: Iterable[datetime],
    reprocess: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
) -> FlattenReport:
    """Flatten every raw object of the given arrival hours; already-flattened objects are skipped
    unless `reprocess` is set (their flatfile has a deterministic name, so redoing them is harmless).
    Objects are flattened in `workers` processes (default: one per available core)."""
    report = FlattenReport()
    todo: list[str] = []
    for hour in hours:
        keys = raw_keys(storage, hour)
        done = set() if reprocess else {item.key for item in storage.list(flat_prefix(hour))}
        pending = [key for key in keys if flat_key(key) not in done]
        report.skipped += len(keys) - len(pending)
        todo.extend(pending)
    for number, stats in enumerate(_flatten_objects(storage, todo, workers or available_cores()), start=1):
        report.objects.append(stats)
        if progress is not None:
            progress(number, len(todo), stats)
    return report


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _flatten_objects(storage: Storage, keys: list[str], workers: int) -> Iterator[FlattenStats]:
    """Each object's stats, in key order. A worker holds one object at a time, so memory is bounded by
    a few objects in flight whatever their number."""
    if workers <= 1 or len(keys) <= 1:
        yield from (flatten_raw_object(storage, key) for key in keys)
        return
    # fork starts a worker in milliseconds with everything imported (spawn would import Dagster again in
    # each). gc.freeze keeps the collector from scanning, and so copying, the objects a worker inherits.
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
    with context.Pool(min(workers, len(keys)), initializer=gc.freeze) as pool:
        yield from pool.imap(partial(flatten_raw_object, storage), keys)
        pool.close()  # let the workers finish on their own: terminating them interrupts Dagster's handlers
        pool.join()


def conservation_problems(storage: Storage, objects: Iterable[FlattenStats]) -> list[str]:
    """Recount what was persisted for each object: flatfile lines plus quarantine entries must equal the
    records found in it. Returns one line per object that does not add up."""
    problems = []
    for stats in objects:
        written = _count_lines(storage, flat_key(stats.source_key))
        quarantined = _count_lines(storage, quarantine_key(stats.source_key))
        if written + quarantined != stats.records_in:
            problems.append(
                f"{stats.source_key}: {stats.records_in} records in, {written} written + {quarantined} quarantined"
            )
    return problems


def _count_lines(storage: Storage, key: str) -> int:
    return storage.read(key).count(b"\n") if storage.exists(key) else 0


def flatfile_keys(storage: Storage, hours: Iterable[datetime]) -> list[str]:
    return [item.key for hour in hours for item in storage.list(flat_prefix(hour)) if item.size]


def merge_hours(storage: Storage, hours: Iterable[datetime], connection) -> MergeResult | None:
    """Merge the flattened records of the given arrival hours into the table; None when there are none
    (their flatfiles may have expired: the table is then left exactly as it is)."""
    keys = flatfile_keys(storage, hours)
    return merge_flatfiles(connection, storage, keys) if keys else None


def pending_raw_keys(storage: Storage, hours: Iterable[datetime] | None = None) -> dict[datetime, list[str]]:
    """Raw objects without a flatfile, by arrival hour; all of raw/ when `hours` is None."""
    if hours is None:
        raw = [item.key for item in storage.list(RAW)]
        flat = {item.key for item in storage.list(FLATFILES)}
    else:
        hours = list(hours)
        raw = [key for hour in hours for key in raw_keys(storage, hour)]
        flat = {item.key for hour in hours for item in storage.list(flat_prefix(hour))}
    pending: dict[datetime, list[str]] = defaultdict(list)
    for key in raw:
        hour = hour_of_raw_key(key)
        if hour is not None and flat_key(key) not in flat:
            pending[hour].append(key)
    return dict(sorted(pending.items()))


def find_new_arrivals(
    storage: Storage, seen: dict[str, list[str]], hours: Iterable[datetime]
) -> tuple[dict[datetime, list[str]], dict[str, list[str]]]:
    """Raw keys in the given hour folders that are not in `seen` (hour -> keys already reported).

    Remembering every key of the listed hours, rather than a last key or a last-modified time, is what
    keeps objects that share a second or arrive out of key order from being skipped. Only the listed
    hours are kept in the returned state, so it stays as small as the window."""
    new: dict[datetime, list[str]] = {}
    state: dict[str, list[str]] = {}
    for hour in hours:
        label = hour.strftime("%Y-%m-%dT%H")
        keys = raw_keys(storage, hour)
        known = set(seen.get(label, ()))
        fresh = [key for key in keys if key not in known]
        if fresh:
            new[hour] = fresh
        if keys:
            state[label] = sorted(known | set(keys))
    return new, state
