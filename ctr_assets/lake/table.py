"""Merge flattened records into the ctr table: one row per contactid (design rule 3), one Iceberg commit.

DuckDB computes the merge: the batch's records, deduplicated, against every stored copy of the same
contacts in any day; then the new content of each day the merge touches (its rows, less the copies that
lost, plus the winners of that day). pyiceberg commits it as one OVERWRITE snapshot that swaps those days'
data files, so readers see the table before the merge or after it, never between: a contact that moves to
another day is never seen twice or missing. When another writer commits first, nothing of this commit
lands and the merge is computed again from the new snapshot: it is idempotent, so that is always safe.

A column of the pipeline's own never meets a record's: the merge's helper columns have names no
normalized key can take (`"ctr:row"`), and the stored ones (lineage, variants) are reserved
(`records/columns.py`).
"""

from __future__ import annotations

import base64
import logging
import random
import shutil
import tempfile
import time
import uuid
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import orjson

from ctr_assets.lake.iceberg import (
    CommitConflict,
    TableLocation,
    catalog_errors,
    create_table,
    data_files_of_days,
    field_ids,
    iceberg_schema_of,
    load_catalog,
    load_table,
    read_snapshot_sql,
    replace_files,
    schema_tree,
    snapshot_files,
)
from ctr_assets.lake.layout import TABLE_PREFIX, arrival_of_raw_key, raw_key_of_flatfile
from ctr_assets.lake.storage import STAGED_ABANDONED_SECONDS, Storage
from ctr_assets.records._keyscan import first_of_each_shape
from ctr_assets.records.columns import (
    ARRIVED_AT,
    LINEAGE,
    PARTITION_FIELD,
    SOURCE_KEY,
    variant_column,
)
from ctr_assets.records.dedup import PRIMARY_KEY, order_by
from ctr_assets.records.fields import STRING
from ctr_assets.records.schema import (
    Type,
    column_paths,
    evolve,
    pin,
    quote,
    relation_schema,
    render,
    sql_list,
    sql_text,
)
from ctr_assets.records.split import MAX_RECORD_BYTES

log = logging.getLogger(__name__)

# Where each batch line came from (its raw object and that object's arrival), put in front of its record's
# fields: normalized keys are `\w+`, so no record can carry this one.
FLATFILE = "@flatfile"
LINEAGE_TAG = "STRUCT(source VARCHAR, arrived TIMESTAMP)"
# The longest flatfile line: a record is at most MAX_RECORD_BYTES (larger ones are quarantined), and
# normalizing it can lengthen it only a little (numbers in text fields gain quotes). DuckDB's JSON reader
# keeps buffers of twice this per thread, so it is what the merge's memory bound has to leave room for.
LINE_LIMIT = 2 * MAX_RECORD_BYTES
BATCH_FOLDER_PREFIX = "ctr-merge-"  # a merge's batch files, in the local temp folder while it runs
DATA_PREFIX = TABLE_PREFIX + "data/"
COMMIT_ATTEMPTS = 20  # writers that lost a race to another one merge again; each loss means progress elsewhere
SUMMARY_MERGED = "ctr-assets.merged-flatfiles"  # snapshot summary: which flatfiles (at which size) it merged
ARRIVAL_HOURS = "ctr-assets.arrival-hours"  # snapshot summary: the arrival hours a run merged
# Helper columns of the merge. A record's columns are `\w+` names (rule 2), so these never meet one.
ROW, ORIGIN, HASH, DAY, RANK = '"ctr:row"', '"ctr:origin"', '"ctr:hash"', '"ctr:day"', '"ctr:rank"'
RULE_COLUMNS = f"{PRIMARY_KEY}, lastupdatetimestamp, {ARRIVED_AT}, {SOURCE_KEY}"
# The dedup rule (records/dedup.py), then: a copy already in the table (origin 0) wins a complete tie, so
# merging the same input again changes nothing; two differing copies tied inside one object are ordered
# by a hash of their content.
WINNER_ORDER = f"{order_by()}, {ORIGIN} ASC, {HASH} DESC"


@dataclass
class MergeResult:
    """What one merge did to the table."""

    records_read: int = 0
    duplicates_in_batch: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_moved: int = 0  # stored copies removed from another day than their winner's
    days_written: list[str] = field(default_factory=list)
    new_columns: list[str] = field(default_factory=list)
    variant_columns: list[str] = field(default_factory=list)  # columns whose values went beside them as text
    snapshot_id: int | None = None  # the snapshot this merge committed, None when it changed nothing
    attempts: int = 0
    schema: dict[str, Type] = field(default_factory=dict)


@dataclass
class StagedBatch:
    """A batch of flattened records staged as the DuckDB temp table `incoming`, typed for the table."""

    target: dict[str, Type]  # the table's schema once the batch is in it
    conflicts: list[str]  # columns whose batch values go to their variant column


