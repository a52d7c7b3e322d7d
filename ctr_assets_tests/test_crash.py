"""Nothing lost, nothing doubled: runs killed with SIGKILL at every write, runs racing each other, and the
real `ctr-assets run` killed mid-flight (design rules 3, 6 and 7). Each ends compared with a clean run."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ctr_assets.lake.layout import WRITTEN_PREFIXES
from ctr_assets.lake.pipeline import pending_raw_keys
from ctr_assets.lake.storage import LocalStorage
from ctr_assets_tests.drivers import (
    CountingStorage,
    copy_raw,
    derived_state,
    kill_at,
    run_all_pending,
    run_concurrently,
    run_in_two,
    write_crash_sample,
)
from ctr_assets_tests.test_cli import CLI, cli_environment, ctr_assets


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """Raw objects only; each test copies them into a fresh folder."""
    folder = tmp_path_factory.mktemp("sample")
    write_crash_sample(LocalStorage(root=str(folder)))
    return folder


@pytest.fixture(scope="module")
def clean(sample, tmp_path_factory) -> tuple[dict, int]:
    """What uninterrupted runs derive, and how many objects they publish on the way."""
    folder = tmp_path_factory.mktemp("clean")
    copy_raw(sample, folder)
    counting = CountingStorage(root=str(folder))
    run_in_two(str(folder), counting)
    state = derived_state(counting)
    assert any(key.startswith("quarantine/") for key in state["files"])
    by_contact = {row[0]: row for row in state["table"]}
    assert "twin" in by_contact and "mover" in by_contact and len(state["table"]) > 30
    assert not counting.exists("parquet/ctr/dt=2026-03-01/ctr.parquet")  # the mover left its first date
    return state, counting._published


def fresh(sample: Path, target: Path) -> LocalStorage:
    copy_raw(sample, target)
    return LocalStorage(root=str(target))


def assert_like_a_clean_run(storage: LocalStorage, clean_state: dict) -> None:
    assert derived_state(storage) == clean_state
    assert pending_raw_keys(storage) == {}
    contactids = [row[0] for row in clean_state["table"]]
    assert len(contactids) == len(set(contactids))


def staged_files(storage: LocalStorage) -> list[Path]:
    return [path for prefix in WRITTEN_PREFIXES for path in (storage.root_path / prefix).rglob(".tmp-*")]


def test_a_run_killed_at_any_write_then_rerun_ends_like_a_clean_run(sample, clean, tmp_path):
    clean_state, writes = clean
    kill_points = [(number, phase) for number in range(1, writes + 1) for phase in ("staged", "published")]
    for number, phase in kill_points:
        storage = fresh(sample, tmp_path / f"kill-{number}-{phase}")

        assert kill_at(storage.root_path, number, phase), (number, phase)
        # What a reader sees meanwhile: never a staged file, whatever the killed run left behind.
        assert not any(".tmp-" in item.key for prefix in WRITTEN_PREFIXES for item in storage.list(prefix))
        run_all_pending(str(storage.root_path))

        assert_like_a_clean_run(storage, clean_state)
    print(f"\nkill points tried: {len(kill_points)} ({writes} writes, killed before and after publishing each)")


def test_a_run_killed_twice_in_a_row_then_rerun_ends_like_a_clean_run(sample, clean, tmp_path):
    clean_state, writes = clean
    storage = fresh(sample, tmp_path / "twice")
    assert kill_at(storage.root_path, writes // 2, "staged")
    assert kill_at(storage.root_path, writes // 4, "published")  # the rerun dies too, earlier in its own run
    run_all_pending(str(storage.root_path))
    assert_like_a_clean_run(storage, clean_state)


def test_runs_racing_on_one_folder_end_like_one_run(sample, clean, tmp_path):
    clean_state, _ = clean
    for round_number in range(2):
        storage = fresh(sample, tmp_path / f"race-{round_number}")
        assert run_concurrently(storage.root_path, 3) == [0, 0, 0]
        assert_like_a_clean_run(storage, clean_state)


def test_a_run_killed_holding_the_table_lock_does_not_block_the_next(sample, clean, tmp_path):
    clean_state, writes = clean
    storage = fresh(sample, tmp_path / "lock")
    assert kill_at(storage.root_path, writes - 1, "staged")  # inside the merge, lock held
    began = time.monotonic()
    run_all_pending(str(storage.root_path))
    assert time.monotonic() - began < 30
    assert_like_a_clean_run(storage, clean_state)


def test_abandoned_staged_files_are_removed_by_a_later_run(sample, clean, tmp_path):
    clean_state, _ = clean
    storage = fresh(sample, tmp_path / "staged")
    assert kill_at(storage.root_path, 3, "staged")
    (left,) = staged_files(storage)
    an_hour_and_more_ago = time.time() - 3700
    os.utime(left, (an_hour_and_more_ago, an_hour_and_more_ago))
    run_all_pending(str(storage.root_path))
    assert staged_files(storage) == []
    assert_like_a_clean_run(storage, clean_state)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_ctr_assets_run_killed_while_merging_then_two_runs_at_once_end_like_a_clean_run(sample, clean, tmp_path):
    """The real command, through Dagster: killed while it holds the table lock in the middle of its merge
    (seen by watching the folder, no hooks), then two `ctr-assets run` started together finish the work."""
    clean_state, _ = clean
    storage = fresh(sample, tmp_path / "ctr_data")

    def start() -> subprocess.Popen:
        return subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=cli_environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    lock_file = storage.root_path / ".locks" / "ctr_table.lock"
    merging = start()
    wait_for(lambda: lock_file.exists() and f"pid {merging.pid} " in lock_file.read_text(), merging)
    merging.send_signal(signal.SIGKILL)
    merging.wait()

    together = [start(), start()]
    outputs = [process.communicate(timeout=300) for process in together]
    assert [process.returncode for process in together] == [0, 0], outputs
    assert_like_a_clean_run(storage, clean_state)
    assert ctr_assets("status", cwd=tmp_path).stdout.count("(0 pending)") == 1
