"""`ctr-assets ui` as a user starts it: the real `dagster dev` on the CLI's instance, asked through its GraphQL API
what the UI shows: every hour the CLI processed as a partition, and a dashboard link that opens the page."""

import os
import signal
import subprocess
import time
import urllib.request

import pytest
from dagster_graphql import DagsterGraphQLClient

from ctr_assets_tests.conftest import free_port
from ctr_assets_tests.test_cli import CLI, cli_environment, ctr_assets
from ctr_assets_tests.test_webserver import wait_until_ready

UI_STATE = """
query {
  assetNodes(assetKeys: [{path: ["ctr"]}]) {
    partitionDefinition { description }
    assetPartitionStatuses { ... on TimePartitionStatuses { ranges { startKey status } } }
  }
  assetOrError(assetKey: {path: ["dashboard"]}) {
    ... on Asset { assetMaterializations(limit: 1) { metadataEntries { label ... on UrlMetadataEntry { url } } } }
  }
}
"""


def test_the_ui_shows_hours_before_the_first_hour_setting_and_opens_the_dashboard(tmp_path):
    ui_port, dashboard_port = free_port(), free_port()
    env = {"CTR_FIRST_HOUR": None, "CTR_DASHBOARD_URL": f"http://127.0.0.1:{dashboard_port}/"}
    assert ctr_assets("simulate", "--start", "2019-05-01T10", "--hours", "1", "--contacts-per-hour", "20",
                      cwd=tmp_path, env=env).returncode == 0
    assert ctr_assets("run", cwd=tmp_path, env=env).returncode == 0
    log = tmp_path / "ui.log"
    with log.open("w") as output:
        ui = subprocess.Popen([*CLI, "ui", "--port", str(ui_port)], cwd=tmp_path, env=cli_environment(env),
                              stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=ui_port, timeout=30)
        wait_until_ready(client, ui, log)
        state = client._execute(UI_STATE)
        (ctr,) = state["assetNodes"]
        assert ctr["partitionDefinition"]["description"].startswith("Hourly, starting 2019-05-01-10:00 UTC")
        assert {"startKey": "2019-05-01-10:00", "status": "MATERIALIZED"} in ctr["assetPartitionStatuses"]["ranges"]
        (materialization,) = state["assetOrError"]["assetMaterializations"]
        (link,) = [entry["url"] for entry in materialization["metadataEntries"] if entry["label"] == "url"]
        assert link == f"http://127.0.0.1:{dashboard_port}/index.html"
        with urllib.request.urlopen(link, timeout=10) as page:
            assert page.read() == (tmp_path / "ctr_data" / "dashboards" / "index.html").read_bytes()
    finally:
        ui.send_signal(signal.SIGTERM)  # it stops dagster dev, then itself
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)  # the group started above: ui and its dagster dev
            raise
    time.sleep(1)
    with pytest.raises(OSError):  # dagster dev stopped with it
        urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/", timeout=5)
