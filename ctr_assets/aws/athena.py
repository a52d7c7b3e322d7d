"""Amazon Athena doing the table-wide work on the ctr table in the Glue Data Catalog (CTR_MERGE_ENGINE=athena,
design §8): the merge as one MERGE INTO (lake/merge_into.py), the table rules, and upkeep (OPTIMIZE, VACUUM).

Queries go through boto3 (our `AwsClients`: the standard AWS chain and botocore's retries) rather than
dagster-aws's `AthenaClient`, which keeps the query id, the statistics and the result location to itself.
Each query is polled to its end and reported with its id, state, data scanned and a cost estimate; a failed
one is one line naming the setting or the permission to check.

The batch reaches Athena as an Iceberg table of its own in the table's Glue database
(`<table>__batch_<id>`, files under `athena/staging/`), written by DuckDB with the Iceberg field ids and
committed by pyiceberg, so Athena reads exactly the types the table has; it is dropped after the merge,
and maintenance drops any a killed merge left behind.
"""

from __future__ import annotations

import math
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from pyiceberg.exceptions import NoSuchTableError

from ctr_assets.aws.clients import CREDENTIALS, AwsClients, explain
from ctr_assets.lake.iceberg import (
    TableLocation,
    catalog_errors,
    field_ids,
    iceberg_schema_of,
    load_catalog,
    load_table,
    replace_files,
)
from ctr_assets.lake.maintenance import ORPHAN_MIN_AGE, keep_what_expiring_snapshots_merged
from ctr_assets.lake.merge_into import (
    ATHENA,
    BATCH_WINNERS,
    merge_into,
    rule_results,
    table_rules_statement,
)
from ctr_assets.lake.storage import Storage, StorageError
from ctr_assets.lake.table import ARRIVAL_HOURS, MergeResult
from ctr_assets.records.schema import relation_schema, sql_text

RESULTS_PREFIX = "athena/results/"  # the default output location, in the storage
STAGING_PREFIX = "athena/staging/"  # staged batches, one folder per batch table
BATCH_INFIX = "__batch_"
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
# Athena bills the bytes a query scans, rounded up to a megabyte, at least 10 MB per query; failed queries
# and DDL are free.
MEGABYTE, TERABYTE, MINIMUM_BILLED = 2**20, 2**40, 10 * 2**20
VACUUM_AGE = "vacuum_max_snapshot_age_seconds"  # the Athena table property VACUUM expires snapshots by
ACCESS = ("Insufficient permissions", "Insufficient Lake Formation", "not authorized", "AccessDenied", "Access Denied")
TABLE_PERMISSIONS = ("glue:GetDatabase, glue:GetTable, glue:UpdateTable and s3:GetObject/PutObject/DeleteObject on the "
                     "table's files, and with Lake Formation SELECT, INSERT, DELETE and ALTER on the table")


@dataclass
class QueryRun:
    """One Athena query as the metadata reports it."""

    purpose: str
    query_id: str
    state: str
    data_scanned_bytes: int
    engine_ms: int
    cost_usd: float


def cost_estimate(scanned_bytes: int, state: str, price_per_tb: float) -> float:
    if state == "FAILED":
        return 0.0
    billed = max(MINIMUM_BILLED, math.ceil(scanned_bytes / MEGABYTE) * MEGABYTE)
    return billed / TERABYTE * price_per_tb


@dataclass
class AthenaMergeResult(MergeResult):
    queries: list[QueryRun] = field(default_factory=list)


@dataclass
class AthenaMaintenanceReport:
    snapshot_retention_seconds: int = 0
    batches_removed: int = 0  # staging tables and files left by killed merges
    queries: list[QueryRun] = field(default_factory=list)

    def describe(self) -> str:
        scanned = sum(query.data_scanned_bytes for query in self.queries)
        return (f"ran {', '.join(query.purpose for query in self.queries) or 'nothing'} through Athena "
                f"({scanned / MEGABYTE:.1f} MB scanned, about ${sum(q.cost_usd for q in self.queries):.4f}); "
                f"removed {self.batches_removed} batches left by killed merges")


