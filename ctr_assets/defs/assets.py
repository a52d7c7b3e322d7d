"""The asset graph: raw Firehose objects -> flattened records -> ctr table -> catalog (and dashboards).

Assets are thin: the work lives in `lake` and `records`, which the tests also drive through these assets.
Each asset reports what it did twice: readable metadata for the UI, and one structured `SUMMARY` entry
that the Python API and the CLI read back from the run's records.
"""

from contextlib import closing
from dataclasses import asdict

import dagster as dg
import orjson
from dagster_duckdb import DuckDBResource
from pyiceberg.types import ListType, StructType

from ctr_assets.aws.athena import AthenaEngine, query_metadata
from ctr_assets.lake.iceberg import TableLocation, load_table, schema_tree
from ctr_assets.lake.layout import CATALOG, hour_of_partition, partition_of_hour
from ctr_assets.lake.maintenance import maintain
from ctr_assets.lake.pipeline import (
    FlattenProgress,
    FlattenReport,
    ObjectFailed,
    conservation_problems,
    flatten_hours,
    merge_hours,
    merged_flatfiles,
)
from ctr_assets.lake.quarantine import replay_hours
from ctr_assets.lake.storage import Storage
from ctr_assets.lake.table import ARRIVAL_HOURS, merge_flatfiles
from ctr_assets.metrics.warehouse import refresh_ctr_view, scratch_connection
from ctr_assets.records.schema import render
from ctr_assets.settings import ATHENA, CtrSettings

RAW = dg.AssetKey("raw")
FLATTENED = dg.AssetKey("flattened")
CTR = dg.AssetKey("ctr")
CATALOG_ASSET = dg.AssetKey("ctr_catalog")
MAINTENANCE = dg.AssetKey("ctr_maintenance")
CONSERVATION = "conservation"
QUARANTINE_RATE = "quarantine_rate"
SCHEMA_FILE = f"{CATALOG}schema.json"
# The metadata entry holding an asset's counts as JSON, for programs (the UI shows the other entries).
SUMMARY = "summary"
# The log record attribute carrying the flatten step's counts as it goes (FlattenProgress.counts).
PROGRESS = "ctr_progress"


class FlattenConfig(dg.Config):
    reprocess: bool = False  # flatten objects again even when their flatfile already exists
    replay_quarantine: bool = False  # instead: rerun the hours' quarantined items through the current rules
    replay_reason: str = ""  # with replay_quarantine: only the items quarantined for this reason


