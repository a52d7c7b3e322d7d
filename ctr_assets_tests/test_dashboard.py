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
    create_views,
    prepare_metrics,
    scratch_connection,
)
from ctr_assets.settings import CtrSettings
from ctr_assets_tests.browser import CHROMIUM, Browser

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
        "kpi-contacts": "29",  # 33 deliveries, 29 contact ids
        "kpi-handled": "18",  # connected to an agent (not missed's frank, not monitor's supervisor)
        "kpi-abandonment": "20.8%",  # abandoned, missed, queue-move-2, same-name, task-expired / 24 queued
        "kpi-service-level": "54.2%",  # 13 of 24 queued left the queue within 30 s
        "kpi-speed-of-answer": "0:25",  # 406 s in queue / 16 answered from the queue = 25.4 s
        "kpi-handle-time": "3:00",  # 3,235 s of talk, hold and ACW / 18 handled = 179.7 s
    }
    assert "bad" in rendered["kpis"]["kpi-service-level"]["status"]  # 50% is under the 80% target


def test_the_dashboard_asset_links_the_page_from_its_metadata(hand_built):
    event = hand_built.instance.get_latest_materialization_event(dg.AssetKey("dashboard"))
    metadata = event.asset_materialization.metadata
    assert metadata["url"].value == f"file://{hand_built.storage.uri(DASHBOARD_FILE)}"
    assert metadata["bytes"].value == len(hand_built.storage.read(DASHBOARD_FILE))


def month_of_contacts(connection, days: int = 30, agents: int = 200, per_day: int = 10_000) -> int:
    """A month of a contact centre as a `ctr` table in `connection` (too many contacts to go through the sample
    generator and the pipeline in a test): 7 queues, three channels, business-hours traffic, and the mix of
    IVR-only, abandoned, outbound, callback, transferred and held contacts. Returns the number of contacts."""
    connection.execute("""
    CREATE TABLE ctr AS
    WITH draws AS (
        SELECT
            i,
            [(hash(i, k) % 1000000) / 1000000 FOR k IN range(12)] AS u,
            TIMESTAMP '2026-03-01' + to_days(CAST(i % $days AS INTEGER)) AS day
        FROM range($days * $per_day) AS t(i)
    ),
    kinds AS (
        SELECT
            i, u,
            day + to_seconds(CAST(8 * 3600 + (u[1] + u[2] + u[3]) / 3 * 12 * 3600 AS BIGINT)) AS initiated,
            CASE WHEN u[4] < 0.12 THEN 'ivr' WHEN u[4] < 0.20 THEN 'abandoned' WHEN u[4] < 0.26 THEN 'outbound'
                 WHEN u[4] < 0.29 THEN 'callback' WHEN u[4] < 0.30 THEN 'expired' ELSE 'handled' END AS kind,
            CASE WHEN u[5] < 0.8 THEN 'VOICE' WHEN u[5] < 0.93 THEN 'CHAT' ELSE 'TASK' END AS channel,
            ['Sales', 'Support', 'Billing', 'Retention', 'Technical Support', 'Claims', 'Collections'][
                1 + CAST(floor(u[6] * u[6] * 7) AS INTEGER)] AS queue_name,
            'agent.' || lpad(CAST(CAST(floor(u[7] * $agents) AS INTEGER) AS VARCHAR), 3, '0') AS agent_name,
            CAST(u[8] * u[8] * 240 AS BIGINT) AS wait,
            CAST(60 + u[12] * 600 AS BIGINT) AS talk,
            CAST(u[9] < 0.3 AS INTEGER) * (1 + CAST(u[10] * 3 AS INTEGER)) AS holds
        FROM draws
    )
    SELECT
        'c-' || i AS contactid,
        channel,
        CASE kind WHEN 'outbound' THEN 'OUTBOUND' WHEN 'callback' THEN 'CALLBACK' WHEN 'expired' THEN 'CALLBACK'
             ELSE 'INBOUND' END AS initiationmethod,
        CASE WHEN kind IN ('ivr', 'expired') THEN 'CONTACT_FLOW_DISCONNECT'
             WHEN kind = 'abandoned' OR u[11] < 0.55 THEN 'CUSTOMER_DISCONNECT' ELSE 'AGENT_DISCONNECT' END
            AS disconnectreason,
        initiated AS initiationtimestamp,
        initiated + to_seconds(20 + wait + CASE WHEN kind IN ('handled', 'outbound', 'callback')
                                                THEN talk + holds * 45 ELSE 0 END) AS disconnecttimestamp,
        CASE WHEN kind = 'ivr' THEN NULL ELSE {
            'arn': 'arn:queue/' || queue_name, 'name': queue_name,
            'enqueuetimestamp': CASE WHEN kind = 'outbound' THEN NULL ELSE initiated + to_seconds(20) END,
            'duration': CASE WHEN kind = 'outbound' THEN 0 ELSE wait END} END AS queue,
        CASE WHEN kind IN ('handled', 'outbound', 'callback') THEN {
            'arn': 'arn:agent/' || agent_name, 'username': agent_name,
            'connectedtoagenttimestamp': initiated + to_seconds(20 + wait),
            'agentinteractionduration': talk, 'customerholdduration': holds * 45, 'numberofholds': holds,
            'aftercontactworkduration': CAST(u[2] * 120 AS BIGINT)} END AS agent,
        CASE WHEN kind = 'handled' AND u[3] < 0.08 THEN 'c-' || (i + 1) END AS nextcontactid,
        CAST(NULL AS TIMESTAMP) AS transfercompletedtimestamp
    FROM kinds
    """, {"days": days, "per_day": per_day, "agents": agents})
    create_views(connection)
    return days * per_day


@needs_chromium
def test_a_month_of_a_200_agent_centre_stays_small_and_readable(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    settings = CtrSettings.from_env({}, storage_url=storage.root)
    with closing(scratch_connection()) as connection:
        contacts = month_of_contacts(connection, days=30, agents=200)
        prepare_metrics(connection, settings)
        for name in AGGREGATES:
            build_aggregate(connection, storage, name)
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