class AthenaEngine(dg.ConfigurableResource):
    """Athena (serverless Trino) running the merge, the table rules and upkeep on the Glue table."""

    aws: AwsClients
    workgroup: str = "primary"
    output_location: str = ""  # s3:// folder for query results; empty: the workgroup's
    merge_window_days: int = 2
    price_per_tb: float = 5.0
    poll_seconds: float = 2.0  # the longest wait between two polls (the first is 0.25 s)
    # Athena stops a DML query at its own timeout (30 minutes unless raised); this only guards a lost poll.
    timeout_seconds: float = 4 * 3600

    def merge(self, connection: Any, storage: Storage, location: TableLocation, flatfiles: dict[str, int],
              properties: dict[str, str] | None = None) -> AthenaMergeResult:
        """Merge flatfiles (key -> size) into the table with one MERGE INTO run by Athena."""
        session = _Session(self, location.namespace)
        result = merge_into(connection, storage, location, flatfiles, session, self.merge_window_days,
                            (properties or {}).get(ARRIVAL_HOURS))
        return AthenaMergeResult(**vars(result), queries=session.queries)

    def table_rules(self, location: TableLocation, rules: dict[str, str]) -> tuple[int, dict, list[QueryRun]]:
        """The table's row count and each rule's violations and sample, from one query over the whole table."""
        if load_table(location) is None:
            return 0, {name: (0, []) for name in rules}, []
        session = _Session(self, location.namespace)
        total, found = rule_results(session.rows(table_rules_statement(session.table(location), rules), "table rules"),
                                    rules)
        return total, found, session.queries

    def maintain(self, storage: Storage, location: TableLocation, retention_hours: float,
                 now: datetime | None = None) -> AthenaMaintenanceReport:
        """OPTIMIZE (compaction, deletes folded in) and VACUUM (snapshots older than the retention expired,
        files no snapshot needs removed), once what the expiring snapshots merged is in the ledger."""
        now = now or datetime.now(timezone.utc)
        report = AthenaMaintenanceReport(snapshot_retention_seconds=round(retention_hours * 3600))
        report.batches_removed = remove_abandoned_batches(storage, location, now - ORPHAN_MIN_AGE)
        table = load_table(location)
        if table is None or table.current_snapshot() is None:
            return report
        keep_what_expiring_snapshots_merged(storage, table, retention_hours, now)
        session = _Session(self, location.namespace)
        name = session.table(location)
        if table.properties.get(VACUUM_AGE) != str(report.snapshot_retention_seconds):
            session.rows(f"ALTER TABLE {name} SET TBLPROPERTIES ('{VACUUM_AGE}'='{report.snapshot_retention_seconds}')",
                         "snapshot retention")
        session.rows(f"OPTIMIZE {name} REWRITE DATA USING BIN_PACK", "compaction")
        session.rows(f"VACUUM {name}", "snapshot expiry and unused files")
        report.queries = session.queries
        return report

    def run(self, sql: str, purpose: str, database: str) -> QueryRun:
        """Start a query, poll it to its end (backing off to `poll_seconds`), and report it; a query that
        did not succeed raises one line naming what to check."""
        client = self.aws.client("athena")
        request = {"QueryString": sql, "WorkGroup": self.workgroup, "QueryExecutionContext": {"Database": database}}
        if self.output_location:
            request["ResultConfiguration"] = {"OutputLocation": self.output_location}
        with self._errors("athena:StartQueryExecution"):
            query_id = client.start_query_execution(**request)["QueryExecutionId"]
        deadline, wait = time.monotonic() + self.timeout_seconds, 0.25
        while True:
            with self._errors("athena:GetQueryExecution"):
                execution = client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if state in FINAL_STATES:
                break
            if time.monotonic() > deadline:
                with self._errors("athena:StopQueryExecution"):
                    client.stop_query_execution(QueryExecutionId=query_id)
                raise StorageError(f"Athena query {query_id} ({purpose}) still {state} after {self.timeout_seconds:g} s: "
                                   "stopped it; see the query in the Athena console")
            time.sleep(wait)
            wait = min(wait * 2, self.poll_seconds)
        statistics = execution.get("Statistics", {})
        scanned = int(statistics.get("DataScannedInBytes", 0))
        query = QueryRun(purpose, query_id, state, scanned, int(statistics.get("EngineExecutionTimeInMillis", 0)),
                         cost_estimate(scanned, state, self.price_per_tb))
        if state != "SUCCEEDED":
            raise StorageError(self._explain_failure(query, execution["Status"].get("StateChangeReason", "")))
        return query

    def results(self, query_id: str) -> list[tuple]:
        """A query's rows as Athena gives them (text; null as None), without the header row it adds."""
        client, rows, columns = self.aws.client("athena"), [], None
        with self._errors("athena:GetQueryResults"):
            for page in client.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
                result = page["ResultSet"]
                columns = columns or [column.get("Label", column.get("Name")) for column in
                                      result.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
                rows += [tuple(cell.get("VarCharValue") for cell in row["Data"]) for row in result.get("Rows", [])]
        return rows[1:] if rows and list(rows[0]) == columns else rows

    @contextmanager
    def _errors(self, permission: str) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError) as error:
            message = error.response.get("Error", {}).get("Message", "") if isinstance(error, ClientError) else ""
            if "WorkGroup" in message:
                raise StorageError(f"CTR_ATHENA_WORKGROUP: Athena refused workgroup {self.workgroup!r} ({message}): "
                                   "check the name, that it is enabled and uses engine version 3, and AWS_REGION") from error
            raise StorageError(explain(error, "CTR_ATHENA_WORKGROUP", f"Athena workgroup {self.workgroup}", permission,
                                       "AWS_ENDPOINT_URL_ATHENA")) from error

    def _explain_failure(self, query: QueryRun, reason: str) -> str:
        reason = (reason.splitlines() or [""])[0]
        what = f"Athena query {query.query_id} ({query.purpose}) {query.state}"
        if "output location" in reason.lower() or (self.output_location and self.output_location in reason):
            return (f"CTR_ATHENA_OUTPUT_LOCATION: {what}: {reason}: set it to an s3:// folder the identity can write "
                    "(s3:PutObject, s3:GetBucketLocation), or give the workgroup one")
        if any(sign.lower() in reason.lower() for sign in ACCESS):
            return f"{CREDENTIALS}: {what}: {reason}: the identity needs {TABLE_PERMISSIONS} (see README, Scale out)"
        if "ICEBERG_COMMIT_ERROR" in reason:
            return f"{what}: another writer committed to the table first; nothing of this query landed, run it again"
        return f"{what}: {reason}"


