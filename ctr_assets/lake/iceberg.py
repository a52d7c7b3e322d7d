"""The ctr table as an Apache Iceberg table: its catalog, its schema as our type trees, the files of a snapshot
as DuckDB reads them, and the one commit a merge makes.

pyiceberg owns the table format (metadata, manifests, snapshots, optimistic commits); DuckDB does the SQL.
Locally the catalog is a SQLite file in the storage folder; on AWS it is the Glue Data Catalog, so Athena,
Spark and QuickSight see the same table. Any other SQL catalog URI (e.g. a Postgres database) works too.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Iterator, Mapping

import dagster as dg
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchTableError,
    ValidationException,
)
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    GreaterThanOrEqual,
    LessThan,
    Or,
)
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    UUIDType,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from ctr_assets.lake.storage import StorageError
from ctr_assets.records.columns import PARTITION_FIELD
from ctr_assets.records.dedup import PRIMARY_KEY as IDENTIFIER
from ctr_assets.records.schema import Type, quote, render, sql_text

GLUE = "glue"  # the catalog URI that means the Glue Data Catalog
PARTITION_SOURCE = "initiationtimestamp"
# Our merge is the retry: a writer that lost a race reloads the table and merges again from the new
# snapshot, instead of pyiceberg re-applying a merge computed against the old one.
# Old metadata files are removed as new ones are written, keeping the last 50 for time travel's log.
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    "commit.retry.num-retries": "0",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
}
EPOCH = date(1970, 1, 1)
# Iceberg types that our type trees name the DuckDB way; anything else another engine wrote keeps its
# own name (DuckDB reads it, we never produce it).
_SCALARS: dict[type, str] = {
    StringType: "VARCHAR", LongType: "BIGINT", IntegerType: "INTEGER", DoubleType: "DOUBLE", FloatType: "FLOAT",
    BooleanType: "BOOLEAN", TimestampType: "TIMESTAMP", TimestamptzType: "TIMESTAMP WITH TIME ZONE",
    DateType: "DATE", BinaryType: "BLOB", UUIDType: "UUID",
}
_ICEBERG: dict[str, IcebergType] = {name: kind() for kind, name in _SCALARS.items() if kind is not TimestamptzType}
# Another writer committed first: nothing of this commit landed, and merging again from the new snapshot is safe.
CommitConflict = (CommitFailedException, ValidationException)


class TableLocation(dg.ConfigurableResource):
    """Where the ctr table lives: its catalog, its name there, and the folder of its files."""

    catalog_uri: str = Field(description="`glue` (the Glue Data Catalog), or an SQLAlchemy URI such as "
                             "sqlite:////data/catalog/iceberg.db")
    namespace: str = Field(description="The namespace (Glue: database) holding the table.")
    name: str = Field(default="ctr", description="The table's name in its namespace.")
    location: str = Field(description="The table's folder: an absolute local path or s3://bucket/prefix/parquet/ctr")
    properties: dict[str, str] = Field(default_factory=dict, description="pyiceberg FileIO and catalog "
                                       "properties (S3 endpoint, region).")

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def display(self) -> str:
        where = "Glue Data Catalog" if self.catalog_uri == GLUE else "SQL catalog"
        return f"{self.namespace}.{self.name} ({where})"


@contextmanager
def catalog_errors(location: TableLocation) -> Iterator[None]:
    """AWS errors of the Glue catalog (and of the table's files on S3) as the one line that names what to
    check, like every other AWS error of the pipeline."""
    try:
        yield
    except (BotoCoreError, ClientError) as error:
        from ctr_assets.aws.clients import explain

        raise StorageError(explain(error, "CTR_GLUE_DATABASE", f"Glue table {location.namespace}.{location.name}",
                                   "glue:GetDatabase, glue:CreateDatabase, glue:GetTable, glue:CreateTable and "
                                   "glue:UpdateTable", "AWS_ENDPOINT_URL_GLUE")) from error
    except OSError as error:
        if "AWS Error" not in str(error):
            raise
        raise StorageError(f"CTR_STORAGE_URL: the table's files under {location.location}: "
                           f"{str(error).splitlines()[0]}") from error


def load_catalog(location: TableLocation) -> Catalog:
    if location.catalog_uri == GLUE:
        from pyiceberg.catalog.glue import GlueCatalog

        return GlueCatalog("ctr_assets", **location.properties)
    from pyiceberg.catalog.sql import SqlCatalog

    url = make_url(location.catalog_uri)
    if url.drivername == "sqlite" and url.database:  # the embedded default: its folder may not exist yet
        os.makedirs(os.path.dirname(url.database), exist_ok=True)
    for attempt in range(3):
        try:
            return SqlCatalog("ctr_assets", uri=location.catalog_uri, **location.properties)
        except OperationalError as error:  # two processes creating the catalog's own tables at once
            if "already exists" not in str(error) or attempt == 2:
                raise


def load_table(location: TableLocation, catalog: Catalog | None = None) -> Table | None:
    """The table, or None before the first merge created it."""
    with catalog_errors(location):
        catalog = catalog or load_catalog(location)
        try:
            return catalog.load_table(location.identifier)
        except NoSuchTableError:
            return None


def create_table(location: TableLocation, schema: dict[str, Type], catalog: Catalog | None = None,
                 doc: str | None = None) -> Table:
    """Create the table (or load it, when another writer just did) with `schema` (each column with `doc`),
    partitioned by the UTC day of `initiationtimestamp`, `contactid` its identifier field."""
    iceberg_schema = iceberg_schema_of(schema, doc)
    source = iceberg_schema.find_field(PARTITION_SOURCE)
    spec = PartitionSpec(PartitionField(source_id=source.field_id, field_id=1000, transform=DayTransform(),
                                        name=PARTITION_FIELD))
    with catalog_errors(location):
        catalog = catalog or load_catalog(location)
        try:
            catalog.create_namespace_if_not_exists(location.namespace)
        except IntegrityError:  # another process created it between the check and the insert
            pass
        return catalog.create_table_if_not_exists(location.identifier, iceberg_schema, location=location.location,
                                                  partition_spec=spec, properties=TABLE_PROPERTIES)


def iceberg_schema_of(schema: dict[str, Type], doc: str | None = None) -> Schema:
    """`schema` as an Iceberg schema, field ids numbered depth first from 1, each field (struct fields too:
    the catalog reports each one's first appearance) with `doc`. For a new table `contactid` and `initiationtimestamp` are required (the identifier and the
    partition source); the rest optional. When evolving a table, pyiceberg's `union_by_name` assigns the
    real ids of new fields."""
    counter = iter(range(1, 1 << 31))
    required = {IDENTIFIER, PARTITION_SOURCE}
    fields = [NestedField(next(counter), name, _iceberg_type(kind, counter, doc), required=name in required, doc=doc)
              for name, kind in schema.items()]
    identifier = [field.field_id for field in fields if field.name == IDENTIFIER]
    return Schema(*fields, identifier_field_ids=identifier)


def _iceberg_type(kind: Type, counter, doc: str | None = None) -> IcebergType:
    if isinstance(kind, dict):
        return StructType(*[NestedField(next(counter), name, _iceberg_type(sub, counter, doc), required=False, doc=doc)
                            for name, sub in kind.items()])
    if isinstance(kind, list):
        element_id = next(counter)
        return ListType(element_id, _iceberg_type(kind[0], counter, doc), element_required=False)
    if kind in _ICEBERG:
        return _ICEBERG[kind]
    raise ValueError(f"no Iceberg column type for {kind!r}")


def schema_tree(schema: Schema) -> dict[str, Type]:
    """The table's schema as our type trees (`{"agent": {"username": "VARCHAR"}, ...}`)."""
    return {field.name: _tree(field.field_type) for field in schema.fields}


def _tree(kind: IcebergType) -> Type:
    if isinstance(kind, StructType):
        return {field.name: _tree(field.field_type) for field in kind.fields}
    if isinstance(kind, ListType):
        return [_tree(kind.element_type)]
    if isinstance(kind, MapType):
        return f"MAP({render(_tree(kind.key_type))}, {render(_tree(kind.value_type))})"
    if isinstance(kind, DecimalType):
        return f"DECIMAL({kind.precision},{kind.scale})"
    return _SCALARS.get(type(kind), str(kind).upper())


def field_ids(schema: Schema, columns: Iterable[str] | None = None) -> str:
    """DuckDB's `FIELD_IDS` option for a Parquet file of this schema (of its `columns`, when given), so
    every engine maps its columns to the table's fields by id (Iceberg's rule), not by name."""

    def ids(field: NestedField) -> str:
        kind = field.field_type
        if isinstance(kind, StructType):
            inner = ", ".join(f"{quote(sub.name)}: {ids(sub)}" for sub in kind.fields)
            return f"{{__duckdb_field_id: {field.field_id}, {inner}}}"
        if isinstance(kind, ListType):
            return f"{{__duckdb_field_id: {field.field_id}, element: {ids(kind.element_field)}}}"
        return str(field.field_id)

    wanted = set(columns) if columns is not None else None
    return "{" + ", ".join(f"{quote(field.name)}: {ids(field)}" for field in schema.fields
                           if wanted is None or field.name in wanted) + "}"


@dataclass(frozen=True)
class SnapshotFiles:
    """The files DuckDB must read for exactly one snapshot's rows."""

    snapshot_id: int | None
    data: list[tuple[str, date]]  # (file URI, its initiation day)
    position_deletes: list[str]
    equality_deletes: list[str]

    def days(self) -> set[date]:
        return {day for _, day in self.data}


def snapshot_files(table: Table | None, snapshot_id: int | None = None, days: Iterable[date] | None = None) -> SnapshotFiles:
    """The data and delete files of a snapshot (the current one by default), only those of `days` when given."""
    if table is None or (snapshot := _snapshot(table, snapshot_id)) is None:
        return SnapshotFiles(None, [], [], [])
    scan = table.scan(snapshot_id=snapshot.snapshot_id, row_filter=days_filter(days))
    data, position, equality = [], set(), set()
    for task in scan.plan_files():
        data.append((task.file.file_path, file_day(task.file)))
        for delete in task.delete_files:
            (equality if delete.content == DataFileContent.EQUALITY_DELETES else position).add(delete.file_path)
    return SnapshotFiles(snapshot.snapshot_id, sorted(data), sorted(position), sorted(equality))


def _snapshot(table: Table, snapshot_id: int | None):
    if snapshot_id is None:
        return table.current_snapshot()
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is None:
        raise ValueError(f"the ctr table has no snapshot {snapshot_id}")
    return snapshot


def file_day(data_file: DataFile) -> date:
    """A data file's partition: the day of `initiationtimestamp` all its rows share."""
    return EPOCH + timedelta(days=data_file.partition[0])


def days_filter(days: Iterable[date] | None) -> BooleanExpression:
    """Rows whose initiation falls on one of `days` (every row when None); aligned to the partitions, so a
    scan or a delete with it takes or drops whole files."""
    if days is None:
        return AlwaysTrue()
    ranges = [And(GreaterThanOrEqual(PARTITION_SOURCE, f"{day.isoformat()}T00:00:00"),
                  LessThan(PARTITION_SOURCE, f"{(day + timedelta(days=1)).isoformat()}T00:00:00"))
              for day in sorted(set(days))]
    if not ranges:
        return AlwaysTrue() if days is None else _never()
    return ranges[0] if len(ranges) == 1 else Or(*ranges)


def _never() -> BooleanExpression:
    from pyiceberg.expressions import AlwaysFalse

    return AlwaysFalse()


def replace_files(table: Table, removed: list[DataFile], added_uris: list[str], properties: Mapping[str, str]) -> Table:
    """One commit, one OVERWRITE snapshot: the data files of the days a merge touched out, their new files
    in. Raises one of `CommitConflict` when another writer committed first (nothing of this commit lands)."""
    added = [data_file(table, uri) for uri in added_uris]
    with table.transaction() as transaction:
        with transaction.update_snapshot(snapshot_properties=dict(properties)).overwrite() as overwrite:
            for old in removed:
                overwrite.delete_data_file(old)
            for new in added:
                overwrite.append_data_file(new)
    return table


def data_file(table: Table, uri: str) -> DataFile:
    """A Parquet file DuckDB wrote for the table, described for its manifest from its footer.

    pyiceberg's `parquet_file_to_data_file` does the same but refuses a file whose required columns are
    declared optional, and DuckDB declares a column required only when its statistics prove it has no
    null, which a query over several files often cannot. So the rule is checked on the values instead:
    every column the table requires must be present and hold no null."""
    input_file = table.io.new_input(uri)
    with input_file.open() as stream:
        metadata = pq.read_metadata(stream)
    schema = table.schema()
    columns = {metadata.schema.column(index).path: index for index in range(metadata.num_columns)}
    for field in schema.fields:
        if not field.required:
            continue
        if field.name not in columns:
            raise ValueError(f"{uri}: the required column {field.name} is missing")
        nulls = sum(metadata.row_group(group).column(columns[field.name]).statistics.null_count
                    for group in range(metadata.num_row_groups))
        if nulls:
            raise ValueError(f"{uri}: the required column {field.name} holds {nulls} nulls")
    statistics = data_file_statistics_from_parquet_metadata(
        parquet_metadata=metadata,
        stats_columns=compute_statistics_plan(schema, table.metadata.properties),
        parquet_column_mapping=parquet_path_to_id_mapping(schema),
    )
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=uri,
        file_format=FileFormat.PARQUET,
        partition=statistics.partition(table.metadata.spec(), schema),
        file_size_in_bytes=len(input_file),
        sort_order_id=None,
        spec_id=table.metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **statistics.to_serialized_dict(),
    )


