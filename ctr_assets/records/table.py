"""Merge flattened records into the Parquet CTR table: one row per contactid, partitioned by initiation date.

Each `dt=` partition is one Parquet file, rewritten whole and published in one step, so readers see the
old file or the new one. The merge is a union with what is already there followed by the dedup rule, so
it is idempotent and can never drop a row: reprocessing any input, in any order, any number of times,
changes nothing (design rules 3 and 7).
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from ctr_assets.records.schema import Type, cast_expression, fits, merge, pin, quote, relation_schema, render
from ctr_assets.storage import Storage

TABLE_PREFIX = "parquet/ctr/"
# Columns the table adds to each CTR: where the winning copy came from and when it arrived.
LINEAGE_COLUMNS = {"_source_key": "VARCHAR", "_arrived_at": "TIMESTAMP"}

# The flatfile each batch line came from, put in front of its record's fields: normalized keys are `\w+`,
# so no record can carry this one.
SOURCE_KEY = "@flatfile"
# The dedup rule: latest LastUpdateTimestamp wins; ties go to the later arrival (object, then key). A copy
# already in the table (`_origin` 0) wins a complete tie, so re-merging the same input rewrites nothing;
# two differing copies with the same timestamp in one object are ordered by a hash of their content.
WINNER_ORDER = (
    "lastupdatetimestamp DESC NULLS LAST, _arrived_at DESC NULLS LAST, _source_key DESC NULLS LAST, "
    "_origin ASC, _row_hash DESC"
)


@dataclass
class MergeResult:
    """What one merge did to the table."""

    records_read: int = 0
    duplicates_in_batch: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    partitions_written: list[str] = field(default_factory=list)
    partitions_widened: list[str] = field(default_factory=list)
    schema: dict[str, Type] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase: read, dedup, write


def partition_file(dt: str) -> str:
    return f"{TABLE_PREFIX}dt={dt}/ctr.parquet"


def table_files(storage: Storage) -> list[str]:
    return [item.key for item in storage.list(TABLE_PREFIX) if item.key.endswith(".parquet")]


def file_schema(connection: Any, storage: Storage, key: str) -> dict[str, Type]:
    return relation_schema(connection.sql(f"SELECT * FROM {_read_partition(storage, key)} LIMIT 0"))


def _read_partition(storage: Storage, key: str) -> str:
    """One partition file as stored: `dt` is in its path, and read as a column it would be written back in."""
    return f"read_parquet({sql_text(storage.uri(key))}, hive_partitioning=false)"


def table_schema(connection: Any, storage: Storage) -> tuple[dict[str, Type], dict[str, dict[str, Type]]]:
    """The table's schema (every partition's merged) and each partition file's own."""
    per_file = {key: file_schema(connection, storage, key) for key in table_files(storage)}
    merged: dict[str, Type] = {}
    for schema in per_file.values():
        merged = merge(merged, schema)
    return merged, per_file


