"""The arrival sensor and the ETL catch-up schedule, evaluated against a real folder or bucket and a real
Dagster instance."""

import json
import os
import time
import uuid
from contextlib import closing
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest
import hypothesis
from hypothesis import strategies as st

from ctr_assets.definitions import build_definitions
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.layout import floor_hour, partition_of_hour, raw_prefix
from ctr_assets.lake.pipeline import (
    SETTLE_SECONDS,
    ArrivalScan,
    find_new_arrivals,
    flatten_raw_object,
    merge_hours,
    pending_raw_keys,
)
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets.settings import CtrSettings, SettingError
from ctr_assets_tests.drivers import run_steps
from ctr_assets_tests.helpers import ctr_record, firehose_object, raw_key, settings_for, table_rows

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
    (event,) = second.asset_events
    assert event.metadata["new objects"].value == 1 and event.metadata["first key"].value == raw_key(hour, 1, "aaaa")
    assert tick(definitions, storage, instance, second.cursor).run_requests == []


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

    assert result.run_requests == [] and json.loads(result.cursor) == {"hours": {}, "resume": None}
    assert result.skip_reason.skip_message == "no new raw objects among the 0 listed in 2 arrival-hour folders"
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
        arrivals = find_new_arrivals(storage, scan, hours, budget=10)
        found += [key for keys in arrivals.new.values() for key in keys]
        scan, passes = arrivals.scan, passes + 1
        if passes == 1:  # out of key order, behind where the first tick stopped: found on the next pass
            put(storage, late)

    assert passes == 3 and len(found) == 25 == len(set(found)) and late not in found
    assert find_new_arrivals(storage, scan, hours, budget=10).new == {hours[0]: [late]}


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
        assert (event.metadata["first key"].value, event.metadata["last key"].value) == (new_keys[0], new_keys[-1])
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


def test_an_object_firehose_delivers_into_an_hour_folder_25_hours_old_is_requested_and_processed(settings):
    """Firehose retries for 24 h into the original hour folder: the catch-up reaches further back than the
    flatfiles retention (24 h here)."""
    settings = settings.model_copy(update={"flatfiles_retention_hours": 24})
    definitions, storage, instance = build_definitions(settings), storage_for(settings), dg.DagsterInstance.ephemeral()
    now = datetime.now(timezone.utc)
    old_hour = floor_hour(now - timedelta(hours=25, minutes=20))
    late = raw_key(old_hour, second=59 * 60 + 59, suffix="redelivered")
    put(storage, late)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=now,
                                   repository_def=definitions.get_repository_def(),
                                   resources={"storage": storage, "table": definitions.resources["table"]}) as context:
        result = definitions.resolve_schedule_def("etl_catchup").evaluate_tick(context)

    assert [request.partition_key for request in result.run_requests] == [partition_of_hour(old_hour)]
    run_steps(settings, [old_hour])
    assert pending_raw_keys(storage, definitions.resources["table"]) == {}
    with closing(scratch_connection()) as connection:
        assert [row["contactid"] for row in table_rows(connection, storage, definitions.resources["table"])] == [late]


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


HOUR = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)


def land(storage, name: str, written: int) -> str:
    """An object in HOUR's folder, modified `written` seconds into the hour (as S3 dates an upload)."""
    key = f"{raw_prefix(HOUR)}{name}"
    storage.write(key, b"")
    moment = HOUR.timestamp() + written
    os.utime(storage.path(key), (moment, moment))
    return key


def test_the_cursor_of_an_hour_with_thousands_of_objects_stays_compact(storage):
    """3,000 objects landing over an hour, a few dozen per minutely tick, some sharing a second, in no key
    order: each is reported once, and the cursor holds ten minutes of them, not the hour."""
    scan, reported, sizes = ArrivalScan(), [], []
    for minute in range(60):
        for number in range(50):
            land(storage, f"ctr-stream-1-{uuid.uuid4()}", minute * 60 + number % 7)
        arrivals = find_new_arrivals(storage, scan, [HOUR])
        scan = arrivals.scan
        reported += [key for keys in arrivals.new.values() for key in keys]
        sizes.append(len(scan.to_json()))

    assert len(reported) == len(set(reported)) == 3000 and arrivals.late == 0
    assert find_new_arrivals(storage, scan, [HOUR]).new == {}
    print(f"\ncursor after each tick: at most {max(sizes)} bytes, {sizes[-1]} after the last")
    assert max(sizes) < 12_000  # every key in full: about 270,000 bytes


arrivals = st.lists(st.tuples(st.integers(0, 3599), st.integers(0, SETTLE_SECONDS + 120)), max_size=25)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(objects=arrivals, ticks=st.lists(st.integers(0, 4400), min_size=1, max_size=8, unique=True),
       budget=st.sampled_from([3, 10_000]))
def test_every_object_is_reported_once_at_the_first_tick_that_sees_it_unless_it_shows_up_late(
        tmp_path_factory, objects, ticks, budget):
    """Objects written at second w of the hour become visible d seconds later (an upload that long); ticks
    list the folder. An object seen within SETTLE_SECONDS of its writing is reported exactly once (at the
    first tick that sees it, when the listing budget allows); one that shows up later is reported once or
    counted late, never twice."""
    storage = LocalStorage(root=str(tmp_path_factory.mktemp("arrivals")))
    pending = sorted((written + delay, written, f"{uuid.uuid4().hex[:6]}") for written, delay in objects)
    scan, reported, late, on_time = ArrivalScan(), [], 0, set()
    for moment in sorted(ticks) + [10**6] * 9:  # then enough passes for the budget to reach every key
        while pending and pending[0][0] <= moment:
            visible, written, name = pending.pop(0)
            key = land(storage, name, written)
            on_time.update([key] if visible - written <= SETTLE_SECONDS else [])
        found = find_new_arrivals(storage, scan, [HOUR], budget=budget)
        scan, late = found.scan, late + found.late
        fresh = [key for keys in found.new.values() for key in keys]
        if budget > len(objects) and moment < 10**6:  # one pass lists the folder: seen means reported now
            visible = {item.key for item in storage.list(raw_prefix(HOUR))}
            assert (on_time & visible) - set(reported) <= set(fresh)
        reported += fresh

    landed = {item.key for item in storage.list(raw_prefix(HOUR))}
    assert len(reported) == len(set(reported))  # never twice
    assert on_time <= set(reported)  # never skipped
    assert len(landed - set(reported)) == late  # what was not reported was counted late


def test_the_catch_up_window_and_the_alert_threshold_are_read_from_the_environment_and_checked():
    settings = CtrSettings.from_env({"CTR_CATCHUP_HOURS": "50", "CTR_UNPROCESSED_ALERT_HOURS": "36.5"})
    assert (settings.catchup_hours, settings.unprocessed_alert_hours) == (50, 36.5)
    assert (CtrSettings.from_env({}).catchup_hours, CtrSettings.from_env({}).unprocessed_alert_hours) == (27, 27)
    for variable, message in (("CTR_CATCHUP_HOURS", "must be at least 1"), ("CTR_UNPROCESSED_ALERT_HOURS", "must be more than 0")):
        with pytest.raises(SettingError, match=f"^{variable}: {message}"):
            CtrSettings.from_env({variable: "0"})
