"""Shared builders for the Dagster-layer tests: real folders, real DuckDB, real Dagster instances."""

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ctr_assets.defs.resources import table_for
from ctr_assets.lake.iceberg import (
    TableLocation,
    field_ids,
    load_table,
    read_snapshot_sql,
    replace_files,
    snapshot_files,
)
from ctr_assets.lake.layout import TABLE_PREFIX
from ctr_assets.lake.storage import LocalStorage, Storage
from ctr_assets.lake.table import MergeResult, merge_flatfiles
from ctr_assets.records.schema import sql_text
from ctr_assets.sample import write_firehose_objects
from ctr_assets.settings import CtrSettings

SAMPLE_START = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)


def settings_for(tmp_path: Path, storage_url: str | None = None, **overrides) -> CtrSettings:
    """Settings of a test: a folder below `tmp_path` by default; a bucket's table in a Glue database of its own."""
    if storage_url and storage_url.startswith("s3://") and "catalog_uri" not in overrides:
        overrides.setdefault("glue_database", f"connect_{uuid.uuid4().hex[:8]}")
    return CtrSettings.from_env(
        {}, storage_url=storage_url or str(tmp_path / "data"), first_hour="2026-01-01-00:00", **overrides
    )


def local_table(storage: LocalStorage) -> TableLocation:
    """The ctr table of a local storage folder, as the pipeline finds it (its SQLite catalog inside)."""
    return table_for(CtrSettings.from_env({}, storage_url=storage.root), storage)


def merge(connection, storage: Storage, table: TableLocation, keys: list[str]) -> MergeResult:
    """Merge flatfiles into the table, as the ctr asset does (at their current sizes)."""
    sizes = {item.key: item.size for key in keys for item in storage.list(key) if item.key == key}
    return merge_flatfiles(connection, storage, table, sizes)


def table_rows(connection, storage: Storage, table: TableLocation, columns: str = "*",
               snapshot_id: int | None = None) -> list[dict]:
    """Every row of the table's current snapshot (or of `snapshot_id`), by contactid; `day` is its partition."""
    storage.attach(connection)
    query = read_snapshot_sql(snapshot_files(load_table(table), snapshot_id))
    if query is None:
        return []
    relation = connection.sql(f"SELECT {columns} FROM (SELECT *, CAST(CAST(initiationtimestamp AS DATE) AS VARCHAR) "
                              f"AS day FROM ({query})) ORDER BY contactid")
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def copy_into_another_day(connection, storage: Storage, table: TableLocation, contact_id: str, day: str) -> None:
    """Break the table behind the pipeline's back, as another engine could: a second copy of a contact, in
    another day, committed as a data file of its own."""
    current = load_table(table)
    query = read_snapshot_sql(snapshot_files(current))
    key = f"{TABLE_PREFIX}data/copy-{contact_id}.parquet"
    with storage.writer(key) as staged:
        connection.execute(
            f"COPY (SELECT * REPLACE (CAST({sql_text(day)} AS TIMESTAMP) AS initiationtimestamp) FROM ({query}) "
            f"WHERE contactid = {sql_text(contact_id)}) TO {sql_text(staged.as_posix())} "
            f"(FORMAT parquet, FIELD_IDS {field_ids(current.schema())})")
    replace_files(current, [], [storage.uri(key)], {})


def write_sample(storage: Storage, hours: int = 3, contacts_per_hour: int = 60, seed: int = 7, batch_seconds: int = 60):
    return write_firehose_objects(storage.write, SAMPLE_START, hours, contacts_per_hour, seed=seed,
                                  batch_seconds=batch_seconds)


def ctr_record(contact_id: str, initiated: datetime, updated: datetime | None = None, **fields) -> dict:
    """A minimal CTR in Connect's own shape."""
    stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    record = {
        "ContactId": contact_id,
        "InitiationTimestamp": stamp(initiated),
        "DisconnectTimestamp": stamp(initiated + timedelta(minutes=5)),
        "LastUpdateTimestamp": stamp(updated or initiated + timedelta(minutes=6)),
        "Channel": "VOICE",
    }
    record.update(fields)
    return record


def firehose_object(*records: dict) -> bytes:
    return "".join(json.dumps(record, separators=(",", ":")) for record in records).encode()


def raw_key(hour: datetime, second: int = 0, suffix: str = "0000") -> str:
    moment = hour + timedelta(seconds=second)
    return f"raw/{moment:%Y/%m/%d/%H}/ctr-stream-1-{moment:%Y-%m-%d-%H-%M-%S}-{suffix}"


def connect_contact(
    contact_id: str,
    initiated: datetime,
    *,
    method: str = "INBOUND",
    queue: str | None = None,
    enqueued: datetime | None = None,
    wait: int = 0,
    agent: str | None = None,
    talk: int = 0,
    holds: tuple[int, ...] = (),
    acw: int = 0,
    reason: str = "CUSTOMER_DISCONNECT",
    updated: datetime | None = None,
    **fields,
) -> dict:
    """A CTR with Queue and Agent filled in as Connect does: `wait` seconds in `queue` from `enqueued` (None:
    the queue is named but the contact never waited in it, as for outbound), then `talk` seconds with `agent`
    plus `holds`, then `acw` seconds of after-contact work. No agent: it ends when it leaves the queue."""
    stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    dequeued = enqueued + timedelta(seconds=wait) if enqueued else None
    ended = dequeued or initiated + timedelta(seconds=60)
    record_agent = None
    if agent is not None:
        connected = dequeued or initiated + timedelta(seconds=5)
        ended = connected + timedelta(seconds=talk + sum(holds))
        record_agent = {
            "ARN": f"arn:aws:connect:us-east-1:111122223333:instance/test/agent/{agent}",
            "Username": agent,
            "ConnectedToAgentTimestamp": stamp(connected),
            "AgentInteractionDuration": talk,
            "CustomerHoldDuration": sum(holds),
            "NumberOfHolds": len(holds),
            "LongestHoldDuration": max(holds, default=0),
            "AfterContactWorkStartTimestamp": stamp(ended),
            "AfterContactWorkEndTimestamp": stamp(ended + timedelta(seconds=acw)),
            "AfterContactWorkDuration": acw,
        }
    record_queue = queue and {
        "ARN": f"arn:aws:connect:us-east-1:111122223333:instance/test/queue/{queue}",
        "Name": queue,
        "EnqueueTimestamp": enqueued and stamp(enqueued),
        "DequeueTimestamp": dequeued and stamp(dequeued),
        "Duration": wait,
    }
    return ctr_record(
        contact_id,
        initiated,
        updated or ended + timedelta(seconds=acw + 5),
        InitiationMethod=method,
        DisconnectTimestamp=stamp(ended),
        DisconnectReason=reason,
        Queue=record_queue,
        Agent=record_agent,
        **fields,
    )
