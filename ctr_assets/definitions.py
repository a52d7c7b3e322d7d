"""The Dagster definitions: `from ctr_assets.definitions import defs`, configured by `CTR_*` variables.

`defs` is built on first use, not on import: the CLI and the API import this module for `build_definitions`
and build their own from the settings their flags override (a `--storage s3://…` makes CTR_GLUE_DATABASE
valid), so the CTR_* variables alone must not be judged first.
"""


import functools
import warnings
from datetime import datetime, timezone
from typing import Iterable

import dagster as dg

from ctr_assets.aws.clients import AwsClients
from ctr_assets.defs.assets import (
    CATALOG_ASSET,
    CTR,
    FLATTENED,
    MAINTENANCE,
    RAW,
    build_assets,
)
from ctr_assets.defs.automation import build_automation
from ctr_assets.defs.checks import build_checks
from ctr_assets.defs.dashboards import DASHBOARD, build_dashboard_assets
from ctr_assets.defs.resources import athena_for, storage_for, table_for, warehouse_for
from ctr_assets.lake.layout import floor_hour, hour_of_partition, partition_of_hour, raw_prefix
from ctr_assets.lake.storage import Storage, StorageError
from ctr_assets.metrics.warehouse import AGGREGATES
from ctr_assets.settings import ATHENA, FIRST_POSSIBLE_HOUR, CtrSettings

ETL_JOB = "ctr_etl"
DASHBOARD_JOB = "ctr_dashboards"
FRESHNESS_JOB = "raw_freshness"
PROCESSED_JOB = "raw_processed"
MAINTENANCE_JOB = "ctr_table_maintenance"


def hourly_partitions(settings: CtrSettings) -> dg.HourlyPartitionsDefinition:
    """Firehose's arrival-hour folders, in UTC; the current hour is included (end_offset=1) because
    objects land in it while it runs."""
    return dg.HourlyPartitionsDefinition(start_date=settings.first_hour, timezone="UTC", end_offset=1)


def covering(settings: CtrSettings, storage: Storage, hours: Iterable[datetime]) -> CtrSettings:
    """`settings` with partitions that start early enough for every one of `hours` (arrival hours holding
    raw objects): data in any hour folder since Amazon Connect exists is processed without anyone knowing
    CTR_FIRST_HOUR. Starting the partitions at the oldest data, not at 2017, keeps their number (which the
    Dagster UI lists) to the hours a storage really spans. An hour no partition can hold is refused in one
    line naming its folder, instead of failing a run with Dagster's partition-range invariant."""
    hours = sorted(hours)
    if not hours:
        return settings
    now = datetime.now(timezone.utc)
    for hour, problem in ((hours[0], hours[0] < FIRST_POSSIBLE_HOUR and "before Amazon Connect launched (2017)"),
                          (hours[-1], hours[-1] > floor_hour(now) and f"in the future (UTC now: {now:%Y-%m-%dT%H:%M})")):
        if problem:
            raise StorageError(f"{storage.uri(raw_prefix(hour))}: this arrival hour is {problem}: move its objects "
                               "into the folder of the hour Firehose delivered them in")
    if hours[0] >= hour_of_partition(settings.first_hour):
        return settings
    return settings.model_copy(update={"first_hour": partition_of_hour(hours[0])})


def backfill_policy(settings: CtrSettings) -> dg.BackfillPolicy:
    """One run per backfill (on one machine its flatten uses every core), or runs of
    CTR_BACKFILL_HOURS_PER_RUN hours that a cluster runs side by side; the merges queue in the ctr_table pool."""
    hours = settings.backfill_hours_per_run
    return dg.BackfillPolicy.multi_run(hours) if hours else dg.BackfillPolicy.single_run()


# Single-run backfills and pools are what this graph is built on; their "beta" label is noise to users.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(settings: CtrSettings | None = None, storage: Storage | None = None) -> dg.Definitions:
    """The graph configured by `settings` (default: the CTR_* variables); `storage` replaces the storage they
    name (the crash tests count and interrupt its writes)."""
    settings = settings or CtrSettings.from_env()
    partitions = hourly_partitions(settings)
    etl, upkeep, table_rules = (dg.AssetSelection.assets(FLATTENED, CTR), dg.AssetSelection.assets(MAINTENANCE),
                                dg.AssetSelection.checks_for_assets(CTR))
    if settings.merge_engine == ATHENA:  # the table rules scan the whole table: once a day with upkeep, not every merge
        etl, upkeep = etl - table_rules, upkeep | table_rules
    etl_job = dg.define_asset_job(ETL_JOB, selection=etl, partitions_def=partitions,
                                  description="Flatten arrival hours and merge them into the ctr table.")
    dashboard_job = dg.define_asset_job(
        DASHBOARD_JOB, selection=dg.AssetSelection.assets(CATALOG_ASSET, *AGGREGATES, DASHBOARD),
        description="Catalog, aggregates and dashboard page from the current table.")
    # Freshness lists a few hour folders, hourly; raw_processed lists all of raw/ and the ledger, daily.
    freshness_job = dg.define_asset_job(FRESHNESS_JOB, selection=dg.AssetSelection.checks(dg.AssetCheckKey(RAW, "raw_fresh")))
    processed_job = dg.define_asset_job(PROCESSED_JOB, selection=dg.AssetSelection.checks(dg.AssetCheckKey(RAW, "raw_processed")))
    maintenance_job = dg.define_asset_job(MAINTENANCE_JOB, selection=upkeep,
                                          description="Compact, expire snapshots, delete unused table files.")
    sensors, schedules = build_automation(settings, etl_job, dashboard_job, freshness_job, processed_job,
                                          maintenance_job)
    storage = storage or storage_for(settings)
    aws = AwsClients()
    return dg.Definitions(
        assets=build_assets(partitions, backfill_policy(settings)) + build_dashboard_assets(),
        asset_checks=build_checks(),
        jobs=[etl_job, dashboard_job, freshness_job, processed_job, maintenance_job],
        sensors=sensors,
        schedules=schedules,
        resources={"storage": storage, "table": table_for(settings, storage), "warehouse": warehouse_for(settings),
                   "settings": settings, "aws": aws, "athena": athena_for(settings, storage, aws)},
        executor=dg.in_process_executor,
    )


@functools.cache
def __getattr__(name: str) -> dg.Definitions:
    if name != "defs":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return build_definitions()


def __dir__() -> list[str]:
    """Dagster finds `defs` by listing this module's names."""
    return [*globals(), "defs"]
