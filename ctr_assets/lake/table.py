"""Merge flattened records into the Parquet CTR table: one row per contactid, partitioned by initiation date.

Each `dt=` partition is one Parquet file, rewritten whole and published in one step, so readers see the
old file or the new one. The merge is a union with what is already there followed by the dedup rule, so
it is idempotent and can never drop a row: reprocessing any input, in any order, any number of times,
changes nothing (design rules 3 and 7).

The dedup rule holds across partitions: a contact's copies are compared wherever their dates put them,
so an updated copy whose InitiationTimestamp moved it to another date replaces the row in the old date
(the row moves). Files gaining rows are published before files only losing them: a run killed between
the two leaves a contact twice (which `ctr:contactid_unique` reports), never missing, and merging the
same flatfiles again completes the move.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from ctr_assets.lake.storage import STAGED_ABANDONED_SECONDS, Storage
from ctr_assets.records._keyscan import first_of_each_shape
from ctr_assets.records.schema import (
    Type,
    cast_expression,
    fits,
    merge,
    pin,
    quote,
    relation_schema,
    render,
)

TABLE_PREFIX = "parquet/ctr/"
# Columns the table adds to each CTR: where the winning copy came from and when it arrived.
LINEAGE_COLUMNS = {"_source_key": "VARCHAR", "_arrived_at": "TIMESTAMP"}
# The flatfile each batch line came from, put in front of its record's fields: normalized keys are `\w+`,
# so no record can carry this one.
SOURCE_KEY = "@flatfile"
BATCH_FOLDER_PREFIX = "ctr-merge-"  # a merge's batch files, in the local temp folder while it runs

# The dedup rule: latest LastUpdateTimestamp wins; ties go to the later arrival (object, then key). A copy
# already in the table (`_origin` 0) wins a complete tie, so re-merging the same input rewrites nothing;
# two differing copies with the same timestamp in one object are ordered by a hash of their content.
WINNER_ORDER = (
    "lastupdatetimestamp DESC NULLS LAST, _arrived_at DESC NULLS LAST, _source_key DESC NULLS LAST, "
    "_origin ASC, _row_hash DESC"
)
RULE_COLUMNS = "contactid, lastupdatetimestamp, _arrived_at, _source_key"


@dataclass
class MergeResult:
    """What one merge did to the table."""

    records_read: int = 0
    duplicates_in_batch: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_moved: int = 0  # older copies removed from another date's partition
    partitions_written: list[str] = field(default_factory=list)
    partitions_widened: list[str] = field(default_factory=list)
    schema: dict[str, Type] = field(default_factory=dict)


def partition_file(dt: str) -> str:
    return f"{TABLE_PREFIX}dt={dt}/ctr.parquet"


def partition_date(key: str) -> str:
    """The `dt` of a partition file's key (`parquet/ctr/dt=2026-11-27/ctr.parquet` -> `2026-11-27`)."""
    return key.rsplit("/", 2)[-2].removeprefix("dt=")


def table_files(storage: Storage) -> list[str]:
    return [item.key for item in storage.list(TABLE_PREFIX) if item.key.endswith(".parquet")]


def file_schema(connection: Any, storage: Storage, key: str) -> dict[str, Type]:
    return relation_schema(connection.sql(f"SELECT * FROM {_read_partition(storage, key)} LIMIT 0"))


def _read_partition(storage: Storage, key: str, row_numbers: bool = False) -> str:
    """One partition file as stored: `dt` is in its path, and read as a column it would be written back in.
    `row_numbers` adds each row's `file_row_number`."""
    numbers = ", file_row_number=true" if row_numbers else ""
    return f"read_parquet({sql_text(storage.uri(key))}, hive_partitioning=false{numbers})"


def table_schema(connection: Any, storage: Storage) -> tuple[dict[str, Type], dict[str, dict[str, Type]]]:
    """The table's schema (every partition's merged) and each partition file's own."""
    storage.attach(connection)
    per_file = {key: file_schema(connection, storage, key) for key in table_files(storage)}
    merged: dict[str, Type] = {}
    for schema in per_file.values():
        merged = merge(merged, schema)
    return merged, per_file


