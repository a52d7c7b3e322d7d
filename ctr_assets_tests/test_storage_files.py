"""The files a run leaves: modes that follow the user's umask, whoever writes them (the storage, DuckDB,
pyiceberg, SQLite, the warehouse), and no staged file once a killed run has been followed by another."""

import os
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.storage import STAGED_PREFIX, remove_abandoned, staged_file
from ctr_assets_tests.drivers import kill_at, run_all_pending, write_crash_sample
from ctr_assets_tests.helpers import settings_for, write_sample

SQLITE = "catalog/iceberg.db"  # SQLite creates its files 0644 less the umask, never group-writable


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_every_file_and_folder_a_run_makes_follows_the_umask(tmp_path, mask):
    settings = settings_for(tmp_path)
    with umask(mask):
        write_sample(storage_for(settings), hours=2, contacts_per_hour=20)
        assert run_pipeline(settings=settings, instance=dg.DagsterInstance.ephemeral()).ok

    root = Path(settings.storage_url)
    files = {path.relative_to(root).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in root.rglob("*")}
    expected = {name: (0o777 if (root / name).is_dir() else 0o644 if name == SQLITE else 0o666) & ~mask
                for name in files}
    assert files == expected
    assert {"ctr.duckdb", "dashboards/index.html", SQLITE} <= set(files) and len(files) > 60


@pytest.mark.parametrize("write", [1, 9])  # killed with a flatfile staged, or further on
def test_a_run_after_a_killed_one_leaves_no_staged_file(tmp_path, write):
    root = tmp_path / "data"
    write_crash_sample(storage_for(settings_for(tmp_path)))
    assert kill_at(root, write, "staged")
    assert list(root.rglob(f"{STAGED_PREFIX}*"))

    run_all_pending(str(root))

    assert list(root.rglob(f"{STAGED_PREFIX}*")) == []


# A process that stages a write in a folder and dies before publishing it; it prints the staged file.
DIES_STAGING = "import sys; from pathlib import Path; from ctr_assets.lake.storage import staged_file; " \
               "print(staged_file(Path(sys.argv[1])))"


def stage_and_die(folder: Path) -> Path:
    return Path(subprocess.run([sys.executable, "-c", DIES_STAGING, str(folder)], check=True, capture_output=True,
                               text=True).stdout.strip())


def test_staged_files_of_dead_writers_go_at_once_and_only_ours(tmp_path):
    dead = stage_and_die(tmp_path)
    alive = staged_file(tmp_path)  # this process's: it may still publish it
    foreign = tmp_path / f"{STAGED_PREFIX}someone-elses"
    foreign.touch()

    assert remove_abandoned(tmp_path, ours_only=True) == 1
    assert not dead.exists() and sorted(tmp_path.iterdir()) == sorted([alive, foreign])


def test_a_bucket_stages_in_the_temp_folder_and_removes_what_dead_writers_left_there(s3_settings):
    storage = storage_for(s3_settings)
    with storage.writer("raw/x") as staged:
        assert staged.parent == Path(tempfile.gettempdir())
    dead = stage_and_die(Path(tempfile.gettempdir()))

    assert storage.remove_abandoned_staging() >= 1
    assert not dead.exists()
