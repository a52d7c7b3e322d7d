"""The dashboard page: one self-contained HTML file that a contact-centre manager reads at a glance.

It is built from the aggregate tables only, so its size follows the number of queues, agents and days, not
the number of contacts. Charts are inline SVG drawn here; there are no scripts, fonts, images or links, so
the page works offline and from any file share. Periods longer than two days are shown per day, with the
hourly volume folded into an hour-of-day profile, and long lists are cut to their top entries: a month of a
200-agent centre stays far below a megabyte.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from html import escape
from typing import Any, Sequence

from ctr_assets.metrics.warehouse import fetch_table
from ctr_assets.settings import CtrSettings

HOURLY_UP_TO_HOURS = 48  # longer periods: rates per day, volume as an hour-of-day profile
TOP_QUEUES = 8  # in the volume chart and the agent-by-queue grid; the rest are summed as "other queues"
TOP_AGENTS = 15  # in the agent table and the agent-by-queue grid
MAX_AGENT_POINTS = 500  # agents drawn in the scatter chart, busiest first
TOP_REASONS = 8
QUEUE_ROWS = 25
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac")
SERVICE_LEVEL_COLOUR, ABANDONMENT_COLOUR, TARGET_COLOUR = "#2f6db5", "#d1495b", "#6b7785"
OUTCOME_COLOURS = {
    "handled": "#59a14f",
    "abandoned": "#d1495b",
    "callback not connected": "#edc948",
    "not queued": "#a8b1bb",
}
CHART_WIDTH, CHART_HEIGHT = 600, 230

TOTALS = """
SELECT min(day) AS first_day, max(day) AS last_day, sum(contacts) AS contacts,
       sum(contacts_queued) AS queued, sum(contacts_handled) AS handled, sum(contacts_answered) AS answered,
       sum(contacts_abandoned) AS abandoned, sum(contacts_within_service_level) AS within_service_level,
       sum(queue_answer_seconds) AS queue_answer_seconds, sum(handle_seconds) AS handle_seconds
FROM daily_summary
"""
QUEUED_PER_HOUR = """
SELECT interval_start, queue_name, sum(contacts_queued) AS queued
FROM queue_interval_metrics GROUP BY ALL HAVING sum(contacts_queued) > 0
"""
RATES_PER_HOUR = """
SELECT interval_start AS period, sum(contacts_within_service_level) / nullif(sum(contacts_queued), 0),
       sum(contacts_abandoned) / nullif(sum(contacts_queued), 0)
FROM queue_interval_metrics GROUP BY ALL ORDER BY 1
"""
RATES_PER_DAY = """
SELECT day AS period, sum(contacts_within_service_level) / nullif(sum(contacts_queued), 0),
       sum(contacts_abandoned) / nullif(sum(contacts_queued), 0)
FROM daily_summary GROUP BY ALL ORDER BY 1
"""
QUEUES = """
SELECT queue_name, sum(contacts_queued) AS queued, sum(contacts_handled) AS handled,
       sum(contacts_abandoned) / nullif(sum(contacts_queued), 0) AS abandonment_rate,
       sum(contacts_within_service_level) / nullif(sum(contacts_queued), 0) AS service_level,
       sum(queue_answer_seconds) / nullif(sum(contacts_answered), 0) AS speed_of_answer,
       max(max_queue_wait_seconds) AS max_wait,
       sum(handle_seconds) / nullif(sum(contacts_handled), 0) AS handle_time,
       sum(hold_seconds) / nullif(sum(contacts_put_on_hold), 0) AS hold_time,
       sum(transfers_in) AS transfers_in, sum(transfers_out) AS transfers_out, sum(callback_contacts) AS callbacks
FROM queue_interval_metrics GROUP BY queue_name ORDER BY queued DESC, handled DESC, queue_name
"""
AGENTS = """
SELECT agent_username, sum(contacts_handled) AS handled, sum(handle_seconds) / sum(contacts_handled),
       sum(hold_seconds) / nullif(sum(contacts_put_on_hold), 0), sum(after_contact_work_seconds) / sum(contacts_handled),
       sum(contacts_agent_hung_up_first), sum(transfers_out)
