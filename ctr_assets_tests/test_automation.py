"""The arrival sensor and the ETL catch-up schedule, evaluated against a real folder or bucket and a real
Dagster instance."""

import json
import os
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest

from ctr_assets.definitions import build_definitions
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.layout import floor_hour, partition_of_hour
from ctr_assets.lake.pipeline import (
    ArrivalScan,
    find_new_arrivals,
    flatten_raw_object,
    merge_hours,
)
from ctr_assets_tests.helpers import ctr_record, firehose_object, raw_key, settings_for

OLD_OBJECTS = 100_000


@pytest.fixture
def setup(settings):
    assert settings.sensor_lookback_hours == 2
    definitions = build_definitions(settings)
    return definitions, storage_for(settings), dg.DagsterInstance.ephemeral()


def tick(definitions, storage, instance, cursor=None) -> dg.SensorResult:
    sensor = definitions.resolve_sensor_def("raw_arrivals")
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage}) as context:
        return sensor(context)


def requested(result: dg.SensorResult) -> dict[str, str]:
    return {request.partition_key: request.run_key for request in result.run_requests}


def put(storage, key):
    storage.write(key, firehose_object(ctr_record(key, datetime(2026, 3, 1, tzinfo=timezone.utc))))


def test_same_second_and_out_of_key_order_arrivals_are_all_requested(setup):
    definitions, storage, instance = setup
    hour = floor_hour(datetime.now(timezone.utc))
    put(storage, raw_key(hour, second=1, suffix="bbbb"))
    first = tick(definitions, storage, instance)
    assert list(requested(first)) == [partition_of_hour(hour)]

    # Same second, and a key that sorts before the one already seen.
    put(storage, raw_key(hour, second=1, suffix="aaaa"))
    second = tick(definitions, storage, instance, first.cursor)

    assert list(requested(second)) == [partition_of_hour(hour)]
    assert requested(second) != requested(first)  # a new run key: the new object is not mistaken for the old
    assert sorted(json.loads(second.cursor)["seen"][hour.strftime("%Y-%m-%dT%H")]) == sorted(
        [raw_key(hour, 1, "aaaa"), raw_key(hour, 1, "bbbb")])


def test_nothing_new_requests_nothing(setup):
    definitions, storage, instance = setup
    hour = floor_hour(datetime.now(timezone.utc))
    put(storage, raw_key(hour, second=3))
    first = tick(definitions, storage, instance)
    again = tick(definitions, storage, instance, first.cursor)
    assert again.run_requests == [] and again.cursor == first.cursor


def test_a_late_file_in_the_previous_hour_is_requested_and_reported(setup):
    definitions, storage, instance = setup
    now_hour = floor_hour(datetime.now(timezone.utc))
    put(storage, raw_key(now_hour, second=2))
    first = tick(definitions, storage, instance)
    previous = now_hour - timedelta(hours=1)
    put(storage, raw_key(previous, second=59, suffix="late"))

    second = tick(definitions, storage, instance, first.cursor)

    assert list(requested(second)) == [partition_of_hour(previous)]
    (event,) = second.asset_events
    assert event.asset_key == dg.AssetKey("raw") and event.partition == partition_of_hour(previous)


def test_the_sensor_lists_only_recent_hour_folders(setup):
    definitions, storage, instance = setup
    old = floor_hour(datetime.now(timezone.utc)) - timedelta(hours=30)
    for second in range(20):
        put(storage, raw_key(old, second=second))
    listed = []
    original = type(storage).list

    def spy(self, prefix, start_after=""):
        listed.append(prefix)
        return original(self, prefix, start_after)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(storage), "list", spy)
        result = tick(definitions, storage, instance)

    assert result.run_requests == [] and json.loads(result.cursor) == {"seen": {}, "resume": None}
    assert len(listed) == 2 and all(prefix.startswith("raw/") for prefix in listed)


