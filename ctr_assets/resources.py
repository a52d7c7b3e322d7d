"""Build the typed resources from the settings: the storage, the DuckDB warehouse."""

from __future__ import annotations

from pathlib import Path

from dagster_duckdb import DuckDBResource

from ctr_assets.settings import CtrSettings, SettingError
from ctr_assets.storage import LocalStorage, Storage


def storage_for(settings: CtrSettings) -> Storage:
    """The storage named by CTR_STORAGE_URL."""
    if settings.is_s3:
        raise SettingError(f"CTR_STORAGE_URL: {settings.storage_url!r}: s3:// storage is not available in this version")
    return LocalStorage(root=settings.storage_url)


def warehouse_for(settings: CtrSettings) -> DuckDBResource:
    """The DuckDB file holding the `ctr` view and the aggregate tables (its folder is created if needed)."""
    path = Path(settings.warehouse_path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return DuckDBResource(database=str(path))