FROM agent_performance GROUP BY agent_username ORDER BY handled DESC, agent_username
"""
AGENT_BY_QUEUE = "SELECT agent_username, queue_name, sum(contacts) FROM agent_queue_contacts GROUP BY ALL"
REASONS = "SELECT disconnect_reason, outcome, sum(contacts) FROM disconnect_reasons GROUP BY ALL"

STYLE = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;
 color:#1f2933;background:#eef1f5}
main{max-width:1340px;margin:0 auto;padding:16px 20px 28px}
header{display:flex;justify-content:space-between;align-items:baseline;gap:16px;flex-wrap:wrap;margin-bottom:12px}
h1{font-size:22px;margin:0} .period{font-size:15px;color:#3e4c59;margin-left:10px;font-weight:500}
.meta{color:#61707f;font-size:12.5px}
.kpis{display:grid;grid-template-columns:repeat(6,minmax(0,1fr));gap:12px;margin-bottom:14px}
.kpi{background:#fff;border-radius:8px;padding:10px 14px;border-top:4px solid #4e79a7;
 box-shadow:0 1px 2px rgba(16,24,40,.08)}
.kpi .l{color:#52606d;font-size:13px;font-weight:600} .kpi .v{font-size:30px;font-weight:700;line-height:1.15;
 font-variant-numeric:tabular-nums} .kpi .s{color:#61707f;font-size:12px}
.kpi.good{border-top-color:#3f9b57} .kpi.good .v{color:#2c7a43}
.kpi.bad{border-top-color:#d1495b} .kpi.bad .v{color:#b3364a}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}
.card{background:#fff;border-radius:8px;padding:12px 16px 10px;box-shadow:0 1px 2px rgba(16,24,40,.08);min-width:0}
.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 2px} .note{color:#61707f;font-size:12px;margin:0 0 6px}
.empty{color:#61707f;text-align:center;padding:40px 0}
svg{display:block;width:100%;height:auto} svg text{font-size:11px;fill:#52606d}
svg .axis{stroke:#c5ccd3} svg .gridline{stroke:#e6e9ed} svg .value{fill:#1f2933;font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:4px 0 0;padding:0;list-style:none;font-size:12px;color:#3e4c59}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.legend i.dash{height:0;border-top:2px dashed #6b7785;background:none}
table{border-collapse:collapse;width:100%;font-size:13px}
th{color:#52606d;font-weight:600;text-align:right;padding:5px 6px;border-bottom:2px solid #dde3ea;vertical-align:bottom}
td{padding:4px 6px;border-bottom:1px solid #eef1f4;text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th:first-child,td:first-child{text-align:left} td.name{max-width:220px;overflow:hidden;text-overflow:ellipsis}
td.bad{color:#b3364a;font-weight:600} td.good{color:#2c7a43}
.barcell{display:flex;align-items:center;gap:8px;justify-content:flex-end}
.barcell span{display:inline-block;height:10px;background:#4e79a7;border-radius:2px}
table.heat td{text-align:center;min-width:44px} table.heat th{text-align:center;font-size:12px}
table.heat td:first-child,table.heat th:first-child{text-align:left}
footer{margin-top:14px;color:#61707f;font-size:12px} footer dt{font-weight:600;color:#3e4c59;display:inline}
footer dd{display:inline;margin:0 12px 0 4px}
@media (max-width:1100px){.kpis{grid-template-columns:repeat(3,minmax(0,1fr))}.grid{grid-template-columns:1fr}}
"""


