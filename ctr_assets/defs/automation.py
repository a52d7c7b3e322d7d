"""What starts runs: the arrival sensors (the original S3-triggered Lambda: polling the bucket, or reading its
event notifications from SQS), the ETL catch-up schedule (the hourly Glue job), the dashboard refresh after
each table change, and the hourly freshness check."""


import hashlib
import json
from datetime import datetime, timedelta, timezone

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition as AssetJob,
)

from ctr_assets.aws import events, kinesis
from ctr_assets.aws.clients import AwsClients
from ctr_assets.aws.s3 import S3Storage
from ctr_assets.defs.assets import CTR, RAW
from ctr_assets.lake.iceberg import TableLocation
from ctr_assets.lake.layout import (
    FLATFILES,
    floor_hour,
    hour_label,
    hour_of_partition,
    hour_of_raw_key,
    hours_between,
    partition_of_hour,
)
from ctr_assets.lake.pipeline import SETTLE_SECONDS, ArrivalScan, find_new_arrivals, pending_raw_keys
from ctr_assets.lake.storage import Storage
from ctr_assets.settings import CtrSettings

MESSAGES_PER_TICK = 100  # SQS messages one tick receives: ten ReceiveMessage calls, and a cursor of ~50 KB


def run_key(kind: str, partition: str, keys: list[str]) -> str:
    """Same objects, same key: Dagster then never launches a second run for them."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return f"{kind}:{partition}:{digest}"


def arrivals_result(context: dg.SensorEvaluationContext, new: dict[datetime, list[str]], cursor: str,
                    nothing_new: str) -> dg.SensorResult:
    """A run per arrival hour with new objects, and the new objects reported as `raw` materializations: how
    many, the first and the last key (the keys themselves are too many for a tick's page). `nothing_new` is
    the tick's message when it requests nothing."""
    requests, events = [], []
    for hour, keys in new.items():
        partition = partition_of_hour(hour)
        requests.append(dg.RunRequest(run_key=run_key("raw", partition, keys), partition_key=partition))
        events.append(dg.AssetMaterialization(RAW, partition=partition, metadata={
            "new objects": len(keys), "first key": keys[0], "last key": keys[-1]}))
    if requests:
        context.log.info(f"{sum(map(len, new.values()))} new raw objects in {len(new)} arrival hours, first "
                         f"{min(map(min, new.values()))}, last {max(map(max, new.values()))}")
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=cursor,
                           skip_reason=None if requests else nothing_new)


