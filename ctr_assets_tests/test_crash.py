"""Nothing lost, nothing doubled: runs killed with SIGKILL at every write (the table's commit between two of
them), runs racing each other on a folder and on a bucket with the Glue catalog, a reader polling during
merges, and the real `ctr-assets run` killed mid-flight (design rules 3, 6 and 7). Each ends compared with a
clean run."""

import os
import signal
import subprocess
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.iceberg import load_table
from ctr_assets.lake.layout import WRITTEN_PREFIXES
from ctr_assets.lake.pipeline import pending_raw_keys
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets_tests.drivers import (
    PROCESSES,
    CountingStorage,
    copy_raw,
    derived_state,
    kill_at,
    run_all_pending,
    run_concurrently,
    run_in_two,
)
from ctr_assets_tests.helpers import (
    SAMPLE_START,
    ctr_record,
    firehose_object,
    local_table,
    raw_key,
    table_rows,
)
from ctr_assets_tests.test_cli import CLI, cli_environment, ctr_assets


@pytest.fixture(scope="module")
def clean(crash_sample, tmp_path_factory) -> tuple[dict, int]:
    """What uninterrupted runs derive, and how many objects they publish on the way."""
    folder = tmp_path_factory.mktemp("clean")
    copy_raw(crash_sample, folder)
    counting = CountingStorage(root=str(folder))
    run_in_two(str(folder), counting)
    state = derived_state(counting)
    assert any(key.startswith("quarantine/") for key in state["files"])
    by_contact = {dict(row)["contactid"]: dict(row) for row in state["table"]}
    assert "twin" in by_contact and "mover" in by_contact and len(state["table"]) > 30
    assert by_contact["mover"]["day"] == "2026-03-02"  # the mover left its first day
    return state, counting.published


def fresh(source: Path, target: Path) -> LocalStorage:
    copy_raw(source, target)
    return LocalStorage(root=str(target))


def assert_like_a_clean_run(storage: LocalStorage, clean_state: dict) -> None:
    assert derived_state(storage) == clean_state
    assert pending_raw_keys(storage, local_table(storage)) == {}
    contactids = [dict(row)["contactid"] for row in clean_state["table"]]
    assert len(contactids) == len(set(contactids))


def staged_files(storage: LocalStorage) -> list[Path]:
    return [path for prefix in WRITTEN_PREFIXES for path in (storage.root_path / prefix).rglob(".tmp-*")]


def test_a_run_killed_at_any_write_then_rerun_ends_like_a_clean_run(crash_sample, clean, tmp_path):
    clean_state, writes = clean
    kill_points = [(number, phase) for number in range(1, writes + 1) for phase in ("staged", "published")]
    for number, phase in kill_points:
        storage = fresh(crash_sample, tmp_path / f"kill-{number}-{phase}")

        assert kill_at(storage.root_path, number, phase), (number, phase)
        # What a reader sees meanwhile: never a staged file, whatever the killed run left behind.
        assert not any(".tmp-" in item.key for prefix in WRITTEN_PREFIXES for item in storage.list(prefix))
        run_all_pending(str(storage.root_path))

        assert_like_a_clean_run(storage, clean_state)
    print(f"\nkill points tried: {len(kill_points)} ({writes} writes, killed before and after publishing each)")


