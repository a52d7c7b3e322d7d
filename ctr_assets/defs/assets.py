"""The asset graph: raw Firehose objects -> flattened records -> ctr table -> catalog and dashboards.

Assets are thin: the work lives in `pipeline`, `records` and `warehouse`, which know nothing of Dagster.
"""

from contextlib import closing
from datetime import datetime, timezone

import dagster as dg
import orjson
from dagster_duckdb import DuckDBResource

from ctr_assets.aws.clients import AwsClients
from ctr_assets.aws.glue import register_table
from ctr_assets.aws.s3 import S3Storage
from ctr_assets.lake.layout import CATALOG, hour_of_partition
from ctr_assets.lake.pipeline import (
    FlattenReport,
    ObjectFailed,
    conservation_problems,
    flatten_hours,
    merge_hours,
)
from ctr_assets.lake.storage import Storage
from ctr_assets.lake.table import TABLE_PREFIX, sql_text, table_schema
from ctr_assets.metrics.warehouse import (
    markdown_table,
    refresh_ctr_view,
    scratch_connection,
)
from ctr_assets.records.schema import column_paths, render
from ctr_assets.settings import CtrSettings

RAW = dg.AssetKey("raw")
GLUE_TABLE = dg.AssetKey("ctr_glue_table")
FLATTENED = dg.AssetKey("flattened")
CTR = dg.AssetKey("ctr")
CATALOG_ASSET = dg.AssetKey("ctr_catalog")
CONSERVATION = "conservation"
QUARANTINE_RATE = "quarantine_rate"
SCHEMA_FILE = f"{CATALOG}schema.json"
HISTORY_FILE = f"{CATALOG}history.ndjson"
CATALOG_LOCK = "ctr_catalog"


class FlattenConfig(dg.Config):
    reprocess: bool = False  # flatten objects again even when their flatfile already exists


def build_assets(partitions: dg.PartitionsDefinition) -> list:
    """Every asset of the graph, on the hourly arrival partitions."""
    single_run = dg.BackfillPolicy.single_run()
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
        backfill_policy=single_run,
        group_name="ingest",
        kinds={"python", "json"},
        check_specs=[
            dg.AssetCheckSpec(CONSERVATION, asset=FLATTENED, blocking=True,
                              description="Per raw object: records in = written + quarantined."),
            dg.AssetCheckSpec(QUARANTINE_RATE, asset=FLATTENED,
                              description="Quarantined share of records stays under the threshold (a warning)."),
        ],
    )
    def flattened(context: dg.AssetExecutionContext, config: FlattenConfig, storage: Storage, settings: CtrSettings):
        """Raw objects split into records, keys normalized, types checked: one NDJSON flatfile per raw
        object under flatfiles/, and everything unusable under quarantine/ with its offset and reason."""
        hours = [hour_of_partition(key) for key in context.partition_keys]

        def progress(done: int, total: int, stats) -> None:
            if done == total or done % max(total // 10, 1) == 0:
                context.log.info(f"flattened {done}/{total} objects (last: {stats.source_key})")

        try:
            report = flatten_hours(storage, hours, config.reprocess, progress, settings.phone_protector())
        except ObjectFailed as failure:
            raise dg.Failure(
                description=f"flattening {failure}", metadata={"object": failure.key, "reason": failure.reason}
            ) from failure
        problems = conservation_problems(storage, report.objects)
        totals = report.totals
        rate = totals.records_quarantined / totals.records_in if totals.records_in else 0.0
        return dg.MaterializeResult(
            metadata=_flatten_metadata(report, rate),
            check_results=[
                dg.AssetCheckResult(
                    check_name=CONSERVATION,
                    passed=not problems,
                    metadata={"objects checked": len(report.objects), "mismatches": dg.MetadataValue.json(problems)},
                ),
                dg.AssetCheckResult(
                    check_name=QUARANTINE_RATE,
                    passed=rate <= settings.quarantine_rate_threshold,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"rate": rate, "threshold": settings.quarantine_rate_threshold},
                ),
            ],
        )

    @dg.asset(
        key=CTR,
        deps=[FLATTENED],
        partitions_def=partitions,
        backfill_policy=single_run,
        pool="ctr_table",
        group_name="warehouse",
        kinds={"duckdb", "parquet"},
    )
    def ctr(context: dg.AssetExecutionContext, storage: Storage, warehouse: DuckDBResource):
        """The CTR table under parquet/ctr/dt=YYYY-MM-DD/: one row per contactid (latest update wins),
        partitioned by contact initiation date; each merge is published atomically per date."""
        hours = [hour_of_partition(key) for key in context.partition_keys]
        with closing(scratch_connection()) as connection:
            before, _ = table_schema(connection, storage)
            result = merge_hours(storage, hours, connection)
            if result is None:
                context.log.warning(f"no flatfiles for {context.partition_key_range}: the table is left unchanged")
                return dg.MaterializeResult(metadata={"records read": 0, "unchanged": True})
            rows = _table_rows(connection, storage)
        with warehouse.get_connection() as wh:
            refresh_ctr_view(wh, storage)
        new_columns = sorted(set(column_paths(result.schema)) - set(column_paths(before)))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "dagster/table_name": "ctr",
                "dagster/column_schema": _table_schema(result.schema),
                "records read": result.records_read,
                "duplicates collapsed in batch": result.duplicates_in_batch,
                "rows inserted": result.rows_inserted,
                "rows updated": result.rows_updated,
                "rows moved to another date": result.rows_moved,
                "partitions written": dg.MetadataValue.json(result.partitions_written),
                "partitions widened": dg.MetadataValue.json(result.partitions_widened),
                "new columns": dg.MetadataValue.json(new_columns),
                "path": dg.MetadataValue.path(storage.uri(TABLE_PREFIX)),
            }
        )

    @dg.asset(key=CATALOG_ASSET, deps=[CTR], group_name="warehouse", kinds={"json"})
    def ctr_catalog(context: dg.AssetExecutionContext, storage: Storage):
        """The table's current schema and when each column first appeared (the Glue crawler's job)."""
        with closing(scratch_connection()) as connection:
            schema, _ = table_schema(connection, storage)
        latest = context.instance.get_latest_materialization_event(CTR)
        partition = latest.asset_materialization.partition if latest and latest.asset_materialization else None
        # Read-modify-write of two files: one writer at a time, and the history first, so a run killed
        # between the two repeats a change event rather than losing it.
        with storage.lock(CATALOG_LOCK):
            previous = orjson.loads(storage.read(SCHEMA_FILE)) if storage.exists(SCHEMA_FILE) else {"columns": {}}
            catalog, changes = update_catalog(previous, column_paths(schema), partition)
            if changes:
                history = storage.read(HISTORY_FILE) if storage.exists(HISTORY_FILE) else b""
                storage.write(HISTORY_FILE, history + b"".join(orjson.dumps(change) + b"\n" for change in changes))
            storage.write(SCHEMA_FILE, orjson.dumps(catalog, option=orjson.OPT_INDENT_2))
        return dg.MaterializeResult(
            metadata={
                "columns": len(catalog["columns"]),
                "dagster/column_schema": _table_schema(schema),
                "added": dg.MetadataValue.json([c["path"] for c in changes if c["change"] == "added"]),
                "type changes": dg.MetadataValue.json([c for c in changes if c["change"] == "type_changed"]),
                "path": dg.MetadataValue.path(storage.uri(SCHEMA_FILE)),
            }
        )

    return [raw, flattened, ctr, ctr_catalog]


