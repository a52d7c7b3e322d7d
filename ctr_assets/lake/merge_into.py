"""The merge as one `MERGE INTO` statement, for engines that hold the table themselves (Athena; DuckDB in the
tests that hold this merge to the local one): the statement, the query counting what it will change, the
table rules, and the steps around them.

The steps: the batch is staged and typed for the table (`stage_flatfiles`, as the local merge starts),
deduplicated within itself by the local merge's own order (a target row matched by two source rows is an
error in MERGE), the table's schema is evolved with pyiceberg (metadata only), the engine stages the
batch where it can read it, and one MERGE applies it. Its `WHEN MATCHED` condition is the dedup rule
rendered from records/dedup.py, so a stored copy keeps a complete tie. An updated row takes every column
from the batch (columns the batch lacks become null), as the local merge replaces a row whole, and its
new `initiationtimestamp` puts it in its new day (Iceberg's hidden partitioning). Stored copies are
looked for only in the batch's initiation days and `window_days` either side, so an hourly merge reads
days, not all history; a stored copy further away is not matched, its contact is inserted a second
time, and `ctr:contactid_unique` reports it.

The text is plain SQL in one of two dialects: Athena's (Trino) and DuckDB's. They differ in type names
and lambdas only; a struct is rebuilt field by field in both, in the target's order (Trino casts rows by
position), so the DuckDB tests check the very structure Athena runs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Callable, Iterable, Mapping, Protocol

from ctr_assets.lake.iceberg import TableLocation, catalog_errors, load_catalog, schema_tree
from ctr_assets.lake.storage import Storage
from ctr_assets.lake.table import HASH, ORIGIN, ROW, WINNER_ORDER, MergeResult, _evolve_schema, stage_flatfiles
from ctr_assets.records.columns import variant_column
from ctr_assets.records.dedup import PRIMARY_KEY, outranks
from ctr_assets.records.schema import Type, quote, relation_schema, render

# Aliases of the two sides; a record's column names are `\w+` (rule 2), so none can be taken for one.
STORED, BATCH = '"ctr:stored"', '"ctr:batch"'
BATCH_WINNERS = "batch_winners"  # the DuckDB temp table of the deduplicated batch
INITIATION = quote("initiationtimestamp")
RULE_SAMPLE = 5  # contactids a table rule names per violation


@dataclass(frozen=True)
class Dialect:
    """How one engine spells types and lambdas; everything else in these statements is common SQL."""

    name: str
    scalars: Mapping[str, str]
    lambda_: Callable[[str, str], str]  # (variable, body) -> a lambda
    transform: str  # the function applying a lambda to each element of a list

    def type(self, kind: Type) -> str:
        if self.name == "duckdb":
            return render(kind)
        if isinstance(kind, dict):
            return "ROW(" + ", ".join(f"{quote(name)} {self.type(sub)}" for name, sub in kind.items()) + ")"
        if isinstance(kind, list):
            return f"ARRAY({self.type(kind[0])})"
        return self.scalars.get(kind, kind.lower())


ATHENA = Dialect("athena", {"VARCHAR": "varchar", "BIGINT": "bigint", "INTEGER": "integer", "DOUBLE": "double",
                            "FLOAT": "real", "BOOLEAN": "boolean", "TIMESTAMP": "timestamp(6)", "DATE": "date"},
                 lambda variable, body: f"{variable} -> {body}", "transform")
DUCKDB = Dialect("duckdb", {}, lambda variable, body: f"lambda {variable}: {body}", "list_transform")


def value(expr: str, source: Type | None, target: Type, dialect: Dialect, depth: int = 0) -> str:
    """`expr`, of the batch's type `source` (None: the batch has no such column), as a value of the table's
    type `target`: a struct rebuilt in the target's field order, the fields the batch lacks as null."""
    if source is None:
        return "NULL"
    if source == target:
        return expr
    if isinstance(source, dict) and isinstance(target, dict):
        fields = ", ".join(value(f"{expr}.{quote(name)}", source.get(name), kind, dialect, depth)
                           for name, kind in target.items())
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE CAST(ROW({fields}) AS {dialect.type(target)}) END"
    if isinstance(source, list) and isinstance(target, list):
        item = f"item{depth}"
        return f"{dialect.transform}({expr}, {dialect.lambda_(item, value(item, source[0], target[0], dialect, depth + 1))})"
    return f"CAST({expr} AS {dialect.type(target)})"


