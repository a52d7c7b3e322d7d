"""The ctr table in the Glue Data Catalog, so Athena, Redshift Spectrum and QuickSight read the Parquet we write
(the original's crawler and catalog). No Dagster: the `ctr_glue_table` asset calls `register_table`.

Athena finds partitions by projection (`dt` is a date, nothing to register per day); Redshift Spectrum and
other Hive readers use the registered partitions. Both follow schema evolution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ctr_assets.aws.clients import aws_errors
from ctr_assets.records.schema import Type

PARQUET_SERDE = {
    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    "Parameters": {"serialization.format": "1"},
}
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
BATCH = 100  # Glue's limit for batch partition calls
# DuckDB scalar types -> Hive DDL types, as Athena reads them from Parquet.
HIVE_SCALARS = {
    "VARCHAR": "string", "BIGINT": "bigint", "INTEGER": "int", "SMALLINT": "smallint", "TINYINT": "tinyint",
    "UBIGINT": "decimal(20,0)", "UINTEGER": "bigint", "USMALLINT": "int", "UTINYINT": "smallint",
    "HUGEINT": "decimal(38,0)", "DOUBLE": "double", "FLOAT": "float", "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp", "DATE": "date", "BLOB": "binary",
}
DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def hive_type(kind: Type) -> str:
    """Hive DDL for a column type tree (`{"username": "VARCHAR"}` -> `struct<username:string>`)."""
    if isinstance(kind, dict):
        return "struct<" + ",".join(f"{name}:{hive_type(sub)}" for name, sub in kind.items()) + ">"
    if isinstance(kind, list):
        return f"array<{hive_type(kind[0])}>"
    if kind in HIVE_SCALARS:
        return HIVE_SCALARS[kind]
    if match := DECIMAL.fullmatch(kind):
        return f"decimal({match[1]},{match[2]})"
    raise ValueError(f"no Hive type for DuckDB type {kind!r}")


def table_input(name: str, location: str, schema: dict[str, Type], first_date: str) -> dict:
    """The Glue TableInput of the ctr table: Parquet files under `location`, partitioned by `dt`."""
    return {
        "Name": name,
        "Description": "Amazon Connect contact trace records, one row per contactid (written by ctr_assets)",
        "TableType": "EXTERNAL_TABLE",
        "PartitionKeys": [{"Name": "dt", "Type": "string"}],
        "Parameters": {
            "classification": "parquet",
            "EXTERNAL": "TRUE",
            "projection.enabled": "true",
            "projection.dt.type": "date",
            "projection.dt.format": "yyyy-MM-dd",
            "projection.dt.range": f"{first_date},NOW",
            "projection.dt.interval": "1",
            "projection.dt.interval.unit": "DAYS",
        },
        "StorageDescriptor": _descriptor(location, schema),
    }


@dataclass
class GlueChange:
    """What one registration did."""

    table_created: bool = False
    table_updated: bool = False
    columns: list[dict] = field(default_factory=list)
    partitions_added: list[str] = field(default_factory=list)
    partitions_updated: int = 0


def register_table(glue: Any, database: str, name: str, location: str, schema: dict[str, Type],
                   dates: list[str]) -> GlueChange:
    """Create or update the table and its `dt` partitions (one per date in `dates`) so they match the
    Parquet under `location`; the database is created if missing. Unchanged tables cost two reads."""
    change = GlueChange()
    wanted = table_input(name, location, schema, min(dates))
    change.columns = wanted["StorageDescriptor"]["Columns"]
    with _glue_errors(database, "glue:GetDatabase and glue:CreateDatabase"):
        try:
            glue.get_database(Name=database)
        except glue.exceptions.EntityNotFoundException:
            glue.create_database(DatabaseInput={"Name": database, "Description": "Amazon Connect CTRs (ctr_assets)"})
    with _glue_errors(f"{database}.{name}", "glue:GetTable, glue:CreateTable and glue:UpdateTable"):
        try:
            current = glue.get_table(DatabaseName=database, Name=name)["Table"]
        except glue.exceptions.EntityNotFoundException:
            glue.create_table(DatabaseName=database, TableInput=wanted)
            change.table_created = True
            current = wanted
        if not _same_table(current, wanted):
            glue.update_table(DatabaseName=database, TableInput=wanted)
            change.table_updated = True
    with _glue_errors(f"{database}.{name}", "glue:GetPartitions, glue:BatchCreatePartition and "
                      "glue:BatchUpdatePartition"):
        pages = glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=name)
        existing = {part["Values"][0]: part for page in pages for part in page["Partitions"]}
        change.partitions_added = [dt for dt in dates if dt not in existing]
        stale = [dt for dt, part in existing.items()
                 if part["StorageDescriptor"].get("Columns") != change.columns]
        for start in range(0, len(change.partitions_added), BATCH):
            _raise_errors(glue.batch_create_partition(
                DatabaseName=database, TableName=name,
                PartitionInputList=[_partition(location, schema, dt) for dt in change.partitions_added[start:start + BATCH]],
            ))
        for start in range(0, len(stale), BATCH):
            _raise_errors(glue.batch_update_partition(
                DatabaseName=database, TableName=name,
                Entries=[{"PartitionValueList": [dt], "PartitionInput": _partition(location, schema, dt)}
                         for dt in stale[start:start + BATCH]],
            ))
        change.partitions_updated = len(stale)
    return change


def _descriptor(location: str, schema: dict[str, Type]) -> dict:
    return {
        "Columns": [{"Name": column, "Type": hive_type(kind)} for column, kind in schema.items()],
        "Location": location,
        "InputFormat": PARQUET_INPUT,
        "OutputFormat": PARQUET_OUTPUT,
        "SerdeInfo": PARQUET_SERDE,
    }


def _partition(location: str, schema: dict[str, Type], dt: str) -> dict:
    return {"Values": [dt], "StorageDescriptor": _descriptor(f"{location}dt={dt}/", schema)}


def _same_table(current: dict, wanted: dict) -> bool:
    descriptor, target = current.get("StorageDescriptor", {}), wanted["StorageDescriptor"]
    return (descriptor.get("Columns") == target["Columns"] and descriptor.get("Location") == target["Location"]
            and current.get("PartitionKeys") == wanted["PartitionKeys"]
            and all(current.get("Parameters", {}).get(key) == value for key, value in wanted["Parameters"].items()))


def _raise_errors(response: dict) -> None:
    if errors := response.get("Errors"):
        detail = errors[0].get("ErrorDetail", {})
        raise ClientError({"Error": {"Code": detail.get("ErrorCode", "PartitionError"),
                                     "Message": detail.get("ErrorMessage", "")}}, "BatchPartition")


def _glue_errors(resource: str, permission: str):
    return aws_errors("CTR_GLUE_DATABASE", f"Glue {resource}", permission, endpoint_setting="AWS_ENDPOINT_URL_GLUE")