def merge_flatfiles(connection: Any, storage: Storage, flat_keys: Iterable[str]) -> MergeResult:
    """Merge the records of NDJSON flatfiles into the table; `connection` is a scratch DuckDB connection."""
    storage.attach(connection)
    result = MergeResult()
    flat_keys = list(flat_keys)
    if not flat_keys:
        return result
    threads = int(_scalar(connection, "SELECT current_setting('threads')"))
    with _batch_files(storage, flat_keys, parts=threads) as (paths, shape_paths):
        current, per_file = table_schema(connection, storage)
        result.schema = current
        if not paths:  # the flatfiles hold no records
            return result
        detected = relation_schema(connection.sql(f"SELECT * FROM {_json_reader(shape_paths)}, sample_size=-1) LIMIT 0"))
        detected.pop(SOURCE_KEY, None)
        if "contactid" not in detected:  # every flattened record has one: these flatfiles hold no records
            return result
        target = merge(merge(current, pin(detected)), LINEAGE_COLUMNS)
        batch_columns = {SOURCE_KEY: "VARCHAR", **{name: target[name] for name in pin(detected)}}
        columns = "{" + ", ".join(f"{sql_text(name)}: {sql_text(render(kind))}" for name, kind in batch_columns.items())
        connection.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE incoming AS
            WITH source AS (
                SELECT * EXCLUDE ({quote(SOURCE_KEY)}), {_lineage_from_flatfile(quote(SOURCE_KEY))}
                FROM {_json_reader(paths)}, columns={columns}}})
            )
            SELECT *, hash(source) AS _row_hash, 1 AS _origin FROM source
            """
        )
    result.records_read = _scalar(connection, "SELECT count(*) FROM incoming")
    # The batch's winning copy of each contact as its row id and the columns the dedup rule reads: whole
    # records stay in `incoming` and are copied once, into the Parquet file.
    connection.execute(
        f"CREATE OR REPLACE TEMP TABLE batch AS SELECT rowid AS _row, {RULE_COLUMNS}, _origin, _row_hash, "
        f"strftime(initiationtimestamp, '%Y-%m-%d') AS _dt "
        f"FROM incoming QUALIFY row_number() OVER (PARTITION BY contactid ORDER BY {WINNER_ORDER}) = 1"
    )
    result.duplicates_in_batch = result.records_read - _scalar(connection, "SELECT count(*) FROM batch")

    for key, schema in per_file.items():
        if not all(fits(kind, target[name]) for name, kind in schema.items()):
            _rewrite_partition(connection, storage, key, schema, target)
            result.partitions_widened.append(key)

    _select_winners(connection, storage, per_file)
    result.rows_inserted = _scalar(connection, "SELECT count(*) FROM winner WHERE _origin = 1 AND NOT _stored")
    result.rows_updated = _scalar(connection, "SELECT count(*) FROM winner WHERE _origin = 1 AND _stored")
    result.rows_moved = _scalar(connection, "SELECT count(*) FROM evicted")
    gaining = [row[0] for row in connection.sql("SELECT DISTINCT _dt FROM batch ORDER BY 1").fetchall()]
    losing = [row[0] for row in connection.sql("SELECT DISTINCT _dt FROM evicted ORDER BY 1").fetchall()]
    for dt in gaining + [dt for dt in losing if dt not in gaining]:
        _merge_partition(connection, storage, dt, target)
        result.partitions_written.append(partition_file(dt))
    result.schema = target
    return result


@contextmanager
def _batch_files(storage: Storage, flat_keys: list[str], parts: int) -> Iterator[tuple[list[str], list[str]]]:
    """The flatfiles' lines gathered into `parts` local NDJSON files (one per DuckDB thread), each line
    tagged with its flatfile, and beside each the first line of every shape in it (`first_of_each_shape`
    in _keyscan.c), in order, so each column first appears there where it first appears in the batch
    file. DuckDB reads a few large files several times faster than many small ones, and detecting the
    schema from one line per shape gives what detecting it from every line gives, for a fraction of the
    work. One flatfile is in memory at a time. The flatfiles come from `local_paths` (in place on a local
    folder, downloaded in parallel from S3)."""
    remove_abandoned_batch_folders()
    with storage.local_paths(flat_keys) as sources, tempfile.TemporaryDirectory(prefix=BATCH_FOLDER_PREFIX) as folder:
        paths = [Path(folder, f"batch-{number}.ndjson") for number in range(parts)]
        shape_paths = [Path(folder, f"shapes-{number}.ndjson") for number in range(parts)]
        sizes = [0] * parts
        seen: list[set[int]] = [set() for _ in range(parts)]
        with ExitStack() as stack:
            outputs = [stack.enter_context(path.open("wb")) for path in paths]
            shape_outputs = [stack.enter_context(path.open("wb")) for path in shape_paths]
            for key, source in zip(flat_keys, sources):
                data = Path(source).read_bytes()
                if not data.strip():
                    continue
                # Each line is one flattened record: an object that has at least its required fields, so
                # it starts with `{"` and the tag can become its first field. (Splitting and joining is
                # several times faster than replacing `\n{` with the longer tag.)
                tag = b'{"' + SOURCE_KEY.encode() + b'":' + orjson.dumps(key) + b","
                part = sizes.index(min(sizes))
                outputs[part].write(b"".join([tag + line[1:] + b"\n" for line in data.split(b"\n") if line]))
                shape_outputs[part].write(first_of_each_shape(data, seen[part]))
                sizes[part] += len(data)
        used = [number for number, size in enumerate(sizes) if size]
        yield [paths[number].as_posix() for number in used], [shape_paths[number].as_posix() for number in used]


def _json_reader(paths: list[str]) -> str:
    """The start of a `read_json` call on batch files; the caller adds its own last options and `)`."""
    return (
        f"read_json({sql_list(paths)}, format='newline_delimited', records=true, union_by_name=true, "
        "map_inference_threshold=-1, maximum_object_size=67108864"
    )


def remove_abandoned_batch_folders(temp_folder: str | None = None) -> int:
    """Delete batch folders left by merges killed before their cleanup (as old as an abandoned staged
    write: no running merge takes that long); returns how many."""
    cutoff = time.time() - STAGED_ABANDONED_SECONDS
    removed = 0
    for folder in Path(temp_folder or tempfile.gettempdir()).glob(BATCH_FOLDER_PREFIX + "*"):
        try:
            newest = max([folder.stat().st_mtime] + [path.stat().st_mtime for path in folder.iterdir()])
        except OSError:  # removed meanwhile by its own merge
            continue
        if newest < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _select_winners(connection: Any, storage: Storage, per_file: dict[str, dict[str, Type]]) -> None:
    """Apply the dedup rule to the batch and every copy of its contacts already in the table, in any
    partition. Leaves `batch` holding only rows that win, `winner` one row per contact, and `evicted` the
    table's copies that lose to a winner in another date."""
    files = [(storage.uri(key), partition_date(key)) for key in per_file]
    if files:
        connection.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE stored AS
            SELECT {RULE_COLUMNS}, dates.dt AS _dt
            FROM read_parquet({sql_list(uri for uri, _ in files)}, filename = '_file', union_by_name = true,
                              hive_partitioning = false) AS copies
            JOIN (VALUES {", ".join(f"({sql_text(uri)}, {sql_text(dt)})" for uri, dt in files)}) AS dates(uri, dt)
              ON copies._file = dates.uri
            WHERE contactid IN (SELECT contactid FROM batch)
            """
        )
    else:
        connection.execute(f"CREATE OR REPLACE TEMP TABLE stored AS SELECT {RULE_COLUMNS}, _dt FROM batch LIMIT 0")
    # A complete tie between stored copies in two dates (only a table broken by hand has one) goes to
    # the later date, so the choice never depends on file order.
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE winner AS
        SELECT contactid, _origin, _dt, contactid IN (SELECT contactid FROM stored) AS _stored
        FROM (
            SELECT {RULE_COLUMNS}, _dt, _origin, _row_hash FROM batch
            UNION ALL BY NAME
            SELECT *, 0 AS _origin, NULL AS _row_hash FROM stored
        )
        QUALIFY row_number() OVER (PARTITION BY contactid ORDER BY {WINNER_ORDER}, _dt DESC) = 1
        """
    )
    connection.execute("DELETE FROM batch WHERE contactid IN (SELECT contactid FROM winner WHERE _origin = 0)")
    connection.execute(
        "CREATE OR REPLACE TEMP TABLE evicted AS SELECT s.contactid, s._dt FROM stored s "
        "JOIN winner w ON s.contactid = w.contactid AND s._dt <> w._dt"
    )