def test_a_run_killed_twice_in_a_row_then_rerun_ends_like_a_clean_run(crash_sample, clean, tmp_path):
    clean_state, writes = clean
    storage = fresh(crash_sample, tmp_path / "twice")
    assert kill_at(storage.root_path, writes // 2, "staged")
    assert kill_at(storage.root_path, writes // 4, "published")  # the rerun dies too, earlier in its own run
    run_all_pending(str(storage.root_path))
    assert_like_a_clean_run(storage, clean_state)


def test_runs_racing_on_one_folder_end_like_one_run(crash_sample, clean, tmp_path):
    clean_state, _ = clean
    for round_number in range(2):
        storage = fresh(crash_sample, tmp_path / f"race-{round_number}")
        assert run_concurrently(storage.root_path, 3) == [0, 0, 0]
        assert_like_a_clean_run(storage, clean_state)


def test_a_run_killed_between_writing_its_data_files_and_committing_leaves_the_table_as_it_was(crash_sample, clean, tmp_path):
    clean_state, _ = clean
    storage = fresh(crash_sample, tmp_path / "uncommitted")
    assert kill_at(storage.root_path, 0, "published", prefix="parquet/ctr/data/")  # in place, not committed
    assert load_table(local_table(storage)) is None or load_table(local_table(storage)).current_snapshot() is None
    assert list(storage.list("parquet/ctr/data/"))  # the orphan is there, and nothing names it
    run_all_pending(str(storage.root_path))
    assert_like_a_clean_run(storage, clean_state)


def test_runs_racing_on_a_bucket_with_the_glue_catalog_end_like_one_run(crash_sample, clean, s3_settings, moto):
    clean_state, _ = clean
    storage = storage_for(s3_settings)
    for path in (crash_sample / "raw").rglob("*"):
        if path.is_file():
            storage.write(path.relative_to(crash_sample).as_posix(), path.read_bytes())
    settings = s3_settings.model_copy(update={"flatten_workers": 1})
    assert run_concurrently(settings, 3) == [0, 0, 0]
    table = table_for(settings, storage)
    state = derived_state(storage, table)
    assert state["table"] == clean_state["table"] and state["files"] == clean_state["files"]
    assert moto.client("glue").get_table(DatabaseName=settings.glue_database, Name="ctr")["Table"][
        "Parameters"]["table_type"] == "ICEBERG"


def test_a_reader_polling_during_merges_never_sees_a_contact_twice_or_lose_one(crash_sample, tmp_path):
    """Contacts moving between days in both directions while a reader queries the current snapshot."""
    storage = fresh(crash_sample, tmp_path / "polled")
    run_all_pending(str(storage.root_path))
    location = local_table(storage)
    seen_counts = set()
    moves = []
    for number in range(6):  # every update moves some contacts forward a day and others back
        shift = timedelta(days=1 if number % 2 == 0 else -1)
        records = [ctr_record(f"move-{n}", SAMPLE_START + (shift if n % 2 else -shift),
                              SAMPLE_START + timedelta(hours=2 + number)) for n in range(20)]
        moves.append(records)
    storage.write(raw_key(SAMPLE_START + timedelta(hours=5), 1, "movers-0"), firehose_object(*[
        ctr_record(f"move-{n}", SAMPLE_START, SAMPLE_START + timedelta(hours=1)) for n in range(20)]))
    run_all_pending(str(storage.root_path))
    expected = len(table_rows_now(storage, location))
    writer = PROCESSES.Process(target=_merge_moves, args=(str(storage.root_path), moves))
    writer.start()
    while writer.is_alive():
        rows = table_rows_now(storage, location)
        ids = [row["contactid"] for row in rows]
        assert len(ids) == len(set(ids)) == expected
        seen_counts.add(len(ids))
    writer.join()
    assert writer.exitcode == 0
    assert seen_counts == {expected}


def table_rows_now(storage, location) -> list[dict]:
    with closing(scratch_connection()) as connection:
        return table_rows(connection, storage, location, "contactid")


def _merge_moves(root: str, moves: list[list[dict]]) -> None:
    storage = LocalStorage(root=root)
    for number, records in enumerate(moves, start=1):
        storage.write(raw_key(SAMPLE_START + timedelta(hours=5 + number), 1, f"movers-{number}"),
                      firehose_object(*records))
        run_all_pending(root)


def test_abandoned_staged_files_are_removed_by_a_later_run(crash_sample, clean, tmp_path):
    clean_state, _ = clean
    storage = fresh(crash_sample, tmp_path / "staged")
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


def test_ctr_assets_run_killed_while_merging_then_two_runs_at_once_end_like_a_clean_run(crash_sample, clean, tmp_path):
    """The real command, through Dagster: killed in the middle of its merge (seen by watching the folder, no
    hooks), then two `ctr-assets run` started together finish the work."""
    clean_state, _ = clean
    storage = fresh(crash_sample, tmp_path / "ctr_data")

    def start() -> subprocess.Popen:
        return subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=cli_environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    data = storage.root_path / "parquet" / "ctr" / "data"
    merging = start()
    wait_for(lambda: data.exists() and any(data.rglob("*.parquet")), merging)  # its merge has begun writing
    merging.send_signal(signal.SIGKILL)
    merging.wait()

    together = [start(), start()]
    outputs = [process.communicate(timeout=300) for process in together]
    assert [process.returncode for process in together] == [0, 0], outputs
    assert_like_a_clean_run(storage, clean_state)
    assert ctr_assets("status", cwd=tmp_path).stdout.count("(0 pending)") == 1
