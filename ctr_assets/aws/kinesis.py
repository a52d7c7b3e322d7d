"""Land a Kinesis data stream in raw/ the way Firehose would (the original KinesisStreamName parameter), for
deployments without Firehose. No Dagster: the `kinesis_landing` sensor and `ctr-assets kinesis` call `land`.

Every shard is read from its checkpoint (from the oldest record for a shard never seen), the records of
one pass are concatenated into one Firehose-shaped object in the current arrival hour, and the checkpoints
are saved only after that object is stored. A pass cut short (a crash, an error) is read again by the next
one: records are delivered at least once, and the table's dedup makes a repeat harmless.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ctr_assets.aws.clients import aws_errors
from ctr_assets.lake.layout import kinesis_checkpoint_key, raw_prefix
from ctr_assets.lake.storage import Storage

MAX_RECORDS = 10_000  # per pass: one object of at most this many records (about 30 MB of CTRs)
MAX_CALLS_PER_SHARD = 20  # GetRecords calls per shard and pass (Kinesis allows 5 per second per shard)


@dataclass
class Landing:
    """What one pass did."""

    key: str | None  # the raw object written; None when nothing new arrived
    records: int
    shards: int


def land(kinesis: Any, storage: Storage, stream: str, now: datetime | None = None,
         max_records: int = MAX_RECORDS) -> Landing:
    """Read what arrived on every shard since its checkpoint and store it as one raw object."""
    checkpoint_key = kinesis_checkpoint_key(stream)
    checkpoints = json.loads(storage.read(checkpoint_key)) if storage.exists(checkpoint_key) else {}
    with aws_errors("CTR_KINESIS_STREAM_NAME", f"Kinesis stream {stream}",
                    "kinesis:ListShards, kinesis:GetShardIterator and kinesis:GetRecords",
                    endpoint_setting="AWS_ENDPOINT_URL_KINESIS"):
        shards = _shard_ids(kinesis, stream)
        records: list[bytes] = []
        positions = {shard: checkpoints[shard] for shard in shards if shard in checkpoints}
        for shard in shards:
            batch, position = _read_shard(kinesis, stream, shard, positions.get(shard), max_records - len(records))
            records += batch
            if position:
                positions[shard] = position
    if not records:
        if positions != checkpoints:  # shards that expired from the stream are forgotten
            storage.write(checkpoint_key, json.dumps(positions).encode())
        return Landing(key=None, records=0, shards=len(shards))
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    key = f"{raw_prefix(moment)}{stream}-1-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
    storage.write(key, b"".join(records))  # Firehose's default: concatenated, no separator
    storage.write(checkpoint_key, json.dumps(positions).encode())
    return Landing(key=key, records=len(records), shards=len(shards))


def _shard_ids(kinesis: Any, stream: str) -> list[str]:
    """Every shard, open or closed, parents before children (ListShards returns them in creation order)."""
    shards, params = [], {"StreamName": stream}
    while True:
        response = kinesis.list_shards(**params)
        shards += [shard["ShardId"] for shard in response["Shards"]]
        if not response.get("NextToken"):
            return shards
        params = {"NextToken": response["NextToken"]}


def _read_shard(kinesis: Any, stream: str, shard: str, after: str | None, limit: int) -> tuple[list[bytes], str | None]:
    """Up to `limit` records of one shard after sequence number `after` (from the oldest without one),
    and the sequence number of the last record read."""
    if limit <= 0:
        return [], None
    start = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after} if after
             else {"ShardIteratorType": "TRIM_HORIZON"})
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, **start)["ShardIterator"]
    records: list[bytes] = []
    last = None
    for _ in range(MAX_CALLS_PER_SHARD):
        response = kinesis.get_records(ShardIterator=iterator, Limit=min(10_000, limit - len(records)))
        records += [record["Data"] for record in response["Records"]]
        if response["Records"]:
            last = response["Records"][-1]["SequenceNumber"]
        iterator = response.get("NextShardIterator")
        # An empty answer is not the end while the shard is behind; a closed shard ends without an iterator.
        if not iterator or len(records) >= limit or response.get("MillisBehindLatest", 0) == 0:
            break
    return records, last
