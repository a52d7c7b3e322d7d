"""The real `dagster dev`: launch a materialization through the webserver's GraphQL API, as the UI does."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.layout import partition_of_hour
from ctr_assets_tests.helpers import SAMPLE_START, settings_for, write_sample

LOCATION = "ctr_assets.definitions"
LATEST_CTR_MATERIALIZATION = """
query {
  assetOrError(assetKey: {path: ["ctr"]}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        partition
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path):
    settings = settings_for(tmp_path)
    write_sample(storage_for(settings), hours=1, contacts_per_hour=40)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((Path(__file__).parents[1] / "dagster.yaml").read_text())
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "CTR_STORAGE_URL": settings.storage_url,
           "CTR_FIRST_HOUR": settings.first_hour}
    dagster = Path(sys.executable).parent / "dagster"
    log = (tmp_path / "dagster_dev.log").open("w")
    process = subprocess.Popen(
        ["env", "--default-signal=INT,TERM", str(dagster), "dev", "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=10)
    try:
        wait_until_ready(client, process, tmp_path / "dagster_dev.log")
        yield client, settings
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own process group, started above
            process.wait()
        log.close()


def wait_until_ready(client: DagsterGraphQLClient, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited early:\n{log.read_text()[-3000:]}")
        try:
            client._execute("query { version }")
            return
        except (DagsterGraphQLClientError, OSError, Exception):
            time.sleep(1)
    pytest.fail(f"dagster dev did not answer within 120 s:\n{log.read_text()[-3000:]}")


def test_materializing_from_the_ui_api_succeeds_and_records_metadata(dagster_dev):
    client, settings = dagster_dev
    partition = partition_of_hour(SAMPLE_START)

    run_id = client.submit_job_execution("ctr_etl", repository_location_name=LOCATION,
                                         tags={"dagster/partition": partition})
    status = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)

    assert status == "SUCCESS"
    (materialization,) = client._execute(LATEST_CTR_MATERIALIZATION)["assetOrError"]["assetMaterializations"]
    metadata = {entry["label"]: entry.get("intValue") for entry in materialization["metadataEntries"]}
    assert materialization["runId"] == run_id and materialization["partition"] == partition
    assert metadata["dagster/row_count"] > 0 and metadata["rows inserted"] == metadata["dagster/row_count"]