def build_assets(partitions: dg.PartitionsDefinition, backfill: dg.BackfillPolicy = dg.BackfillPolicy.single_run()) -> list:
    """Every asset of the graph but the dashboards, on the hourly arrival partitions; a backfill of the hourly
    assets runs as `backfill` says (one run by default)."""
    raw = dg.AssetSpec(
        RAW,
        partitions_def=partitions,
        group_name="ingest",
        kinds={"json"},
        description="Firehose objects under raw/YYYY/MM/DD/HH/ (arrival hour, UTC). Made by Firehose, "
        "reported by the arrival sensor, never modified by the pipeline.",
    )

    @dg.asset(
        key=FLATTENED,
        deps=[raw],
        partitions_def=partitions,
        backfill_policy=backfill,
        group_name="ingest",
        kinds={"python", "json"},
        check_specs=[
            dg.AssetCheckSpec(CONSERVATION, asset=FLATTENED, blocking=True,
                              description="Per raw object: records in = written + quarantined."),
            dg.AssetCheckSpec(QUARANTINE_RATE, asset=FLATTENED,
                              description="Quarantined share of records stays under the threshold (a warning)."),
        ],
    )
    def flattened(context: dg.AssetExecutionContext, config: FlattenConfig, storage: Storage, table: TableLocation,
                  settings: CtrSettings):
        """Raw objects split into records, keys normalized, types checked: one NDJSON flatfile per raw
        object under flatfiles/, and everything unusable under quarantine/ with its offset and reason.
        With `replay_quarantine`, the hours' quarantined items are run through the current rules instead:
        those that now pass join their object's flatfile (and the table at the next merge)."""
        hours = [hour_of_partition(key) for key in context.partition_keys]
        if config.replay_quarantine:
            replay = replay_hours(storage, hours, config.replay_reason or None, settings.phone_protector())
            failing = sum(replay.still_failing.values())
            return dg.MaterializeResult(
                metadata={SUMMARY: dg.MetadataValue.json(replay.summary()), "items replayed": replay.replayed,
                          "items examined": replay.examined, "records written": replay.records_written},
                check_results=_flatten_checks(replay.problems, replay.examined, failing / (replay.examined or 1),
                                              settings.quarantine_rate_threshold))

        counted = FlattenProgress()

        def progress(done: int, total: int, stats) -> None:
            # In the run's log for the UI; the counts ride along for the CLI's progress line (api.py).
            if counted.add(done, total, stats):
                context.log.info(f"flattened {done}/{total} objects, {counted.records_in} records "
                                 f"(last: {stats.source_key})", extra={PROGRESS: counted.counts()})

        try:
            report = flatten_hours(storage, hours, config.reprocess, progress, settings.phone_protector(),
                                   workers=settings.flatten_workers or None, merged=merged_flatfiles(storage, table, hours))
        except ObjectFailed as failure:
            raise dg.Failure(
                description=f"flattening {failure}", metadata={"object": failure.key, "reason": failure.reason}
            ) from failure
        problems = conservation_problems(storage, report.objects)
        totals = report.totals
        rate = totals.records_quarantined / totals.records_in if totals.records_in else 0.0
        return dg.MaterializeResult(
            metadata=_flatten_metadata(report, rate),
            check_results=_flatten_checks(problems, len(report.objects), rate, settings.quarantine_rate_threshold))

    @dg.asset(
        key=CTR,
        deps=[FLATTENED],
        partitions_def=partitions,
        backfill_policy=backfill,
        pool="ctr_table",
        group_name="warehouse",
        kinds={"iceberg", "duckdb"},
    )
    def ctr(context: dg.AssetExecutionContext, storage: Storage, table: TableLocation, warehouse: DuckDBResource,
            settings: CtrSettings, athena: AthenaEngine):
        """The ctr table, an Apache Iceberg table under parquet/ctr/: one row per contactid (latest update
        wins), partitioned by the UTC day of initiation. Each merge is one commit: readers see the table
        before it or after it. CTR_MERGE_ENGINE says what merges: DuckDB here, or Athena."""
        hours = [hour_of_partition(key) for key in context.partition_keys]
        properties = {"ctr-assets.run-id": context.run_id,
                      ARRIVAL_HOURS: f"{partition_of_hour(hours[0])}..{partition_of_hour(hours[-1])}"}
        on_athena = settings.merge_engine == ATHENA
        with closing(scratch_connection(settings.duckdb_memory_mb)) as connection:
            result = merge_hours(storage, table, hours, connection, properties, athena.merge if on_athena else merge_flatfiles)
        if result is None:
            context.log.warning(f"nothing new to merge for {context.partition_key_range}: the table is left as it is")
            return dg.MaterializeResult(metadata={SUMMARY: dg.MetadataValue.json({}), "unchanged": True})
        with warehouse.get_connection() as wh:
            refresh_ctr_view(wh, storage, table)
        current = load_table(table)
        snapshot = current.current_snapshot() if current is not None else None
        rows = int(snapshot.summary["total-records"]) if snapshot and snapshot.summary else 0
        counts = {name: value for name, value in asdict(result).items() if name != "schema"}
        return dg.MaterializeResult(
            metadata={
                SUMMARY: dg.MetadataValue.json(counts),
                "dagster/row_count": rows,
                "dagster/table_name": table.display,
                "dagster/column_schema": column_schema(result.schema),
                "records read": result.records_read,
                "duplicates collapsed in batch": result.duplicates_in_batch,
                "rows inserted": result.rows_inserted,
                "rows updated": result.rows_updated,
                "rows moved to another day": result.rows_moved,
                "days written": dg.MetadataValue.json(result.days_written),
                "new columns": dg.MetadataValue.json(result.new_columns),
                "variant columns written": dg.MetadataValue.json(result.variant_columns),
                "snapshot id": str(result.snapshot_id) if result.snapshot_id else "none (nothing changed)",
                "commit attempts": result.attempts,
                "location": dg.MetadataValue.path(table.location),
                **(query_metadata(result.queries) if on_athena else {}),
            }
        )

    @dg.asset(key=CATALOG_ASSET, deps=[CTR], group_name="warehouse", kinds={"iceberg", "json"})
    def ctr_catalog(storage: Storage, table: TableLocation):
        """The table's columns, their types and when each first appeared (the Glue crawler's job), read from
        the Iceberg schema: a column added by a merge carries its first appearance in its doc. Written to
        catalog/ctr/schema.json for readers without an Iceberg client."""
        current = load_table(table)
        if current is None:
            raise dg.Failure("ctr_catalog: the ctr table does not exist yet; materialize ctr first")
        columns = catalog_columns(current.schema())
        storage.write(SCHEMA_FILE, orjson.dumps({"table": table.display, "schema_id": current.schema().schema_id,
                                                 "columns": columns}, option=orjson.OPT_INDENT_2))
        return dg.MaterializeResult(
            metadata={
                "columns": len(columns),
                "dagster/column_schema": column_schema(schema_tree(current.schema())),
                "schema versions": len(current.schemas()),
                "first seen": dg.MetadataValue.md(_first_seen_markdown(columns)),
                "path": dg.MetadataValue.path(storage.uri(SCHEMA_FILE)),
            }
        )

    @dg.asset(key=MAINTENANCE, deps=[CTR], pool="ctr_table", group_name="warehouse", kinds={"iceberg"})
    def ctr_maintenance(context: dg.AssetExecutionContext, storage: Storage, table: TableLocation,
                        settings: CtrSettings, athena: AthenaEngine):
        """Table upkeep: compacts days held in several files (or with other engines' delete files) into one,
        expires snapshots older than CTR_SNAPSHOT_RETENTION_HOURS (the current one always stays), and
        deletes the files no retained snapshot needs; with CTR_MERGE_ENGINE=athena, Athena's OPTIMIZE and
        VACUUM do it. In the merges' pool: a compaction and a merge committing at once waste one of them."""
        if settings.merge_engine == ATHENA:
            report = athena.maintain(storage, table, settings.snapshot_retention_hours)
        else:
            with closing(scratch_connection(settings.duckdb_memory_mb)) as connection:
                report = maintain(connection, storage, table, settings.snapshot_retention_hours)
        context.log.info(report.describe())
        return dg.MaterializeResult(metadata={SUMMARY: dg.MetadataValue.json(asdict(report)),
                                              **{name.replace("_", " "): value for name, value in asdict(report).items()}})

    return [raw, flattened, ctr, ctr_catalog, ctr_maintenance]