def merge_flatfiles(connection: Any, storage: Storage, location: TableLocation, flatfiles: dict[str, int],
                    properties: dict[str, str] | None = None) -> MergeResult:
    """Merge the records of flatfiles (key -> size) into the table; `connection` is a scratch DuckDB
    connection. `properties` go into the snapshot summary beside the list of flatfiles merged."""
    staged = stage_flatfiles(connection, storage, location, flatfiles)
    if staged is None:
        return MergeResult()
    summary = {SUMMARY_MERGED: encode_flatfiles(flatfiles), **(properties or {})}
    return merge_incoming(connection, storage, location, staged.target, staged.conflicts, summary)


def stage_flatfiles(connection: Any, storage: Storage, location: TableLocation,
                    flatfiles: dict[str, int]) -> StagedBatch | None:
    """The flatfiles' records as the temp table `incoming` (with their lineage, the merge's row number and
    content hash), typed as the table will hold them; None when they hold no record. Every merge engine
    starts from this."""
    storage.attach(connection)
    threads = int(_scalar(connection, "SELECT current_setting('threads')"))
    with _batch_files(storage, [key for key, size in flatfiles.items() if size], threads) as (paths, shape_paths):
        if not paths:  # the flatfiles hold no records
            return None
        detected = relation_schema(connection.sql(f"SELECT * FROM {_json_reader(shape_paths)}, sample_size=-1) LIMIT 0"))
        detected.pop(FLATFILE, None)
        if PRIMARY_KEY not in detected:  # every flattened record has one: these flatfiles hold no records
            return None
        batch = pin(detected)
        table = load_table(location)
        target, conflicts = evolve(schema_tree(table.schema()) if table is not None else {}, {**batch, **LINEAGE})
        read_as = {name: STRING if name in conflicts else target[name] for name in batch}
        columns = "{" + ", ".join(f"{sql_text(name)}: {sql_text(render(kind))}"
                                  for name, kind in {FLATFILE: LINEAGE_TAG, **read_as}.items()) + "}"
        stage_incoming(connection, f"""
            SELECT * EXCLUDE ({quote(FLATFILE)}), {quote(FLATFILE)}.source AS {SOURCE_KEY},
                   {quote(FLATFILE)}.arrived AS {ARRIVED_AT}
            FROM {_json_reader(paths)}, columns={columns})""", conflicts)
    return StagedBatch(target, conflicts)


