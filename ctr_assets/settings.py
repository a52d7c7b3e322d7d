"""Pipeline settings: the original CloudFormation parameters and a few more, read from `CTR_*` variables.

`CtrSettings.from_env()` validates everything up front so a mistake gives one line naming the variable,
not a stack trace from deep inside a run. Secrets are not settings: the phone-number hash key is read
from `CTR_HASH_SECRET` by the process that uses it, so it is never part of the resource config that the
Dagster UI shows and run records keep, and no message ever includes it.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string
from pydantic import Field

from ctr_assets.records.phones import MODES, Protect, phone_protector

DEFAULT_STORAGE_URL = "ctr_data"
# Where `ctr-assets ui` serves a folder's dashboards/ when CTR_DASHBOARD_URL is not set (beside Dagster's 3000).
LOCAL_DASHBOARD_URL = "http://127.0.0.1:3001/"
HASH_SECRET_VARIABLE = "CTR_HASH_SECRET"
MIN_HASH_SECRET_CHARS = 16
# S3's bucket naming rules (3-63 characters: lower-case letters, digits, dots and hyphens).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
INTERVAL_MINUTES = (15, 30, 60)  # Connect's historical reports offer 15 and 30 minutes; hours as before
INTERVAL_RULES = ("disconnect", "enqueue")
LOCAL, ATHENA = "local", "athena"
MERGE_ENGINES = (LOCAL, ATHENA)
# Firehose retries a failed delivery for up to 24 h and still writes into the record's original arrival-hour
# folder: that hour (1 h), its buffering (up to 15 min) and the retries, plus an hourly catch-up tick's wait.
FIREHOSE_LATE_HOURS = 27
HOUR_FORMAT = "%Y-%m-%d-%H:%M"  # CTR_FIRST_HOUR, as Dagster names an hourly partition
# Amazon Connect launched in 2017: no contact record can have arrived in an earlier hour folder.
FIRST_POSSIBLE_HOUR = datetime(2017, 1, 1, tzinfo=timezone.utc)
# The user:password@ of a URL (up to the last @ before the path): endpoint and catalog URLs may carry one.
URL_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s'\"]*@")


def redact(text: str) -> str:
    """`text` with the user name and password of every URL in it replaced by `***`."""
    return URL_USERINFO.sub(r"\1***@", text)


class SettingError(ValueError):
    """A setting with a value that cannot work; the message names the variable. Never shows a URL's password."""

    def __init__(self, message: str):
        super().__init__(redact(message))