def render_dashboard(connection: Any, settings: CtrSettings) -> str:
    """The page, from the aggregate tables in `connection` (built with the same `settings`)."""
    totals = _first_row(connection, TOTALS)
    threshold, target = settings.service_level_seconds, settings.service_level_target
    queued_per_hour = fetch_table(connection, QUEUED_PER_HOUR)[1]
    hours = _hours_between([row[0] for row in queued_per_hour])
    hourly = len(hours) <= HOURLY_UP_TO_HOURS
    _, queues = fetch_table(connection, QUEUES)
    _, agents = fetch_table(connection, AGENTS)
    panels = [  # in page order: two per row, the queue table across
        _volume_chart(queued_per_hour, hours, hourly, [row[0] for row in queues]),
        _rates_chart(fetch_table(connection, RATES_PER_HOUR if hourly else RATES_PER_DAY)[1], hours if hourly else None,
                     threshold, target),
        _queue_table(queues, target),
        _agent_scatter(agents, _ratio(totals["handle_seconds"], totals["handled"])),
        _reasons_chart(fetch_table(connection, REASONS)[1]),
        _agent_table(agents),
        _agent_by_queue(fetch_table(connection, AGENT_BY_QUEUE)[1]),
    ]
    period = _period(totals, hours, hourly)
    return _page(period, _kpis(totals, threshold, target), panels, threshold, settings.report_timezone)


def _kpis(totals: dict, threshold: int, target: float) -> str:
    service_level = _ratio(totals["within_service_level"], totals["queued"])
    on_target = None if service_level is None else service_level * 100 >= target
    tiles = [
        ("contacts", "Contacts", _count(totals["contacts"]), f"{_count(totals['queued'])} queued", None),
        ("handled", "Handled", _count(totals["handled"]), f"{_count(totals['answered'])} answered from queue", None),
        ("abandonment", "Abandonment rate", _percent(_ratio(totals["abandoned"], totals["queued"])),
         f"{_count(totals['abandoned'])} abandoned in queue", None),
        ("service-level", f"Service level ({threshold} s)", _percent(service_level), f"target {target:g}%", on_target),
        ("speed-of-answer", "Avg speed of answer", _duration(_ratio(totals["queue_answer_seconds"], totals["answered"])),
         "wait of answered contacts", None),
        ("handle-time", "Avg handle time", _duration(_ratio(totals["handle_seconds"], totals["handled"])),
         "talk + hold + ACW", None),
    ]
    return "".join(
        f"<div class='kpi{'' if good is None else ' good' if good else ' bad'}' id='kpi-{key}'>"
        f"<div class='l'>{escape(label)}</div><div class='v'>{escape(value)}</div><div class='s'>{escape(sub)}</div></div>"
        for key, label, value, sub, good in tiles
    )


