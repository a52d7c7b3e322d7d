"""DuckDB over the ctr table: the `ctr` view of a snapshot, the dashboard aggregates, and bounded scratch
connections."""

from __future__ import annotations

import re
import tempfile
from importlib import resources
from typing import Any, Mapping

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
# Views over `ctr` that the aggregates share, refreshed with it: sql/<name>.sql.
VIEWS = ("contact_facts",)
SCRATCH_MEMORY_LIMIT = "1GB"
_PARAMETER = re.compile(r"\$(\w+)")
_COMMENT = re.compile(r"--[^\n]*")


def scratch_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for merge work, bounded so the whole pipeline stays under 1.5 GB."""
    connection = duckdb.connect()
    connection.execute(f"SET memory_limit = '{SCRATCH_MEMORY_LIMIT}'")
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
    for name in VIEWS:
        connection.execute(f"CREATE OR REPLACE VIEW {name} AS {aggregate_sql(name)}")
    return True


def aggregate_sql(name: str) -> str:
    return resources.files("ctr_assets.metrics").joinpath("sql", f"{name}.sql").read_text()


def metric_parameters(settings: CtrSettings) -> dict[str, object]:
    """The settings the metric SQL reads as `$name` parameters."""
    return {"service_level_seconds": settings.service_level_seconds, "report_timezone": settings.report_timezone}


def build_aggregate(connection: Any, storage: Storage, name: str, parameters: Mapping[str, object]) -> int:
    """Materialize one aggregate as a DuckDB table and as dashboards/<name>.parquet; returns its rows.

    The query gets the `parameters` it names (DuckDB refuses unused ones)."""
    sql = aggregate_sql(name)
    used = set(_PARAMETER.findall(_COMMENT.sub("", sql)))
    connection.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}", {key: parameters[key] for key in used})
    with storage.writer(f"{DASHBOARDS}{name}.parquet") as staged:
        connection.execute(f"COPY {name} TO {sql_text(staged.as_posix())} (FORMAT parquet)")
    return connection.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0]


def fetch_table(connection: Any, query: str) -> tuple[list[str], list[tuple]]:
    relation = connection.sql(query)
    return list(relation.columns), relation.fetchall()


def markdown_table(columns: list[str], rows: list[tuple], limit: int = 10) -> str:
    """A Markdown preview for the Dagster UI (pandas' to_markdown would need one more dependency)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if value is None else str(value) for value in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n… {len(rows) - limit} more rows")
    return "\n".join(lines)
