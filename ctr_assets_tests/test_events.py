"""S3 event notifications through SQS: parsing, the bucket and queue setup, and the raw_events sensor
against a moto server's real S3 -> SQS notifications."""

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctr_assets.aws.clients import AwsClients
from ctr_assets.aws.events import created_raw_keys
from ctr_assets.cli import main
from ctr_assets.definitions import build_definitions
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.layout import floor_hour, partition_of_hour
from ctr_assets.settings import SettingError
from ctr_assets_tests.helpers import ctr_record, firehose_object, raw_key, settings_for

BUCKET, PREFIX = "contact-centre-data", "prod/connect"


def created(key: str, bucket: str = BUCKET, event: str = "ObjectCreated:Put", safe: str = "/") -> dict:
    """One record as S3 writes it: the key URL-encoded the way form data is (a space becomes '+')."""
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": event,
            "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe=safe), "size": 1}}}


def notification(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


names = st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=40)


@given(name=names, safe=st.sampled_from(["/", ""]))
def test_url_encoded_keys_come_back_exactly(name, safe):
    key = f"raw/2026/03/02/08/{name}"
    assert created_raw_keys(notification(created(f"{PREFIX}/{key}", safe=safe)), BUCKET, PREFIX) == [key]


def test_a_message_announces_only_new_raw_objects_of_this_bucket_and_prefix():
    hour_8, hour_7 = "raw/2026/03/02/08/ctr-stream-1-a b+c", "raw/2026/03/02/07/ctr-stream-1-late"
    body = notification(
        created(f"{PREFIX}/{hour_8}"),
        created(f"{PREFIX}/{hour_7}", event="ObjectCreated:CompleteMultipartUpload"),
        created(f"{PREFIX}/{hour_8}", event="ObjectRemoved:Delete"),
        created(f"{PREFIX}/{hour_8}", bucket="another-bucket"),
        created(f"other/{hour_8}"),
        created(f"{PREFIX}/flatfiles/2026030208x"),
        created(f"{PREFIX}/raw/not-an-hour/x"),
    )
    assert created_raw_keys(body, BUCKET, PREFIX) == [hour_8, hour_7]
    assert created_raw_keys(notification(created(hour_8)), BUCKET, "") == [hour_8]


def test_the_test_event_announces_nothing_and_garbage_is_refused():
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET})
    assert created_raw_keys(test_event, BUCKET, PREFIX) == []
    for garbage in ["not json", "[1, 2]", '{"Message": "hello"}']:
        with pytest.raises(ValueError):
            created_raw_keys(garbage, BUCKET, PREFIX)


@pytest.fixture
def events_setup(s3_settings, moto, tmp_path, capsys):
    """A bucket whose raw/ notifications go to a queue, configured with `ctr-assets notifications`."""
    assert main(["notifications", "--queue", f"raw-events-{s3_settings.s3_location[0]}"]) == 0
    queue_url = capsys.readouterr().out.split("CTR_SQS_QUEUE_URL=")[1].split()[0]
    settings = settings_for(tmp_path, storage_url=s3_settings.storage_url, s3_endpoint_url=moto.url,
                            sqs_queue_url=queue_url)
    return settings, storage_for(settings), moto.client("sqs")


def tick(settings, storage, cursor=None) -> dg.SensorResult:
    sensor = build_definitions(settings).resolve_sensor_def("raw_events")
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor,
                                 resources={"storage": storage, "aws": AwsClients()}) as context:
        return sensor(context)


def requested(result: dg.SensorResult) -> dict[str, str]:
    return {request.partition_key: request.run_key for request in result.run_requests}