def _volume_chart(rows: list[tuple], hours: list[datetime], hourly: bool, queue_order: list[str]) -> str:
    names = [name for name in queue_order if any(row[1] == name for row in rows)]
    shown = names[:TOP_QUEUES] + (["other queues"] if len(names) > TOP_QUEUES else [])
    if hourly:
        labels = [f"{hour:%H:%M}" if hour.hour else f"{hour:%a %d} 00:00" for hour in hours]
        slot = {hour: i for i, hour in enumerate(hours)}
        placed = [(slot[moment], queue, queued) for moment, queue, queued in rows]
        title, note = "Contacts queued per hour, by queue", "The hour the contact entered the queue."
    else:
        # Averaged over the days that had contacts in that hour, so that a partial first or last day (or a
        # day the centre was closed) does not dilute it.
        dates: dict[int, set] = {}
        for moment, *_ in rows:
            dates.setdefault(moment.hour, set()).add(moment.date())
        labels = [f"{hour:02d}" for hour in range(24)]
        placed = [(moment.hour, queue, queued / len(dates[moment.hour])) for moment, queue, queued in rows]
        title = "Contacts queued by hour of day, by queue"
        note = "Average per day with contacts in that hour; the hour the contact entered the queue."
    series = {name: [0.0] * len(labels) for name in shown}
    for index, queue, value in placed:
        series[queue if queue in series else "other queues"][index] += value
    legend = [(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(shown)]
    svg = _columns(labels, [(name, colour, series[name]) for name, colour in legend])
    return _card("chart-volume", title, note, svg if rows else _empty("No queued contacts in this period."), legend)


def _rates_chart(rows: list[tuple], hours: list[datetime] | None, threshold: int, target: float) -> str:
    """Per hour when `hours` are given, else per day; a period without queued contacts breaks the lines."""
    hourly = hours is not None
    rates = {period: (service_level, abandonment) for period, service_level, abandonment in rows}
    periods = hours if hourly else _days_between(list(rates))
    labels = [f"{period:%H:%M}" if hourly else f"{period:%d %b}" for period in periods]
    lines = [
        (f"Service level ({threshold} s)", SERVICE_LEVEL_COLOUR,
         [_scaled(rates.get(period, (None, None))[0]) for period in periods]),
        ("Abandonment rate", ABANDONMENT_COLOUR, [_scaled(rates.get(period, (None, None))[1]) for period in periods]),
    ]
    title = f"Service level and abandonment rate, per {'hour' if hourly else 'day'}"
    note = (f"Service level: share of queued contacts answered or gone from the queue within {threshold} s. "
            "Abandonment: share of queued contacts that hung up before reaching an agent.")
    legend = [(name, colour) for name, colour, _ in lines] + [(f"target {target:g}%", "dash")]
    has_data = any(value is not None for _, _, values in lines for value in values)
    svg = _lines(labels, lines, target) if has_data else _empty("No queued contacts in this period.")
    return _card("chart-service-level", title, note, svg, legend)


def _queue_table(queues: list[tuple], target: float) -> str:
    head = ["Queue", "Queued", "Handled", "Abandoned", "Service level", "Avg answer", "Max wait", "Avg handle",
            "Avg hold", "Transfers in", "Transfers out", "Callbacks"]
    rows = []
    for name, queued, handled, abandoned, level, answer, wait, handle, hold, *counts in queues[:QUEUE_ROWS]:
        status = "" if level is None else "good" if level * 100 >= target else "bad"
        rows.append([_name_cell(name), _td(_count(queued)), _td(_count(handled)), _td(_percent(abandoned)),
                     _td(_percent(level), status), *(_td(_duration(value)) for value in (answer, wait, handle, hold)),
                     *(_td(_count(value)) for value in counts)])
    more = f" Busiest {QUEUE_ROWS} of {len(queues)} queues." if len(queues) > QUEUE_ROWS else ""
    note = ("Handled includes outbound contacts, under the agent's outbound queue. Service level below the target "
            f"is in red.{more}")
    return _card("table-queues", "Queues", note, _table(head, rows), wide=True)


def _agent_scatter(agents: list[tuple], centre_handle_time: float | None) -> str:
    shown = agents[:MAX_AGENT_POINTS]
    points = [(name, handled, handle) for name, handled, handle, *_ in shown if handle is not None]
    note = "One dot per agent: above the dashed line, slower than the centre's average handle time."
    if len(agents) > MAX_AGENT_POINTS:
        note += f" Busiest {MAX_AGENT_POINTS} of {len(agents)} agents."
    svg = _scatter(points, centre_handle_time) if points else _empty("No contacts handled by agents yet.")
    legend = [("agent", PALETTE[0])] + ([("centre average", "dash")] if centre_handle_time else [])
    return _card("chart-agents", "Agents: contacts handled and average handle time", note, svg, legend)


def _agent_table(agents: list[tuple]) -> str:
    head = ["Agent", "Handled", "Avg handle", "Avg hold", "Avg ACW", "Hung up first", "Transfers out"]
    busiest = max((row[1] for row in agents), default=0) or 1
    rows = [
        [_name_cell(name), _bar_cell(handled, busiest), *(_td(_duration(value)) for value in (handle, hold, acw)),
         _td(_count(hung_up)), _td(_count(transfers))]
        for name, handled, handle, hold, acw, hung_up, transfers in agents[:TOP_AGENTS]
    ]
    note = (f"Busiest {min(TOP_AGENTS, len(agents))} of {len(agents)} agents. Avg hold counts only contacts put on hold; "
            "hung up first: the agent disconnected before the customer.")
    return _card("table-agents", "Agent performance", note, _table(head, rows))


def _agent_by_queue(rows: list[tuple]) -> str:
    per_agent: dict[str, float] = {}
    per_queue: dict[str, float] = {}
    for agent, queue, contacts in rows:
        per_agent[agent] = per_agent.get(agent, 0) + contacts
        per_queue[queue] = per_queue.get(queue, 0) + contacts
    agents = sorted(per_agent, key=lambda name: (-per_agent[name], name))[:TOP_AGENTS]
    queues = sorted(per_queue, key=lambda name: (-per_queue[name], name))
    columns = queues[:TOP_QUEUES] + (["other queues"] if len(queues) > TOP_QUEUES else [])
    cells: dict[tuple[str, str], float] = {}
    for agent, queue, contacts in rows:
        key = (agent, queue if queue in columns else "other queues")
        cells[key] = cells.get(key, 0) + contacts
    top = max((cells.get((agent, queue), 0) for agent in agents for queue in columns), default=0) or 1
    body = "".join(
        f"<tr>{_name_cell(agent)}{''.join(_heat_cell(cells.get((agent, queue), 0), top) for queue in columns)}</tr>"
        for agent in agents
    )
    head = "<tr><th>Agent</th>" + "".join(f"<th>{escape(queue)}</th>" for queue in columns) + "</tr>"
    note = f"Contacts per agent and queue, busiest {len(agents)} of {len(per_agent)} agents; darker is more."
    html = f"<table class='heat'>{head}{body}</table>" if rows else _empty("No contacts handled by agents yet.")
    return _card("chart-agent-queue", "Agent by queue", note, html)


def _reasons_chart(rows: list[tuple]) -> str:
    per_reason: dict[str, dict[str, float]] = {}
    for reason, outcome, contacts in rows:
        per_reason.setdefault(reason, {})
        per_reason[reason][outcome] = per_reason[reason].get(outcome, 0) + contacts
    reasons = sorted(per_reason, key=lambda reason: (-sum(per_reason[reason].values()), reason))
    shown = reasons[:TOP_REASONS]
    if len(reasons) > TOP_REASONS:
        other: dict[str, float] = {}
        for reason in reasons[TOP_REASONS:]:
            for outcome, contacts in per_reason[reason].items():
                other[outcome] = other.get(outcome, 0) + contacts
        per_reason["other reasons"] = other
        shown.append("other reasons")
    outcomes = [outcome for outcome in OUTCOME_COLOURS if any(outcome in per_reason[r] for r in shown)]
    outcomes += sorted({o for r in shown for o in per_reason[r]} - set(outcomes))
    colours = {o: OUTCOME_COLOURS.get(o, PALETTE[i % len(PALETTE)]) for i, o in enumerate(outcomes)}
    bars = [(reason, [(o, colours[o], per_reason[reason].get(o, 0)) for o in outcomes]) for reason in shown]
    note = "How each contact ended (Connect's DisconnectReason), coloured by what happened to it."
    svg = _hbars(bars) if rows else _empty("No contacts in this period.")
    return _card("chart-disconnect-reasons", "Disconnect reasons", note, svg, [(o, colours[o]) for o in outcomes])


def _page(period: str, kpis: str, panels: list[str], threshold: int, zone: str) -> str:
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    definitions = [
        ("Queued", "placed in a queue (outbound contacts are not)"),
        ("Handled", "connected to an agent, incoming or outbound"),
        ("Abandoned", "queued, never connected to an agent, not a callback"),
        (f"Service level ({threshold} s)", f"left the queue within {threshold} s, over queued"),
        ("Avg speed of answer", "time in queue of contacts answered from the queue"),
        ("Avg handle time", "agent interaction + customer hold + after-contact work"),
    ]
    terms = "".join(f"<dt>{escape(term)}</dt><dd>{escape(text)}.</dd>" for term, text in definitions)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Contact centre dashboard · {escape(period)}</title><style>{STYLE}</style></head><body><main>"
        f"<header><h1>Contact centre<span class='period'>{escape(period)}</span></h1>"
        f"<div class='meta'>Times in {escape(zone)} · Amazon Connect contact records, one row per contact after "
        f"deduplication · generated {generated}</div></header>"
        f"<section class='kpis' id='kpis'>{kpis}</section>"
        f"<div class='grid'>{''.join(panels)}</div>"
        f"<footer><dl>{terms}</dl></footer></main></body></html>"
    )