@dg.asset(key=GLUE_TABLE, deps=[CATALOG_ASSET], group_name="warehouse", kinds={"glue", "athena"})
def ctr_glue_table(storage: S3Storage, aws: AwsClients, settings: CtrSettings):
    """The ctr table in the Glue Data Catalog (CTR_GLUE_DATABASE), partitioned by dt with partition
    projection, so Athena, Redshift Spectrum and QuickSight read what the pipeline writes."""
    with closing(scratch_connection()) as connection:
        schema, per_file = table_schema(connection, storage)
    if not per_file:
        raise dg.Failure("ctr_glue_table: the ctr table has no data yet; materialize ctr first")
    dates = sorted(key.split("dt=")[1].split("/")[0] for key in per_file)
    change = register_table(aws.client("glue"), settings.glue_database, settings.glue_table,
                            storage.uri(TABLE_PREFIX), schema, dates)
    return dg.MaterializeResult(
        metadata={
            "table": f"{settings.glue_database}.{settings.glue_table}",
            "created": change.table_created,
            "updated": change.table_updated,
            "partitions added": dg.MetadataValue.json(change.partitions_added),
            "partitions updated": change.partitions_updated,
            "columns": dg.MetadataValue.md(markdown_table(
                ["column", "Hive type"], [(c["Name"], c["Type"]) for c in change.columns], limit=len(change.columns))),
            "location": dg.MetadataValue.path(storage.uri(TABLE_PREFIX)),
        }
    )


def update_catalog(previous: dict, paths: dict[str, str], partition: str | None) -> tuple[dict, list[dict]]:
    """Fold the table's current column paths into the catalog; return it and the changes as events."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    known = previous.get("columns", {})
    columns, changes = {}, []
    for path, kind in paths.items():
        entry = dict(known.get(path) or {"first_seen_at": now, "first_seen_partition": partition})
        if path not in known:
            changes.append({"at": now, "path": path, "change": "added", "type": kind, "partition": partition})
        elif entry.get("type") != kind:
            changes.append({"at": now, "path": path, "change": "type_changed", "from": entry.get("type"), "to": kind})
        entry["type"] = kind
        columns[path] = entry
    return {"updated_at": now, "columns": columns}, changes


def _flatten_metadata(report: FlattenReport, rate: float) -> dict:
    totals = report.totals
    return {
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


def _table_rows(connection, storage: Storage) -> int:
    files = sql_text(storage.uri(TABLE_PREFIX) + "*/*.parquet")
    return connection.sql(f"SELECT count(*) FROM read_parquet({files}, union_by_name = true)").fetchall()[0][0]


def _table_schema(schema: dict) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, render(kind)) for name, kind in schema.items()])