def in_queue(sqs, queue_url) -> tuple[int, int]:
    """(visible, received but not deleted) messages."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_new_objects_are_requested_and_their_messages_deleted_on_the_next_tick(events_setup, moto):
    settings, storage, sqs = events_setup
    hour = floor_hour(datetime.now(timezone.utc))
    keys = [raw_key(hour, second=1, suffix="a b+c=é"), raw_key(hour, second=2)]
    for key in keys:
        storage.write(key, firehose_object(ctr_record(key, hour)))
    storage.write("flatfiles/2026030208x", b"")  # outside raw/: the notification filter leaves it out
    assert in_queue(sqs, settings.sqs_queue_url) == (3, 0)  # the s3:TestEvent and two creations

    first = tick(settings, storage)

    assert list(requested(first)) == [partition_of_hour(hour)]
    assert first.asset_events[0].metadata["new objects"].value == 2
    assert in_queue(sqs, settings.sqs_queue_url) == (0, 3)  # received, not deleted: the runs are not stored yet

    second = tick(settings, storage, first.cursor)

    assert second.run_requests == [] and in_queue(sqs, settings.sqs_queue_url) == (0, 0)
    assert json.loads(second.cursor)["seen"] == {hour.strftime("%Y-%m-%dT%H"): sorted(keys)}


def test_several_records_duplicates_and_out_of_order_hours(events_setup):
    settings, storage, sqs = events_setup
    queue, prefix = settings.sqs_queue_url, storage.prefix
    sqs.purge_queue(QueueUrl=queue)
    now = floor_hour(datetime.now(timezone.utc))
    earlier, old = now - timedelta(hours=1), now - timedelta(hours=30)
    a, b, c, d = raw_key(now, 5), raw_key(earlier, 59), raw_key(now, 1), raw_key(old, 3)
    for body in [notification(created(f"{prefix}/{a}", bucket=storage.bucket), created(f"{prefix}/{b}", bucket=storage.bucket)),
                 notification(created(f"{prefix}/{a}", bucket=storage.bucket)),  # S3 delivers at least once
                 "not a notification",
                 notification(created(f"{prefix}/{c}", bucket=storage.bucket), created(f"{prefix}/{d}", bucket=storage.bucket))]:
        sqs.send_message(QueueUrl=queue, MessageBody=body)

    first = tick(settings, storage)

    by_partition = {event.partition: event.metadata["new objects"].value for event in first.asset_events}
    assert by_partition == {partition_of_hour(now): 2, partition_of_hour(earlier): 1, partition_of_hour(old): 1}
    assert len(json.loads(first.cursor)["received"]) == 4  # the bad message is deleted too, next tick

    sqs.send_message(QueueUrl=queue, MessageBody=notification(created(f"{prefix}/{c}", bucket=storage.bucket)))
    second = tick(settings, storage, first.cursor)
    assert second.run_requests == [] and in_queue(sqs, queue) == (0, 1)  # only the late duplicate, in flight
    tick(settings, storage, second.cursor)
    assert in_queue(sqs, queue) == (0, 0)


def test_messages_of_a_lost_tick_come_back_and_ask_for_the_same_runs(events_setup):
    settings, storage, sqs = events_setup
    hour = floor_hour(datetime.now(timezone.utc))
    storage.write(raw_key(hour, second=4), b"{}")
    first = tick(settings, storage)

    # The daemon died before storing `first`: its messages were never deleted and, once their visibility
    # timeout passes, are delivered again.
    for handle in json.loads(first.cursor)["received"]:
        sqs.change_message_visibility(QueueUrl=settings.sqs_queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    again = tick(settings, storage, cursor=None)

    assert requested(again) == requested(first) != {}  # same run key: Dagster launches it once
    assert tick(settings, storage, again.cursor).run_requests == []


def test_polling_steps_aside_when_notifications_are_configured(events_setup, tmp_path):
    settings, _, _ = events_setup
    with_queue = build_definitions(settings)
    polling_only = build_definitions(settings_for(tmp_path))
    assert with_queue.resolve_sensor_def("raw_arrivals").default_status == dg.DefaultSensorStatus.STOPPED
    assert with_queue.resolve_sensor_def("raw_events").default_status == dg.DefaultSensorStatus.RUNNING
    assert polling_only.resolve_sensor_def("raw_arrivals").default_status == dg.DefaultSensorStatus.RUNNING
    with pytest.raises(dg.DagsterInvariantViolationError):
        polling_only.resolve_sensor_def("raw_events")


def test_a_queue_needs_a_bucket(tmp_path):
    with pytest.raises(SettingError, match="^CTR_SQS_QUEUE_URL: S3 event notifications need s3:// storage"):
        settings_for(tmp_path, sqs_queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/raw-events")
