"""The whole graph through Dagster, on a local folder and on a bucket: sample data in, table, checks and
dashboard out."""

from contextlib import closing
from datetime import timedelta

import dagster as dg
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.definitions import ETL_JOB, build_definitions
from ctr_assets.defs.dashboards import DASHBOARD_FILE
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.iceberg import load_table
from ctr_assets.lake.layout import FLATFILES, flat_key, partition_of_hour
from ctr_assets.lake.pipeline import flatten_hours
from ctr_assets.metrics.warehouse import refresh_ctr_view, scratch_connection
from ctr_assets_tests.helpers import (
    SAMPLE_START,
    copy_into_another_day,
    ctr_record,
    firehose_object,
    raw_key,
    settings_for,
    write_sample,
)
from ctr_assets_tests.test_storage import BrokenStorage


@pytest.fixture
def sample(settings):
    """Sample data on a local folder and on a bucket (fewer, larger objects there: each request to the
    test's S3 server costs milliseconds)."""
    storage = storage_for(settings)
    stats = write_sample(storage, batch_seconds=600 if settings.is_s3 else 60)
    return settings, storage, stats


@pytest.fixture
def local_sample(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    monkeypatch.setenv("CTR_FIRST_HOUR", settings.first_hour)
    storage = storage_for(settings)
    return settings, storage, write_sample(storage)


def table_rows(settings, storage, query="SELECT count(*) FROM ctr"):
    with closing(scratch_connection()) as connection:
        refresh_ctr_view(connection, storage, table_for(settings, storage))
        return connection.sql(query).fetchall()


def snapshot_id(settings, storage) -> int:
    return load_table(table_for(settings, storage)).current_snapshot().snapshot_id


def test_sample_data_becomes_a_deduplicated_table_with_passing_checks(local_sample):
    settings, storage, stats = local_sample
    summary = run_pipeline(settings.storage_url, instance=dg.DagsterInstance.ephemeral())

    assert summary.ok, (summary.failed_checks, summary.failed_runs)
    assert summary.flattened["records_in"] == stats.records
    assert summary.flattened["records_written"] + summary.flattened["records_quarantined"] == stats.records
    assert summary.table_rows == stats.contacts
    assert table_rows(settings, storage, "SELECT count(*) - count(DISTINCT contactid) FROM ctr") == [(0,)]
    assert storage.exists(DASHBOARD_FILE)
    html = storage.read(DASHBOARD_FILE).decode()
    top_agent, contacts = table_rows(settings, storage, "SELECT agent.username, count(*) FROM ctr "
                                     "WHERE agent.username IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1")[0]
    assert top_agent in html and "http" not in html.lower().replace("http-equiv", "")


def test_running_twice_changes_nothing(sample):
    settings, storage, _ = sample
    instance = dg.DagsterInstance.ephemeral()
    run_pipeline(settings.storage_url, instance=instance)
    before = snapshot_id(settings, storage)

    again = run_pipeline(settings.storage_url, instance=instance)

    assert again.ok and again.runs == [] and again.flattened == {} and again.merged == {}
    assert snapshot_id(settings, storage) == before


def test_a_late_file_for_an_old_hour_is_picked_up(sample):
    settings, storage, _ = sample
    instance = dg.DagsterInstance.ephemeral()
    run_pipeline(settings.storage_url, instance=instance)
    late = raw_key(SAMPLE_START, second=5, suffix="late")
    storage.write(late, firehose_object(ctr_record("late-contact", SAMPLE_START)))

    summary = run_pipeline(settings.storage_url, instance=instance)

    assert summary.hours_processed == 1 and summary.merged["rows_inserted"] == 1
    assert table_rows(settings, storage, "SELECT _source_key FROM ctr WHERE contactid = 'late-contact'") == [(late,)]


def test_a_failed_blocking_check_fails_the_run(local_sample):
    settings, storage, _ = local_sample
    instance = dg.DagsterInstance.ephemeral()
    run_pipeline(settings.storage_url, instance=instance)
    # Break the table behind the pipeline's back: the same contact in two days.
    with closing(scratch_connection()) as connection:
        # A contact of a later arrival hour: re-merging SAMPLE_START's hour below would heal one of its own.
        contact = table_rows(settings, storage, f"SELECT min(contactid) FROM ctr WHERE _source_key NOT LIKE "
                                                f"'{raw_key(SAMPLE_START)[:len('raw/YYYY/MM/DD/HH/')]}%'")[0][0]
        copy_into_another_day(connection, storage, table_for(settings, storage), contact, "2020-01-01")
    storage.write(raw_key(SAMPLE_START, 9, "new"), firehose_object(ctr_record("another", SAMPLE_START)))

    summary = run_pipeline(settings.storage_url, instance=instance)

    assert "ctr:contactid_unique" in summary.failed_checks and not summary.ok


def test_expired_flatfiles_never_shrink_the_table_nor_look_pending(sample):
    settings, storage, _ = sample
    instance = dg.DagsterInstance.ephemeral()
    run_pipeline(settings.storage_url, instance=instance)
    before = snapshot_id(settings, storage)
    for item in list(storage.list(FLATFILES)):  # retention removed every flatfile
        storage.delete(item.key)

    again = run_pipeline(settings.storage_url, instance=instance)
    job = build_definitions(settings).resolve_job_def(ETL_JOB)
    result = job.execute_in_process(
        instance=instance, partition_key=partition_of_hour(SAMPLE_START),
        run_config={"ops": {"flattened": {"config": {"reprocess": False}}}},
    )

    assert again.ok and again.runs == []  # merged flatfiles are recorded apart from themselves
    assert result.success
    (ctr,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("ctr")]
    metadata = ctr.step_materialization_data.materialization.metadata
    assert metadata["unchanged"].value is True
    # A run that merged nothing reports no counts (no "duplicates collapsed"), so the CLI sums nothing.
    assert metadata["summary"].value == {} and "duplicates collapsed in batch" not in metadata
    assert snapshot_id(settings, storage) == before


def test_flatten_skips_done_objects_unless_asked_to_reprocess(local_sample):
    settings, storage, _ = local_sample
    instance = dg.DagsterInstance.ephemeral()
    job = build_definitions(settings).resolve_job_def(ETL_JOB)
    hour = partition_of_hour(SAMPLE_START + timedelta(hours=1))

    def flattened_metadata(reprocess):
        result = job.execute_in_process(instance=instance, partition_key=hour,
                                        run_config={"ops": {"flattened": {"config": {"reprocess": reprocess}}}})
        (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("flattened")]
        return event.step_materialization_data.materialization.metadata

    first = flattened_metadata(False)
    second = flattened_metadata(False)
    forced = flattened_metadata(True)

    assert first["objects flattened"].value > 0
    assert second["objects flattened"].value == 0
    assert second["objects skipped (already flattened)"].value == first["objects flattened"].value
    assert forced["objects flattened"].value == first["objects flattened"].value


def test_a_failed_run_names_the_object_and_the_reason_and_a_rerun_completes(local_sample, monkeypatch):
    settings, storage, stats = local_sample
    broken = next(item.key for item in storage.list("raw/"))
    with monkeypatch.context() as patch:
        patch.setattr("ctr_assets.api.storage_for", lambda _: BrokenStorage(root=settings.storage_url,
                                                                               broken=broken))
        failed = run_pipeline(settings.storage_url, instance=dg.DagsterInstance.ephemeral())

    (failure,) = failed.failed_runs
    assert f": flattened: flattening {broken}: PermissionError: {broken}: no access" in failure
    assert not failed.ok and not storage.exists(flat_key(broken))
    summary = run_pipeline(settings.storage_url, instance=dg.DagsterInstance.ephemeral())
    assert summary.ok and summary.table_rows == stats.contacts


def test_the_graph_on_a_bucket_gives_the_same_table_as_on_a_local_folder(s3_settings, tmp_path, monkeypatch):
    local_settings = settings_for(tmp_path / "local")
    tables = []
    for settings in (s3_settings, local_settings):
        storage = storage_for(settings)
        write_sample(storage, hours=2, contacts_per_hour=40)
        settings = settings.model_copy(update={"duckdb_path": str(tmp_path / f"{len(tables)}.duckdb")})
        summary = run_pipeline(settings=settings, instance=dg.DagsterInstance.ephemeral())
        assert summary.ok, (summary.failed_checks, summary.failed_runs)
        tables.append(table_rows(settings, storage, "SELECT * FROM ctr ORDER BY contactid"))

    on_s3, local = tables
    assert len(on_s3) > 40 and on_s3 == local


def test_parallel_flatten_writes_the_same_bytes_and_stats_as_serial(tmp_path):
    stores = [storage_for(settings_for(tmp_path / name)) for name in ("serial", "parallel")]
    for store in stores:
        write_sample(store, hours=2, contacts_per_hour=40)
        store.write(raw_key(SAMPLE_START, 30, "bad"), firehose_object(ctr_record("ok", SAMPLE_START)) + b"{\"cut")
    hours = [SAMPLE_START, SAMPLE_START + timedelta(hours=1)]

    serial = flatten_hours(stores[0], hours, workers=1)
    parallel = flatten_hours(stores[1], hours, workers=2)

    assert parallel.objects == serial.objects and serial.totals.records_quarantined == 1
    contents = [{item.key: store.read(item.key) for prefix in ("flatfiles/", "quarantine/") for item in store.list(prefix)}
                for store in stores]
    assert contents[0] == contents[1] and len(contents[0]) == len(serial.objects) + 1


def test_a_backlog_with_gaps_is_one_run(tmp_path, monkeypatch):
    """Hours far apart (a quiet night, a month's backfill) go in one run, not one run per stretch of hours."""
    settings = settings_for(tmp_path)
    storage = storage_for(settings)
    for offset in (0, 5, 30, 24 * 9):
        hour = SAMPLE_START + timedelta(hours=offset)
        storage.write(raw_key(hour, suffix=f"h{offset}"), firehose_object(ctr_record(f"c-{offset}", hour)))

    summary = run_pipeline(settings=settings, instance=dg.DagsterInstance.ephemeral())

    assert summary.ok and len(summary.runs) == 2  # the ETL run, then the dashboards' run
    assert summary.hours_processed == 24 * 9 + 1 and summary.table_rows == 4
