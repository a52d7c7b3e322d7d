"""`ctr-assets migrate`: a table of the earlier layout (Parquet files per `dt=` date under parquet/ctr/,
beside a ledger under parquet/ctr/_merged/) becomes the Iceberg table, every row kept.

The old rows are merged like any batch, so the dedup rule holds against whatever the Iceberg table already
has, and their columns follow today's type policy (undocumented scalars as text). The old files are removed
only once every old contact is found in the new table; running it again after an interruption finishes the
job and changes nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from ctr_assets.lake.iceberg import (
    TableLocation,
    glob_literal,
    load_table,
    read_snapshot_sql,
    schema_tree,
    snapshot_files,
)
from ctr_assets.lake.layout import TABLE_PREFIX
from ctr_assets.lake.pipeline import record_merged
from ctr_assets.lake.storage import Storage
from ctr_assets.lake.table import MergeResult, merge_incoming, stage_incoming
from ctr_assets.records.columns import LINEAGE
from ctr_assets.records.dedup import PRIMARY_KEY
from ctr_assets.records.fields import STRING
from ctr_assets.records.schema import (
    cast_to,
    evolve,
    pin,
    quote,
    relation_schema,
    render,
    sql_list,
)

PARTITION_FILE = re.compile(re.escape(TABLE_PREFIX) + r"dt=\d{4}-\d\d-\d\d/[^/]+\.parquet")
OLD_LEDGER = TABLE_PREFIX + "_merged/"


@dataclass
class MigrationReport:
    files: int = 0
    rows: int = 0
    merge: MergeResult | None = None
    ledger_entries: int = 0

    def describe(self) -> str:
        if not self.files:
            return "nothing to migrate: no parquet/ctr/dt=YYYY-MM-DD/ctr.parquet file"
        merge = self.merge or MergeResult()
        return (f"migrated {self.rows} rows from {self.files} dt= files into the Iceberg table "
                f"({merge.rows_inserted} inserted, {merge.rows_updated} updated); {self.ledger_entries} merged "
                "flatfiles noted; the old files are removed")


def migrate_partition_files(connection: Any, storage: Storage, location: TableLocation) -> MigrationReport:
    report = MigrationReport()
    files = [item.key for item in storage.list(TABLE_PREFIX) if PARTITION_FILE.fullmatch(item.key)]
    report.files = len(files)
    if not files:
        return report
    storage.attach(connection)
    old = f"read_parquet({sql_list(glob_literal(storage.uri(key)) for key in files)}, union_by_name = true, hive_partitioning = false)"
    detected = relation_schema(connection.sql(f"SELECT * FROM {old} LIMIT 0"))
    batch = pin({name: kind for name, kind in detected.items() if name not in LINEAGE})
    table = load_table(location)
    target, conflicts = evolve(schema_tree(table.schema()) if table is not None else {}, {**batch, **LINEAGE})
    wanted = {**{name: STRING if name in conflicts else target[name] for name in batch}, **LINEAGE}
    columns = [(cast_to(quote(name), detected[name], kind) if name in detected else f"CAST(NULL AS {render(kind)})")
               + f" AS {quote(name)}" for name, kind in wanted.items()]
    stage_incoming(connection, f"SELECT {', '.join(columns)} FROM {old}", conflicts)
    report.rows = connection.sql("SELECT count(*) FROM incoming").fetchall()[0][0]
    report.merge = merge_incoming(connection, storage, location, target, conflicts,
                                  {"ctr-assets.migrated-files": str(len(files))})
    stored = read_snapshot_sql(snapshot_files(load_table(location)))
    missing = connection.sql(f"SELECT count(*) FROM incoming WHERE {PRIMARY_KEY} NOT IN "
                             f"(SELECT {PRIMARY_KEY} FROM ({stored}))").fetchall()[0][0]
    if missing:
        raise RuntimeError(f"migration stopped: {missing} contacts of the old files are not in the new table; "
                           "the old files are kept")
    ledgers = list(storage.list(OLD_LEDGER))
    merged = {key: size for item in ledgers for key, size in orjson.loads(storage.read(item.key))["flatfiles"].items()}
    record_merged(storage, merged, "migrated")
    report.ledger_entries = len(merged)
    for key in files + [item.key for item in ledgers]:
        storage.delete(key)
    return report