def data_files_of_days(table: Table, days: Iterable[date]) -> list[DataFile]:
    """The current snapshot's data files holding rows of `days`."""
    days = set(days)
    if table.current_snapshot() is None or not days:
        return []
    return [task.file for task in table.scan(row_filter=days_filter(days)).plan_files() if file_day(task.file) in days]


def as_path(uri: str) -> str:
    """A file URI as DuckDB and the OS name it: S3 URIs as they are; local files without `file:`, and only
    where they really are: the pipeline names its files by their real paths, so a symbolic link on the way
    was put there since, and could lead out of the storage folder."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    path = uri.removeprefix("file://")
    if os.path.realpath(path) != path:
        raise StorageError(f"refusing {path}: a symbolic link on its way leads to {os.path.realpath(path)}; the "
                           "table's files are read only where they are")
    return path


def glob_literal(path: str) -> str:
    """`path` with the characters DuckDB's readers treat as a glob pattern made literal (`[` `*` `?`). In a
    pattern DuckDB reads a backslash as a folder separator, so a path holding both cannot be named: refused."""
    if "\\" in path and any(char in path for char in "[*?"):
        raise StorageError(f"DuckDB cannot read {path}: a path holding a backslash and one of [ * ? is "
                           "read as another path; rename the folder")
    return "".join(f"[{char}]" if char in "[*?" else char for char in path)


def read_snapshot_sql(files: SnapshotFiles) -> str | None:
    """A DuckDB query giving exactly the snapshot's rows: its data files, less the rows other engines'
    position delete files remove. None when the snapshot holds no file."""
    if files.equality_deletes:
        raise ValueError(
            f"the ctr table's snapshot {files.snapshot_id} has equality delete files, which neither DuckDB nor "
            "pyiceberg applies: compact the table with the engine that wrote them (e.g. Athena OPTIMIZE)")
    if not files.data:
        return None
    paths = "[" + ", ".join(sql_text(glob_literal(as_path(uri))) for uri, _ in files.data) + "]"
    if not files.position_deletes:
        return f"SELECT * FROM read_parquet({paths}, union_by_name = true, hive_partitioning = false)"
    deletes = "[" + ", ".join(sql_text(glob_literal(as_path(uri))) for uri in files.position_deletes) + "]"
    # A position delete names a data file by its URI and a row by its position in that file.
    uris = ", ".join(f"({sql_text(glob_literal(as_path(uri)))}, {sql_text(uri)})" for uri, _ in files.data)
    return (
        "SELECT rows.* EXCLUDE (filename, file_row_number) "
        f"FROM read_parquet({paths}, union_by_name = true, hive_partitioning = false, filename = true, "
        "file_row_number = true) AS rows "
        f"JOIN (VALUES {uris}) AS uris(path, uri) ON rows.filename = uris.path "
        f"ANTI JOIN read_parquet({deletes}) AS deletes "
        "ON deletes.file_path = uris.uri AND deletes.pos = rows.file_row_number"
    )


def snapshot_as_of(table: Table | None, when: str) -> int:
    """The id of the snapshot a reader asks for: a snapshot id, or the one current at a UTC time."""
    if table is None:
        raise LookupError("the ctr table does not exist yet")
    if when.isdigit():
        if table.snapshot_by_id(int(when)) is None:
            raise LookupError(f"the ctr table has no snapshot {when}")
        return int(when)
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise LookupError(f"{when!r} is neither a snapshot id nor a time such as 2026-03-02T08:00:00") from None
    moment = moment.replace(tzinfo=moment.tzinfo or timezone.utc)
    snapshot = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
    if snapshot is None:
        raise LookupError(f"the ctr table has no snapshot as old as {moment.isoformat()}")
    return snapshot.snapshot_id
