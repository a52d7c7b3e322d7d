"""The storage layout of design section 2: which key holds what, and how keys map to arrival hours."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone

RAW = "raw/"
FLATFILES = "flatfiles/"
QUARANTINE = "quarantine/"
TABLE_PREFIX = "parquet/ctr/"  # the Iceberg table: data/ and metadata/
CATALOG = "catalog/ctr/"
ICEBERG_CATALOG = "catalog/iceberg.db"  # the embedded SQLite catalog of a local folder
# Which flatfiles are in the table, one file per merge and arrival day. Outside the table's folder: engines
# that clean a table (Athena's VACUUM) delete whatever its metadata does not name.
MERGED = CATALOG + "merged/"
# Raw objects the storage refuses to read (a bucket key with a `..` step, a link leading out of a folder): one
# record each, saying why, instead of a failure that would stop every run.
SET_ASIDE = CATALOG + "set-aside/"
DASHBOARDS = "dashboards/"
# Everything the pipeline writes (raw/ is Firehose's).
WRITTEN_PREFIXES = (FLATFILES, QUARANTINE, TABLE_PREFIX, CATALOG, DASHBOARDS)
KINESIS = "kinesis/"  # checkpoints of the optional Kinesis landing
PARTITION_FORMAT = "%Y-%m-%d-%H:%M"  # Dagster's hourly partition keys


def hour_of_partition(partition_key: str) -> datetime:
    return datetime.strptime(partition_key, PARTITION_FORMAT).replace(tzinfo=timezone.utc)


def partition_of_hour(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).strftime(PARTITION_FORMAT)


def hour_label(hour: datetime) -> str:
    """How sensor cursors name an arrival hour: `2026-03-02T08`."""
    return hour.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def hours_between(first: datetime, last: datetime) -> list[datetime]:
    """Every hour from `first` to `last`, both included."""
    count = int((floor_hour(last) - floor_hour(first)) / timedelta(hours=1)) + 1
    return [floor_hour(first) + timedelta(hours=n) for n in range(max(count, 0))]


def raw_prefix(hour: datetime) -> str:
    """Firehose's arrival-hour folder: `raw/YYYY/MM/DD/HH/`."""
    return RAW + hour.astimezone(timezone.utc).strftime("%Y/%m/%d/%H/")


def flat_prefix(hour: datetime) -> str:
    return FLATFILES + hour.astimezone(timezone.utc).strftime("%Y%m%d%H")


def kinesis_checkpoint_key(stream: str) -> str:
    return f"{KINESIS}{stream}/checkpoints.json"


def merged_key(day: str, merge_id: str) -> str:
    """One merge's entry in the ledger of merged flatfiles, for one arrival day (`YYYYMMDD`)."""
    return f"{MERGED}{day}/{merge_id}.json"


def merged_prefix(hour: datetime) -> str:
    return MERGED + hour.astimezone(timezone.utc).strftime("%Y%m%d/")


def arrival_day_of_flat_key(key: str) -> str:
    """`YYYYMMDD` of a flatfile (`flatfiles/YYYYMMDDHH...`)."""
    return key[len(FLATFILES) : len(FLATFILES) + 8]


def quarantine_prefix(hour: datetime) -> str:
    return QUARANTINE + hour.astimezone(timezone.utc).strftime("%Y%m%d%H")



def hour_of_raw_key(key: str) -> datetime | None:
    """The arrival hour encoded in a raw key's folders, or None for a key outside the layout."""
    parts = key.split("/")
    if len(parts) < 6 or parts[0] != "raw":
        return None
    try:
        return datetime.strptime("/".join(parts[1:5]), "%Y/%m/%d/%H").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _flat_name(raw_key: str) -> str:
    """The original Lambda's naming (the key below raw/ with '/' removed) made one-to-one: the four
    arrival-hour folders become the fixed-width `YYYYMMDDHH`, and in the rest of the key `%` and `/` are
    percent-encoded, so two raw keys never share a flatfile (`a/b` and `ab`, `x` and `x.gz`). A Firehose
    key has neither, so its flatfile is named exactly as the Lambda named it, `.gz` kept."""
    hour, rest = raw_key[len(RAW) :].split("/", 4)[:4], raw_key[len(RAW) :].split("/", 4)[4]
    return "".join(hour) + rest.replace("%", "%25").replace("/", "%2F")


FIREHOSE_STAMP = re.compile(r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d")


def arrival_of_raw_key(key: str) -> datetime | None:
    """When a raw object arrived: the `YYYY-MM-DD-HH-MM-SS` Firehose puts in its name, else its hour folder."""
    stamp = FIREHOSE_STAMP.search(key.rsplit("/", 1)[-1])
    if stamp:
        try:
            return datetime.strptime(stamp.group(), "%Y-%m-%d-%H-%M-%S").replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return hour_of_raw_key(key)


def raw_key_of_flatfile(key: str) -> str:
    """The raw key a flatfile (or quarantine file, without its `.ndjson`) was made from: `_flat_name` undone."""
    name = key.rsplit("/", 1)[-1]
    rest = name[10:].replace("%2F", "/").replace("%25", "%")
    return f"{RAW}{name[:4]}/{name[4:6]}/{name[6:8]}/{name[8:10]}/{rest}"


def flat_key(raw_key: str) -> str:
    return FLATFILES + _flat_name(raw_key)


def set_aside_key(raw_key: str) -> str:
    """The record of a raw object set aside, named by a digest: the raw key itself is not a safe name."""
    return f"{SET_ASIDE}{hashlib.sha256(raw_key.encode()).hexdigest()[:32]}.json"


def quarantine_key(raw_key: str) -> str:
    return QUARANTINE + _flat_name(raw_key) + ".ndjson"