def build_automation(
    settings: CtrSettings, etl_job: AssetJob, dashboard_job: AssetJob,
    freshness_job: AssetJob, processed_job: AssetJob, maintenance_job: AssetJob,
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    first_hour = hour_of_partition(settings.first_hour)

    def in_range(hour: datetime, now: datetime) -> bool:
        return first_hour <= hour <= floor_hour(now)

    def recent_hours(now: datetime) -> list[datetime]:
        return hours_between(now - timedelta(hours=settings.sensor_lookback_hours - 1), now)

    @dg.sensor(
        name="raw_arrivals",
        job=etl_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        # With S3 event notifications configured, raw_events does this job; polling stays available.
        default_status=dg.DefaultSensorStatus.STOPPED if settings.sqs_queue_url else dg.DefaultSensorStatus.RUNNING,
        description="Lists the recent arrival-hour folders of raw/ and requests the hours with new objects.",
    )
    def raw_arrivals(context: dg.SensorEvaluationContext, storage: Storage) -> dg.SensorResult:
        now = datetime.now(timezone.utc)
        hours = [hour for hour in recent_hours(now) if in_range(hour, now)]
        found = find_new_arrivals(storage, ArrivalScan.from_json(context.cursor), hours)
        late = (f"{found.late} raw objects showed up over {SETTLE_SECONDS // 60} minutes after they were written; "
                "etl_catchup requests them" if found.late else "")
        if late:
            context.log.warning(late)
        return arrivals_result(context, found.new, found.scan.to_json(), "; ".join(filter(None, [
            f"no new raw objects among the {found.listed} listed in {len(hours)} arrival-hour folders", late])))

    @dg.sensor(
        name="raw_events",
        job=etl_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reads the bucket's S3 event notifications from CTR_SQS_QUEUE_URL and requests the hours "
        "with new raw objects; a message is deleted on the tick after the one that requested its runs.",
    )
    def raw_events(context: dg.SensorEvaluationContext, storage: S3Storage, aws: AwsClients) -> dg.SensorResult:
        # Dagster stores a tick's SensorResult (run requests and cursor) after the tick returns. A cursor
        # handed back to us is proof that the runs it asked for are recorded, so the messages it lists are
        # deleted only now. A message whose tick was lost comes back after its visibility timeout and is
        # recognized: by the keys remembered here, or by the run key Dagster has already seen.
        sqs, queue = aws.client("sqs"), settings.sqs_queue_url
        state = json.loads(context.cursor) if context.cursor else {"seen": {}, "received": []}
        refused = events.delete(sqs, queue, state["received"])
        if refused:
            context.log.info(f"{refused} messages were redelivered before they could be deleted; they come back "
                             "and are recognized as requested")
        now = datetime.now(timezone.utc)
        window = {hour_label(hour) for hour in recent_hours(now)}
        seen = {label: set(keys) for label, keys in state["seen"].items() if label in window}
        new: dict[datetime, list[str]] = {}
        messages = events.receive(sqs, queue, MESSAGES_PER_TICK, visibility_seconds=5 * settings.sensor_interval_seconds)
        for message in messages:
            try:
                keys = events.created_raw_keys(message["Body"], storage.bucket, storage.prefix)
            except ValueError as error:
                context.log.warning(f"SQS message {message['MessageId']} is not an S3 notification, dropped: {error}")
                continue
            for key in keys:
                hour = hour_of_raw_key(key)
                label = hour_label(hour)
                if in_range(hour, now) and key not in seen.get(label, ()):
                    seen.setdefault(label, set()).add(key)
                    new.setdefault(hour, []).append(key)
        cursor = {"seen": {label: sorted(keys) for label, keys in seen.items() if label in window},
                  "received": [message["ReceiptHandle"] for message in messages]}
        return arrivals_result(context, dict(sorted(new.items())), json.dumps(cursor),
                               f"no new raw objects in {len(messages)} SQS messages")

    @dg.schedule(
        name="etl_catchup",
        cron_schedule=settings.etl_cron,
        job=etl_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The hourly ETL (etlJobSchedule): requests every hour of the last CTR_CATCHUP_HOURS that "
        "still has raw objects not in the table: Firehose's late deliveries (it retries for 24 h into the "
        "original hour folder), files copied late into an old hour folder, or objects of a run that was killed.",
    )
    def etl_catchup(context: dg.ScheduleEvaluationContext, storage: Storage, table: TableLocation):
        now = context.scheduled_execution_time or datetime.now(timezone.utc)
        # Not bounded by the flatfiles retention: the ledger, not the flatfiles, says what is merged.
        hours = hours_between(now - timedelta(hours=settings.catchup_hours), now)
        pending = pending_raw_keys(storage, table, [hour for hour in hours if in_range(hour, now)])
        if not pending:
            return dg.SkipReason(f"every raw object of the last {settings.catchup_hours} arrival hours is in the table")
        # The tick is part of the key: objects still pending after a failed or killed run are asked for
        # again at the next tick, where the same key would be skipped by Dagster as already requested.
        tick = now.strftime("%Y-%m-%dT%H:%M")
        return [
            dg.RunRequest(run_key=f"{run_key('etl', partition_of_hour(hour), keys)}@{tick}",
                          partition_key=partition_of_hour(hour))
            for hour, keys in pending.items()
        ]

    @dg.asset_sensor(
        asset_key=CTR,
        job=dashboard_job,
        name="dashboards_after_table",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Refreshes the catalog, aggregates and dashboard after each change of the ctr table.",
    )
    def dashboards_after_table(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
        return dg.RunRequest(run_key=f"ctr:{asset_event.run_id}")

    maintenance = dg.ScheduleDefinition(
        name="ctr_maintenance_daily",
        job=maintenance_job,
        cron_schedule="45 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Compacts the ctr table, expires snapshots older than CTR_SNAPSHOT_RETENTION_HOURS and "
        "deletes the files no snapshot needs, once a day.",
    )
    freshness = dg.ScheduleDefinition(
        name="raw_freshness",
        job=freshness_job,
        cron_schedule="30 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs the raw freshness check every hour, so a stalled delivery stream is noticed.",
    )
    processed = dg.ScheduleDefinition(
        name="raw_processed",
        job=processed_job,
        cron_schedule="15 4 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs the raw_processed check once a day (it lists all of raw/), so an object that no "
        "sensor or catch-up tick will ever request is noticed.",
    )

    @dg.sensor(
        name="kinesis_landing",
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Lands what arrived on CTR_KINESIS_STREAM_NAME in raw/ as one Firehose-shaped object per "
        "interval; the arrival sensor then picks it up as it would a Firehose delivery.",
    )
    def kinesis_landing(storage: Storage, aws: AwsClients) -> dg.SkipReason:
        landing = kinesis.land(aws.client("kinesis"), storage, settings.kinesis_stream_name)
        if landing.key is None:
            return dg.SkipReason(f"no new records on {landing.shards} shards")
        return dg.SkipReason(f"landed {landing.records} records from {landing.shards} shards in {landing.key}")

    # On a bucket the lifecycle rule (`ctr-assets retention`) expires flatfiles; a folder needs this job.
    retention = dg.ScheduleDefinition(
        name="flatfiles_retention",
        job=flatfiles_retention,
        cron_schedule="15 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Deletes flatfiles older than CTR_FLATFILES_RETENTION_HOURS (the original 24 h lifecycle).",
    )
    sensors = [raw_arrivals, dashboards_after_table] + ([raw_events] if settings.sqs_queue_url else []) + (
        [kinesis_landing] if settings.kinesis_stream_name else [])
    return sensors, [etl_catchup, freshness, processed, maintenance] + ([] if settings.is_s3 else [retention])


@dg.op
def expire_flatfiles(context: dg.OpExecutionContext, storage: Storage, settings: CtrSettings) -> None:
    """Flatfiles are only needed until their hour is merged (merged hours are recorded apart from them)."""
    context.log.info(storage.apply_retention(FLATFILES, settings.flatfiles_retention_hours))


@dg.job(description="Deletes flatfiles older than CTR_FLATFILES_RETENTION_HOURS from a local storage folder.")
def flatfiles_retention():
    expire_flatfiles()
