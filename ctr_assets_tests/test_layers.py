"""The layers a newcomer sees: the record rules in `records/` are pure (no storage, no Dagster, no AWS, no
DuckDB), so they can be read, tested and reused without any of them."""

import pkgutil
import subprocess
import sys

import ctr_assets.records

FORBIDDEN = ("dagster", "boto3", "botocore", "duckdb", "pyiceberg", "pyarrow", "s3fs", "ctr_assets.lake",
             "ctr_assets.aws", "ctr_assets.defs", "ctr_assets.metrics")


def test_every_records_module_imports_without_storage_dagster_or_aws():
    modules = [f"ctr_assets.records.{module.name}" for module in pkgutil.iter_modules(ctr_assets.records.__path__)]
    assert "ctr_assets.records.flatten" in modules and len(modules) > 8
    probe = (f"import sys; [__import__(name) for name in {modules!r}]; "
             f"print(sorted({{name for name in sys.modules for bad in {FORBIDDEN!r} "
             "if name == bad or name.startswith(bad + '.')}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