def _card(card_id: str, title: str, note: str, body: str, legend: Sequence[tuple[str, str]] = (), wide: bool = False) -> str:
    keys = "".join(
        f"<li><i class='dash'></i>{escape(name)}</li>" if swatch == "dash"
        else f"<li><i style='background:{swatch}'></i>{escape(name)}</li>"
        for name, swatch in legend
    )
    return (
        f"<section class='card{' wide' if wide else ''}' id='{card_id}'><h2>{escape(title)}</h2>"
        f"<p class='note'>{escape(note)}</p>{body}{f'<ul class=legend>{keys}</ul>' if keys else ''}</section>"
    )


def _empty(message: str) -> str:
    return f"<p class='empty'>{escape(message)}</p>"


# --- SVG charts: fixed 600 x 230 viewBox scaled to the card's width ---------------------------------------

_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 12, 10, 30  # the plot area's margins inside the viewBox
_PLOT_WIDTH, _PLOT_HEIGHT = CHART_WIDTH - _LEFT - _RIGHT, CHART_HEIGHT - _TOP - _BOTTOM


def _svg(body: str, label: str) -> str:
    return f"<svg viewBox='0 0 {CHART_WIDTH} {CHART_HEIGHT}' role='img' aria-label='{escape(label)}'>{body}</svg>"