def test_a_tick_lists_a_bounded_number_of_keys_and_the_next_carries_on(setup):
    _, storage, _ = setup
    hours = [floor_hour(datetime.now(timezone.utc)) - timedelta(hours=1), floor_hour(datetime.now(timezone.utc))]
    for second in range(14):
        put(storage, raw_key(hours[0], second=second))
    for second in range(11):
        put(storage, raw_key(hours[1], second=second))
    late = raw_key(hours[0], second=0, suffix="0000-late")
    found, scan, passes = [], ArrivalScan(), 0
    while passes == 0 or scan.resume:
        new, scan = find_new_arrivals(storage, scan, hours, budget=10)
        found += [key for keys in new.values() for key in keys]
        passes += 1
        if passes == 1:  # out of key order, behind where the first tick stopped: found on the next pass
            put(storage, late)

    assert passes == 3 and len(found) == 25 == len(set(found)) and late not in found
    again, _ = find_new_arrivals(storage, scan, hours, budget=10)
    assert again == {hours[0]: [late]}


def test_a_tick_on_a_bucket_costs_the_same_requests_with_or_without_100000_old_objects(moto, tmp_path):
    now_hour = floor_hour(datetime.now(timezone.utc))
    requests = {}
    for old_objects in (0, OLD_OBJECTS):
        settings = settings_for(tmp_path, storage_url=f"s3://{moto.new_bucket()}/ctr", s3_endpoint_url=moto.url)
        storage = storage_for(settings)
        old_hours = [now_hour - timedelta(hours=3 + n) for n in range(1000)]
        moto.seed_empty_objects(storage.bucket, (
            storage.full_key(raw_key(old_hours[n % 1000], second=n // 1000 % 60, suffix=f"{n:06d}"))
            for n in range(old_objects)))
        new_keys = [raw_key(now_hour, second=n, suffix="new") for n in range(10)]
        for key in new_keys:
            put(storage, key)
        definitions, instance = build_definitions(settings), dg.DagsterInstance.ephemeral()

        with moto.requests() as lines:
            result = tick(definitions, storage, instance)

        (event,) = result.asset_events
        assert event.metadata["new objects"].value == 10
        assert json.loads(result.cursor)["seen"] == {now_hour.strftime("%Y-%m-%dT%H"): new_keys}
        requests[old_objects] = lines

    assert len(requests[OLD_OBJECTS]) == len(requests[0]) == 2  # one ListObjectsV2 per recent hour folder
    assert all("list-type=2" in line for line in requests[OLD_OBJECTS])


def test_etl_catchup_requests_unflattened_objects_of_older_hours(setup):
    definitions, storage, instance = setup
    now = datetime.now(timezone.utc)
    old_hour = floor_hour(now) - timedelta(hours=5)
    late = raw_key(old_hour, second=7, suffix="late")
    put(storage, late)
    schedule = definitions.resolve_schedule_def("etl_catchup")

    def evaluate():
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=now,
                                       repository_def=definitions.get_repository_def(),
                                       resources={"storage": storage, "table": definitions.resources["table"]}) as context:
            return schedule.evaluate_tick(context)

    before = evaluate()
    flatten_raw_object(storage, late)
    flattened_only = evaluate()  # as a run killed between flattening and merging leaves it
    with duckdb.connect() as connection:
        merge_hours(storage, definitions.resources["table"], [old_hour], connection)
    after = evaluate()

    assert [request.partition_key for request in before.run_requests] == [partition_of_hour(old_hour)]
    assert [request.partition_key for request in flattened_only.run_requests] == [partition_of_hour(old_hour)]
    assert not after.run_requests and after.skip_message


def test_a_folder_gets_an_hourly_retention_job_and_a_bucket_its_lifecycle_rule_instead(tmp_path, s3_settings):
    settings = settings_for(tmp_path, flatfiles_retention_hours=24)
    storage = storage_for(settings)
    for key in ("flatfiles/2026030208old", "flatfiles/2026030209new"):
        storage.write(key, b"{}\n")
    day_ago = time.time() - 25 * 3600
    os.utime(storage.path("flatfiles/2026030208old"), (day_ago, day_ago))
    definitions = build_definitions(settings)

    result = definitions.resolve_job_def("flatfiles_retention").execute_in_process(
        instance=dg.DagsterInstance.ephemeral())

    assert result.success and [item.key for item in storage.list("flatfiles/")] == ["flatfiles/2026030209new"]
    assert definitions.resolve_schedule_def("flatfiles_retention").default_status == dg.DefaultScheduleStatus.RUNNING
    on_bucket = build_definitions(s3_settings)
    assert "flatfiles_retention" not in {schedule.name for schedule in on_bucket.schedules}