def _flatten_checks(problems: list[str], checked: int, rate: float, threshold: float) -> list[dg.AssetCheckResult]:
    """Conservation (blocking: what was read went to exactly one place) and the quarantine rate (a warning)."""
    return [
        dg.AssetCheckResult(check_name=CONSERVATION, passed=not problems,
                            metadata={"checked": checked, "mismatches": dg.MetadataValue.json(problems)}),
        dg.AssetCheckResult(check_name=QUARANTINE_RATE, passed=rate <= threshold, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"rate": rate, "threshold": threshold}),
    ]


def catalog_columns(schema) -> list[dict]:
    """Every column and struct field: dotted path, type, and the first appearance its doc records."""
    columns = []

    def walk(fields, prefix: str) -> None:
        for field in fields:
            path = f"{prefix}{field.name}"
            kind = field.field_type
            columns.append({"path": path, "type": _type_name(kind), "field_id": field.field_id,
                            "first_seen": (field.doc or "").removeprefix("first seen ") or None})
            if isinstance(kind, StructType):
                walk(kind.fields, f"{path}.")
            elif isinstance(kind, ListType) and isinstance(kind.element_type, StructType):
                walk(kind.element_type.fields, f"{path}[].")

    walk(schema.fields, "")
    return columns


def _type_name(kind) -> str:
    """A column's type without its fields (those are listed as columns of their own)."""
    if isinstance(kind, StructType):
        return "struct"
    if isinstance(kind, ListType):
        return f"list<{_type_name(kind.element_type)}>"
    return str(kind)


def _first_seen_markdown(columns: list[dict]) -> str:
    rows = [column for column in columns if column["first_seen"]]
    rows.sort(key=lambda column: column["first_seen"], reverse=True)
    lines = ["| column | first seen |", "|---|---|"] + [f"| {c['path']} | {c['first_seen']} |" for c in rows[:20]]
    return "\n".join(lines)


def _flatten_metadata(report: FlattenReport, rate: float) -> dict:
    totals = report.totals
    summary = {"objects_flattened": len(report.objects), "objects_skipped": report.skipped,
               "bytes_in": totals.bytes_in, "records_in": totals.records_in,
               "records_written": totals.records_written, "records_quarantined": totals.records_quarantined,
               "key_collisions": totals.collisions, "quarantined_by_reason": dict(totals.reasons)}
    return {
        SUMMARY: dg.MetadataValue.json(summary),
        "objects flattened": len(report.objects),
        "objects skipped (already flattened)": report.skipped,
        "bytes in": totals.bytes_in,
        "records in": totals.records_in,
        "records written": totals.records_written,
        "dagster/row_count": totals.records_written,
        "records quarantined": totals.records_quarantined,
        "quarantine rate": rate,
        "quarantine by reason": dg.MetadataValue.json(dict(totals.reasons)),
        "key collisions": totals.collisions,
        "abandoned staged files removed": report.abandoned_staging_removed,
    }


def column_schema(schema: dict) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, render(kind)) for name, kind in schema.items()])
