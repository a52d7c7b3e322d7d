"""Symbolic links inside a storage folder are followed only where they stay inside it: whatever a link in the
folder points at, nothing outside the folder is read, written or listed, by the storage itself, DuckDB,
pyiceberg or SQLite; a link that stays inside works like the folder it points at."""

import hashlib
import os
from contextlib import closing
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.storage import LocalStorage, StorageError
from ctr_assets.metrics.warehouse import refresh_ctr_view, scratch_connection
from ctr_assets_tests.helpers import SAMPLE_START, ctr_record, firehose_object, raw_key, settings_for, table_rows

SECRET = "outside-secret"


@pytest.fixture
def folder(tmp_path):
    """A storage folder with one raw object, and beside it a folder `outside` holding a file, a folder and a
    Parquet file with the secret contact."""
    settings = settings_for(tmp_path)
    storage = storage_for(settings)
    storage.write(raw_key(SAMPLE_START, second=1), firehose_object(ctr_record("inside", SAMPLE_START)))
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "folder" / "listed-only-from-outside").touch()
    (outside / "secret.json").write_bytes(firehose_object(ctr_record(SECRET, SAMPLE_START)))
    with closing(duckdb.connect()) as connection:
        connection.execute(f"COPY (SELECT '{SECRET}' AS contactid, TIMESTAMP '2026-03-02 08:00:00' AS "
                           f"initiationtimestamp) TO '{outside / 'secret.parquet'}' (FORMAT parquet)")
    return settings, storage, outside


def snapshot(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
            for path in sorted(folder.rglob("*"))}


def secret_inside(storage: LocalStorage) -> list[str]:
    """Files of the folder holding the secret: what a copy of something outside would look like."""
    return [path.as_posix() for path in storage.root_path.rglob("*")
            if path.is_file() and not path.is_symlink() and SECRET.encode() in path.read_bytes()]


def run(settings):
    return run_pipeline(settings=settings, instance=dg.DagsterInstance.ephemeral())


def contact_ids(settings) -> list[str]:
    storage = storage_for(settings)
    with closing(scratch_connection()) as connection:
        return [row["contactid"] for row in table_rows(connection, storage, table_for(settings, storage), "contactid")]


@pytest.mark.parametrize("link, target, outcome", [
    ("dashboards", "folder", "refused"),
    ("flatfiles", "folder", "refused"),
    ("parquet/ctr/metadata", "folder", "refused"),
    ("catalog", "folder", "refused"),
    ("ctr.duckdb", "secret.json", "replaced"),
    (raw_key(SAMPLE_START, second=2), "secret.json", "set aside"),
    (raw_key(SAMPLE_START, second=2), "folder", "set aside"),
])
def test_a_link_leading_out_is_never_followed(folder, link, target, outcome):
    settings, storage, outside = folder
    (storage.root_path / link).parent.mkdir(parents=True, exist_ok=True)
    (storage.root_path / link).symlink_to(outside / target)
    before = snapshot(outside)

    if outcome == "refused":  # the write would have gone out: one line naming the link
        with pytest.raises(StorageError, match=f"a symbolic link in {storage.root_path} leads outside it"):
            run(settings)
    else:
        assert run(settings).ok
        assert contact_ids(settings) == ["inside"]

    assert snapshot(outside) == before  # nothing written there
    assert secret_inside(storage) == []  # nothing copied from there
    assert (storage.root_path / link).is_symlink() == (outcome != "replaced")


def test_a_data_file_replaced_by_a_link_leading_out_is_never_read(folder):
    settings, storage, outside = folder
    assert run(settings).ok
    (data_file,) = storage.root_path.glob("parquet/ctr/data/*/*.parquet")
    data_file.unlink()
    data_file.symlink_to(outside / "secret.parquet")

    with closing(scratch_connection()) as connection, pytest.raises(StorageError, match="a symbolic link on its way"):
        refresh_ctr_view(connection, storage, table_for(settings, storage))


def test_links_that_stay_inside_work_like_their_target_and_a_loop_ends(folder):
    settings, storage, _ = folder
    root = storage.root_path
    (root / "published").mkdir()
    (root / "dashboards").symlink_to(root / "published")
    (root / "incoming").mkdir()
    (root / "incoming" / "late.json").write_bytes(firehose_object(ctr_record("linked", SAMPLE_START)))
    (root / raw_key(SAMPLE_START, second=3)).symlink_to(root / "incoming" / "late.json")
    (root / "raw" / "loop").symlink_to(root / "raw")

    summary = run(settings)

    assert summary.ok, summary.failed_runs
    assert contact_ids(settings) == ["inside", "linked"]
    assert (root / "published" / "index.html").is_file() and (root / "dashboards").is_symlink()
    listed = [item.key for item in storage.list("raw/")]
    assert raw_key(SAMPLE_START, second=3) in listed and len(listed) == len(set(listed)) < 10


def test_a_reader_or_writer_of_a_key_never_goes_through_a_link_leading_out(folder):
    _, storage, outside = folder
    (storage.root_path / "quarantine").symlink_to(outside / "folder")
    (storage.root_path / "kinesis").mkdir()
    (storage.root_path / "kinesis" / "checkpoints.json").symlink_to(outside / "secret.json")
    before = snapshot(outside)

    for attempt in (lambda: storage.write("quarantine/x.ndjson", b"x"), lambda: storage.read("kinesis/checkpoints.json"),
                    lambda: storage.uri("quarantine/x.ndjson"), lambda: list(storage.list("quarantine/")),
                    lambda: storage.exists("kinesis/checkpoints.json")):
        with pytest.raises(StorageError, match="leads outside it"):
            attempt()
    (storage.root_path / "raw" / "elsewhere").symlink_to(outside / "folder")
    assert [item.key for item in storage.list("raw/") if "elsewhere" in item.key] == ["raw/elsewhere"]  # not entered
    storage.write("kinesis/checkpoints.json", b"{}")  # replaces the link, inside

    assert snapshot(outside) == before and storage.read("kinesis/checkpoints.json") == b"{}"
    assert not (storage.root_path / "kinesis" / "checkpoints.json").is_symlink()
    assert [item.key for item in storage.list("kinesis/")] == ["kinesis/checkpoints.json"]
    assert os.path.exists(outside / "secret.json")
