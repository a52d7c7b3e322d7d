"""Build the typed resources from the settings: the storage, the DuckDB warehouse, AWS clients."""

from __future__ import annotations

from pathlib import Path

from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource

from ctr_assets.aws.s3 import S3Storage
from ctr_assets.lake.storage import LocalStorage, Storage
from ctr_assets.settings import CtrSettings


def storage_for(settings: CtrSettings) -> Storage:
    """The storage named by CTR_STORAGE_URL: a local folder, or a bucket (credentials and region from the
    standard AWS chain, CTR_S3_ENDPOINT_URL for S3-compatible stores)."""
    if settings.is_s3:
        bucket, prefix = settings.s3_location
        return S3Storage(bucket=bucket, prefix=prefix, s3=S3Resource(endpoint_url=settings.s3_endpoint_url or None))
    return LocalStorage(root=settings.storage_url)


def warehouse_for(settings: CtrSettings) -> DuckDBResource:
    """The DuckDB file holding the `ctr` view and the aggregate tables (its folder is created if needed)."""
    path = Path(settings.warehouse_path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return DuckDBResource(database=str(path))