def _ticks(high: float, low: float = 0.0) -> list[float]:
    """Round axis values covering `low` to `high`: 3 to 5 steps of 1, 2, 2.5 or 5 times a power of ten."""
    if high <= low:
        low = 0.0
    if high <= 0:
        return [0.0, 1.0]
    rough = (high - low) / 4
    power = 10 ** math.floor(math.log10(rough))
    step = next(size * power for size in (1, 2, 2.5, 5, 10) if size * power >= rough)
    start = math.floor(low / step) * step
    return [start + step * i for i in range(math.ceil((high - start) / step - 1e-9) + 1)]


def _height(ticks: list[float]):
    """Maps a value to its y in the plot area: the first tick at the bottom, the last at the top."""
    return lambda value: CHART_HEIGHT - _BOTTOM - (value - ticks[0]) / (ticks[-1] - ticks[0]) * _PLOT_HEIGHT


def _gridlines(ticks: list[float], y, label) -> str:
    """A horizontal line per tick, labelled on the left; the first one is the axis."""
    return "".join(
        f"<line class='{'axis' if i == 0 else 'gridline'}' x1='{_LEFT}' x2='{CHART_WIDTH - _RIGHT}' "
        f"y1='{y(tick):.1f}' y2='{y(tick):.1f}'/><text x='{_LEFT - 6}' y='{y(tick) + 4:.1f}' text-anchor='end'>"
        f"{escape(label(tick))}</text>"
        for i, tick in enumerate(ticks)
    )


def _x_labels(labels: list[str], x) -> str:
    """Every n-th label under its slot, so that at most about 12 are drawn."""
    every = max(1, math.ceil(len(labels) / 12))
    y = CHART_HEIGHT - _BOTTOM + 15
    return "".join(f"<text x='{x(i):.1f}' y='{y}' text-anchor='middle'>{escape(label)}</text>"
                   for i, label in enumerate(labels) if i % every == 0)


def _dashed(y: float) -> str:
    return (f"<line x1='{_LEFT}' x2='{CHART_WIDTH - _RIGHT}' y1='{y:.1f}' y2='{y:.1f}' stroke='{TARGET_COLOUR}' "
            "stroke-width='1.5' stroke-dasharray='6 4'/>")


