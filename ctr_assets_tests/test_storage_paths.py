"""Glob and quote characters in the storage path are literal wherever the path goes: DuckDB's readers, the
warehouse file, pyiceberg's table location, the SQLite catalog URI. Folders whose names are patterns of
each other (`data[1]` beside `data1`) each keep their own table."""

import os
import shutil
from contextlib import closing
from itertools import count

import dagster as dg
import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from ctr_assets.api import run_pipeline
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.iceberg import glob_literal
from ctr_assets.lake.layout import ICEBERG_CATALOG
from ctr_assets.lake.storage import LocalStorage, StorageError
from ctr_assets.metrics.warehouse import read_aggregate, scratch_connection
from ctr_assets.records.schema import sql_text
from ctr_assets.settings import SettingError
from ctr_assets_tests.helpers import SAMPLE_START, connect_contact, firehose_object, raw_key, settings_for, table_rows

# Each beside a name it matches as a pattern (or as a URL, once decoded).
FOLDERS = ["data1", "data[1]", "it's", "a*b", "aXb", "q?", "{x}", "a#b", "pA", "p%41", "b\\s"]
BUCKET_PREFIXES = ["data1", "data[1]", "it's", "a*b", "{x}"]


def fill_and_run(settings, number: int) -> None:
    """Two contacts of this storage's own, through the whole pipeline."""
    storage = storage_for(settings)
    storage.write(raw_key(SAMPLE_START), firehose_object(
        *(connect_contact(f"{number}-{name}", SAMPLE_START, agent=f"agent-{number}", talk=60) for name in "ab")))
    summary = run_pipeline(settings=settings, instance=dg.DagsterInstance.ephemeral())
    assert summary.ok, (settings.storage_url, summary.failed_runs)


def assert_own_table(settings, number: int) -> None:
    storage = storage_for(settings)
    with closing(scratch_connection()) as connection:
        rows = table_rows(connection, storage, table_for(settings, storage), "contactid")
        assert [row["contactid"] for row in rows] == [f"{number}-a", f"{number}-b"], settings.storage_url
        assert read_aggregate(connection, storage, "contacts_per_agent")  # as `ctr-assets status` reads it
        assert connection.sql("SELECT agent_username, contacts FROM contacts_per_agent").fetchall() == [
            (f"agent-{number}", 2)], settings.storage_url


def test_every_folder_keeps_its_own_table_whatever_its_name(tmp_path):
    for number, name in enumerate(FOLDERS):
        fill_and_run(settings_for(tmp_path, storage_url=str(tmp_path / name)), number)

    for number, name in enumerate(FOLDERS):
        settings = settings_for(tmp_path, storage_url=str(tmp_path / name))
        assert_own_table(settings, number)
        # DuckDB clients cannot open a database whose path holds '?' or '\': read a copy of it.
        copy = tmp_path / f"warehouse-{number}.duckdb"
        shutil.copyfile(settings.warehouse_path, copy)
        with duckdb.connect(str(copy), read_only=True) as connection:
            assert connection.sql("SELECT list(contactid ORDER BY contactid) FROM ctr").fetchall() == [
                ([f"{number}-a", f"{number}-b"],)], name


def test_every_bucket_prefix_keeps_its_own_table_and_is_read_without_listing_the_bucket(moto, tmp_path):
    bucket = moto.new_bucket()
    prefixes = [settings_for(tmp_path, storage_url=f"s3://{bucket}/{prefix}", s3_endpoint_url=moto.url,
                             duckdb_path=str(tmp_path / f"{number}.duckdb")) for number, prefix in enumerate(BUCKET_PREFIXES)]

    for number, prefixed in enumerate(prefixes):
        fill_and_run(prefixed, number)
    for number, prefixed in enumerate(prefixes):
        with moto.requests() as requests:
            assert_own_table(prefixed, number)
        assert not [line for line in requests if "list-type=2" in line], prefixed.storage_url  # each file by name


@pytest.mark.parametrize("prefix", ["q?", "h#1", "a/b?c"])
def test_a_bucket_prefix_that_iceberg_would_cut_short_is_a_setting_error(tmp_path, prefix):
    with pytest.raises(SettingError, match="^CTR_STORAGE_URL: .*Iceberg's readers"):
        settings_for(tmp_path, storage_url=f"s3://some-bucket/{prefix}")


names = st.text(alphabet="[]*?{}'\\!^-a1 ,%#", min_size=1, max_size=8).filter(lambda name: name not in (".", ".."))
numbers = count()


@settings(max_examples=300, deadline=None)
@given(name=names)
def test_duckdb_reads_exactly_the_named_file_or_refuses_a_name_it_cannot_read(tmp_path_factory, name):
    folder = tmp_path_factory.getbasetemp() / "globs" / str(next(numbers))
    number = next(numbers)
    decoys = ["a", "1", "aa", "11", "[", "]", "a1"]
    with closing(duckdb.connect()) as connection:
        for decoy, value in [(name, number)] + [(decoy, -1) for decoy in decoys if decoy != name]:
            os.makedirs(folder / decoy, exist_ok=True)
            connection.execute(f"COPY (SELECT {value} AS v) TO {sql_text(str(folder / decoy / 'f.parquet'))} (FORMAT parquet)")
        path = str(folder / name / "f.parquet")
        try:
            literal = glob_literal(path)
        except StorageError:
            assert "\\" in name and any(char in name for char in "[*?")
            return
        assert connection.sql(f"SELECT v FROM read_parquet({sql_text(literal)})").fetchall() == [(number,)]


@given(name=st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=12).filter(
    lambda name: name not in (".", "..")))
def test_the_sqlite_catalog_uri_names_the_catalog_file_exactly(tmp_path_factory, name):
    storage = LocalStorage(root=str(tmp_path_factory.getbasetemp() / "uris" / name))
    settings = settings_for(tmp_path_factory.getbasetemp(), storage_url=storage.root)
    assert make_url(table_for(settings, storage).catalog_uri).database == storage.uri(ICEBERG_CATALOG)
