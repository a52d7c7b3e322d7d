"""DuckDB over the ctr table: the `ctr` view of a snapshot, the dashboard aggregates, the warehouse file that
holds them for any DuckDB client, and bounded scratch connections."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import duckdb
from dagster_duckdb import DuckDBResource

from ctr_assets.lake.iceberg import (
    TableLocation,
    glob_literal,
    load_table,
    read_snapshot_sql,
    snapshot_files,
)
from ctr_assets.lake.layout import DASHBOARDS
from ctr_assets.lake.storage import Storage, remove_abandoned, staged_file, staged_folder
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
HOLDER = re.compile(r"Conflicting lock is held in (.+? \(PID \d+\))")  # in DuckDB's lock error


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse file open read-write; the message names it."""


class Warehouse(DuckDBResource):
    """The DuckDB file `database`, which the pipeline never changes in place: a connection works on a
    private copy, which replaces the file in one rename when the block ends cleanly. So a client holding
    the file open read-only never holds up a run (it keeps the version it opened until it opens it again),
    and nobody sees a half-built file. A client holding it open read-write would lose what it writes to the
    replaced file: the run then fails at once, naming that process. Runs build one at a time (a lock beside
    the file, released when its holder ends, however it ends), so none undoes another's refresh."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        target = Path(self.database).expanduser().absolute()
        with _turn(target), staged_folder() as folder:
            remove_abandoned(target.parent, ours_only=True)
            _refuse_writers(target)
            # Built under a name of our own: DuckDB misreads some characters in a path ('?', '\').
            build = folder / "warehouse.duckdb"
            if target.is_file() and not target.is_symlink():  # a link is replaced, never followed
                shutil.copyfile(target, build)
            connection = duckdb.connect(str(build), config=self.connection_config)
            try:
                yield connection
            finally:
                connection.close()
            staged = staged_file(target.parent)
            try:
                shutil.copyfile(build, staged)
                Path(f"{target}.wal").unlink(missing_ok=True)  # left by a writer that died; it would not match
                os.replace(staged, target)
            finally:
                staged.unlink(missing_ok=True)


@contextmanager
def _turn(target: Path) -> Iterator[None]:
    """Wait for the builders of `target` ahead of this one; the lock ends with its process."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def _refuse_writers(target: Path) -> None:
    """Fail at once when another process holds `target` open read-write (DuckDB then refuses even a
    read-only connection); readers are no obstacle."""
    if not target.is_file():
        return
    try:
        duckdb.connect(str(target), read_only=True).close()
    except duckdb.Error as error:
        if "Could not set lock" not in str(error):
            return  # a file DuckDB cannot open is replaced all the same
        holder = HOLDER.search(str(error))
        raise WarehouseBusy(
            f"{target} is open read-write in {holder[1] if holder else 'another process'}: close it or open it "
            "read-only (a read-only client never holds up a run); this run would replace the file under it"
        ) from None


def bounded_config(memory_mb: int) -> dict[str, Any]:
    """What holds every DuckDB connection of the pipeline to `memory_mb` (CTR_DUCKDB_MEMORY_MB): beyond it
    DuckDB spills to `spill_folder()`, so a busy day or a long backlog costs disk, not memory."""
    threads = max(1, min(os.cpu_count() or 1, memory_mb // MEMORY_PER_THREAD_MB))
    return {"memory_limit": f"{memory_mb}MB", "threads": threads, "temp_directory": spill_folder()}


def scratch_connection(memory_mb: int = 1024) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for merge work, bounded by `bounded_config`; rows need not keep their order."""
    return duckdb.connect(config={**bounded_config(memory_mb), "preserve_insertion_order": False})


def spill_folder() -> str:
    """Where the pipeline's DuckDB connections spill what does not fit in their memory."""
    return os.path.join(tempfile.gettempdir(), "ctr_assets_duckdb")


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
    connection.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_text(glob_literal(storage.uri(key)))})")
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
