"""Kinesis landing against moto's Kinesis API: all shards, checkpoints, restarts, and the graph on top."""

import json
import re
import uuid
from datetime import datetime, timezone

import dagster as dg
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.aws.clients import AwsClients
from ctr_assets.aws.kinesis import land
from ctr_assets.cli import main
from ctr_assets.definitions import build_definitions
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.layout import kinesis_checkpoint_key
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.records.split import split_values
from ctr_assets_tests.helpers import SAMPLE_START, ctr_record, settings_for

NOW = datetime(2026, 3, 2, 9, 41, 7, tzinfo=timezone.utc)


@pytest.fixture
def stream(moto):
    client, name = moto.client("kinesis"), f"ctr-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=name, ShardCount=2)
    return client, name


def put(client, name, contacts) -> list[dict]:
    records = [ctr_record(contact, SAMPLE_START) for contact in contacts]
    for record in records:
        client.put_record(StreamName=name, Data=json.dumps(record).encode(), PartitionKey=record["ContactId"])
    return records


def landed_records(storage, key) -> list[dict]:
    return [piece.value for piece in split_values(storage.read(key))]


def test_every_shard_lands_in_one_firehose_shaped_object_and_only_new_records_follow(stream, tmp_path):
    client, name = stream
    storage = LocalStorage(root=str(tmp_path))
    first_records = put(client, name, [f"c{n}" for n in range(30)])

    first = land(client, storage, name, now=NOW)
    nothing = land(client, storage, name, now=NOW)
    later_records = put(client, name, ["d1", "d2", "d3"])
    later = land(client, storage, name, now=NOW)

    assert re.fullmatch(rf"raw/2026/03/02/09/{name}-1-2026-03-02-09-41-07-[0-9a-f-]{{36}}", first.key)
    assert first.records == 30 and first.shards == 2
    assert sorted(map(json.dumps, landed_records(storage, first.key))) == sorted(map(json.dumps, first_records))
    assert set(json.loads(storage.read(kinesis_checkpoint_key(name)))) == {
        shard["ShardId"] for shard in client.list_shards(StreamName=name)["Shards"]}  # both shards had records
    assert nothing.key is None and nothing.records == 0
    assert landed_records(storage, later.key) == later_records


def test_a_restart_carries_on_from_the_checkpoints_and_a_lost_checkpoint_repeats_only_its_pass(stream, tmp_path):
    client, name = stream
    put(client, name, ["a1", "a2"])
    land(client, LocalStorage(root=str(tmp_path)), name, now=NOW)
    put(client, name, ["b1", "b2", "b3"])

    class CrashBeforeCheckpoint(LocalStorage):
        def write(self, key, data):
            if key == kinesis_checkpoint_key(name):
                raise RuntimeError("killed before the checkpoint was saved")
            super().write(key, data)

    with pytest.raises(RuntimeError):
        land(client, CrashBeforeCheckpoint(root=str(tmp_path)), name, now=NOW)
    restarted = land(client, LocalStorage(root=str(tmp_path)), name, now=NOW)
    nothing_left = land(client, LocalStorage(root=str(tmp_path)), name, now=NOW)

    assert sorted(r["ContactId"] for r in landed_records(LocalStorage(root=str(tmp_path)), restarted.key)) == [
        "b1", "b2", "b3"]  # repeated once (at least once), nothing of the earlier pass
    assert nothing_left.key is None


def test_records_of_split_shards_are_all_landed(stream, tmp_path):
    client, name = stream
    storage = LocalStorage(root=str(tmp_path))
    put(client, name, ["before-1", "before-2"])
    land(client, storage, name, now=NOW)
    client.update_shard_count(StreamName=name, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    after = put(client, name, [f"after-{n}" for n in range(12)])

    landing = land(client, storage, name, now=NOW)

    assert landing.shards > 2
    assert sorted(r["ContactId"] for r in landed_records(storage, landing.key)) == sorted(r["ContactId"] for r in after)


def test_the_sensor_lands_records_that_the_graph_then_turns_into_the_table(stream, tmp_path, monkeypatch, capsys):
    client, name = stream
    settings = settings_for(tmp_path, kinesis_stream_name=name)
    monkeypatch.setenv("CTR_FIRST_HOUR", settings.first_hour)
    storage = storage_for(settings)
    put(client, name, ["k1", "k2", "k1"])  # Connect delivers at least once too

    sensor = build_definitions(settings).resolve_sensor_def("kinesis_landing")
    with dg.build_sensor_context(resources={"storage": storage, "aws": AwsClients()}) as context:
        result = sensor(context)
    assert main(["kinesis", "--storage", settings.storage_url, "--stream", name]) == 0
    summary = run_pipeline(settings.storage_url, instance=dg.DagsterInstance.ephemeral())

    assert "landed 3 records from 2 shards in raw/" in result.skip_message
    assert capsys.readouterr().out.startswith("0 records from 2 shards")
    assert summary.ok and summary.flattened["records_in"] == 3 and summary.table_rows == 2