def _merge_partition(connection: Any, storage: Storage, dt: str, target: dict[str, Type]) -> None:
    """Rewrite one date's file: its rows, less those evicted, with the batch's winners of that date."""
    key = partition_file(dt)
    date = sql_text(dt)
    if not storage.exists(key):  # a new date: every winner of it is a new row
        rows = f"SELECT * FROM incoming WHERE rowid IN (SELECT _row FROM batch WHERE _dt = {date})"
        _write_parquet(connection, storage, key, _in_table_order(rows, _columns(connection, "incoming"), target))
        return
    existing = _read_partition(storage, key, row_numbers=True)
    # The dedup rule over the file's rows and the batch's winners, ranked on the columns it reads only.
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE kept AS
        SELECT _row, _origin FROM (
            SELECT file_row_number AS _row, {RULE_COLUMNS}, 0 AS _origin, NULL AS _row_hash FROM {existing}
            WHERE contactid NOT IN (SELECT contactid FROM evicted WHERE _dt = {date})
            UNION ALL
            SELECT _row, {RULE_COLUMNS}, _origin, _row_hash FROM batch WHERE _dt = {date}
        )
        QUALIFY row_number() OVER (PARTITION BY contactid ORDER BY {WINNER_ORDER}) = 1
        """
    )
    if not _scalar(connection, "SELECT count(*) FROM kept"):  # every row moved to another date
        storage.delete(key)
        return
    rows = (
        f"SELECT * FROM {existing} WHERE file_row_number IN (SELECT _row FROM kept WHERE _origin = 0) "
        "UNION ALL BY NAME SELECT * FROM incoming WHERE rowid IN (SELECT _row FROM kept WHERE _origin = 1)"
    )
    columns = _columns(connection, "incoming") | set(file_schema(connection, storage, key))
    _write_parquet(connection, storage, key, _in_table_order(rows, columns, target))


def _in_table_order(rows: str, columns: set[str], target: dict[str, Type]) -> str:
    """`rows` with the table's columns in schema order (the ranking helpers left out), by contactid."""
    ordered = ", ".join(quote(name) for name in target if name in columns)
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
