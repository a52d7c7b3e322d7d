"""Upkeep of the ctr table: compaction, snapshot expiry and the removal of files nothing needs.

Our merges leave one data file per day, but other engines writing the table (Athena's MERGE or DELETE)
add small files and position delete files; compaction rewrites such a day as one file. Expiring a
snapshot only drops it from the metadata (pyiceberg); the files that only expired snapshots used, and
those of merges killed before their commit, are deleted here: pyiceberg has no orphan-file removal, so
this is written by hand, and it deletes only files under the table's folder that no retained snapshot
names and that are older than `ORPHAN_MIN_AGE` (a merge in flight has written files it has not
committed yet). The current snapshot is never expired, so no file it needs is ever removed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ctr_assets.lake.iceberg import (
    CommitConflict,
    TableLocation,
    as_path,
    file_day,
    load_table,
)
from ctr_assets.lake.layout import TABLE_PREFIX
from ctr_assets.lake.pipeline import record_merged
from ctr_assets.lake.storage import Storage
from ctr_assets.lake.table import SUMMARY_MERGED, compact_days, decode_flatfiles

ORPHAN_MIN_AGE = timedelta(hours=24)


@dataclass
class MaintenanceReport:
    days_compacted: list[str] = field(default_factory=list)
    snapshots_expired: int = 0
    snapshots_kept: int = 0
    files_deleted: int = 0
    compaction_conflicts: int = 0  # another writer committed first: those days wait for the next run

    def describe(self) -> str:
        return (f"compacted {len(self.days_compacted)} days, expired {self.snapshots_expired} snapshots "
                f"({self.snapshots_kept} kept), deleted {self.files_deleted} unused files")


def maintain(connection: Any, storage: Storage, location: TableLocation, retention_hours: float,
             orphan_min_age: timedelta = ORPHAN_MIN_AGE, now: datetime | None = None) -> MaintenanceReport:
    report = MaintenanceReport()
    table = load_table(location)
    if table is None or table.current_snapshot() is None:
        return report
    storage.attach(connection)
    days = _days_to_compact(table)
    if days:
        try:
            compact_days(connection, storage, table, days, {"ctr-assets.maintenance": "compaction"})
            report.days_compacted = [day.isoformat() for day in days]
        except CommitConflict:
            report.compaction_conflicts += 1
            table = load_table(location)
    now = now or datetime.now(timezone.utc)
    expiring = keep_what_expiring_snapshots_merged(storage, table, retention_hours, now)
    if expiring:
        table.maintenance.expire_snapshots().by_ids([snapshot.snapshot_id for snapshot in expiring]).commit()
        table = load_table(location)
    report.snapshots_expired = len(expiring)
    report.snapshots_kept = len(table.snapshots())
    report.files_deleted = _delete_unreferenced(storage, table, now - orphan_min_age)
    return report


def keep_what_expiring_snapshots_merged(storage: Storage, table: Any, retention_hours: float, now: datetime) -> list:
    """The snapshots older than the retention (never the current one), once the flatfiles their summaries
    say they merged are in the ledger: it must stay known after they expire, whichever engine expires them."""
    expiring = [snapshot for snapshot in table.snapshots()
                if snapshot.timestamp_ms < (now - timedelta(hours=retention_hours)).timestamp() * 1000
                and snapshot.snapshot_id != table.current_snapshot().snapshot_id]
    for snapshot in expiring:
        text = (snapshot.summary.additional_properties if snapshot.summary else {}).get(SUMMARY_MERGED)
        if text:
            record_merged(storage, decode_flatfiles(text), str(snapshot.snapshot_id))
    return expiring


def _days_to_compact(table: Any) -> list:
    """Days of the current snapshot held in more than one data file, or with delete files."""
    files, deleted = Counter(), set()
    for task in table.scan().plan_files():
        day = file_day(task.file)
        files[day] += 1
        if task.delete_files:
            deleted.add(day)
    return sorted(day for day, count in files.items() if count > 1 or day in deleted)


def _delete_unreferenced(storage: Storage, table: Any, written_before: datetime) -> int:
    """Delete the files under the table's folder that no retained snapshot or metadata file names."""
    referenced = {as_path(path) for path in table.inspect.all_files().column("file_path").to_pylist()}
    referenced |= {as_path(path) for path in table.inspect.all_manifests().column("path").to_pylist()}
    referenced |= {as_path(snapshot.manifest_list) for snapshot in table.snapshots()}
    referenced |= {as_path(entry.metadata_file) for entry in table.metadata.metadata_log}
    referenced.add(as_path(table.metadata_location))
    deleted = 0
    for item in storage.list(TABLE_PREFIX):
        if item.last_modified < written_before and as_path(storage.uri(item.key)) not in referenced:
            storage.delete(item.key)
            deleted += 1
    return deleted