def scope(days: Iterable[date], window_days: int) -> list[tuple[date, date]]:
    """The initiation days a merge looks in for stored copies: each of `days` with `window_days` either side,
    as [first, end) ranges."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        first, end = day - timedelta(days=window_days), day + timedelta(days=window_days + 1)
        if ranges and first <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(end, ranges[-1][1]))
        else:
            ranges.append((first, end))
    return ranges


def _matches(ranges: list[tuple[date, date]]) -> str:
    """A stored copy of the same contact, within the scope (a filter on the partition source, so the engine
    reads only those days)."""
    within = " OR ".join(f"({STORED}.{INITIATION} >= TIMESTAMP '{first} 00:00:00' AND "
                         f"{STORED}.{INITIATION} < TIMESTAMP '{end} 00:00:00')" for first, end in ranges)
    return f"{STORED}.{quote(PRIMARY_KEY)} = {BATCH}.{quote(PRIMARY_KEY)} AND ({within})"


def merge_statement(table: str, batch: str, target: dict[str, Type], source: dict[str, Type],
                    ranges: list[tuple[date, date]], dialect: Dialect) -> str:
    """The batch (columns `source`) into the table (columns `target`): a contact's stored copy is replaced when
    the batch's copy outranks it, a contact not stored in the scope is inserted."""
    values = {name: value(f"{BATCH}.{quote(name)}", source.get(name), kind, dialect) for name, kind in target.items()}
    updates = ",\n    ".join(f"{quote(name)} = {expr}" for name, expr in values.items() if name != PRIMARY_KEY)
    return (
        f"MERGE INTO {table} AS {STORED}\n"
        f"USING {batch} AS {BATCH}\n"
        f"ON {_matches(ranges)}\n"
        f"WHEN MATCHED AND ({outranks(BATCH, STORED)}) THEN UPDATE SET\n    {updates}\n"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(map(quote, values))})\n"
        f"VALUES ({', '.join(values.values())})"
    )


def changes_statement(table: str, batch: str, ranges: list[tuple[date, date]]) -> str:
    """What the MERGE of the same batch will change, counted per new day and stored day (null: inserted).
    The same match and rule, so it counts exactly the rows the MERGE writes (MERGE itself reports no counts)."""
    return (
        f"SELECT CAST({BATCH}.{INITIATION} AS DATE) AS day, CAST({STORED}.{INITIATION} AS DATE) AS stored_day, "
        f"count(*) AS contacts\n"
        f"FROM {batch} AS {BATCH} LEFT JOIN {table} AS {STORED} ON {_matches(ranges)}\n"
        f"WHERE {STORED}.{quote(PRIMARY_KEY)} IS NULL OR ({outranks(BATCH, STORED)})\n"
        f"GROUP BY 1, 2"
    )


@dataclass(frozen=True)
class Changes:
    inserted: int
    updated: int
    moved: int  # updated rows whose new initiation day is another day
    days: list[str]  # every day whose rows change: where winners go, and where the copies they replace were


def count_changes(rows: Iterable[tuple[Any, Any, Any]]) -> Changes:
    """The result of `changes_statement`, as the engine returns it (dates, or the text of dates)."""
    inserted = updated = moved = 0
    days: set[str] = set()
    for day, stored_day, contacts in rows:
        day, stored_day, contacts = str(day), str(stored_day) if stored_day not in (None, "") else None, int(contacts)
        days.add(day)
        if stored_day is None:
            inserted += contacts
            continue
        days.add(stored_day)
        updated += contacts
        moved += contacts if stored_day != day else 0
    return Changes(inserted, updated, moved, sorted(days))


