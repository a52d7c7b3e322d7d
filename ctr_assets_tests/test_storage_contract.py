"""The storage contract, held by the local folder and by a bucket on a real S3 API alike."""

import os
import time
from contextlib import closing

import duckdb
import pytest

from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.storage import StorageError


@pytest.fixture
def storage(settings):
    return storage_for(settings)


def test_objects_round_trip_and_list_in_key_order_below_a_prefix(storage):
    for key in ["raw/2026/03/02/09/b", "raw/2026/03/02/08/z", "raw/2026/03/02/08/a", "raw2/x", "flatfiles/f"]:
        storage.write(key, key.encode())

    assert [item.key for item in storage.list("raw/")] == [
        "raw/2026/03/02/08/a", "raw/2026/03/02/08/z", "raw/2026/03/02/09/b"]
    assert [item.key for item in storage.list("raw/", start_after="raw/2026/03/02/08/a")] == [
        "raw/2026/03/02/08/z", "raw/2026/03/02/09/b"]
    assert [item.size for item in storage.list("raw2/")] == [len("raw2/x")]
    assert storage.read("raw/2026/03/02/09/b") == b"raw/2026/03/02/09/b"
    assert storage.exists("flatfiles/f") and not storage.exists("flatfiles/g")
    storage.delete("flatfiles/f")
    storage.delete("flatfiles/f")  # deleting what is gone is fine
    assert not storage.exists("flatfiles/f") and list(storage.list("flatfiles/")) == []


def test_a_writer_publishes_only_when_its_block_completes(storage):
    with pytest.raises(RuntimeError):
        with storage.writer("parquet/ctr/dt=2026-03-02/ctr.parquet") as staged:
            staged.write_bytes(b"half")
            raise RuntimeError("the merge failed half way")
    assert list(storage.list("parquet/")) == []

    with storage.writer("parquet/ctr/dt=2026-03-02/ctr.parquet") as staged:
        staged.write_bytes(b"whole")
    assert storage.read("parquet/ctr/dt=2026-03-02/ctr.parquet") == b"whole"


def test_keys_stay_inside_the_storage_root(storage):
    for key in ["../outside", "/absolute", "raw//double", "a/../../b"]:
        with pytest.raises(StorageError):
            storage.write(key, b"x")


def test_duckdb_reads_json_and_parquet_globs_through_attach(storage, tmp_path):
    storage.write("flatfiles/2026030208a", b'{"contactid": "a", "n": 1}\n{"contactid": "b", "n": 2}\n')
    with closing(duckdb.connect()) as connection:
        storage.attach(connection)
        for dt in ("2026-03-01", "2026-03-02"):
            with storage.writer(f"parquet/ctr/dt={dt}/ctr.parquet") as staged:
                connection.execute(
                    f"COPY (SELECT * FROM read_json('{storage.uri('flatfiles/2026030208a')}') WHERE n = {dt[-1]}) "
                    f"TO '{staged}' (FORMAT parquet)")
        rows = connection.sql(
            f"SELECT contactid, CAST(dt AS VARCHAR) FROM read_parquet('{storage.uri('parquet/ctr/')}*/*.parquet', "
            "hive_partitioning = true) ORDER BY 1").fetchall()
        httpfs = connection.sql(
            "SELECT count(*) FROM duckdb_extensions() WHERE extension_name = 'httpfs' AND loaded").fetchall()

    assert rows == [("a", "2026-03-01"), ("b", "2026-03-02")]
    assert httpfs == [(0,)]  # no extension download involved


def test_local_retention_deletes_only_expired_objects_below_the_prefix(tmp_path):
    from ctr_assets.lake.storage import LocalStorage

    storage = LocalStorage(root=str(tmp_path))
    for key in ["flatfiles/old", "flatfiles/new", "raw/2026/03/02/08/old"]:
        storage.write(key, b"{}\n")
    day_ago = time.time() - 25 * 3600
    for key in ["flatfiles/old", "raw/2026/03/02/08/old"]:
        os.utime(storage.path(key), (day_ago, day_ago))

    said = storage.apply_retention("flatfiles/", hours=24)

    assert [item.key for item in storage.list("")] == ["flatfiles/new", "raw/2026/03/02/08/old"]
    assert said.startswith("deleted 1 objects older than 24 h")
