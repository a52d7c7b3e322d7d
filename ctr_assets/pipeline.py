"""The pipeline's steps on a storage, without Dagster: the assets call these, and so can tests and scripts.

Crash safety comes from the order of the writes, each published in one step: an object's quarantine
entries, then its flatfile; the table's partition files, then the ledger of merged flatfiles. A raw object
counts as done only once its flatfile is in that ledger, so a run killed anywhere is finished by the next
one, and every step is idempotent, so redoing part of it changes nothing.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

import orjson

from ctr_assets.layout import (
    FLATFILES,
    MERGED,
    RAW,
    WRITTEN_PREFIXES,
    flat_key,
    flat_prefix,
    hour_of_raw_key,
    merged_key,
    quarantine_key,
    raw_prefix,
)
from ctr_assets.records.flatten import FlattenStats, flatten_object
from ctr_assets.records.phones import Protect
from ctr_assets.records.table import MergeResult, merge_flatfiles
from ctr_assets.storage import Storage, describe_error

Progress = Callable[[int, int, FlattenStats], None]
# Held for every merge into the table: a merge reads whole partition files and writes them back, so two
# at once (two CLI runs, a sensor's run and a manual one) could each drop the other's rows.
TABLE_LOCK = "ctr_table"


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
    abandoned_staging_removed: int = 0

    @property
    def totals(self) -> FlattenStats:
        total = FlattenStats(source_key="*")
        for stats in self.objects:
            total.add(stats)
        return total


def raw_keys(storage: Storage, hour: datetime) -> list[str]:
    """The raw objects Firehose delivered in one arrival hour."""
    return [item.key for item in storage.list(raw_prefix(hour)) if hour_of_raw_key(item.key) == hour]


def flatten_raw_object(storage: Storage, key: str, protect_phone: Protect | None = None) -> FlattenStats:
    """Flatten one raw object: its quarantine entries are published first, its flatfile last, so an
    existing flatfile always means the object was completely processed."""
    data = storage.read(key)
    quarantined = io.BytesIO()
    with storage.writer(flat_key(key)) as staged:
        with staged.open("wb") as flat_out:
            stats = flatten_object(data, key, flat_out, quarantined, protect_phone)
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
    protect_phone: Protect | None = None,
) -> FlattenReport:
    """Flatten every raw object of the given arrival hours; already-flattened objects are skipped
    unless `reprocess` is set (their flatfile has a deterministic name, so redoing them is harmless).
    A failure names the object it happened on (`ObjectFailed`); objects done before it stay done."""
    report = FlattenReport(abandoned_staging_removed=sum(map(storage.remove_abandoned_staging, WRITTEN_PREFIXES)))
    todo: list[str] = []
    for hour in hours:
        keys = raw_keys(storage, hour)
        done = set() if reprocess else {item.key for item in storage.list(flat_prefix(hour))}
        pending = [key for key in keys if flat_key(key) not in done]
        report.skipped += len(keys) - len(pending)
        todo.extend(pending)
    for number, key in enumerate(todo, start=1):
        try:
            stats = flatten_raw_object(storage, key, protect_phone)
        except Exception as error:
            raise ObjectFailed(key, error) from error
        report.objects.append(stats)
        if progress is not None:
            progress(number, len(todo), stats)
    return report


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


def merge_hours(storage: Storage, hours: Iterable[datetime], connection) -> MergeResult | None:
    """Merge the flattened records of the given arrival hours into the table under the table lock, then
    record in each hour's ledger which flatfiles (at which size) are now in it. None when the hours have
    no records (their flatfiles may have expired: the table is then left exactly as it is)."""
    with storage.lock(TABLE_LOCK):
        flatfiles = {hour: list(storage.list(flat_prefix(hour))) for hour in hours}
        keys = [item.key for items in flatfiles.values() for item in items if item.size]
        result = merge_flatfiles(connection, storage, keys) if keys else None
        for hour, items in flatfiles.items():
            if items:
                storage.write(merged_key(hour), orjson.dumps({"flatfiles": {item.key: item.size for item in items}}))
    return result


def pending_raw_keys(storage: Storage, hours: Iterable[datetime] | None = None) -> dict[datetime, list[str]]:
    """Raw objects not yet in the table, by arrival hour: without a flatfile, or with one the ledger does
    not list at its current size (a run stopped between flattening and merging). All of raw/ when
    `hours` is None."""
    if hours is None:
        raw = [item.key for item in storage.list(RAW)]
        flat = storage.list(FLATFILES)
        ledgers = [item.key for item in storage.list(MERGED)]
    else:
        hours = list(hours)
        raw = [key for hour in hours for key in raw_keys(storage, hour)]
        flat = (item for hour in hours for item in storage.list(flat_prefix(hour)))
        ledgers = [key for key in map(merged_key, hours) if storage.exists(key)]
    sizes = {item.key: item.size for item in flat}
    merged = {key: size for ledger in ledgers for key, size in orjson.loads(storage.read(ledger))["flatfiles"].items()}
    pending: dict[datetime, list[str]] = defaultdict(list)
    for key in raw:
        hour = hour_of_raw_key(key)
        flat_size = sizes.get(flat_key(key))
        if hour is not None and (flat_size is None or merged.get(flat_key(key)) != flat_size):
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