def table_rules_statement(table: str, rules: Mapping[str, str]) -> str:
    """The table's row count (the row whose rule is null), then per rule its violations and the first
    `RULE_SAMPLE` violating contactids, in one query. Each rule selects the contactid of every violating row
    from `ctr` (the local checks' own SQL)."""
    violations = "\n    UNION ALL\n    ".join(f"SELECT '{name}' AS rule, contactid FROM ({sql})" for name, sql in rules.items())
    return (
        f"WITH ctr AS (SELECT * FROM {table}),\n"
        f"violations AS (\n    {violations}\n),\n"
        "ranked AS (\n"
        "    SELECT rule, contactid, count(*) OVER (PARTITION BY rule) AS violations,\n"
        "           row_number() OVER (PARTITION BY rule ORDER BY contactid) AS sample\n"
        "    FROM violations\n"
        ")\n"
        "SELECT CAST(NULL AS varchar) AS rule, CAST(NULL AS varchar) AS contactid, count(*) AS violations FROM ctr\n"
        "UNION ALL\n"
        f"SELECT rule, contactid, violations FROM ranked WHERE sample <= {RULE_SAMPLE}"
    )


def rule_results(rows: Iterable[tuple[Any, Any, Any]], rules: Iterable[str]) -> tuple[int, dict[str, tuple[int, list]]]:
    """The result of `table_rules_statement`: the row count, and per rule its violations and sample."""
    total, found = 0, {name: (0, []) for name in rules}
    for rule, contactid, count in rows:
        if rule in (None, ""):
            total = int(count)
        else:
            found[rule] = (int(count), sorted(found[rule][1] + [contactid], key=str))
    return total, found


def stage_batch_winners(connection: Any) -> int:
    """The staged `incoming` records deduplicated within themselves by the local merge's own order (every
    copy in a batch has the same origin), as the temp table `batch_winners` without the merge's helper
    columns; returns how many."""
    connection.execute(
        f"CREATE OR REPLACE TEMP TABLE {BATCH_WINNERS} AS SELECT * EXCLUDE ({ROW}, {HASH}, {ORIGIN}) "
        f"FROM (SELECT *, 1 AS {ORIGIN} FROM incoming) "
        f"QUALIFY row_number() OVER (PARTITION BY {PRIMARY_KEY} ORDER BY {WINNER_ORDER}) = 1"
    )
    return connection.sql(f"SELECT count(*) FROM {BATCH_WINNERS}").fetchall()[0][0]


class Engine(Protocol):
    """What runs the statements: it names the table, stages the batch where it can read it, and runs SQL."""

    dialect: Dialect

    def table(self, location: TableLocation) -> str: ...

    def staged(self, connection: Any, storage: Storage, location: TableLocation) -> AbstractContextManager[str]:
        """The `batch_winners` of `connection` where the engine reads them, by the name to read them by."""

    def rows(self, sql: str, purpose: str) -> list[tuple]: ...


def merge_into(connection: Any, storage: Storage, location: TableLocation, flatfiles: dict[str, int], engine: Engine,
               window_days: int, arrival_hours: str | None = None) -> MergeResult:
    """Merge the records of flatfiles (key -> size) into the table with one MERGE run by `engine`."""
    staged = stage_flatfiles(connection, storage, location, flatfiles)
    if staged is None:
        return MergeResult()
    result = MergeResult(variant_columns=[variant_column(name) for name in staged.conflicts], attempts=1)
    result.records_read = connection.sql("SELECT count(*) FROM incoming").fetchall()[0][0]
    result.duplicates_in_batch = result.records_read - stage_batch_winners(connection)
    days = [day for (day,) in connection.sql(f"SELECT DISTINCT CAST({INITIATION} AS DATE) FROM {BATCH_WINNERS}").fetchall()]
    ranges = scope(days, window_days)
    source = relation_schema(connection.sql(f"SELECT * FROM {BATCH_WINNERS} LIMIT 0"))
    with catalog_errors(location):
        table, result.new_columns = _evolve_schema(location, load_catalog(location), staged.target, arrival_hours)
    before = table.current_snapshot()
    target = schema_tree(table.schema())
    with engine.staged(connection, storage, location) as batch:
        changes = count_changes(engine.rows(changes_statement(engine.table(location), batch, ranges), "count changes"))
        if changes.inserted or changes.updated:
            engine.rows(merge_statement(engine.table(location), batch, target, source, ranges, engine.dialect), "merge")
    result.rows_inserted, result.rows_updated, result.rows_moved = changes.inserted, changes.updated, changes.moved
    result.days_written = changes.days
    table.refresh()
    after = table.current_snapshot()
    changed = after is not None and (before is None or after.snapshot_id != before.snapshot_id)
    result.snapshot_id = after.snapshot_id if changed else None
    result.schema = schema_tree(table.schema())
    return result
