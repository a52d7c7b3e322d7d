"""The dashboard page as a manager sees it: opened from disk in headless Chromium with the network off, its
filters used, and every number it shows checked against the aggregate tables.

Screenshots are saved in each test's tmp_path (`dashboard-fold.png`: the first 1366x768 screen;
`dashboard-full.png`: the whole page).
"""

import json
import re
from contextlib import closing
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
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
    refresh_ctr_view,
    scratch_connection,
)
from ctr_assets.settings import CtrSettings
from ctr_assets_tests.browser import CHROMIUM, Browser
from ctr_assets_tests.hand_built import ARN
from ctr_assets_tests.helpers import local_table

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
LAPTOP = (1366, 768)
PANELS = ("chart-volume", "chart-service-level", "table-queues", "chart-agents", "chart-disconnect-reasons",
          "table-agents", "chart-agent-queue")
# What the browser laid out: page size, KPI values, the queue table, and per panel its box and the marks drawn.
RENDERED = """JSON.stringify({
  width: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
  kpisBottom: document.getElementById('kpis').getBoundingClientRect().bottom,
  period: document.getElementById('period').innerText,
  partialNote: document.getElementById('partial-note').innerText,
  kpis: Object.fromEntries([...document.querySelectorAll('.kpi')].map(
    tile => [tile.id, {value: tile.querySelector('.v').innerText, status: tile.className}])),
  queues: [...document.querySelectorAll('#table-queues tr[data-queue]')].map(
    row => [row.dataset.queue, ...[...row.cells].map(cell => cell.innerText)]),
  agents: [...document.querySelectorAll('#table-agents tr')].slice(1).map(row => [...row.cells].map(cell => cell.innerText)),
  notes: Object.fromEntries(%s.map(id => [id, document.querySelector('#' + id + ' .note').innerText])),
  panels: Object.fromEntries(%s.map(id => {
    const panel = document.getElementById(id), box = panel.getBoundingClientRect();
    const drawn = [...panel.querySelectorAll('svg rect, svg circle, svg path, td')].filter(mark => {
      const size = mark.getBoundingClientRect(); return size.width > 0 && size.height > 0; });
    return [id, {width: box.width, height: box.height, marks: drawn.length}];
  })),
})""" % (json.dumps(PANELS), json.dumps(PANELS))
# Picks an option of a filter by its text (or sets a date) and lets the page redraw, as a person would.
CHOOSE = """(() => {
  const control = document.getElementById(%s), wanted = %s;
  control.value = control.tagName === 'SELECT' ? [...control.options].find(o => o.text === wanted).value : wanted;
  control.dispatchEvent(new Event('change'));
})()"""
# Totals of the queue panels from the aggregate table, for the rows a filter keeps.
TOTALS = """
SELECT sum(contacts), sum(contacts_queued), sum(contacts_handled), sum(contacts_answered), sum(contacts_abandoned),
       sum(contacts_within_service_level), sum(queue_answer_seconds), sum(handle_seconds)
FROM queue_interval_metrics WHERE {where}
"""


