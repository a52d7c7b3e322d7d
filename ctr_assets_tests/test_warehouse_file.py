"""The warehouse file as the README invites users to use it: another DuckDB process holding `ctr.duckdb` open
while the pipeline runs. A read-only holder never holds a run up and keeps the version it opened; a
read-write holder makes the run fail at once, naming its process."""

import subprocess
import sys
import time

import dagster as dg
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.defs.resources import storage_for
from ctr_assets_tests.helpers import SAMPLE_START, ctr_record, firehose_object, raw_key, settings_for

# A DuckDB client in a process of its own: it opens the file, then answers each SQL line on its input.
CLIENT = """
import duckdb, sys
connection = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read-only")
print("open", flush=True)
for line in sys.stdin:
    print(connection.sql(line).fetchall()[0][0], flush=True)
"""
COUNT = "SELECT count(*) FROM ctr\n"
FAST_SECONDS = 60  # dagster-duckdb's retries on a locked file made the run wait about 3.5 minutes


@pytest.fixture
def built(tmp_path):
    """A folder whose table and warehouse hold two contacts, and a way to add one more and run again."""
    settings = settings_for(tmp_path)
    storage, instance = storage_for(settings), dg.DagsterInstance.ephemeral()

    def add(contact_id: str):
        storage.write(raw_key(SAMPLE_START, second=len(list(storage.list("raw/")))),
                      firehose_object(ctr_record(contact_id, SAMPLE_START)))
        started = time.monotonic()
        summary = run_pipeline(settings=settings, instance=instance)
        return summary, time.monotonic() - started

    assert add("first")[0].ok and add("second")[0].ok
    return settings, add


@pytest.fixture
def client(built):
    clients = []

    def start(mode: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", CLIENT, built[0].warehouse_path, mode], text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        clients.append(process)
        assert process.stdout.readline() == "open\n"
        return process

    yield start
    for process in clients:
        process.kill()
        process.wait()


def ask(process: subprocess.Popen, sql: str) -> str:
    process.stdin.write(sql)
    process.stdin.flush()
    return process.stdout.readline().strip()


def test_a_reader_holding_the_file_never_holds_up_a_run_and_keeps_its_version(built, client):
    settings, add = built
    reader = client("read-only")
    assert ask(reader, COUNT) == "2"

    summary, seconds = add("third")

    assert summary.ok, summary.failed_runs
    assert seconds < FAST_SECONDS
    assert ask(reader, COUNT) == "2"  # what it opened, whole
    assert ask(client("read-only"), COUNT) == "3"  # the next reader sees the new file


def test_a_writer_holding_the_file_fails_the_run_at_once_naming_its_process(built, client):
    settings, add = built
    writer = client("read-write")

    summary, seconds = add("third")

    assert seconds < FAST_SECONDS
    # The table's merge, then the dashboards' refresh: each says what holds the file, in one line.
    (merge, refresh) = summary.failed_runs
    assert ": ctr: WarehouseBusy: " in merge and ": dashboard_aggregates: WarehouseBusy: " in refresh
    for failure in (merge, refresh):
        assert f"{settings.warehouse_path} is open read-write in " in failure
        assert f"(PID {writer.pid})" in failure and "\n" not in failure
    writer.kill()
    writer.wait()
    summary, _ = add("fourth")
    assert summary.ok
    assert ask(client("read-only"), COUNT) == "4"