def stage_incoming(connection: Any, records: str, conflicts: list[str]) -> None:
    """The batch as the temp table `incoming`: the `records` query (typed as the table will hold them: a
    text column reads anything as text, a struct every field it has gained), each conflicting column's
    values moved to its variant column, and the merge's row number and content hash added."""
    renamed = "".join(f", {quote(name)} AS {quote(variant_column(name))}" for name in conflicts)
    excluded = f" EXCLUDE ({', '.join(map(quote, conflicts))})" if conflicts else ""
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE incoming AS
        WITH source AS (SELECT *{excluded}{renamed} FROM ({records}))
        SELECT *, row_number() OVER () AS {ROW}, hash("ctr:source") AS {HASH} FROM source AS "ctr:source"
        """
    )


def merge_incoming(connection: Any, storage: Storage, location: TableLocation, target: dict[str, Type],
                   conflicts: list[str], summary: dict[str, str]) -> MergeResult:
    """Merge the staged `incoming` records into the table (evolved to `target` first), committing once;
    merged again from the new snapshot whenever another writer committed first."""
    result = MergeResult(variant_columns=[variant_column(name) for name in conflicts])
    result.records_read = _scalar(connection, "SELECT count(*) FROM incoming")
    connection.execute(
        f"CREATE OR REPLACE TEMP TABLE batch AS SELECT {ROW}, {RULE_COLUMNS}, {HASH}, 1 AS {ORIGIN}, "
        f"CAST(initiationtimestamp AS DATE) AS {DAY} FROM incoming "
        f"QUALIFY row_number() OVER (PARTITION BY {PRIMARY_KEY} ORDER BY {WINNER_ORDER}) = 1"
    )
    result.duplicates_in_batch = result.records_read - _scalar(connection, "SELECT count(*) FROM batch")
    catalog = load_catalog(location)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        result.attempts = attempt
        try:
            with catalog_errors(location):
                table, added = _evolve_schema(location, catalog, target, summary.get(ARRIVAL_HOURS))
                result.new_columns = result.new_columns or added
                _commit_merge(connection, storage, table, result, summary)
        except CommitConflict as conflict:
            log.info("another writer committed to %s first (%s): merging again", location.display, conflict)
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
            continue
        result.schema = schema_tree(table.schema())
        return result
    raise RuntimeError(f"{location.display}: gave up after {COMMIT_ATTEMPTS} merges lost to concurrent writers")


def _evolve_schema(location: TableLocation, catalog: Any, target: dict[str, Type], arrival_hours: str | None):
    """The table, created or given the columns and struct fields `target` adds (metadata only: old rows read
    them as null). Each new field's doc says when it first appeared (and in which arrival hours), which the
    catalog asset reports."""
    first_seen = f"first seen {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    first_seen += f" in arrival hours {arrival_hours}" if arrival_hours else ""
    table = load_table(location, catalog)
    if table is None:
        return create_table(location, target, catalog, doc=first_seen), sorted(column_paths(target))
    added = sorted(set(column_paths(target)) - set(column_paths(schema_tree(table.schema()))))
    if added:
        with table.update_schema() as update:
            update.union_by_name(iceberg_schema_of(target))
        with table.update_schema() as update:
            for path in added:
                update.update_column(tuple(path.replace("[].", ".element.").split(".")), doc=first_seen)
    return table, added


def _commit_merge(connection: Any, storage: Storage, table: Any, result: MergeResult, summary: dict[str, str]) -> None:
    """Apply the dedup rule to the batch and every stored copy of its contacts, in any day, then commit the
    new content of every day that changes. Raises `CommitConflict` when another writer committed first."""
    current = snapshot_files(table)
    stored = read_snapshot_sql(current)
    if stored is None:
        connection.execute(f"CREATE OR REPLACE TEMP TABLE stored AS SELECT {RULE_COLUMNS}, {DAY} FROM batch LIMIT 0")
    else:
        connection.execute(
            f"CREATE OR REPLACE TEMP TABLE stored AS SELECT {RULE_COLUMNS}, CAST(initiationtimestamp AS DATE) AS {DAY} "
            f"FROM ({stored}) WHERE {PRIMARY_KEY} IN (SELECT {PRIMARY_KEY} FROM batch)"
        )
    # Every copy ranked; the batch's winners (`accepted`), and the stored copies that lost, in whichever day
    # (`evicted`). A stored copy losing to another stored copy exists only in a table another writer left
    # with a contact in two days; its complete ties go to the later day. Copies of one contact in the same
    # day as its stored winner cannot be told apart, and are left to `ctr:contactid_unique` to report.
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ranked AS
        SELECT *, row_number() OVER (PARTITION BY {PRIMARY_KEY} ORDER BY {WINNER_ORDER}, {DAY} DESC) AS {RANK}
        FROM (
            SELECT {ROW}, {RULE_COLUMNS}, {HASH}, {ORIGIN}, {DAY} FROM batch
            UNION ALL BY NAME
            SELECT {RULE_COLUMNS}, {DAY}, 0 AS {ORIGIN}, NULL AS {HASH}, NULL AS {ROW} FROM stored
        )
        """
    )
    connection.execute(f"CREATE OR REPLACE TEMP TABLE accepted AS SELECT {ROW}, {PRIMARY_KEY}, {DAY} FROM ranked "
                       f"WHERE {RANK} = 1 AND {ORIGIN} = 1")
    connection.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE evicted AS
        SELECT copy.{PRIMARY_KEY}, copy.{DAY}, copy.{DAY} <> winner.{DAY} AS moved, winner.{ORIGIN} = 1 AS updated
        FROM ranked AS copy JOIN ranked AS winner ON copy.{PRIMARY_KEY} = winner.{PRIMARY_KEY} AND winner.{RANK} = 1
        WHERE copy.{ORIGIN} = 0 AND copy.{RANK} > 1 AND NOT (winner.{ORIGIN} = 0 AND copy.{DAY} = winner.{DAY})
        """
    )
    days = sorted({row[0] for row in connection.sql(
        f"SELECT {DAY} FROM accepted UNION SELECT {DAY} FROM evicted").fetchall()})
    result.rows_updated = _scalar(connection, f"SELECT count(DISTINCT {PRIMARY_KEY}) FROM evicted WHERE updated")
    result.rows_inserted = _scalar(connection, "SELECT count(*) FROM accepted") - result.rows_updated
    result.rows_moved = _scalar(connection, "SELECT count(*) FROM evicted WHERE moved")
    result.days_written = [day.isoformat() for day in days]
    if not days:  # every record lost to a stored copy: the table stays as it is
        result.snapshot_id = None
        return
    result.snapshot_id = _replace_days(connection, storage, table, days, summary, with_batch=True)


def compact_days(connection: Any, storage: Storage, table: Any, days: list[date], properties: dict[str, str]) -> int:
    """Rewrite each of `days` as one data file holding exactly its current rows (other engines' small files
    and delete files folded in); returns the snapshot id. Raises `CommitConflict` like a merge."""
    return _replace_days(connection, storage, table, days, properties, with_batch=False)


def _replace_days(connection: Any, storage: Storage, table: Any, days: list[date], summary: dict[str, str],
                  with_batch: bool) -> int:
    removed = data_files_of_days(table, days)
    written = _write_days(connection, storage, table, days, with_batch)
    try:
        replace_files(table, removed, [storage.uri(key) for key in written], summary)
    except CommitConflict:
        for key in written:  # nothing references them
            storage.delete(key)
        raise
    return table.current_snapshot().snapshot_id


def _write_days(connection: Any, storage: Storage, table: Any, days: list[date], with_batch: bool) -> list[str]:
    """One Parquet data file per day: the day's stored rows, less the copies the batch evicted, plus the
    day's winners from the batch (`with_batch`), by contactid, with the table's field ids; none for a day
    left empty. Returns their storage keys."""
    types = schema_tree(table.schema())
    stored_days = read_snapshot_sql(snapshot_files(table, days=days))
    write_id = uuid.uuid4().hex
    keys = []
    for number, day in enumerate(days):
        parts = []
        if stored_days:
            evicted = (f" AND {PRIMARY_KEY} NOT IN (SELECT {PRIMARY_KEY} FROM evicted WHERE {DAY} = DATE '{day}')"
                       if with_batch else "")
            parts.append(f"SELECT * FROM ({stored_days}) WHERE CAST(initiationtimestamp AS DATE) = DATE '{day}'{evicted}")
        if with_batch:
            parts.append(f"SELECT * EXCLUDE ({ROW}, {HASH}) FROM incoming "
                         f"WHERE {ROW} IN (SELECT {ROW} FROM accepted WHERE {DAY} = DATE '{day}')")
        rows = " UNION ALL BY NAME ".join(parts)
        if not _scalar(connection, f"SELECT count(*) FROM ({rows})"):  # every row moved to another day
            continue
        key = f"{DATA_PREFIX}{PARTITION_FIELD}={day}/{write_id}-{number:05d}.parquet"
        present = _present(connection, rows, list(types))
        # Each column as the table types it (every field of a struct, in order), named by field id.
        typed = ", ".join(f"CAST({quote(name)} AS {render(types[name])}) AS {quote(name)}" for name in present)
        with storage.writer(key) as staged:
            connection.execute(
                f"COPY (SELECT {typed} FROM ({rows})) "
                f"TO {sql_text(staged.as_posix())} (FORMAT parquet, COMPRESSION zstd, "
                f"FIELD_IDS {field_ids(table.schema(), present)})"
            )
        keys.append(key)
    return keys


def _present(connection: Any, rows: str, columns: list[str]) -> list[str]:
    """The table's columns that `rows` has, in the table's order (a file may leave out columns it has no
    values for: readers fill them with nulls)."""
    have = set(connection.sql(f"SELECT * FROM ({rows}) LIMIT 0").columns)
    return [name for name in columns if name in have]


def encode_flatfiles(flatfiles: dict[str, int]) -> str:
    """The flatfiles a snapshot merged, compact enough for its summary (keys share long prefixes)."""
    return base64.b64encode(zlib.compress(orjson.dumps(flatfiles), 9)).decode("ascii")


def decode_flatfiles(text: str) -> dict[str, int]:
    return orjson.loads(zlib.decompress(base64.b64decode(text)))


def merged_by_snapshots(location: TableLocation) -> list[dict[str, int]]:
    """What the table's retained snapshots say they merged: per snapshot, flatfile key -> size."""
    table = load_table(location)
    summaries = [snapshot.summary.additional_properties for snapshot in (table.snapshots() if table else ())
                 if snapshot.summary]
    return [decode_flatfiles(summary[SUMMARY_MERGED]) for summary in summaries if SUMMARY_MERGED in summary]


@contextmanager
def _batch_files(storage: Storage, flat_keys: list[str], parts: int = 2) -> Iterator[tuple[list[str], list[str]]]:
    """The flatfiles' lines gathered into `parts` local NDJSON files, each line tagged with its lineage,
    and beside each the first line of every shape in it (`first_of_each_shape` in records/_keyscan.py), in order,
    so each column first appears there where it first appears in the batch file. DuckDB reads a few large
    files several times faster than many small ones, and detecting the schema from one line per shape
    gives what detecting it from every line gives, for a fraction of the work. One flatfile is in memory
    at a time. The flatfiles come from `local_paths` (in place on a local folder, downloaded in parallel
    from S3)."""
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
                source = raw_key_of_flatfile(key)
                lineage = {"source": source, "arrived": arrival_of_raw_key(source).strftime("%Y-%m-%d %H:%M:%S")}
                tag = b'{"' + FLATFILE.encode() + b'":' + orjson.dumps(lineage) + b","
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
        f"map_inference_threshold=-1, maximum_object_size={LINE_LIMIT}"
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


def _scalar(connection: Any, query: str) -> int:
    return connection.sql(query).fetchall()[0][0]


