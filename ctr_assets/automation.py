"""What starts runs: the arrival sensor (the original S3-triggered Lambda), the ETL catch-up schedule (the
hourly Glue job), the dashboard refresh after each table change, and the hourly freshness check."""


import hashlib
from datetime import datetime, timedelta, timezone

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition as AssetJob

from ctr_assets.assets import CTR, RAW
from ctr_assets.layout import floor_hour, hour_of_partition, hours_between, partition_of_hour
from ctr_assets.pipeline import ArrivalScan, find_new_arrivals, pending_raw_keys
from ctr_assets.settings import CtrSettings
from ctr_assets.storage import Storage


def run_key(kind: str, partition: str, keys: list[str]) -> str:
    """Same objects, same key: Dagster then never launches a second run for them."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return f"{kind}:{partition}:{digest}"


def arrivals_result(new: dict[datetime, list[str]], cursor: str) -> dg.SensorResult:
    """A run per arrival hour with new objects, and the new objects reported as `raw` materializations."""
    requests, events = [], []
    for hour, keys in new.items():
        partition = partition_of_hour(hour)
        requests.append(dg.RunRequest(run_key=run_key("raw", partition, keys), partition_key=partition))
        events.append(dg.AssetMaterialization(RAW, partition=partition, metadata={"new objects": len(keys)}))
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=cursor)


def build_automation(
    settings: CtrSettings, etl_job: AssetJob, dashboard_job: AssetJob,
    freshness_job: AssetJob,
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    first_hour = hour_of_partition(settings.first_hour)

    def in_range(hour: datetime, now: datetime) -> bool:
        return first_hour <= hour <= floor_hour(now)

    @dg.sensor(
        name="raw_arrivals",
        job=etl_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Lists the recent arrival-hour folders of raw/ and requests the hours with new objects.",
    )
    def raw_arrivals(context: dg.SensorEvaluationContext, storage: Storage) -> dg.SensorResult:
        now = datetime.now(timezone.utc)
        hours = hours_between(now - timedelta(hours=settings.sensor_lookback_hours - 1), now)
        new, scan = find_new_arrivals(
            storage, ArrivalScan.from_json(context.cursor), [hour for hour in hours if in_range(hour, now)])
        return arrivals_result(new, scan.to_json())

    @dg.schedule(
        name="etl_catchup",
        cron_schedule=settings.etl_cron,
        job=etl_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The hourly ETL (etlJobSchedule): requests every hour within the flatfiles retention "
        "that still has raw objects without a flatfile, e.g. files copied late into an old hour folder.",
    )
    def etl_catchup(context: dg.ScheduleEvaluationContext, storage: Storage):
        now = context.scheduled_execution_time or datetime.now(timezone.utc)
        hours = hours_between(now - timedelta(hours=settings.flatfiles_retention_hours), now)
        pending = pending_raw_keys(storage, [hour for hour in hours if in_range(hour, now)])
        if not pending:
            return dg.SkipReason("every raw object in the retention window is flattened")
        return [
            dg.RunRequest(run_key=run_key("etl", partition_of_hour(hour), keys), partition_key=partition_of_hour(hour))
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

    freshness = dg.ScheduleDefinition(
        name="raw_freshness",
        job=freshness_job,
        cron_schedule="30 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs the raw freshness check every hour, so a stalled delivery stream is noticed.",
    )
    return [raw_arrivals, dashboards_after_table], [etl_catchup, freshness]