def _columns(labels: list[str], series: list[tuple[str, str, list[float]]]) -> str:
    """Stacked columns, one per label, one colour per series."""
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    ticks = _ticks(max(totals, default=0))
    y = _height(ticks)
    slot = _PLOT_WIDTH / max(len(labels), 1)
    width = max(slot * 0.78, 1)
    parts = [_gridlines(ticks, y, _short_number)]
    for i, label in enumerate(labels):
        x, stacked = _LEFT + i * slot + (slot - width) / 2, 0.0
        for name, colour, values in series:
            if values[i] <= 0:
                continue
            top, stacked = y(stacked + values[i]), stacked + values[i]
            parts.append(f"<rect x='{x:.1f}' y='{top:.1f}' width='{width:.1f}' height='{y(0) - y(values[i]):.1f}' "
                         f"fill='{colour}'>"
                         f"<title>{escape(label)} · {escape(name)}: {_short_number(values[i])}</title></rect>")
    parts.append(_x_labels(labels, lambda i: _LEFT + (i + 0.5) * slot))
    return _svg("".join(parts), "stacked columns")


def _lines(labels: list[str], series: list[tuple[str, str, list[float | None]]], target: float | None) -> str:
    """Percent lines on a 0-100% axis, broken where a value is missing, with an optional dashed target."""
    ticks = [0.0, 25.0, 50.0, 75.0, 100.0]
    y = _height(ticks)
    slot = _PLOT_WIDTH / max(len(labels), 1)
    x = lambda i: _LEFT + (i + 0.5) * slot  # noqa: E731
    parts = [_gridlines(ticks, y, lambda tick: f"{tick:.0f}%")]
    if target is not None:
        parts.append(_dashed(y(target)))
    for name, colour, values in series:
        path, pen_down = [], False
        for i, value in enumerate(values):
            if value is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{x(i):.1f} {y(value):.1f}")
            pen_down = True
        parts.append(f"<path d='{' '.join(path)}' fill='none' stroke='{colour}' stroke-width='2.5' "
                     f"stroke-linejoin='round'><title>{escape(name)}</title></path>")
        parts += [f"<circle cx='{x(i):.1f}' cy='{y(value):.1f}' r='3' fill='{colour}'>"
                  f"<title>{escape(labels[i])} · {escape(name)}: {value:.1f}%</title></circle>"
                  for i, value in enumerate(values) if value is not None]
    parts.append(_x_labels(labels, x))
    return _svg("".join(parts), "lines")


def _scatter(points: list[tuple[str, float, float]], reference: float | None) -> str:
    """Agents as dots: contacts handled across (from 0), average handle time up (ticks in minutes, zoomed
    to the agents' range so that outliers stand out)."""
    across = _ticks(max(handled for _, handled, _ in points))
    handle_times = [handle for *_, handle in points] + ([reference] if reference else [])
    up = [60 * minutes for minutes in _ticks(max(handle_times) / 60, min(handle_times) / 60)]
    x = lambda value: _LEFT + value / across[-1] * _PLOT_WIDTH  # noqa: E731
    y = _height(up)
    parts = [_gridlines(up, y, _duration)]
    parts += [f"<text x='{x(tick):.1f}' y='{CHART_HEIGHT - _BOTTOM + 15}' "
              f"text-anchor='{'end' if tick == across[-1] else 'middle'}'>{_short_number(tick)}</text>"
              for tick in across]
    parts.append(f"<text x='{x(across[-1] / 2):.1f}' y='{CHART_HEIGHT - 1}' text-anchor='middle'>contacts handled</text>")
    if reference:
        parts.append(_dashed(y(reference)))
    parts += [f"<circle cx='{x(handled):.1f}' cy='{y(handle):.1f}' r='4.5' fill='{PALETTE[0]}' fill-opacity='.7'>"
              f"<title>{escape(name)}: {_count(handled)} handled, {_duration(handle)} average handle time</title>"
              "</circle>" for name, handled, handle in points]
    return _svg("".join(parts), "agents scatter")


