"""`ctr-assets ui` as a user starts it: the real `dagster dev` on the CLI's instance, asked through its GraphQL API
what the UI shows: every hour the CLI processed as a partition, and a dashboard link that opens the page over
http (a browser does not follow a file:// link from the UI's page); on a bucket, a presigned link."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from ctr_assets.api import run_pipeline
from ctr_assets.defs.dashboards import DASHBOARD, DASHBOARD_FILE, dashboard_link
from ctr_assets.defs.resources import storage_for
from ctr_assets_tests.conftest import free_port
from ctr_assets_tests.helpers import write_sample
from ctr_assets_tests.test_cli import CLI, cli_environment, ctr_assets
from ctr_assets_tests.test_webserver import wait_until_ready

UI_STATE = """
query {
  assetNodes(assetKeys: [{path: ["ctr"]}]) {
    assetPartitionStatuses { ... on TimePartitionStatuses { ranges { startKey status } } }
  }
  assetOrError(assetKey: {path: ["dashboard"]}) {
    ... on Asset { assetMaterializations(limit: 1) { metadataEntries { label ... on UrlMetadataEntry { url } } } }
  }
}
"""


def test_the_ui_shows_the_hours_the_cli_processed_and_its_dashboard_link_opens_the_page(tmp_path):
    ui_port, dashboard_port = free_port(), free_port()
    env = {"CTR_DASHBOARD_URL": f"http://127.0.0.1:{dashboard_port}/"}
    assert ctr_assets("simulate", "--start", "2026-03-02T10", "--hours", "1", "--contacts-per-hour", "20",
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
        assert {"startKey": "2026-03-02-10:00", "status": "MATERIALIZED"} in ctr["assetPartitionStatuses"]["ranges"]
        (materialization,) = state["assetOrError"]["assetMaterializations"]
        (link,) = [entry["url"] for entry in materialization["metadataEntries"] if entry["label"] == "url"]
        assert link == f"http://127.0.0.1:{dashboard_port}/index.html"
        with urllib.request.urlopen(link, timeout=10) as page:
            assert page.read() == (tmp_path / "ctr_data" / "dashboards" / "index.html").read_bytes()
        (tmp_path / "secret.txt").write_text("not a dashboard")
        (tmp_path / "ctr_data" / "dashboards" / "outside").symlink_to(tmp_path)
        with pytest.raises(urllib.error.HTTPError, match="404"):  # a link out of dashboards/ is not followed
            urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/outside/secret.txt", timeout=10)
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


def test_on_a_bucket_the_dashboard_link_is_presigned_and_opens_the_page(s3_settings, moto):
    storage = storage_for(s3_settings)
    write_sample(storage, hours=1, contacts_per_hour=20)
    instance = dg.DagsterInstance.ephemeral()
    assert run_pipeline(settings=s3_settings, instance=instance).ok

    link = instance.get_latest_materialization_event(DASHBOARD).asset_materialization.metadata["url"].value
    query = parse_qs(urlsplit(link).query)
    assert link.startswith(f"{moto.url}/{s3_settings.s3_location[0]}/contact-centre/dashboards/index.html?")
    assert query["X-Amz-Expires"] == ["604800"] and query["X-Amz-Signature"]
    with urllib.request.urlopen(link, timeout=10) as page:  # no credentials: the signature is the permission
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert page.read() == storage.read(DASHBOARD_FILE)

    published = s3_settings.model_copy(update={"dashboard_url": "https://reports.example.com/connect"})
    assert dashboard_link(published, storage) == "https://reports.example.com/connect/index.html"


def test_a_dashboard_address_already_in_use_is_one_line_and_no_ui_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ctr_assets("ui", "--port", str(free_port()), cwd=tmp_path,
                            env={"CTR_DASHBOARD_URL": f"http://127.0.0.1:{port}/"})
    assert result.returncode == 2 and "Dagster UI on" not in result.stdout
    assert result.stderr == (f"ctr-assets: error: CTR_DASHBOARD_URL: cannot serve dashboards/ on 127.0.0.1:{port} "
                             "(Address already in use): stop what uses the port, or set CTR_DASHBOARD_URL to another "
                             "address\n")
