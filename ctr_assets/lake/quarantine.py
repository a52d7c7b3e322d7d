"""Quarantine you can act on: what was set aside and why, and a replay through the current record logic
once the cause is fixed (a code fix, a changed field type), without editing files by hand.

A replayed item that now passes is appended to its raw object's flatfile (so its lineage stays that
object's), and only then removed from quarantine. The grown flatfile is no longer merged at its current
size, so the next merge of its hour takes it to the table (the replay runs as the `flattened` step of an
ETL run, whose `ctr` step is that merge). Each step is idempotent: a line already in the flatfile is not
added twice and the merge keeps one row per contact, so a replay that was interrupted, or that runs
twice, ends the same as one that ran once. An item that still fails stays exactly as it was.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

import orjson

from ctr_assets.lake.layout import (
    QUARANTINE,
    flat_key,
    hour_of_raw_key,
    quarantine_prefix,
)
from ctr_assets.lake.storage import Storage
from ctr_assets.records.flatten import flatten_object
from ctr_assets.records.phones import Protect


@dataclass(frozen=True)
class QuarantineItem:
    """One quarantine entry: a byte range of a raw object, or one record of it, and why it was set aside."""

    file: str  # the quarantine/ key holding it
    line: bytes  # the entry as stored
    entry: dict[str, Any]

    @property
    def source_key(self) -> str:
        return self.entry["source_key"]

    @property
    def reason(self) -> str:
        return self.entry["reason"]

    @property
    def content(self) -> bytes:
        """The exact bytes that were set aside."""
        if "data" in self.entry:
            return self.entry["data"].encode("utf-8")
        return base64.b64decode(self.entry["data_base64"])


@dataclass
class ReplayReport:
    """What one replay did."""

    examined: int = 0
    replayed: int = 0  # items whose records now are in their object's flatfile (and no longer in quarantine)
    records_written: int = 0
    still_failing: Counter = field(default_factory=Counter)  # by the reason they fail for now
    flatfiles_written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # items whose move did not land as it should

    def summary(self) -> dict:
        return {"examined": self.examined, "replayed": self.replayed, "records_written": self.records_written,
                "still_failing": dict(self.still_failing), "flatfiles_written": self.flatfiles_written}


def quarantined_items(storage: Storage, reason: str | None = None, prefixes: Iterable[str] = (QUARANTINE,)) -> list[QuarantineItem]:
    """Every quarantine entry under `prefixes` (only those with `reason`, when given), in storage order."""
    return [item for prefix in prefixes for key in _quarantine_files(storage, prefix) for item in _items(storage, key)
            if reason in (None, item.reason)]


def quarantined_hours(storage: Storage, reason: str | None = None) -> list[datetime]:
    """The arrival hours holding quarantined items (with `reason`, when given) that a replay can reach."""
    return sorted({hour for item in quarantined_items(storage, reason)
                   if (hour := hour_of_raw_key(item.source_key)) is not None})


def replay_hours(storage: Storage, hours: Iterable[datetime], reason: str | None = None,
                 protect_phone: Protect | None = None) -> ReplayReport:
    """Run the quarantined items of the given arrival hours (only those with `reason`, when given) through
    the current record logic; the ones that now pass move to their object's flatfile."""
    report = ReplayReport()
    new_lines: dict[str, list[bytes]] = {}  # source key -> lines of its items that now pass
    resolved: dict[str, list[QuarantineItem]] = {}  # quarantine file -> its items that now pass
    for item in quarantined_items(storage, reason, [quarantine_prefix(hour) for hour in hours]):
        if hour_of_raw_key(item.source_key) is None:  # not from an arrival-hour folder: nothing merges it
            continue
        report.examined += 1
        flat = io.BytesIO()
        stats = flatten_object(item.content, item.source_key, flat, io.BytesIO(), protect_phone)
        if stats.records_quarantined:
            report.still_failing.update(stats.reasons)
            continue
        new_lines.setdefault(item.source_key, []).extend(flat.getvalue().splitlines(keepends=True))
        resolved.setdefault(item.file, []).append(item)
        report.replayed += 1
        report.records_written += stats.records_written
    for source_key, lines in new_lines.items():
        if _append_new_lines(storage, flat_key(source_key), lines):
            report.flatfiles_written.append(flat_key(source_key))
    for file, items in resolved.items():
        _remove_entries(storage, file, items)
    report.problems = _moved_problems(storage, new_lines, resolved)
    return report


def _moved_problems(storage: Storage, new_lines: dict[str, list[bytes]], resolved: dict[str, list[QuarantineItem]]) -> list[str]:
    """Read back what a replay stored: every record of a replayed item is in its object's flatfile, and the
    item is gone from quarantine (conservation: each item went to exactly one place)."""
    problems = []
    for source_key, lines in new_lines.items():
        held = set(storage.read(flat_key(source_key)).splitlines(keepends=True))
        if missing := sum(line not in held for line in lines):
            problems.append(f"{source_key}: {missing} replayed records missing from {flat_key(source_key)}")
    for file, items in resolved.items():
        left = set(storage.read(file).splitlines()) if storage.exists(file) else set()
        if still := sum(item.line in left for item in items):
            problems.append(f"{file}: {still} replayed items still in quarantine")
    return problems


def _quarantine_files(storage: Storage, prefix: str) -> list[str]:
    return [item.key for item in storage.list(prefix)]


def _items(storage: Storage, key: str) -> list[QuarantineItem]:
    lines = storage.read(key).splitlines()
    return [QuarantineItem(key, line, orjson.loads(line)) for line in lines if line.strip()]


def _append_new_lines(storage: Storage, key: str, lines: list[bytes]) -> bool:
    """Add the lines the flatfile does not hold yet; True when it had to be rewritten."""
    existing = storage.read(key) if storage.exists(key) else b""
    held = set(existing.splitlines(keepends=True))
    missing = [line for line in dict.fromkeys(lines) if line not in held]
    if missing:
        storage.write(key, existing + b"".join(missing))
    return bool(missing)


def _remove_entries(storage: Storage, key: str, items: list[QuarantineItem]) -> None:
    """Rewrite one quarantine file without the given entries (re-read, so entries a concurrent flatten
    wrote meanwhile are kept), or delete it when nothing is left."""
    if not storage.exists(key):
        return
    gone = {item.line for item in items}
    remaining = [line + b"\n" for line in storage.read(key).splitlines() if line.strip() and line not in gone]
    if remaining:
        storage.write(key, b"".join(remaining))
    else:
        storage.delete(key)
