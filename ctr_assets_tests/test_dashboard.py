"""The dashboard page as a manager sees it: opened from disk in headless Chromium with the network off.

Screenshots are saved in each test's tmp_path (`dashboard-fold.png`: the first 1366x768 screen;
`dashboard-full.png`: the whole page).
"""

import json
from contextlib import closing
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ctr_assets.defs.dashboards import DASHBOARD_FILE
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.metrics.dashboard import render_dashboard
from ctr_assets.metrics.warehouse import (
    AGGREGATES,
    build_aggregate,
    metric_parameters,
    refresh_ctr_view,
    scratch_connection,
)
from ctr_assets.settings import CtrSettings
from ctr_assets_tests.browser import CHROMIUM, Browser
from ctr_assets_tests.helpers import local_table, write_month_of_contacts

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
LAPTOP = (1366, 768)
PANELS = ("chart-volume", "chart-service-level", "table-queues", "chart-agents", "chart-disconnect-reasons",
          "table-agents", "chart-agent-queue")
# What the browser laid out: page size, KPI values, and per panel its box and the marks drawn with a size.
RENDERED = """JSON.stringify({
  width: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
  kpisBottom: document.getElementById('kpis').getBoundingClientRect().bottom,
  kpis: Object.fromEntries([...document.querySelectorAll('.kpi')].map(
    tile => [tile.id, {value: tile.querySelector('.v').innerText, status: tile.className}])),
  panels: Object.fromEntries(%s.map(id => {
    const panel = document.getElementById(id), box = panel.getBoundingClientRect();
    const drawn = [...panel.querySelectorAll('svg rect, svg circle, svg path, td')].filter(mark => {
      const size = mark.getBoundingClientRect(); return size.width > 0 && size.height > 0; });
    return [id, {width: box.width, height: box.height, marks: drawn.length}];
  })),
})""" % json.dumps(PANELS)


def look_at(page: Path, tmp_path: Path) -> dict:
    """Open `page` at laptop size, return what was rendered and requested, and save both screenshots."""
    with Browser(tmp_path / "profile", *LAPTOP) as browser:
        browser.open(page.as_uri())
        rendered = json.loads(browser.evaluate(RENDERED))
        rendered["requests"] = browser.requests
        browser.screenshot(tmp_path / "dashboard-fold.png")
        browser.viewport(LAPTOP[0], rendered["height"])
        browser.screenshot(tmp_path / "dashboard-full.png")
    for name in ("dashboard-fold.png", "dashboard-full.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name
    return rendered


def assert_readable_on_a_laptop(rendered: dict, page: Path) -> None:
    assert rendered["requests"] == [page.as_uri()]  # the page itself, nothing else
    assert rendered["width"] <= LAPTOP[0]  # no sideways scrolling
    assert rendered["kpisBottom"] <= LAPTOP[1]  # the headline numbers are on the first screen
    for panel in PANELS:
        box = rendered["panels"][panel]
        assert box["width"] >= 500 and box["height"] >= 150 and box["marks"] > 0, (panel, box)


def assert_self_contained(html: str) -> None:
    lowered = html.lower()
    for reference in ("http://", "https://", "<script", "<link", "<img", "url(", "@import"):
        assert reference not in lowered, reference


@needs_chromium
def test_the_page_shows_connect_kpis_and_draws_every_chart_offline(hand_built, tmp_path):
    page = hand_built.storage.path(DASHBOARD_FILE)
    assert_self_contained(page.read_text())

    rendered = look_at(page, tmp_path)

    assert_readable_on_a_laptop(rendered, page)
    kpis = {tile: shown["value"] for tile, shown in rendered["kpis"].items()}
    assert kpis == {
        "kpi-contacts": "10",  # 13 deliveries, 10 contact ids
        "kpi-handled": "7",  # connected to an agent: all but abandoned, ivr-only, expired-callback
        "kpi-abandonment": "12.5%",  # 1 abandoned / 8 queued (not outbound, not ivr-only)
        "kpi-service-level": "50.0%",  # within 30 s: answered-at-x, transfer-1, transfer-2, evening = 4 / 8
        "kpi-speed-of-answer": "0:22",  # (30 + 31 + 10 + 5 + 45 + 12) / 6 answered from the queue = 22.2 s
        "kpi-handle-time": "4:00",  # (360 + 290 + 130 + 100 + 100 + 500 + 200) / 7 handled = 240 s
    }
    assert "bad" in rendered["kpis"]["kpi-service-level"]["status"]  # 50% is under the 80% target


def test_the_dashboard_asset_links_the_page_from_its_metadata(hand_built):
    event = hand_built.instance.get_latest_materialization_event(dg.AssetKey("dashboard"))
    metadata = event.asset_materialization.metadata
    assert metadata["url"].value == f"file://{hand_built.storage.uri(DASHBOARD_FILE)}"
    assert metadata["bytes"].value == len(hand_built.storage.read(DASHBOARD_FILE))


@needs_chromium
def test_a_month_of_a_200_agent_centre_stays_small_and_readable(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    contacts = write_month_of_contacts(storage, days=30, agents=200)
    settings = CtrSettings.from_env({}, storage_url=storage.root)
    with closing(scratch_connection()) as connection:
        refresh_ctr_view(connection, storage, local_table(storage))
        for name in AGGREGATES:
            build_aggregate(connection, storage, name, metric_parameters(settings))
        html = render_dashboard(connection, settings)
    page = tmp_path / "index.html"
    page.write_text(html)

    # Bounded by design: per day and hour-of-day over a long period, top agents and queues, not every contact.
    assert contacts == 300_000 and len(html.encode()) < 1_000_000
    assert_self_contained(html)
    assert "by hour of day" in html and "(30 days)" in html and "Busiest 15 of 200 agents" in html
    assert_readable_on_a_laptop(look_at(page, tmp_path), page)


def test_an_empty_warehouse_still_renders_a_page(hand_built):
    with duckdb.connect() as connection:
        for name in AGGREGATES:
            parquet = hand_built.storage.uri(f"dashboards/{name}.parquet")
            connection.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{parquet}') WHERE false")
        html = render_dashboard(connection, hand_built.settings)
    assert "no contacts yet" in html and html.count("class='empty'") == 5
