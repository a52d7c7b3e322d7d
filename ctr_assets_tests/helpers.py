"""Shared builders for the Dagster-layer tests: real folders, real DuckDB, real Dagster instances."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ctr_assets.sample import write_firehose_objects
from ctr_assets.settings import CtrSettings
from ctr_assets.storage import Storage

SAMPLE_START = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)


def settings_for(tmp_path: Path, storage_url: str | None = None, **overrides) -> CtrSettings:
    return CtrSettings.from_env(
        {}, storage_url=storage_url or str(tmp_path / "data"), first_hour="2026-01-01-00:00", **overrides
    )


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