def look_at(page: Path, tmp_path: Path, *choices: tuple[str, str]) -> dict:
    """Open `page` at laptop size, use the filters `choices` ((control id, option text or date) each), return
    what was rendered and requested, and save both screenshots."""
    with Browser(tmp_path / "profile", *LAPTOP) as browser:
        browser.open(page.as_uri())
        for control, value in choices:
            browser.evaluate(CHOOSE % (json.dumps(control), json.dumps(value)))
        rendered = json.loads(browser.evaluate(RENDERED))
        rendered["requests"], rendered["errors"] = browser.requests, browser.errors
        rendered["svg"] = browser.evaluate("document.querySelector('#chart-volume svg, #chart-volume .empty').outerHTML")
        rendered["rates"] = browser.evaluate("document.querySelector('#chart-service-level').innerHTML")
        browser.screenshot(tmp_path / "dashboard-fold.png")
        browser.viewport(LAPTOP[0], rendered["height"])
        browser.screenshot(tmp_path / "dashboard-full.png")
    for name in ("dashboard-fold.png", "dashboard-full.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name
    return rendered


def assert_readable_on_a_laptop(rendered: dict, page: Path) -> None:
    assert rendered["errors"] == []
    # The page itself, nothing else (Chromium draws the date inputs' calendar icon from a data: URL of its own).
    assert [url for url in rendered["requests"] if not url.startswith("data:")] == [page.as_uri()]
    assert rendered["width"] <= LAPTOP[0]  # no sideways scrolling
    assert rendered["kpisBottom"] <= LAPTOP[1]  # the headline numbers are on the first screen
    for panel in PANELS:
        box = rendered["panels"][panel]
        assert box["width"] >= 500 and box["height"] >= 150 and box["marks"] > 0, (panel, box)


def assert_self_contained(html: str) -> None:
    """Inline script and style only: nothing to fetch, from the network or from disk."""
    lowered = html.lower()
    for reference in ("http://", "https://", " src=", "<link", "<img", "url(", "@import", "fetch(", "xmlhttprequest"):
        assert reference not in lowered, reference


def half_up(value: float, places: int = 0) -> Decimal:
    """Rounding as the page's script does it (Math.round, toFixed): halves away from zero, on the exact double."""
    return Decimal(value).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def shown(queue_totals: tuple) -> dict[str, str]:
    """The KPI tiles the page must show for these totals (TOTALS' columns), formatted as the page formats them."""
    contacts, queued, handled, answered, abandoned, within, answer_seconds, handle_seconds = queue_totals

    def percent(part, whole):
        return "–" if not whole else f"{half_up(part / whole * 100, 1)}%"

    def duration(total, of):
        if not of:
            return "–"
        minutes, seconds = divmod(int(half_up(total / of)), 60)
        return f"{minutes}:{seconds:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"

    return {"kpi-contacts": f"{contacts:,}", "kpi-handled": f"{handled:,}", "kpi-abandonment": percent(abandoned, queued),
            "kpi-service-level": percent(within, queued), "kpi-speed-of-answer": duration(answer_seconds, answered),
            "kpi-handle-time": duration(handle_seconds, handled)}


def table_totals(warehouse: str, where: str = "true") -> tuple:
    with duckdb.connect(warehouse, read_only=True) as connection:
        return connection.sql(TOTALS.format(where=where)).fetchall()[0]


@needs_chromium
def test_the_page_shows_connect_kpis_and_draws_every_chart_offline(hand_built, tmp_path):
    page = hand_built.storage.path(DASHBOARD_FILE)
    assert_self_contained(page.read_text())

    rendered = look_at(page, tmp_path)

    assert_readable_on_a_laptop(rendered, page)
    kpis = {tile: values["value"] for tile, values in rendered["kpis"].items()}
    assert kpis == {
        "kpi-contacts": "29",  # 33 deliveries, 29 contact ids
        "kpi-handled": "18",  # connected to an agent (not missed's frank, not monitor's supervisor)
        "kpi-abandonment": "20.8%",  # abandoned, missed, queue-move-2, same-name, task-expired / 24 queued
        "kpi-service-level": "54.2%",  # 13 of 24 queued left the queue within 30 s
        "kpi-speed-of-answer": "0:25",  # 406 s in queue / 16 answered from the queue = 25.4 s
        "kpi-handle-time": "3:00",  # 3,235 s of talk, hold and ACW / 18 handled = 179.7 s
    }
    assert kpis == shown(table_totals(hand_built.settings.warehouse_path))
    assert "bad" in rendered["kpis"]["kpi-service-level"]["status"]  # 54.2% is under the 80% target
    assert "bad" in rendered["kpis"]["kpi-abandonment"]["status"]  # 20.8% is over the 10% limit
    assert rendered["period"] == "Mon 02 Mar 2026, 09:00–24:00" and rendered["partialNote"] == ""
    # Two queues named Sales stay two rows, told apart by the end of their ARNs; dave's queue is his.
    names = [row[1] for row in rendered["queues"]]
    assert {"Sales (…Sales)", "Sales (…les-emea)", "Agent queue: dave", "(no queue)"} <= set(names)


@needs_chromium
@pytest.mark.parametrize("choices, where", [
    ([("filter-queue", "Support")], f"queue_arn = '{ARN}/queue/Support'"),
    ([("filter-queue", "Support"), ("filter-channel", "CHAT")], f"queue_arn = '{ARN}/queue/Support' AND channel = 'CHAT'"),
    ([("filter-channel", "TASK")], "channel = 'TASK'"),
    ([("filter-queue", "Sales (…les-emea)")], f"queue_arn = '{ARN}/queue/sales-emea'"),
])
def test_the_filters_show_the_numbers_of_the_table_for_the_rows_they_keep(hand_built, tmp_path, choices, where):
    page = hand_built.storage.path(DASHBOARD_FILE)

    rendered = look_at(page, tmp_path, *choices)

    assert rendered["errors"] == []
    totals = table_totals(hand_built.settings.warehouse_path, where)
    assert {tile: values["value"] for tile, values in rendered["kpis"].items()} == shown(totals)
    with duckdb.connect(hand_built.settings.warehouse_path, read_only=True) as connection:
        queues = {arn for (arn,) in connection.sql(f"SELECT DISTINCT coalesce(queue_arn, '') FROM queue_interval_metrics "
                                                   f"WHERE {where}").fetchall()}
    assert {row[0] for row in rendered["queues"]} == queues  # the queue table keeps the same rows
    for arn, name, contacts, queued, handled, *_ in rendered["queues"]:
        row = table_totals(hand_built.settings.warehouse_path, f"{where} AND coalesce(queue_arn, '') = '{arn}'")
        assert (contacts, queued, handled) == (f"{row[0]:,}", f"{row[1]:,}", f"{row[2]:,}"), name


def rebuilt_page(hand_built, tmp_path: Path, as_of: datetime) -> Path:
    """The hand-built table's dashboard as it would have been built at `as_of`."""
    storage = LocalStorage(root=str(tmp_path / "data"))  # where this build's aggregates go
    with closing(scratch_connection()) as connection:
        refresh_ctr_view(connection, hand_built.storage, local_table(hand_built.storage))
        prepare_metrics(connection, hand_built.settings, as_of)
        for name in AGGREGATES:
            build_aggregate(connection, storage, name)
        page = tmp_path / "index.html"
        page.write_text(render_dashboard(connection))
    return page


@needs_chromium
def test_an_interval_still_running_is_drawn_as_partial_not_like_a_full_one(hand_built, tmp_path):
    # Built at 10:30: 09:00-10:00 is over; 10:00-11:00 (next-interval's contact) is still running, and so, for a
    # page built that morning, is the evening's interval.
    page = rebuilt_page(hand_built, tmp_path, datetime(2026, 3, 2, 10, 30, tzinfo=timezone.utc))

    rendered = look_at(page, tmp_path)

    assert rendered["errors"] == []
    assert rendered["partialNote"].startswith("The interval from 10:00 is still running")
    columns = re.findall(r"<rect[^>]*>.*?</rect>", rendered["svg"])
    running = {re.search(r"<title>(\d\d:\d\d)", column).group(1) for column in columns if 'class="partial"' in column}
    assert running == {"10:00", "23:00"} and all("(still running)" in column for column in columns
                                                 if 'class="partial"' in column)
    assert any("<title>09:00 ·" in column and "partial" not in column for column in columns)
    # The rates of a running interval are hollow points reached by a dashed step, not part of the line.
    circles = re.findall(r"<circle[^>]*>.*?</circle>", rendered["rates"])
    hollow = [circle for circle in circles if 'fill="#fff"' in circle]
    assert len(hollow) == 4 and all("(still running)" in circle for circle in hollow)
    assert all("(still running)" not in circle for circle in circles if circle not in hollow)
    solid = re.findall(r'<path d="([^"]*)"[^>]*stroke-width="2.5"', rendered["rates"])
    x = re.search(r'cx="([\d.]+)"', hollow[0]).group(1)
    assert solid and all(x not in path for path in solid)
    assert 'stroke-dasharray="4 3"' in rendered["rates"] and "still running (hollow)" in rendered["rates"]


def test_the_dashboard_asset_links_the_page_from_its_metadata(hand_built):
    event = hand_built.instance.get_latest_materialization_event(dg.AssetKey("dashboard"))
    metadata = event.asset_materialization.metadata
    # A browser does not follow a file:// link from the UI's http page: the address `ctr-assets ui` serves it at.
    assert metadata["url"].value == "http://127.0.0.1:3001/index.html"
    assert metadata["path"].value == hand_built.storage.uri(DASHBOARD_FILE)
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
def test_a_month_of_a_200_agent_centre_stays_small_readable_and_filters_by_day(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    settings = CtrSettings.from_env({}, storage_url=storage.root)
    with closing(scratch_connection()) as connection:
        contacts = month_of_contacts(connection, days=30, agents=200)
        prepare_metrics(connection, settings)
        for name in AGGREGATES:
            build_aggregate(connection, storage, name)
        html = render_dashboard(connection)
        day = connection.sql(TOTALS.format(where="CAST(interval_start AS DATE) = DATE '2026-03-10'")).fetchall()[0]
        busiest = connection.sql("SELECT agent_username, contacts_handled FROM agent_performance "
                                 "WHERE day = DATE '2026-03-10' ORDER BY contacts_handled DESC, agent_username "
                                 "LIMIT 1").fetchall()[0]
    page = tmp_path / "index.html"
    page.write_text(html)

    # Bounded by design: per day and hour-of-day over a long period, the busiest agents, counts not contacts.
    assert contacts == 300_000 and len(html.encode()) < 1_000_000
    assert_self_contained(html)
    rendered = look_at(page, tmp_path)
    assert_readable_on_a_laptop(rendered, page)
    assert rendered["period"].endswith("(30 days)") and "Busiest 15 of 200 agents" in rendered["notes"]["table-agents"]

    one_day = look_at(page, tmp_path, ("filter-from", "2026-03-10"), ("filter-to", "2026-03-10"))

    assert one_day["errors"] == [] and one_day["period"] == "Tue 10 Mar 2026 – Tue 10 Mar 2026 (1 day)"
    assert {tile: values["value"] for tile, values in one_day["kpis"].items()} == shown(day)
    assert "Average per day" in one_day["notes"]["chart-volume"]
    assert [one_day["agents"][0][0], one_day["agents"][0][1].strip()] == [busiest[0], f"{busiest[1]:,}"]
    assert one_day["kpis"] != rendered["kpis"]


@needs_chromium
def test_an_empty_warehouse_still_renders_a_page(hand_built, tmp_path):
    with duckdb.connect() as connection:
        connection.execute(f"ATTACH '{hand_built.settings.warehouse_path}' AS built (READ_ONLY)")
        connection.execute("CREATE TABLE metric_settings AS SELECT * FROM built.metric_settings")
        for name in AGGREGATES:
            connection.execute(f"CREATE TABLE {name} AS SELECT * FROM built.{name} WHERE false")
        html = render_dashboard(connection)
    page = tmp_path / "index.html"
    page.write_text(html)

    rendered = look_at(page, tmp_path)

    assert rendered["errors"] == [] and rendered["period"] == "no contacts yet"
    assert rendered["kpis"]["kpi-contacts"]["value"] == "0" and rendered["kpis"]["kpi-service-level"]["value"] == "–"
    assert all(rendered["panels"][panel]["marks"] == 0 for panel in PANELS)
