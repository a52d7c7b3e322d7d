"""Asset checks on the table and on arrivals. Conservation and the quarantine rate are reported by the
flattened asset itself (it has the counts); schema drift by the catalog."""

from contextlib import closing
from datetime import datetime, timedelta, timezone
from math import ceil

import dagster as dg

from ctr_assets.aws.athena import AthenaEngine, query_metadata
from ctr_assets.defs.assets import CTR, RAW
from ctr_assets.lake.iceberg import TableLocation
from ctr_assets.lake.layout import floor_hour, hours_between, raw_prefix
from ctr_assets.lake.pipeline import pending_raw_objects
from ctr_assets.lake.storage import Storage
from ctr_assets.metrics.warehouse import refresh_ctr_view, scratch_connection
from ctr_assets.settings import ATHENA, CtrSettings

# name: (blocking, description, SQL selecting the contactid of every violating row)
TABLE_RULES = {
    "contactid_unique": (
        True,
        "Every row has a contactid and no contactid appears twice (the dedup rule held).",
        "SELECT contactid FROM ctr WHERE contactid IS NULL "
        "OR contactid IN (SELECT contactid FROM ctr GROUP BY contactid HAVING count(*) > 1)",
    ),
    "timestamps_ordered": (
        False,
        "Initiation <= disconnect and enqueue <= dequeue. Checks what Connect sent, so it warns "
        "instead of blocking the dashboards.",
        "SELECT contactid FROM ctr WHERE disconnecttimestamp < initiationtimestamp "
        "OR queue.dequeuetimestamp < queue.enqueuetimestamp",
    ),
    "durations_non_negative": (
        False,
        "Queue, interaction, hold and after-contact-work durations are >= 0 (a warning, as above).",
        "SELECT contactid FROM ctr WHERE queue.duration < 0 OR agent.agentinteractionduration < 0 "
        "OR agent.customerholdduration < 0 OR agent.aftercontactworkduration < 0",
    ),
}


@dg.multi_asset_check(
    name="ctr_table_rules",
    specs=[dg.AssetCheckSpec(name, asset=CTR, blocking=blocking, description=description)
           for name, (blocking, description, _) in TABLE_RULES.items()],
    can_subset=True,
)
def ctr_table_rules(context: dg.AssetCheckExecutionContext, storage: Storage, table: TableLocation,
                    settings: CtrSettings, athena: AthenaEngine):
    """The table rules in one step: one connection, one view over the table and one row count serve all the
    selected rules (and Dagster resolves the table's partitions once, not once per rule). With
    CTR_MERGE_ENGINE=athena, one Athena query checks them all."""
    selected = [name for name in TABLE_RULES if dg.AssetCheckKey(CTR, name) in context.selected_asset_check_keys]
    if settings.merge_engine == ATHENA:
        yield from _athena_table_rules(athena, table, selected)
        return
    with closing(scratch_connection(settings.duckdb_memory_mb)) as connection:
        if not refresh_ctr_view(connection, storage, table):
            for name in selected:
                yield dg.AssetCheckResult(asset_key=CTR, check_name=name, passed=True, metadata={"rows": 0})
            return
        rows = connection.sql("SELECT count(*) FROM ctr").fetchall()[0][0]
        for name in selected:
            violations = TABLE_RULES[name][2]
            count, sample = connection.sql(f"SELECT count(*), list(contactid)[:5] FROM ({violations})").fetchall()[0]
            yield _rule_result(name, rows, count, sample or [])


def _athena_table_rules(athena: AthenaEngine, table: TableLocation, selected: list[str]):
    rows, found, queries = athena.table_rules(table, {name: TABLE_RULES[name][2] for name in selected})
    for name in selected:
        yield _rule_result(name, rows, *found[name], **query_metadata(queries))


def _rule_result(name: str, rows: int, count: int, sample: list, **metadata) -> dg.AssetCheckResult:
    blocking = TABLE_RULES[name][0]
    return dg.AssetCheckResult(
        asset_key=CTR,
        check_name=name,
        passed=count == 0,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata={"rows": rows, "violations": count, "sample contactids": dg.MetadataValue.json(sample), **metadata},
    )


@dg.asset_check(asset=RAW, description="The newest raw object arrived within CTR_FRESHNESS_HOURS (a warning).")
def raw_fresh(storage: Storage, settings: CtrSettings) -> dg.AssetCheckResult:
    now = datetime.now(timezone.utc)
    # Only the hour folders the freshness window can reach are listed, never the whole bucket.
    hours = hours_between(now - timedelta(hours=ceil(settings.freshness_hours)), now)
    newest = max(
        (item.last_modified for hour in hours for item in storage.list(raw_prefix(floor_hour(hour)))),
        default=None,
    )
    age_hours = (now - newest).total_seconds() / 3600 if newest else None
    return dg.AssetCheckResult(
        passed=age_hours is not None and age_hours <= settings.freshness_hours,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "newest arrival": newest.isoformat() if newest else "none in the window",
            "age hours": round(age_hours, 2) if age_hours is not None else -1,
            "threshold hours": settings.freshness_hours,
        },
    )


@dg.asset_check(asset=RAW, description="Every raw object, in any arrival-hour folder, is in the table within "
                "CTR_UNPROCESSED_ALERT_HOURS of being written (an error). Lists all of raw/ and reads the ledger of "
                "merged flatfiles: on S3 one LIST per 1,000 raw objects and one GET per merge and arrival day, "
                "so its schedule runs it once a day, not hourly.")
def raw_processed(storage: Storage, table: TableLocation, settings: CtrSettings) -> dg.AssetCheckResult:
    """Catches what no automation will request: an object written into an hour folder older than the catch-up
    window (CTR_CATCHUP_HOURS), or one whose runs keep failing."""
    cutoff = datetime.now(timezone.utc) - timedelta(hours=settings.unprocessed_alert_hours)
    overdue = sorted((item for item in pending_raw_objects(storage, table) if item.last_modified < cutoff),
                     key=lambda item: (item.last_modified, item.key))
    return dg.AssetCheckResult(
        passed=not overdue,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "unprocessed objects": len(overdue),
            "oldest key": overdue[0].key if overdue else "none",
            "oldest written": overdue[0].last_modified.isoformat() if overdue else "none",
            "threshold hours": settings.unprocessed_alert_hours,
            "what to do": "`ctr-assets run` processes every pending object, in any hour folder" if overdue else "nothing",
        },
    )


def build_checks() -> list[dg.AssetChecksDefinition]:
    return [ctr_table_rules, raw_fresh, raw_processed]