def _hbars(bars: list[tuple[str, list[tuple[str, str, float]]]]) -> str:
    """Horizontal stacked bars, one row per label, with the row's total and share at its end."""
    label_w, row_h = 200, 30 if len(bars) <= 5 else 24
    height = max(len(bars) * row_h + 8, 40)
    sums = [sum(value for *_, value in segments) for _, segments in bars]
    top, everything = max(sums, default=0) or 1, sum(sums) or 1
    plot_w = CHART_WIDTH - label_w - 110
    parts = []
    for i, (label, segments) in enumerate(bars):
        y, x = 4 + i * row_h, label_w
        parts.append(f"<text x='{label_w - 8}' y='{y + row_h / 2 + 3:.0f}' text-anchor='end'>{escape(label)}</text>")
        for name, colour, value in segments:
            if value <= 0:
                continue
            width = value / top * plot_w
            parts.append(f"<rect x='{x:.1f}' y='{y + 2}' width='{width:.1f}' height='{row_h - 6}' fill='{colour}'>"
                         f"<title>{escape(label)} · {escape(name)}: {_count(value)}</title></rect>")
            x += width
        parts.append(f"<text class='value' x='{x + 6:.1f}' y='{y + row_h / 2 + 3:.0f}'>{_count(sums[i])} "
                     f"({_percent(sums[i] / everything)})</text>")
    return (f"<svg viewBox='0 0 {CHART_WIDTH} {height}' role='img' aria-label='horizontal bars'>"
            f"{''.join(parts)}</svg>")


# --- tables and cells ---------------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[str]]) -> str:
    """A table of rows of `<td>` cells."""
    header = "<tr>" + "".join(f"<th>{escape(title)}</th>" for title in head) + "</tr>"
    return f"<table>{header}{''.join('<tr>' + ''.join(row) + '</tr>' for row in rows)}</table>"


def _td(text: str, css: str = "") -> str:
    return f"<td class='{css}'>{escape(text)}</td>" if css else f"<td>{escape(text)}</td>"


def _name_cell(name: str | None) -> str:
    """A name that may be cut to fit, in full on hover."""
    name = "(none)" if name is None else name
    return f"<td class='name' title='{escape(name)}'>{escape(name)}</td>"


def _bar_cell(value: float, top: float) -> str:
    return (f"<td><div class='barcell'>{_count(value)}<span style='width:{48 * value / top:.0f}px'></span>"
            "</div></td>")


def _heat_cell(value: float, top: float) -> str:
    if not value:
        return "<td></td>"
    alpha = 0.12 + 0.88 * value / top
    ink = "#fff" if alpha > 0.55 else "#1f2933"
    return f"<td style='background:rgba(78,121,167,{alpha:.2f});color:{ink}'>{_count(value)}</td>"


# --- numbers ------------------------------------------------------------------------------------------------


def _first_row(connection: Any, query: str) -> dict:
    columns, rows = fetch_table(connection, query)
    return dict(zip(columns, rows[0]))


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _scaled(share: float | None) -> float | None:
    return None if share is None else share * 100


def _count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _short_number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f}%"


def _duration(seconds: float | None) -> str:
    """m:ss (h:mm:ss from an hour), as contact centres read times."""
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _hours_between(moments: list[datetime]) -> list[datetime]:
    """Every hour from the first to the last of `moments`, so that quiet hours show as gaps."""
    if not moments:
        return []
    first, last = min(moments), max(moments)
    return [first + timedelta(hours=n) for n in range(int((last - first) / timedelta(hours=1)) + 1)]


def _days_between(days: list[date]) -> list[date]:
    if not days:
        return []
    return [min(days) + timedelta(days=n) for n in range((max(days) - min(days)).days + 1)]


def _period(totals: dict, hours: list[datetime], hourly: bool) -> str:
    if hourly and hours:
        end = hours[-1] + timedelta(hours=1)
        if hours[0].date() == hours[-1].date():
            return f"{hours[0]:%a %d %b %Y}, {hours[0]:%H:%M}–{'24:00' if end.hour == 0 else f'{end:%H:%M}'}"
        return f"{hours[0]:%a %d %b %Y %H:%M} – {end:%a %d %b %H:%M}"
    first, last = totals["first_day"], totals["last_day"]
    if first is None:
        return "no contacts yet"
    days = (last - first).days + 1
    return f"{first:%d %b %Y} – {last:%d %b %Y} ({days} day{'s' if days != 1 else ''})"