class _Session:
    """The queries of one asset run, in the order they ran: the engine `merge_into` drives."""

    dialect = ATHENA

    def __init__(self, engine: AthenaEngine, database: str):
        self.engine, self.database = engine, database
        self.queries: list[QueryRun] = []

    def table(self, location: TableLocation) -> str:
        return f"{location.namespace}.{location.name}"

    def rows(self, sql: str, purpose: str) -> list[tuple]:
        query = self.engine.run(sql, purpose, self.database)
        self.queries.append(query)
        return self.engine.results(query.query_id) if sql.lstrip().upper().startswith(("SELECT", "WITH")) else []

    @contextmanager
    def staged(self, connection: Any, storage: Storage, location: TableLocation) -> Iterator[str]:
        """`batch_winners` as the Iceberg table `<table>__batch_<id>` in the table's database, dropped after."""
        name = f"{location.name}{BATCH_INFIX}{uuid.uuid4().hex[:12]}"
        catalog = load_catalog(location)
        try:
            with catalog_errors(location):
                types = relation_schema(connection.sql(f"SELECT * FROM {BATCH_WINNERS} LIMIT 0"))
                batch = catalog.create_table((location.namespace, name), iceberg_schema_of(types),
                                             location=storage.uri(f"{STAGING_PREFIX}{name}"),
                                             properties={"format-version": "2"})
                key = f"{STAGING_PREFIX}{name}/data/batch.parquet"
                with storage.writer(key) as path:
                    connection.execute(f"COPY {BATCH_WINNERS} TO {sql_text(path.as_posix())} (FORMAT parquet, "
                                       f"COMPRESSION zstd, FIELD_IDS {field_ids(batch.schema())})")
                replace_files(batch, [], [storage.uri(key)], {})
            yield f"{location.namespace}.{name}"
        finally:
            drop_batch(storage, location, name)


def drop_batch(storage: Storage, location: TableLocation, name: str) -> None:
    """A staged batch's table and files gone."""
    with catalog_errors(location):
        try:
            load_catalog(location).drop_table((location.namespace, name))
        except NoSuchTableError:
            pass
    for item in storage.list(f"{STAGING_PREFIX}{name}/"):
        storage.delete(item.key)


def remove_abandoned_batches(storage: Storage, location: TableLocation, written_before: datetime) -> int:
    """Drop the staged batches of merges killed before they dropped them (nothing written since
    `written_before`); returns how many."""
    newest: dict[str, datetime] = {}
    for item in storage.list(STAGING_PREFIX):
        name = item.key.removeprefix(STAGING_PREFIX).split("/", 1)[0]
        newest[name] = max(newest.get(name, item.last_modified), item.last_modified)
    abandoned = [name for name, moment in newest.items() if moment < written_before
                 and name.startswith(f"{location.name}{BATCH_INFIX}")]
    for name in abandoned:
        drop_batch(storage, location, name)
    return len(abandoned)


def query_metadata(queries: list[QueryRun]) -> dict[str, Any]:
    """What the UI shows of an asset's Athena queries: each one, and the totals."""
    lines = ["| query | id | state | MB scanned | cost (USD, est.) |", "|---|---|---|---|---|"]
    lines += [f"| {q.purpose} | {q.query_id} | {q.state} | {q.data_scanned_bytes / MEGABYTE:.1f} | {q.cost_usd:.6f} |"
              for q in queries]
    return {
        "athena queries": dg.MetadataValue.md("\n".join(lines)),
        "athena query ids": dg.MetadataValue.json([asdict(query) for query in queries]),
        "athena data scanned (bytes)": sum(query.data_scanned_bytes for query in queries),
        "athena cost estimate (USD)": round(sum(query.cost_usd for query in queries), 6),
    }