class CtrSettings(dg.ConfigurableResource):
    """Knobs of the pipeline; each field is read from the environment variable named in its description."""

    storage_url: str = Field(
        default=DEFAULT_STORAGE_URL,
        description="CTR_STORAGE_URL: a local folder, or s3://bucket[/prefix] (the original BucketName).",
    )
    s3_endpoint_url: str = Field(
        default="", description="CTR_S3_ENDPOINT_URL: endpoint of an S3-compatible store; empty for AWS."
    )
    duckdb_path: str = Field(
        default="", description="CTR_DUCKDB_PATH: the DuckDB file; default ctr.duckdb in the storage folder."
    )
    etl_cron: str = Field(
        default="0 * * * *", description="CTR_ETL_CRON: cadence of the ETL catch-up (etlJobSchedule)."
    )
    sensor_interval_seconds: int = Field(
        default=60, description="CTR_SENSOR_INTERVAL_SECONDS: how often arrivals are polled (s3interval, 60-900)."
    )
    sensor_lookback_hours: int = Field(
        default=2, description="CTR_SENSOR_LOOKBACK_HOURS: arrival-hour folders each sensor tick lists."
    )
    catchup_hours: int = Field(
        default=FIREHOSE_LATE_HOURS, description="CTR_CATCHUP_HOURS: arrival-hour folders each ETL catch-up tick "
        "lists; the default covers Firehose's 24 h of delivery retries into an object's original hour folder.",
    )
    unprocessed_alert_hours: float = Field(
        default=FIREHOSE_LATE_HOURS, description="CTR_UNPROCESSED_ALERT_HOURS: how long after it was written a raw "
        "object, in any hour folder, may stay out of the table before the raw_processed check fails.",
    )
    first_hour: str = Field(
        default="2025-01-01-00:00", description="CTR_FIRST_HOUR: the first hourly partition (UTC), or an earlier "
        "one where raw/ holds older arrival hours.",
    )
    sqs_queue_url: str = Field(
        default="", description="CTR_SQS_QUEUE_URL: SQS queue receiving the bucket's S3 event notifications; "
        "empty: poll the bucket instead.",
    )
    glue_database: str = Field(
        default="", description="CTR_GLUE_DATABASE: Glue database to register the ctr table in, for Athena; "
        "empty: no Glue.",
    )
    glue_table: str = Field(default="ctr", description="CTR_GLUE_TABLE: the table's name in that database.")
    catalog_uri: str = Field(
        default="", description="CTR_CATALOG_URI: the Iceberg catalog of the ctr table, for an s3:// storage "
        "without Glue: an SQLAlchemy URI (sqlite:////path/catalog.db, postgresql+psycopg2://...). Empty: "
        "a local folder keeps a SQLite catalog in itself (catalog/iceberg.db), a bucket uses Glue.",
    )
    kinesis_stream_name: str = Field(
        default="", description="CTR_KINESIS_STREAM_NAME: a Kinesis data stream to land in raw/ as Firehose would "
        "(KinesisStreamName); empty: Firehose delivers.",
    )
    flatfiles_retention_hours: int = Field(
        default=24, description="CTR_FLATFILES_RETENTION_HOURS: how long flatfiles/ are kept (S3 rounds up to "
        "whole days)."
    )
    snapshot_retention_hours: float = Field(
        default=168, description="CTR_SNAPSHOT_RETENTION_HOURS: how long table snapshots stay readable for time "
        "travel before the maintenance asset expires them (the current snapshot always stays).",
    )
    duckdb_memory_mb: int = Field(
        default=1024, description="CTR_DUCKDB_MEMORY_MB: memory each DuckDB connection of the pipeline may use "
        "(the merge, the table checks, the aggregates); beyond it DuckDB spills to the temp folder.",
    )
    flatten_workers: int = Field(
        default=0, description="CTR_FLATTEN_WORKERS: processes that flatten raw objects at once; 0: one per core.",
    )
    quarantine_rate_threshold: float = Field(
        default=0.01, description="CTR_QUARANTINE_RATE_THRESHOLD: quarantined share that raises a warning."
    )
    freshness_hours: float = Field(
        default=2.0, description="CTR_FRESHNESS_HOURS: age of the newest arrival that raises a warning."
    )
    service_level_seconds: int = Field(
        default=20, description="CTR_SERVICE_LEVEL_SECONDS: answer-time threshold of the service level."
    )
    service_level_target: float = Field(
        default=80.0, description="CTR_SERVICE_LEVEL_TARGET: the service level goal in percent, shown on the dashboard."
    )
    report_timezone: str = Field(
        default="UTC", description="CTR_REPORT_TIMEZONE: time zone the dashboards bucket hours in."
    )
    interval_minutes: int = Field(
        default=60, description="CTR_INTERVAL_MINUTES: length of the metric intervals, 15, 30 or 60 minutes."
    )
    interval_rule: str = Field(
        default="disconnect", description="CTR_INTERVAL_RULE: the moment a contact counts in an interval: "
        "disconnect (Connect's historical reports) or enqueue (when it entered its queue).",
    )
    abandonment_rate_limit: float = Field(
        default=10.0, description="CTR_ABANDONMENT_RATE_LIMIT: abandonment rate in percent above which a queue's "
        "latest complete interval raises a warning.",
    )
    alert_min_queued: int = Field(
        default=5, description="CTR_ALERT_MIN_QUEUED: contacts queued in a queue's latest complete interval below "
        "which its rates raise no warning (too few to judge).",
    )
    merge_engine: str = Field(
        default=LOCAL, description="CTR_MERGE_ENGINE: what merges batches into the table and runs its rules and "
        "upkeep: local (DuckDB in the step's process) or athena (Amazon Athena on the table in the Glue Data "
        "Catalog, for tables one machine cannot scan).",
    )
    athena_workgroup: str = Field(
        default="primary", description="CTR_ATHENA_WORKGROUP: the Athena workgroup that runs the queries (engine v3).",
    )
    athena_output_location: str = Field(
        default="", description="CTR_ATHENA_OUTPUT_LOCATION: s3:// folder for Athena's query results; empty: "
        "athena/results/ in the storage (a workgroup that enforces its own location wins).",
    )
    athena_merge_window_days: int = Field(
        default=2, description="CTR_ATHENA_MERGE_WINDOW_DAYS: a merge looks for stored copies of the batch's "
        "contacts in the batch's initiation days and this many days either side, not in all history.",
    )
    athena_price_per_tb: float = Field(
        default=5.0, description="CTR_ATHENA_PRICE_PER_TB: USD per TB scanned in the workgroup's region, for the "
        "cost estimates in the metadata.",
    )
    backfill_hours_per_run: int = Field(
        default=0, description="CTR_BACKFILL_HOURS_PER_RUN: a backfill of many hours runs as runs of this many "
        "hours each, in parallel as far as the run launcher allows (merges still one at a time); 0: one run.",
    )
    dashboard_url: str = Field(
        default="", description="CTR_DASHBOARD_URL: the http(s) address where dashboards/ is published, for the "
        "dashboard link in the Dagster UI. Empty: on a folder http://127.0.0.1:3001/, which `ctr-assets ui` serves; "
        "on a bucket a presigned link to the object, valid for 7 days.",
    )
    phone_numbers: str = Field(
        default="keep",
        description="CTR_PHONE_NUMBERS: keep, mask or hash customer phone numbers before they reach "
        "flatfiles, the table and dashboards (hash needs CTR_HASH_SECRET).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "CtrSettings":
        """Settings from `CTR_*` variables (then `overrides`), validated."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            variable = f"CTR_{name.upper()}"
            if variable in environ and environ[variable] != "":
                values[name] = _coerce(variable, environ[variable], field.annotation)
        values.update({name: value for name, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.validate_values()
        settings.phone_protector(environ)  # hashing without a usable key stops here, naming CTR_HASH_SECRET
        return settings

    def validate_values(self) -> None:
        if not self.storage_url.strip():
            raise SettingError("CTR_STORAGE_URL: empty; give a folder or s3://bucket[/prefix]")
        if self.is_s3 and not BUCKET_NAME.fullmatch(self.s3_location[0]):
            raise SettingError(f"CTR_STORAGE_URL: {self.storage_url!r} does not name a valid bucket (s3://bucket[/prefix])")
        if self.is_s3 and re.search(r"[?#]", self.storage_url):
            raise SettingError(f"CTR_STORAGE_URL: {self.storage_url!r}: Iceberg's readers (pyiceberg, Athena, Spark) "
                               "end an S3 location at '?' or '#', so the table could not live there; use a "
                               "prefix without them")
        if self.s3_endpoint_url and not re.fullmatch(r"https?://[^/\s]+/?", self.s3_endpoint_url):
            raise SettingError(f"CTR_S3_ENDPOINT_URL: {self.s3_endpoint_url!r} is not an http(s)://host[:port] URL")
        if self.sqs_queue_url and not self.is_s3:
            raise SettingError(f"CTR_SQS_QUEUE_URL: S3 event notifications need s3:// storage, and the storage is the "
                               f"folder {self.storage_url!r}: unset CTR_SQS_QUEUE_URL or use a bucket")
        if self.sqs_queue_url and not re.fullmatch(r"https?://\S+", self.sqs_queue_url):
            raise SettingError(f"CTR_SQS_QUEUE_URL: {self.sqs_queue_url!r} is not a queue URL (https://sqs.…)")
        if self.glue_database and not self.is_s3:
            raise SettingError(f"CTR_GLUE_DATABASE: Athena reads the table from S3, and the storage is the folder "
                               f"{self.storage_url!r}: unset CTR_GLUE_DATABASE or use a bucket")
        if self.glue_database and self.catalog_uri:
            raise SettingError("CTR_CATALOG_URI: set it or CTR_GLUE_DATABASE, not both: the table has one catalog")
        if self.catalog_uri and not re.fullmatch(r"[a-z][a-z0-9]*(\+[a-z0-9_]+)?://\S*", self.catalog_uri):
            raise SettingError(f"CTR_CATALOG_URI: {self.catalog_uri!r} is not an SQLAlchemy URI "
                               "(e.g. sqlite:////var/lib/ctr/catalog.db or postgresql+psycopg2://host/db)")
        if self.is_s3 and not (self.glue_database or self.catalog_uri):
            raise SettingError("CTR_GLUE_DATABASE: a bucket's table needs a catalog every machine can reach: set "
                               "CTR_GLUE_DATABASE (the Glue Data Catalog) or CTR_CATALOG_URI (an SQL database)")
        for variable, name in (("CTR_GLUE_DATABASE", self.glue_database), ("CTR_GLUE_TABLE", self.glue_table)):
            if name and not re.fullmatch(r"[a-z0-9_]{1,255}", name):
                raise SettingError(f"{variable}: {name!r}: use lower-case letters, digits and underscores (Athena's rule)")
        if self.kinesis_stream_name and not re.fullmatch(r"[a-zA-Z0-9_.-]{1,128}", self.kinesis_stream_name):
            raise SettingError(f"CTR_KINESIS_STREAM_NAME: {self.kinesis_stream_name!r} is not a Kinesis stream name")
        try:
            first_hour = datetime.strptime(self.first_hour, HOUR_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            raise SettingError(f"CTR_FIRST_HOUR: {self.first_hour!r} is not an hour YYYY-MM-DD-HH:00 (UTC)") from None
        if first_hour < FIRST_POSSIBLE_HOUR or first_hour.minute:
            raise SettingError(f"CTR_FIRST_HOUR: {self.first_hour!r} is not an hour from "
                               f"{FIRST_POSSIBLE_HOUR:{HOUR_FORMAT}} on (Amazon Connect launched in 2017)")
        if not is_valid_cron_string(self.etl_cron):
            raise SettingError(f"CTR_ETL_CRON: {self.etl_cron!r} is not a valid cron expression")
        if not 60 <= self.sensor_interval_seconds <= 900:
            raise SettingError(f"CTR_SENSOR_INTERVAL_SECONDS: {self.sensor_interval_seconds} is outside 60-900")
        if self.flatfiles_retention_hours < 1:
            raise SettingError("CTR_FLATFILES_RETENTION_HOURS: must be at least 1")
        if self.duckdb_memory_mb < 64:
            raise SettingError("CTR_DUCKDB_MEMORY_MB: must be at least 64 (DuckDB's readers need that much)")
        if self.flatten_workers < 0:
            raise SettingError("CTR_FLATTEN_WORKERS: must not be negative (0 means one per core)")
        if self.snapshot_retention_hours < 0:
            raise SettingError("CTR_SNAPSHOT_RETENTION_HOURS: must not be negative")
        if self.sensor_lookback_hours < 1:
            raise SettingError("CTR_SENSOR_LOOKBACK_HOURS: must be at least 1")
        if self.catchup_hours < 1:
            raise SettingError("CTR_CATCHUP_HOURS: must be at least 1")
        if self.unprocessed_alert_hours <= 0:
            raise SettingError("CTR_UNPROCESSED_ALERT_HOURS: must be more than 0")
        if not 0 <= self.quarantine_rate_threshold <= 1:
            raise SettingError("CTR_QUARANTINE_RATE_THRESHOLD: must be between 0 and 1")
        if self.service_level_seconds < 0:
            raise SettingError("CTR_SERVICE_LEVEL_SECONDS: must not be negative")
        if not 0 <= self.service_level_target <= 100:
            raise SettingError("CTR_SERVICE_LEVEL_TARGET: must be a percentage between 0 and 100")
        if self.interval_minutes not in INTERVAL_MINUTES:
            raise SettingError(f"CTR_INTERVAL_MINUTES: {self.interval_minutes} is not one of 15, 30, 60")
        if self.interval_rule not in INTERVAL_RULES:
            raise SettingError(f"CTR_INTERVAL_RULE: {self.interval_rule!r} is not one of {', '.join(INTERVAL_RULES)}")
        if not 0 <= self.abandonment_rate_limit <= 100:
            raise SettingError("CTR_ABANDONMENT_RATE_LIMIT: must be a percentage between 0 and 100")
        if self.alert_min_queued < 1:
            raise SettingError("CTR_ALERT_MIN_QUEUED: must be at least 1")
        try:
            ZoneInfo(self.report_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingError(f"CTR_REPORT_TIMEZONE: unknown time zone {self.report_timezone!r}") from None
        if self.merge_engine not in MERGE_ENGINES:
            raise SettingError(f"CTR_MERGE_ENGINE: {self.merge_engine!r} is not one of {', '.join(MERGE_ENGINES)}")
        if self.merge_engine == ATHENA and not (self.is_s3 and self.glue_database):
            raise SettingError("CTR_MERGE_ENGINE: athena works on the table in the Glue Data Catalog: it needs s3:// "
                               "storage (CTR_STORAGE_URL) and CTR_GLUE_DATABASE")
        if not re.fullmatch(r"[a-zA-Z0-9._-]{1,128}", self.athena_workgroup):
            raise SettingError(f"CTR_ATHENA_WORKGROUP: {self.athena_workgroup!r} is not a workgroup name")
        if self.athena_output_location and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?",
                                                             self.athena_output_location):
            raise SettingError(f"CTR_ATHENA_OUTPUT_LOCATION: {self.athena_output_location!r} is not an s3://bucket/folder")
        if self.athena_merge_window_days < 0:
            raise SettingError("CTR_ATHENA_MERGE_WINDOW_DAYS: must not be negative")
        if self.athena_price_per_tb < 0:
            raise SettingError("CTR_ATHENA_PRICE_PER_TB: must not be negative")
        if self.backfill_hours_per_run < 0:
            raise SettingError("CTR_BACKFILL_HOURS_PER_RUN: must not be negative (0 means one run per backfill)")
        if self.dashboard_url and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", self.dashboard_url):
            raise SettingError(f"CTR_DASHBOARD_URL: {self.dashboard_url!r} is not an http(s):// address of a folder "
                               "(where dashboards/ is published)")
        if self.phone_numbers not in MODES:
            raise SettingError(f"CTR_PHONE_NUMBERS: {self.phone_numbers!r} is not one of {', '.join(MODES)}")

    def phone_protector(self, environ: Mapping[str, str] | None = None) -> Protect | None:
        """What the flatten step applies to customer phone numbers; the hash key is read from
        `CTR_HASH_SECRET` now (in the run's own process, like a Dagster `EnvVar`) and kept nowhere else."""
        environ = os.environ if environ is None else environ
        secret = environ.get(HASH_SECRET_VARIABLE, "") if self.phone_numbers == "hash" else ""
        if self.phone_numbers == "hash" and len(secret) < MIN_HASH_SECRET_CHARS:
            problem = "is not set" if not secret else f"is shorter than {MIN_HASH_SECRET_CHARS} characters"
            raise SettingError(f"{HASH_SECRET_VARIABLE}: {problem}; CTR_PHONE_NUMBERS=hash needs a secret key")
        return phone_protector(self.phone_numbers, secret.encode())

    @property
    def dashboard_folder_url(self) -> str | None:
        """The address of dashboards/ (ending in /): CTR_DASHBOARD_URL, else on a folder the one `ctr-assets ui`
        serves; None on a bucket without it (each link is then presigned)."""
        if self.dashboard_url:
            return self.dashboard_url.rstrip("/") + "/"
        return None if self.is_s3 else LOCAL_DASHBOARD_URL

    @property
    def is_s3(self) -> bool:
        return self.storage_url.startswith("s3://")

    @property
    def s3_location(self) -> tuple[str, str]:
        """(bucket, key prefix) of an s3:// storage URL."""
        bucket, _, prefix = self.storage_url.removeprefix("s3://").partition("/")
        return bucket, prefix.strip("/")

    @property
    def warehouse_path(self) -> str:
        """The DuckDB file: set explicitly, else beside the data for a local folder, else in the cwd."""
        if self.duckdb_path:
            return self.duckdb_path
        if self.is_s3:
            return "ctr.duckdb"
        return str(Path(self.storage_url).expanduser() / "ctr.duckdb")


def _coerce(variable: str, text: str, annotation: object) -> object:
    try:
        return annotation(text) if annotation in (int, float) else text  # type: ignore[operator]
    except ValueError:
        raise SettingError(f"{variable}: {text!r} is not a valid {annotation.__name__}") from None  # type: ignore[union-attr]
