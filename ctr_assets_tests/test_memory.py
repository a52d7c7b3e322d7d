"""A busy day fits in a bounded memory: the merge, the checks and the aggregates run under
CTR_DUCKDB_MEMORY_MB and spill to disk instead of failing, whatever one day holds."""

from contextlib import closing
from datetime import datetime, timedelta, timezone

import dagster as dg

from ctr_assets.api import run_pipeline
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.iceberg import load_table, snapshot_files
from ctr_assets.metrics.warehouse import refresh_ctr_view, scratch_connection
from ctr_assets.sample import write_firehose_objects
from ctr_assets_tests.helpers import ctr_record, firehose_object, raw_key, settings_for

DAY = datetime(2026, 3, 2, tzinfo=timezone.utc)
SMALL = 128  # MB: DuckDB's JSON reader alone needs about 100 with one thread


def table_counts(settings, storage) -> tuple[int, int, dict[str, int]]:
    with closing(scratch_connection(SMALL)) as connection:
        refresh_ctr_view(connection, storage, table_for(settings, storage))
        rows, distinct = connection.sql("SELECT count(*), count(DISTINCT contactid) FROM ctr").fetchall()[0]
        days = dict(connection.sql("SELECT CAST(CAST(initiationtimestamp AS DATE) AS VARCHAR), count(*) "
                                   "FROM ctr GROUP BY ALL").fetchall())
    return rows, distinct, days


def test_fifty_thousand_contacts_of_one_date_merge_under_a_small_memory_bound(tmp_path):
    settings = settings_for(tmp_path, duckdb_memory_mb=SMALL)
    storage = storage_for(settings)
    stats = write_firehose_objects(storage.write, DAY, 24, 50_000 // 24, seed=11)

    summary = run_pipeline(settings=settings, instance=dg.DagsterInstance.ephemeral())

    assert summary.ok, (summary.failed_runs, summary.failed_checks)
    rows, distinct, days = table_counts(settings, storage)
    assert rows == distinct == summary.table_rows == stats.contacts > 50_000
    assert max(days.values()) > 0.9 * rows  # a busy day: nearly everything in one date


def test_contacts_moving_between_two_dates_both_ways_under_the_same_bound(tmp_path):
    settings = settings_for(tmp_path, duckdb_memory_mb=SMALL)
    storage = storage_for(settings)
    first, second = DAY + timedelta(hours=10), DAY + timedelta(days=1, hours=10)
    for hour, day in ((0, first), (1, second)):
        records = [ctr_record(f"{day:%d}-{n}", day, Agent={"Username": f"agent-{n % 50}"}) for n in range(15_000)]
        storage.write(raw_key(first + timedelta(hours=hour), suffix=f"load-{hour}"), firehose_object(*records))
    instance = dg.DagsterInstance.ephemeral()
    assert run_pipeline(settings=settings, instance=instance).ok
    # Updated copies: 5,000 contacts of each date now say they began on the other one.
    moves = [ctr_record(f"{day:%d}-{n}", other, second + timedelta(hours=2))
             for day, other in ((first, second), (second, first)) for n in range(5_000)]
    storage.write(raw_key(second + timedelta(hours=3), suffix="moves"), firehose_object(*moves))

    summary = run_pipeline(settings=settings, instance=instance)

    assert summary.ok and summary.merged["rows_moved"] == 10_000
    rows, distinct, days = table_counts(settings, storage)
    assert rows == distinct == 30_000 and days == {f"{first:%Y-%m-%d}": 15_000, f"{second:%Y-%m-%d}": 15_000}
    table = load_table(table_for(settings, storage))
    assert len(snapshot_files(table).data) == 2  # one data file per day after the merge