def merge_flatfiles(connection: Any, storage: Storage, flat_keys: Iterable[str]) -> MergeResult:
    """Merge the records of NDJSON flatfiles into the table; `connection` is a scratch DuckDB connection."""
    storage.attach(connection)
    result = MergeResult()
    began = time.perf_counter()
    threads = int(connection.sql("SELECT current_setting('threads')").fetchall()[0][0])
    with _batch_files(storage, flat_keys, parts=threads) as paths:
        current, per_file = table_schema(connection, storage)
        result.schema = current
        if not paths:  # the flatfiles hold no records
            return result
        reader = (
            f"read_json({sql_list(paths)}, format='newline_delimited', records=true, union_by_name=true, "
            "map_inference_threshold=-1, maximum_object_size=67108864"
        )
        detected = relation_schema(connection.sql(f"SELECT * FROM {reader}, sample_size=-1) LIMIT 0"))
        detected.pop(SOURCE_KEY, None)
        target = merge(merge(current, pin(detected)), LINEAGE_COLUMNS)
        batch_columns = {SOURCE_KEY: "VARCHAR", **{name: target[name] for name in pin(detected)}}
        columns = "{" + ", ".join(f"{sql_text(name)}: {sql_text(render(kind))}" for name, kind in batch_columns.items())
        connection.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE incoming AS
            WITH source AS (
                SELECT * EXCLUDE ({quote(SOURCE_KEY)}), {_lineage_from_flatfile(quote(SOURCE_KEY))}
                FROM {reader}, columns={columns}}})
            )
            SELECT *, hash(source) AS _row_hash, 1 AS _origin FROM source
            """
        )
    result.records_read = _scalar(connection, "SELECT count(*) FROM incoming")
    result.seconds["read"] = time.perf_counter() - began
    # The batch's winners as row ids with their partition date: whole records are not copied again.
    connection.execute(
        "CREATE OR REPLACE TEMP TABLE winners AS SELECT rowid AS row, strftime(initiationtimestamp, '%Y-%m-%d') AS dt "
        f"FROM incoming QUALIFY row_number() OVER (PARTITION BY contactid ORDER BY {WINNER_ORDER}) = 1"
    )
    result.duplicates_in_batch = result.records_read - _scalar(connection, "SELECT count(*) FROM winners")
    result.seconds["dedup"] = time.perf_counter() - began - result.seconds["read"]

    for key, schema in per_file.items():
        if not all(fits(kind, target[name]) for name, kind in schema.items()):
            _rewrite_partition(connection, storage, key, schema, target)
            result.partitions_widened.append(key)

    dates = [row[0] for row in connection.sql("SELECT DISTINCT dt FROM winners ORDER BY 1").fetchall()]
    for dt in dates:
        inserted, updated = _merge_partition(connection, storage, dt, target)
        if inserted or updated:
            result.partitions_written.append(partition_file(dt))
        result.rows_inserted += inserted
        result.rows_updated += updated
    result.schema = target
    result.seconds["write"] = time.perf_counter() - began - result.seconds["read"] - result.seconds["dedup"]
    return result


@contextmanager
def _batch_files(storage: Storage, flat_keys: Iterable[str], parts: int) -> Iterator[list[str]]:
    """The flatfiles' lines gathered into `parts` local NDJSON files (one per DuckDB thread), each line
    tagged with its flatfile. DuckDB reads a few large files many times faster than many small ones."""
    with tempfile.TemporaryDirectory(prefix="ctr-merge-") as folder:
        paths = [Path(folder, f"batch-{number}.ndjson") for number in range(parts)]
        sizes = [0] * parts
        with ExitStack() as stack:
            outputs = [stack.enter_context(path.open("wb")) for path in paths]
            for key in flat_keys:
                data = storage.read(key)
                if not data:
                    continue
                # Every line is one flattened record, so it starts with `{`; the tag becomes its first field.
                tag = b'{"' + SOURCE_KEY.encode() + b'":' + orjson.dumps(key) + b","
                part = sizes.index(min(sizes))
                outputs[part].write(tag + data[1:].replace(b"\n{", b"\n" + tag))
                sizes[part] += len(data)
        yield [path.as_posix() for path, size in zip(paths, sizes) if size]


def _winners(candidates: str) -> str:
    """The rows of a table that the dedup rule keeps: ranked on the few columns the rule reads, so the
    sort does not carry whole records."""
    return (
        f"SELECT * FROM {candidates} WHERE rowid IN (SELECT rowid FROM {candidates} "
        f"QUALIFY row_number() OVER (PARTITION BY contactid ORDER BY {WINNER_ORDER}) = 1)"
    )


def _merge_partition(connection: Any, storage: Storage, dt: str, target: dict[str, Type]) -> tuple[int, int]:
    key = partition_file(dt)
    batch = f"SELECT * FROM incoming WHERE rowid IN (SELECT row FROM winners WHERE dt = {sql_text(dt)})"
    if not storage.exists(key):  # a new partition: every winner of the date is a new row
        inserted = _scalar(connection, f"SELECT count(*) FROM winners WHERE dt = {sql_text(dt)}")
        _write_parquet(connection, storage, key, _in_table_order(connection, "incoming", batch, target))
        return inserted, 0
    existing = f"SELECT *, NULL AS _row_hash, 0 AS _origin FROM {_read_partition(storage, key)}"
    connection.execute(f"CREATE OR REPLACE TEMP TABLE candidates AS {existing} UNION ALL BY NAME {batch}")
    connection.execute(f"CREATE OR REPLACE TEMP TABLE merged AS {_winners('candidates')}")
    changed = _scalar(connection, "SELECT count(*) FROM merged WHERE _origin = 1")
    if not changed:
        return 0, 0
    inserted = _scalar(
        connection,
        f"SELECT count(*) FROM merged m WHERE _origin = 1 AND NOT EXISTS "
        f"(SELECT 1 FROM {_read_partition(storage, key)} e WHERE e.contactid = m.contactid)",
    )
    _write_parquet(connection, storage, key, _in_table_order(connection, "merged", "FROM merged", target))
    return inserted, changed - inserted


def _in_table_order(connection: Any, table: str, rows: str, target: dict[str, Type]) -> str:
    """`rows` (of `table`'s columns) with the table's columns in schema order, sorted by contactid."""
    present = _columns(connection, table)
    ordered = ", ".join(quote(name) for name in target if name in present)
    return f"SELECT {ordered} FROM ({rows}) ORDER BY contactid"


def _rewrite_partition(connection: Any, storage: Storage, key: str, schema: dict[str, Type], target: dict[str, Type]) -> None:
    """Widen one partition file's columns to the table's types (a rare schema conflict)."""
    select = ", ".join(
        f"{cast_expression(quote(name), kind, target.get(name, kind))} AS {quote(name)}" for name, kind in schema.items()
    )
    _write_parquet(connection, storage, key, f"SELECT {select} FROM {_read_partition(storage, key)}")


def _write_parquet(connection: Any, storage: Storage, key: str, query: str) -> None:
    with storage.writer(key) as staged:
        connection.execute(f"COPY ({query}) TO {sql_text(staged.as_posix())} (FORMAT parquet, COMPRESSION zstd)")


def _lineage_from_flatfile(column: str) -> str:
    """Raw key and arrival time recovered from the flatfile name (`flatfiles/YYYYMMDDHH<name>`)."""
    name = f"regexp_extract({column}, '([^/]+)$', 1)"
    stamp = f"regexp_extract({name}, '(\\d{{4}}-\\d\\d-\\d\\d-\\d\\d-\\d\\d-\\d\\d)', 1)"
    return (
        f"'raw/' || substr({name}, 1, 4) || '/' || substr({name}, 5, 2) || '/' || substr({name}, 7, 2) || '/' "
        f"|| substr({name}, 9, 2) || '/' || substr({name}, 11) AS _source_key, "
        f"coalesce(try_strptime({stamp}, '%Y-%m-%d-%H-%M-%S'), try_strptime(substr({name}, 1, 10), '%Y%m%d%H'))"
        " AS _arrived_at"
    )


def _columns(connection: Any, table: str) -> set[str]:
    return set(connection.sql(f"SELECT * FROM {table} LIMIT 0").columns)


def _scalar(connection: Any, query: str) -> int:
    return connection.sql(query).fetchall()[0][0]


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(sql_text(value) for value in values) + "]"
