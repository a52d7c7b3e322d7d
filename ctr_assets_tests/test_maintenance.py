"""Table upkeep: compaction, snapshot expiry and unused-file removal never lose a row or a file the current
snapshot needs, and what expired snapshots merged stays known."""

from contextlib import closing
from datetime import timedelta
from pathlib import Path

from ctr_assets.lake.iceberg import as_path, load_table, snapshot_files
from ctr_assets.lake.maintenance import maintain
from ctr_assets.lake.pipeline import pending_raw_keys
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets_tests.drivers import run_in_two, write_crash_sample
from ctr_assets_tests.helpers import copy_into_another_day, local_table, table_rows


def needed_files(table) -> set[str]:
    """Every file the current snapshot needs: metadata, manifest list, manifests, data and delete files."""
    snapshot = table.current_snapshot()
    files = {as_path(table.metadata_location), as_path(snapshot.manifest_list)}
    files |= {as_path(manifest.manifest_path) for manifest in snapshot.manifests(table.io)}
    current = snapshot_files(table)
    return files | {as_path(uri) for uri, _ in current.data} | set(map(as_path, current.position_deletes))


def test_maintenance_compacts_expires_and_deletes_only_what_nothing_needs(storage):
    write_crash_sample(storage)
    run_in_two(storage.root)  # two merges: two snapshots
    location = local_table(storage)
    with closing(scratch_connection()) as connection:
        copy_into_another_day(connection, storage, location, "twin", "2026-03-02")  # a second file in one day
        rows_before = table_rows(connection, storage, location)
    orphan = storage.root_path / "parquet/ctr/data/left-by-a-killed-merge.parquet"
    orphan.write_bytes(b"PAR1 unfinished")
    snapshots_before = len(load_table(location).snapshots())

    with closing(scratch_connection()) as connection:
        report = maintain(connection, storage, location, retention_hours=0, orphan_min_age=timedelta(0))
        rows_after = table_rows(connection, storage, location)

    table = load_table(location)
    assert report.days_compacted == ["2026-03-02"]
    assert report.snapshots_expired == snapshots_before and report.snapshots_kept == 1 == len(table.snapshots())
    assert report.files_deleted > 0 and not orphan.exists()
    assert all(Path(path).exists() for path in needed_files(table))
    assert len(snapshot_files(table).data) == len(snapshot_files(table).days())  # one file per day
    # Compaction folded the duplicate of "twin" in: the rows are the same, exactly once each.
    assert sorted(map(repr, rows_after)) == sorted(map(repr, rows_before))
    assert pending_raw_keys(storage, location) == {}  # what the expired snapshots merged is still known
    with closing(scratch_connection()) as connection:
        again = maintain(connection, storage, location, retention_hours=0, orphan_min_age=timedelta(0))
    assert (again.days_compacted, again.snapshots_expired, again.files_deleted) == ([], 0, 0)


def test_young_unreferenced_files_and_recent_snapshots_are_kept(storage):
    write_crash_sample(storage)
    run_in_two(storage.root)
    location = local_table(storage)
    in_flight = storage.root_path / "parquet/ctr/data/written-by-a-merge-in-flight.parquet"
    in_flight.write_bytes(b"PAR1 not committed yet")
    snapshots = len(load_table(location).snapshots())

    with closing(scratch_connection()) as connection:
        report = maintain(connection, storage, location, retention_hours=24)

    assert (report.snapshots_expired, report.files_deleted) == (0, 0)
    assert in_flight.exists() and len(load_table(location).snapshots()) == snapshots


def test_maintenance_of_a_table_that_does_not_exist_yet_does_nothing(storage):
    with closing(scratch_connection()) as connection:
        report = maintain(connection, storage, local_table(storage), retention_hours=0)
    assert report.describe() == "compacted 0 days, expired 0 snapshots (0 kept), deleted 0 unused files"


def test_a_snapshot_kept_for_time_travel_still_reads_after_maintenance(storage):
    write_crash_sample(storage)
    run_in_two(storage.root)
    location = local_table(storage)
    first = load_table(location).snapshots()[0].snapshot_id
    with closing(scratch_connection()) as connection:
        before = table_rows(connection, storage, location, snapshot_id=first)
        maintain(connection, storage, location, retention_hours=24, orphan_min_age=timedelta(0))
        assert table_rows(connection, storage, location, snapshot_id=first) == before


