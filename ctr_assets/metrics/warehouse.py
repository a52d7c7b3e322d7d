"""DuckDB over the ctr table: the `ctr` view of a snapshot, the dashboard aggregates, and bounded scratch
connections."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import duckdb

from ctr_assets.lake.iceberg import (
    TableLocation,
    load_table,
    read_snapshot_sql,
    snapshot_files,
)
from ctr_assets.lake.layout import DASHBOARDS
from ctr_assets.lake.storage import Storage
from ctr_assets.records.schema import sql_text
from ctr_assets.settings import CtrSettings

# The original walkthrough's two visuals, then the Connect metrics (design section 6); each name is an
# asset, a DuckDB table, dashboards/<name>.parquet and sql/<name>.sql.
AGGREGATES = (
    "contacts_per_agent",
    "agent_queue_contacts",
    "queue_interval_metrics",
    "daily_summary",
    "agent_performance",
    "disconnect_reasons",
)
# Views over `ctr` that need no setting, refreshed with it: sql/<name>.sql, in dependency order.
VIEWS = ("queues", "contact_facts")
# What the aggregates count from, under the metric settings: the table sql/metric_settings.sql, the macros of
# sql/metric_macros.sql, then these views.
METRIC_VIEWS = ("counted_contacts", "interval_counts", "agent_counts")
# DuckDB's JSON and Parquet readers need about this much per thread, whatever the size of the data; a
# smaller memory bound gets fewer threads, not a failed run.
MEMORY_PER_THREAD_MB = 128


def scratch_connection(memory_mb: int = 1024) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for merge work, held to `memory_mb` (CTR_DUCKDB_MEMORY_MB): beyond it, DuckDB
    spills to the temp folder, so a busy day or a long backlog costs disk, not memory."""
    connection = duckdb.connect()
    connection.execute(f"SET memory_limit = '{memory_mb}MB'")
    connection.execute(f"SET threads = {max(1, min(os.cpu_count() or 1, memory_mb // MEMORY_PER_THREAD_MB))}")
    connection.execute(f"SET temp_directory = {sql_text(tempfile.gettempdir() + '/ctr_assets_duckdb')}")
    connection.execute("SET preserve_insertion_order = false")
    return connection


def refresh_ctr_view(connection: Any, storage: Storage, table: TableLocation, snapshot_id: int | None = None) -> bool:
    """(Re)create the `ctr` view, exactly the rows of the table's current snapshot (or of `snapshot_id`),
    and the views over it; False while the table has no rows yet. The view names that snapshot's files,
    so it shows the table as of this call: a commit made later is seen at the next refresh."""
    storage.attach(connection)
    query = read_snapshot_sql(snapshot_files(load_table(table), snapshot_id))
    if query is None:
        return False
    connection.execute(f"CREATE OR REPLACE VIEW ctr AS {query}")
    create_views(connection)
    return True


def create_views(connection: Any) -> None:
    """(Re)create the views over whatever `ctr` the connection has."""
    for name in VIEWS:
        connection.execute(f"CREATE OR REPLACE VIEW {name} AS {metric_sql(name)}")


def metric_sql(name: str) -> str:
    return resources.files("ctr_assets.metrics").joinpath("sql", f"{name}.sql").read_text()


def prepare_metrics(connection: Any, settings: CtrSettings, as_of: datetime | None = None) -> None:
    """Record the metric settings and (re)create the views the aggregates count from; `as_of` (default now) is
    when the report is made, which decides whether the last interval is over."""
    record_settings(connection, settings, as_of)
    for name in METRIC_VIEWS:
        connection.execute(f"CREATE OR REPLACE VIEW {name} AS {metric_sql(name)}")


def record_settings(connection: Any, settings: CtrSettings, as_of: datetime | None = None) -> None:
    """The metric settings as the `metric_settings` table, and the rate macros that read rows of counts."""
    moment = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
    parameters = {
        "service_level_seconds": settings.service_level_seconds,
        "service_level_target": settings.service_level_target,
        "abandonment_rate_limit": settings.abandonment_rate_limit,
        "alert_min_queued": settings.alert_min_queued,
        "report_timezone": settings.report_timezone,
        "interval_minutes": settings.interval_minutes,
        "interval_rule": settings.interval_rule,
        "as_of": moment,
    }
    connection.execute(f"CREATE OR REPLACE TABLE metric_settings AS {metric_sql('metric_settings')}", parameters)
    connection.execute(metric_sql("metric_macros"))


def build_aggregate(connection: Any, storage: Storage, name: str) -> int:
    """Materialize one aggregate (after `prepare_metrics`) as a DuckDB table and as dashboards/<name>.parquet;
    returns its rows."""
    connection.execute(f"CREATE OR REPLACE TABLE {name} AS {metric_sql(name)}")
    with storage.writer(f"{DASHBOARDS}{name}.parquet") as staged:
        connection.execute(f"COPY {name} TO {sql_text(staged.as_posix())} (FORMAT parquet)")
    return connection.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0]


def read_aggregate(connection: Any, storage: Storage, name: str) -> bool:
    """A view `name` over dashboards/<name>.parquet, as the last build wrote it; False when there is none."""
    key = f"{DASHBOARDS}{name}.parquet"
    if not storage.exists(key):
        return False
    storage.attach(connection)
    connection.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_text(storage.uri(key))})")
    return True


def fetch_table(connection: Any, query: str) -> tuple[list[str], list[tuple]]:
    relation = connection.sql(query)
    return list(relation.columns), relation.fetchall()


def markdown_table(columns: list[str], rows: list[tuple], limit: int = 10) -> str:
    """A Markdown preview for the Dagster UI (pandas' to_markdown would need one more dependency), with numbers
    rounded to two decimals and times to the minute, as a person reads them."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_preview_cell(value) for value in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n… {len(rows) - limit} more rows")
    return "\n".join(lines)


def _preview_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value).replace("|", "\\|")
