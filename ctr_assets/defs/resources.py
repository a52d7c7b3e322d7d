"""Build the typed resources from the settings: the storage, the ctr table's catalog, the DuckDB warehouse,
Athena."""

from __future__ import annotations

from pathlib import Path

import boto3
from dagster_aws.s3 import S3Resource
from sqlalchemy.engine import URL

from ctr_assets.aws.athena import RESULTS_PREFIX, AthenaEngine
from ctr_assets.aws.clients import AwsClients
from ctr_assets.aws.s3 import S3Storage
from ctr_assets.lake.iceberg import GLUE, TableLocation
from ctr_assets.lake.layout import ICEBERG_CATALOG, TABLE_PREFIX
from ctr_assets.lake.local_io import local_io_properties
from ctr_assets.lake.storage import LocalStorage, Storage
from ctr_assets.metrics.warehouse import Warehouse, bounded_config
from ctr_assets.settings import CtrSettings


def storage_for(settings: CtrSettings) -> Storage:
    """The storage named by CTR_STORAGE_URL: a local folder, or a bucket (credentials and region from the
    standard AWS chain, CTR_S3_ENDPOINT_URL for S3-compatible stores)."""
    if settings.is_s3:
        bucket, prefix = settings.s3_location
        return S3Storage(bucket=bucket, prefix=prefix, s3=S3Resource(endpoint_url=settings.s3_endpoint_url or None))
    return LocalStorage(root=settings.storage_url)


def table_for(settings: CtrSettings, storage: Storage) -> TableLocation:
    """The ctr table under parquet/ctr/: in the Glue Data Catalog with CTR_GLUE_DATABASE, else in the SQL
    catalog of CTR_CATALOG_URI, else (a local folder) in a SQLite file inside the folder."""
    location = storage.uri(TABLE_PREFIX).rstrip("/")
    properties = local_io_properties(storage.root_path) if isinstance(storage, LocalStorage) else {}
    if settings.is_s3:
        properties = {"s3.region": boto3.session.Session().region_name or "us-east-1"}
        if settings.s3_endpoint_url:
            properties["s3.endpoint"] = settings.s3_endpoint_url
    if settings.glue_database:
        return TableLocation(catalog_uri=GLUE, namespace=settings.glue_database, name=settings.glue_table,
                             location=location, properties=properties)
    catalog_uri = settings.catalog_uri or URL.create("sqlite", database=storage.uri(ICEBERG_CATALOG)).render_as_string()
    return TableLocation(catalog_uri=catalog_uri, namespace="ctr_assets", name=settings.glue_table, location=location,
                         properties=properties)


def warehouse_for(settings: CtrSettings) -> Warehouse:
    """The DuckDB file holding the `ctr` view and the aggregate tables (its folder is created if needed)."""
    path = Path(settings.warehouse_path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return Warehouse(database=str(path), connection_config=bounded_config(settings.duckdb_memory_mb))


def athena_for(settings: CtrSettings, storage: Storage, aws: AwsClients) -> AthenaEngine:
    """Athena as CTR_ATHENA_* configure it; its query results go to athena/results/ in the bucket unless
    CTR_ATHENA_OUTPUT_LOCATION says otherwise. Only used with CTR_MERGE_ENGINE=athena."""
    output = settings.athena_output_location or (storage.uri(RESULTS_PREFIX) if settings.is_s3 else "")
    return AthenaEngine(aws=aws, workgroup=settings.athena_workgroup, output_location=output,
                        merge_window_days=settings.athena_merge_window_days, price_per_tb=settings.athena_price_per_tb)
