"""The dashboard page: one self-contained HTML file that a contact-centre manager reads at a glance and filters.

The page carries what it shows as JSON: counts and totals from the aggregate tables, never rates, so that any
date range, queue or channel re-aggregates exactly. An inline script draws the charts (SVG) and tables from them
and draws them again when a filter changes; there is no library, font, image or request, so the page works
offline and from any file share. Its size follows the number of queues, agents and days, not the number of
contacts: periods over two days are shown per day, with the volume folded into an hour-of-day profile, and the
agent panels carry the busiest agents. An interval (or day) not over when the tables were built is drawn as
partial, not like a full one.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from html import escape
from typing import Any

from ctr_assets.metrics.warehouse import fetch_table

INTERVALS_UP_TO_DAYS = 2  # longer periods: per day, volume as an hour-of-day profile
TOP_QUEUES = 8  # in the volume chart and the agent-by-queue grid; the rest are summed as "other queues"
TOP_AGENTS = 15  # in the agent table and the agent-by-queue grid
MAX_AGENT_POINTS = 500  # agents the page carries (busiest first), drawn in the scatter chart
GRID_AGENTS = 3 * TOP_AGENTS  # agents whose per-queue counts the page carries, so a date range can rank them
TOP_REASONS = 8
QUEUE_ROWS = 25

SETTINGS = "SELECT * FROM metric_settings"
DAYS = "SELECT min(day), max(day) FROM daily_summary"
# The counts and totals of each queue and channel per interval (or per day): what every queue panel adds up.
CELLS = """
SELECT
    CASE WHEN $by_day THEN CAST(CAST(interval_start AS DATE) AS TIMESTAMP) ELSE interval_start END AS period,
    queue_arn,
    queue_name,
    channel,
    CAST(sum(COLUMNS('^(contacts|contacts_(queued|handled|answered|abandoned|within_service_level|put_on_hold)|'
                     'transfers_(in|out)|callback_contacts|(queue_answer|handle|hold)_seconds)$')) AS BIGINT),
    max(max_queue_wait_seconds) AS max_queue_wait_seconds
FROM queue_interval_metrics
GROUP BY ALL
ORDER BY ALL
"""
PARTIAL_INTERVALS = "SELECT interval_start, bool_or(is_partial) FROM queue_interval_metrics GROUP BY ALL"
PARTIAL_DAYS = "SELECT CAST(day AS TIMESTAMP), bool_or(is_partial) FROM daily_summary GROUP BY ALL"
PROFILE = """
SELECT CAST(interval_start AS DATE), hour(interval_start), queue_arn, channel, sum(contacts_queued)::BIGINT
FROM queue_interval_metrics GROUP BY ALL HAVING sum(contacts_queued) > 0 ORDER BY ALL
"""
REASONS = "SELECT day, queue_arn, channel, outcome, disconnect_reason, contacts FROM disconnect_reasons ORDER BY ALL"
AGENTS = """
WITH busiest AS (
    SELECT agent_username FROM agent_performance GROUP BY ALL
    ORDER BY sum(contacts_handled) DESC, agent_username LIMIT $limit
)
SELECT day, agent_username, contacts_handled, handle_seconds, contacts_put_on_hold, hold_seconds,
       after_contact_work_seconds, contacts_agent_hung_up_first, transfers_out
FROM agent_performance WHERE agent_username IN (SELECT agent_username FROM busiest) ORDER BY ALL
"""
AGENT_COUNT = "SELECT count(DISTINCT agent_username) FROM agent_performance"
AGENT_QUEUES = """
WITH busiest AS (
    SELECT agent_username FROM agent_queue_contacts GROUP BY ALL
    ORDER BY sum(contacts) DESC, agent_username LIMIT $limit
)
SELECT day, agent_username, queue_arn, sum(contacts)::BIGINT
FROM agent_queue_contacts WHERE agent_username IN (SELECT agent_username FROM busiest) GROUP BY ALL ORDER BY ALL
"""
# What each card is, in page order: two per row, the queue table across.
CARDS = ("chart-volume", "chart-service-level", "table-queues", "chart-agents", "chart-disconnect-reasons",
         "table-agents", "chart-agent-queue")

STYLE = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;
 color:#1f2933;background:#eef1f5}
main{max-width:1340px;margin:0 auto;padding:16px 20px 28px}
header{display:flex;justify-content:space-between;align-items:baseline;gap:16px;flex-wrap:wrap;margin-bottom:8px}
h1{font-size:22px;margin:0} .period{font-size:15px;color:#3e4c59;margin-left:10px;font-weight:500}
.meta{color:#61707f;font-size:12.5px}
.filters{display:flex;flex-wrap:wrap;align-items:center;gap:6px 14px;margin:0 0 12px;font-size:13px;color:#3e4c59}
.filters label{display:flex;align-items:center;gap:6px;font-weight:600}
.filters input,.filters select,.filters button{font:inherit;font-weight:400;padding:3px 6px;border:1px solid #c5ccd3;
 border-radius:5px;background:#fff;color:#1f2933}
.filters button{cursor:pointer} #partial-note{color:#8a5a00;font-size:12.5px}
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
svg .partial{fill-opacity:.35;stroke:#6b7785;stroke-dasharray:3 2}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:4px 0 0;padding:0;list-style:none;font-size:12px;color:#3e4c59}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.legend i.dash{height:0;border-top:2px dashed #6b7785;background:none}
.legend i.partial{background:#d9dee4;border:1px dashed #6b7785}
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

# Draws every card from the embedded data under the filters; the numbers are formatted as contact centres read
# them (m:ss, one decimal of a percent), and rates are taken after summing, as in metric_macros.sql.
SCRIPT = r"""
(function () {
"use strict";
const data = JSON.parse(document.getElementById("dashboard-data").textContent);
const s = data.settings, limit = data.limits;
const col = Object.fromEntries(data.cellColumns.map((name, i) => [name, i + 3]));  // cells: period, queue, channel, …
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac"];
const SERVICE_LEVEL = "#2f6db5", ABANDONMENT = "#d1495b", TARGET = "#6b7785", LIMIT = "#e8a0aa";
const OUTCOME_COLOURS = {"handled": "#59a14f", "abandoned": "#d1495b", "callback requested": "#f28e2b",
  "moved to another queue": "#76b7b2", "callback not connected": "#edc948", "not queued": "#a8b1bb"};
const W = 600, H = 230, LEFT = 46, RIGHT = 12, TOP = 10, BOTTOM = 30, PW = W - LEFT - RIGHT, PH = H - TOP - BOTTOM;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};

const $ = (id) => document.getElementById(id);
const esc = (text) => String(text).replace(/[&<>"']/g, (c) => ENTITIES[c]);
const pad = (n) => String(n).padStart(2, "0");
const count = (v) => v == null ? "–" : Math.round(v).toLocaleString("en-US");
const percent = (share) => share == null ? "–" : (share * 100).toFixed(1) + "%";
const ratio = (part, whole) => whole ? part / whole : null;
const short = (v) => v >= 10 || v === Math.round(v) ? count(v) : v.toPrecision(2);
const fixed = (v) => v.toFixed(1);
function duration(seconds) {
  if (seconds == null) return "–";
  const t = Math.round(seconds), h = Math.floor(t / 3600), m = Math.floor(t % 3600 / 60), sec = t % 60;
  return h ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}
function dayLabel(day, withYear = true) {
  const [y, m, d] = day.split("-").map(Number);
  const weekday = WEEKDAYS[new Date(Date.UTC(y, m - 1, d)).getUTCDay()];
  return withYear ? `${weekday} ${pad(d)} ${MONTHS[m - 1]} ${y}` : `${weekday} ${pad(d)}`;
}
const dayNumber = (day) => Date.UTC(+day.slice(0, 4), +day.slice(5, 7) - 1, +day.slice(8, 10)) / 864e5;
const sum = (rows, at) => rows.reduce((total, row) => total + row[at], 0);
function groupBy(rows, key) {
  const groups = new Map();
  for (const row of rows) {
    const k = key(row);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(row);
  }
  return groups;
}
// [key, value] per group, largest value first; keys are indexes into name lists that are sorted already.
function ranked(groups, value) {
  return [...groups.entries()].map(([key, rows]) => [key, value(rows)]).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
}

const state = {from: data.days[0], to: data.days[data.days.length - 1], queue: -1, channel: -1};
const inDays = (day) => day >= state.from && day <= state.to;
const inQueue = (queue) => state.queue < 0 || queue === state.queue;
const inChannel = (channel) => state.channel < 0 || channel === state.channel;
const periodsShown = () => data.periods.map((_, i) => i).filter((i) => inDays(data.periodDays[i]));

// The cell columns summed over `rows`, the maximum wait as a maximum.
function totals(rows) {
  const t = {};
  for (const name of data.cellColumns) t[name] = sum(rows, col[name]);
  const waits = rows.map((row) => row[col.max_queue_wait_seconds]).filter((wait) => wait != null);
  t.max_queue_wait_seconds = waits.length ? Math.max(...waits) : null;
  return t;
}

// --- charts: a fixed 600 x 230 viewBox scaled to the card's width --------------------------------------------------
function ticks(high, low = 0) {
  if (high <= low) low = 0;
  if (high <= 0) return [0, 1];
  const rough = (high - low) / 4, power = Math.pow(10, Math.floor(Math.log10(rough)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * power).find((v) => v >= rough);
  const start = Math.floor(low / step) * step, n = Math.ceil((high - start) / step - 1e-9);
  return Array.from({length: n + 1}, (_, i) => start + step * i);
}
const heightOf = (t) => (v) => H - BOTTOM - (v - t[0]) / (t[t.length - 1] - t[0]) * PH;
const svg = (body, label, height = H) =>
  `<svg viewBox='0 0 ${W} ${height}' role='img' aria-label='${esc(label)}'>${body}</svg>`;
const empty = (message) => `<p class='empty'>${esc(message)}</p>`;
const text = (x, y, anchor, content, css = "") =>
  `<text${css ? ` class='${css}'` : ""} x='${fixed(x)}' y='${fixed(y)}' text-anchor='${anchor}'>${esc(content)}</text>`;
const rule = (y, css, extra = "") =>
  `<line class='${css}' x1='${LEFT}' x2='${W - RIGHT}' y1='${fixed(y)}' y2='${fixed(y)}'${extra}/>`;
const dashed = (y, colour) => rule(y, "reference", ` stroke='${colour}' stroke-width='1.5' stroke-dasharray='6 4'`);
function gridlines(t, y, label) {
  return t.map((tick, i) => rule(y(tick), i ? "gridline" : "axis") + text(LEFT - 6, y(tick) + 4, "end", label(tick)))
    .join("");
}
function xLabels(labels, x) {
  const every = Math.max(1, Math.ceil(labels.length / 12));  // about 12 labels at most
  return labels.map((label, i) => i % every ? "" : text(x(i), H - BOTTOM + 15, "middle", label)).join("");
}

// Stacked columns, one per label, one colour per series; a period still running is drawn lighter.
function columns(labels, series, partial) {
  const heights = labels.map((_, i) => series.reduce((t, [, , values]) => t + values[i], 0));
  const t = ticks(Math.max(0, ...heights)), y = heightOf(t);
  const slot = PW / Math.max(labels.length, 1), width = Math.max(slot * 0.78, 1);
  const parts = [gridlines(t, y, short)];
  labels.forEach((label, i) => {
    const x = LEFT + i * slot + (slot - width) / 2, running = partial[i] ? " (still running)" : "";
    let stacked = 0;
    for (const [name, colour, values] of series) {
      if (values[i] <= 0) continue;
      const top = y(stacked + values[i]);
      stacked += values[i];
      parts.push(`<rect${partial[i] ? " class='partial'" : ""} x='${fixed(x)}' y='${fixed(top)}' width='${fixed(width)}' `
        + `height='${fixed(y(0) - y(values[i]))}' fill='${colour}'>`
        + `<title>${esc(label)}${running} · ${esc(name)}: ${short(values[i])}</title></rect>`);
    }
  });
  parts.push(xLabels(labels, (i) => LEFT + (i + 0.5) * slot));
  return svg(parts.join(""), "stacked columns");
}

// Percent lines on a 0-100% axis, broken where a value is missing, with dashed reference lines; a period still
// running is a hollow point reached by a dashed step, not part of the line.
function lines(labels, series, references, partial) {
  const t = [0, 25, 50, 75, 100], y = heightOf(t), slot = PW / Math.max(labels.length, 1);
  const x = (i) => LEFT + (i + 0.5) * slot, at = (i, value) => `${fixed(x(i))} ${fixed(y(value))}`;
  const parts = [gridlines(t, y, (tick) => `${tick}%`), ...references.map(([value, colour]) => dashed(y(value), colour))];
  for (const [name, colour, values] of series) {
    const path = [];
    let last = null;
    values.forEach((value, i) => {
      if (value == null) {
        last = null;
      } else if (partial[i]) {
        if (last != null) {
          parts.push(`<path d='M${at(last, values[last])} L${at(i, value)}' fill='none' stroke='${colour}' `
            + "stroke-width='2' stroke-dasharray='4 3'/>");
        }
        last = null;
      } else {
        path.push(`${last == null ? "M" : "L"}${at(i, value)}`);
        last = i;
      }
    });
    parts.push(`<path d='${path.join(" ")}' fill='none' stroke='${colour}' stroke-width='2.5' stroke-linejoin='round'>`
      + `<title>${esc(name)}</title></path>`);
    values.forEach((value, i) => {
      if (value == null) return;
      parts.push(`<circle cx='${fixed(x(i))}' cy='${fixed(y(value))}' r='3' fill='${partial[i] ? "#fff" : colour}' `
        + `stroke='${colour}' stroke-width='1.5'><title>${esc(labels[i])}${partial[i] ? " (still running)" : ""} · `
        + `${esc(name)}: ${fixed(value)}%</title></circle>`);
    });
  }
  parts.push(xLabels(labels, x));
  return svg(parts.join(""), "lines");
}

// Agents as dots: contacts handled across (from 0), average handle time up (zoomed to the agents' range, in
// minutes, so that outliers stand out), the average as a dashed line.
function scatter(points, reference) {
  const across = ticks(Math.max(...points.map((p) => p[1]))), right = across[across.length - 1];
  const handles = points.map((p) => p[2]).concat(reference ? [reference] : []);
  const up = ticks(Math.max(...handles) / 60, Math.min(...handles) / 60).map((minutes) => 60 * minutes);
  const x = (v) => LEFT + v / right * PW, y = heightOf(up);
  const parts = [gridlines(up, y, duration)];
  for (const tick of across) parts.push(text(x(tick), H - BOTTOM + 15, tick === right ? "end" : "middle", short(tick)));
  parts.push(text(x(right / 2), H - 1, "middle", "contacts handled"));
  if (reference) parts.push(dashed(y(reference), TARGET));
  for (const [name, handled, handle] of points) {
    parts.push(`<circle cx='${fixed(x(handled))}' cy='${fixed(y(handle))}' r='4.5' fill='${PALETTE[0]}' fill-opacity='.7'>`
      + `<title>${esc(name)}: ${count(handled)} handled, ${duration(handle)} average handle time</title></circle>`);
  }
  return svg(parts.join(""), "agents scatter");
}

// Horizontal stacked bars, one row per label, with the row's total and share at its end.
function hbars(bars) {
  const labelWidth = 200, rowHeight = bars.length <= 5 ? 30 : 24, height = Math.max(bars.length * rowHeight + 8, 40);
  const sums = bars.map(([, segments]) => segments.reduce((t, segment) => t + segment[2], 0));
  const widest = Math.max(0, ...sums) || 1, everything = sums.reduce((a, b) => a + b, 0) || 1;
  const plot = W - labelWidth - 110;
  const parts = [];
  bars.forEach(([label, segments], i) => {
    const y = 4 + i * rowHeight, middle = y + rowHeight / 2 + 3;
    let x = labelWidth;
    parts.push(text(labelWidth - 8, middle, "end", label));
    for (const [name, colour, value] of segments) {
      if (value <= 0) continue;
      const width = value / widest * plot;
      parts.push(`<rect x='${fixed(x)}' y='${y + 2}' width='${fixed(width)}' height='${rowHeight - 6}' fill='${colour}'>`
        + `<title>${esc(label)} · ${esc(name)}: ${count(value)}</title></rect>`);
      x += width;
    }
    parts.push(text(x + 6, middle, "start", `${count(sums[i])} (${percent(sums[i] / everything)})`, "value"));
  });
  return svg(parts.join(""), "horizontal bars", height);
}

// --- cards, tables and cells ---------------------------------------------------------------------------------------
function card(id, title, note, body, legend = []) {
  const keys = legend.map(([name, swatch]) => swatch === "dash" || swatch === "partial"
    ? `<li><i class='${swatch}'></i>${esc(name)}</li>`
    : `<li><i style='background:${swatch}'></i>${esc(name)}</li>`).join("");
  $(id).innerHTML = `<h2>${esc(title)}</h2><p class='note'>${esc(note)}</p>${body}`
    + (keys ? `<ul class='legend'>${keys}</ul>` : "");
}
const td = (content, css = "") => `<td${css ? ` class='${css}'` : ""}>${esc(content)}</td>`;
const nameCell = (name) => `<td class='name' title='${esc(name)}'>${esc(name)}</td>`;
const barCell = (value, busiest) =>
  `<td><div class='barcell'>${count(value)}<span style='width:${(48 * value / busiest).toFixed(0)}px'></span></div></td>`;
function heatCell(value, darkest) {
  if (!value) return "<td></td>";
  const alpha = 0.12 + 0.88 * value / darkest;
  return `<td style='background:rgba(78,121,167,${alpha.toFixed(2)});color:${alpha > 0.55 ? "#fff" : "#1f2933"}'>`
    + `${count(value)}</td>`;
}
function table(head, rows, css = "") {
  return `<table${css ? ` class='${css}'` : ""}><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>`
    + rows.map((row) => `<tr${row.attributes || ""}>${row.join("")}</tr>`).join("") + "</table>";
}
const queueLabel = (index) => data.queues[index][1];

// --- the panels ------------------------------------------------------------------------------------------------------
function header(cells) {
  const periods = [...new Set(cells.map((row) => row[0]))].sort((a, b) => a - b);
  let label = "no contacts in this selection";
  if (data.byDay) {
    const days = dayNumber(state.to) - dayNumber(state.from) + 1;
    label = `${dayLabel(state.from)} – ${dayLabel(state.to)} (${days} day${days === 1 ? "" : "s"})`;
  } else if (periods.length) {
    const first = data.periods[periods[0]], last = data.periods[periods[periods.length - 1]];
    const end = data.periodEnds[periods[periods.length - 1]];
    label = first.slice(0, 10) === last.slice(0, 10)
      ? `${dayLabel(first.slice(0, 10))}, ${first.slice(11)}–${end === "00:00" ? "24:00" : end}`
      : `${dayLabel(first.slice(0, 10))} ${first.slice(11)} – ${dayLabel(last.slice(0, 10), false)} ${end}`;
  }
  $("period").textContent = data.days.length ? label : "no contacts yet";
  const running = periods.filter((i) => data.partial[i]).map((i) => data.periods[i]);
  $("partial-note").textContent = !running.length ? ""
    : `${data.byDay ? "Today" : `The interval from ${running[0].slice(11)}`} is still running: `
      + "it is drawn lighter and its numbers will grow.";
}

function kpis(cells) {
  const t = totals(cells);
  const serviceLevel = ratio(t.contacts_within_service_level, t.contacts_queued);
  const abandonment = ratio(t.contacts_abandoned, t.contacts_queued);
  const tiles = [
    ["contacts", "Contacts", count(t.contacts), `${count(t.contacts_queued)} queued`, null],
    ["handled", "Handled", count(t.contacts_handled), `${count(t.contacts_answered)} answered from queue`, null],
    ["abandonment", "Abandonment rate", percent(abandonment),
     `${count(t.contacts_abandoned)} abandoned · limit ${+s.abandonment_rate_limit}%`,
     abandonment == null ? null : abandonment * 100 <= s.abandonment_rate_limit],
    ["service-level", `Service level (${s.service_level_seconds} s)`, percent(serviceLevel),
     `target ${+s.service_level_target}%`, serviceLevel == null ? null : serviceLevel * 100 >= s.service_level_target],
    ["speed-of-answer", "Avg speed of answer", duration(ratio(t.queue_answer_seconds, t.contacts_answered)),
     "wait of answered contacts", null],
    ["handle-time", "Avg handle time", duration(ratio(t.handle_seconds, t.contacts_handled)), "talk + hold + ACW", null],
  ];
  $("kpis").innerHTML = tiles.map(([key, label, value, sub, good]) =>
    `<div class='kpi${good == null ? "" : good ? " good" : " bad"}' id='kpi-${key}'><div class='l'>${esc(label)}</div>`
    + `<div class='v'>${esc(value)}</div><div class='s'>${esc(sub)}</div></div>`).join("");
}

// Queue indexes of `cells`, the most queued first (then the most handled).
function queueOrder(cells) {
  const groups = groupBy(cells, (row) => row[1]);
  return ranked(groups, (rows) => sum(rows, col.contacts_queued) * 1e6 + sum(rows, col.contacts_handled))
    .map(([queue]) => queue);
}

function volume(cells) {
  let labels, placed, partial, title, note;
  if (data.byDay) {
    // Averaged over the days that had contacts in that hour, so that a partial first or last day (or a day the
    // centre was closed) does not dilute it.
    const rows = data.profile.filter((row) => inDays(data.days[row[0]]) && inQueue(row[2]) && inChannel(row[3]));
    const days = groupBy(rows, (row) => row[1]);
    labels = Array.from({length: 24}, (_, hour) => pad(hour));
    placed = rows.map((row) => [row[1], row[2], row[4] / new Set(days.get(row[1]).map((r) => r[0])).size]);
    partial = labels.map(() => false);
    title = "Contacts queued by hour of day, by queue";
    note = "Average per day with contacts in that hour.";
  } else {
    const slots = periodsShown(), at = new Map(slots.map((period, i) => [period, i]));
    labels = slots.map((i) => data.periods[i].slice(11) === "00:00"
      ? `${dayLabel(data.periodDays[i], false)} 00:00` : data.periods[i].slice(11));
    placed = cells.filter((row) => row[col.contacts_queued] > 0)
      .map((row) => [at.get(row[0]), row[1], row[col.contacts_queued]]);
    partial = slots.map((i) => data.partial[i]);
    title = `Contacts queued per ${s.interval_minutes === 60 ? "hour" : `${s.interval_minutes} minutes`}, by queue`;
    note = "";
  }
  note += ` Counted at each contact's ${s.interval_rule} time.`;
  const order = queueOrder(cells).filter((queue) => placed.some((p) => p[1] === queue));
  const shown = order.slice(0, limit.queues).concat(order.length > limit.queues ? ["other"] : []);
  const series = new Map(shown.map((queue) => [queue, labels.map(() => 0)]));
  for (const [slot, queue, value] of placed) series.get(series.has(queue) ? queue : "other")[slot] += value;
  const legend = shown.map((queue, i) => [queue === "other" ? "other queues" : queueLabel(queue),
                                          PALETTE[i % PALETTE.length]]);
  const body = !placed.length ? empty("No queued contacts in this selection.")
    : columns(labels, shown.map((queue, i) => [legend[i][0], legend[i][1], series.get(queue)]), partial);
  if (partial.some(Boolean)) legend.push(["still running", "partial"]);
  card("chart-volume", title, note.trim(), body, legend);
}

function rates(cells) {
  const slots = periodsShown(), byPeriod = groupBy(cells, (row) => row[0]);
  const percents = (part) => slots.map((period) => {
    const rows = byPeriod.get(period) || [], queued = sum(rows, col.contacts_queued);
    return queued ? 100 * sum(rows, col[part]) / queued : null;
  });
  const labels = slots.map((i) => data.byDay
    ? `${data.periods[i].slice(8, 10)} ${MONTHS[+data.periods[i].slice(5, 7) - 1]}` : data.periods[i].slice(11));
  const partial = slots.map((i) => data.partial[i]);
  const series = [
    [`Service level (${s.service_level_seconds} s)`, SERVICE_LEVEL, percents("contacts_within_service_level")],
    ["Abandonment rate", ABANDONMENT, percents("contacts_abandoned")],
  ];
  const legend = series.map(([name, colour]) => [name, colour]).concat([[`target ${+s.service_level_target}%`, "dash"]]);
  if (partial.some(Boolean)) legend.push(["still running (hollow)", "partial"]);
  const drawn = series.some(([, , values]) => values.some((value) => value != null));
  const unit = data.byDay ? "day" : s.interval_minutes === 60 ? "hour" : `${s.interval_minutes} minutes`;
  const references = [[s.service_level_target, TARGET], [s.abandonment_rate_limit, LIMIT]];
  card("chart-service-level", `Service level and abandonment rate, per ${unit}`,
    `Service level: share of queued contacts answered or gone from the queue within ${s.service_level_seconds} s. `
    + `Abandonment: share of queued contacts that hung up before reaching an agent (limit ${+s.abandonment_rate_limit}%).`,
    drawn ? lines(labels, series, references, partial) : empty("No queued contacts in this selection."), legend);
}

function queueTable(cells) {
  const groups = groupBy(cells, (row) => row[1]), order = queueOrder(cells);
  const rows = order.slice(0, limit.queueRows).map((queue) => {
    const t = totals(groups.get(queue));
    const level = ratio(t.contacts_within_service_level, t.contacts_queued);
    const abandonment = ratio(t.contacts_abandoned, t.contacts_queued);
    const row = [nameCell(queueLabel(queue)), td(count(t.contacts)), td(count(t.contacts_queued)),
      td(count(t.contacts_handled)),
      td(percent(abandonment), abandonment != null && abandonment * 100 > s.abandonment_rate_limit ? "bad" : ""),
      td(percent(level), level == null ? "" : level * 100 >= s.service_level_target ? "good" : "bad"),
      td(duration(ratio(t.queue_answer_seconds, t.contacts_answered))), td(duration(t.max_queue_wait_seconds)),
      td(duration(ratio(t.handle_seconds, t.contacts_handled))),
      td(duration(ratio(t.hold_seconds, t.contacts_put_on_hold))),
      td(count(t.transfers_in)), td(count(t.transfers_out)), td(count(t.callback_contacts))];
    row.attributes = ` data-queue='${esc(data.queues[queue][0] || "")}'`;
    return row;
  });
  const more = order.length > limit.queueRows ? ` Busiest ${limit.queueRows} of ${order.length} queues.` : "";
  const head = ["Queue", "Contacts", "Queued", "Handled", "Abandoned", "Service level", "Avg answer", "Max wait",
                "Avg handle", "Avg hold", "Transfers in", "Transfers out", "Callbacks"];
  card("table-queues", "Queues", "Handled includes outbound contacts, under the agent's outbound queue; transfers "
    + "count agents' and flows' moves. Service level under the target and abandonment over the limit are in red."
    + more, rows.length ? table(head, rows) : empty("No contacts in this selection."));
}

// The agents of the date range, the busiest first, with their totals and averages.
function agentRows() {
  const groups = groupBy(data.agentDays.filter((row) => inDays(data.days[row[0]])), (row) => row[1]);
  return ranked(groups, (group) => sum(group, 2)).map(([agent]) => {
    const [handled, handle, onHold, hold, work, hungUp, transfers] = [2, 3, 4, 5, 6, 7, 8]
      .map((at) => sum(groups.get(agent), at));
    return {name: data.agents[agent], handled, handleSeconds: handle, handle: ratio(handle, handled),
            hold: ratio(hold, onHold), work: ratio(work, handled), hungUp, transfers};
  });
}

function agentPanels() {
  const agents = agentRows(), busiest = Math.max(0, ...agents.map((a) => a.handled)) || 1;
  const handled = agents.reduce((t, a) => t + a.handled, 0);
  const average = ratio(agents.reduce((t, a) => t + a.handleSeconds, 0), handled);
  const points = agents.filter((a) => a.handle != null).map((a) => [a.name, a.handled, a.handle]);
  card("chart-agents", "Agents: contacts handled and average handle time", "One dot per agent: above the dashed "
    + "line, slower than the average. Follows the date range (agents serve several queues and channels).",
    points.length ? scatter(points, average) : empty("No contacts handled by agents in these days."),
    [["agent", PALETTE[0]]].concat(average ? [["average", "dash"]] : []));
  const rows = agents.slice(0, limit.agents).map((a) => [nameCell(a.name), barCell(a.handled, busiest),
    td(duration(a.handle)), td(duration(a.hold)), td(duration(a.work)), td(count(a.hungUp)), td(count(a.transfers))]);
  card("table-agents", "Agent performance", `Busiest ${Math.min(limit.agents, agents.length)} of ${data.agentTotal} `
    + "agents in these days. Avg hold counts only contacts put on hold; hung up first: the agent disconnected before "
    + "the customer. Follows the date range.",
    rows.length ? table(["Agent", "Handled", "Avg handle", "Avg hold", "Avg ACW", "Hung up first", "Transfers out"], rows)
      : empty("No contacts handled by agents in these days."));
}

function grid() {
  const rows = data.agentQueues.filter((row) => inDays(data.days[row[0]]) && inQueue(row[2]));
  const agents = ranked(groupBy(rows, (row) => row[1]), (group) => sum(group, 3)).slice(0, limit.agents)
    .map(([agent]) => agent);
  const queues = ranked(groupBy(rows, (row) => row[2]), (group) => sum(group, 3)).map(([queue]) => queue);
  const shown = queues.slice(0, limit.queues).concat(queues.length > limit.queues ? ["other"] : []);
  const cells = new Map();
  for (const [, agent, queue, contacts] of rows) {
    const key = `${agent}/${shown.includes(queue) ? queue : "other"}`;
    cells.set(key, (cells.get(key) || 0) + contacts);
  }
  const value = (agent, queue) => cells.get(`${agent}/${queue}`) || 0;
  const darkest = Math.max(0, ...agents.flatMap((agent) => shown.map((queue) => value(agent, queue)))) || 1;
  const body = agents.map((agent) => [nameCell(data.agents[agent])]
    .concat(shown.map((queue) => heatCell(value(agent, queue), darkest))));
  const head = ["Agent"].concat(shown.map((queue) => queue === "other" ? "other queues" : queueLabel(queue)));
  card("chart-agent-queue", "Agent by queue", `Contacts per agent and queue, the busiest ${agents.length} agents in `
    + "these days; darker is more. Follows the date range and queue filter.",
    agents.length ? table(head, body, "heat") : empty("No contacts handled by agents in this selection."));
}

function reasons() {
  const rows = data.reasons.filter((row) => inDays(data.days[row[0]]) && inQueue(row[1]) && inChannel(row[2]));
  const byReason = groupBy(rows, (row) => row[4]);
  const order = ranked(byReason, (group) => sum(group, 5)).map(([reason]) => reason);
  const known = Object.keys(OUTCOME_COLOURS), rank = (o) => known.includes(data.outcomes[o])
    ? known.indexOf(data.outcomes[o]) : known.length;
  const outcomes = [...new Set(rows.map((row) => row[3]))]
    .sort((a, b) => rank(a) - rank(b) || data.outcomes[a].localeCompare(data.outcomes[b]));
  const colours = new Map(outcomes.map((o, i) => [o, OUTCOME_COLOURS[data.outcomes[o]] || PALETTE[i % PALETTE.length]]));
  const segments = (group) => outcomes.map((o) => [data.outcomes[o], colours.get(o),
                                                   sum(group.filter((row) => row[3] === o), 5)]);
  const bars = order.slice(0, limit.reasons).map((reason) => [data.reasonNames[reason], segments(byReason.get(reason))]);
  if (order.length > limit.reasons) {
    bars.push(["other reasons", segments(order.slice(limit.reasons).flatMap((reason) => byReason.get(reason)))]);
  }
  card("chart-disconnect-reasons", "Disconnect reasons", "How each contact ended (Connect's DisconnectReason; "
    + "(none) when Connect gave none), coloured by what happened to it.",
    rows.length ? hbars(bars) : empty("No contacts in this selection."),
    outcomes.map((o) => [data.outcomes[o], colours.get(o)]));
}

function render() {
  const cells = data.cells.filter((row) => inDays(data.periodDays[row[0]]) && inQueue(row[1]) && inChannel(row[2]));
  header(cells);
  kpis(cells);
  volume(cells);
  rates(cells);
  queueTable(cells);
  agentPanels();
  reasons();
  grid();
}

const from = $("filter-from"), to = $("filter-to"), queue = $("filter-queue"), channel = $("filter-channel");
function filter() {
  state.from = from.value || data.days[0];
  state.to = to.value || data.days[data.days.length - 1];
  if (state.from > state.to) [state.from, state.to] = [state.to, state.from];
  state.queue = +queue.value;
  state.channel = +channel.value;
  render();
}
for (const control of [from, to, queue, channel]) control.addEventListener("change", filter);
$("filters").addEventListener("reset", () => setTimeout(filter));
render();
})();
"""


def render_dashboard(connection: Any) -> str:
    """The page, from the aggregate tables and the metric settings they were built with in `connection`."""
    return _page(dashboard_data(connection))


def dashboard_data(connection: Any) -> dict:
    """What the page shows, as indexes and counts: the filters and every card work from this alone."""
    columns, rows = fetch_table(connection, SETTINGS)
    settings = {name: value.isoformat() if isinstance(value, datetime) else value
                for name, value in zip(columns, rows[0])}
    first_day, last_day = fetch_table(connection, DAYS)[1][0]
    by_day = first_day is not None and (last_day - first_day).days + 1 > INTERVALS_UP_TO_DAYS
    days = _days(first_day, last_day)
    day_index = {day: i for i, day in enumerate(days)}
    relation = connection.execute(CELLS, {"by_day": by_day})
    cell_columns = [column[0] for column in relation.description][4:]
    cell_rows = relation.fetchall()
    step = timedelta(days=1) if by_day else timedelta(minutes=settings["interval_minutes"])
    periods = _periods([row[0] for row in cell_rows], step)
    period_index = {period: i for i, period in enumerate(periods)}
    partial = dict(fetch_table(connection, PARTIAL_DAYS if by_day else PARTIAL_INTERVALS)[1])
    queues = _queues(cell_rows, cell_columns)
    queue_index = {arn: i for i, (arn, _) in enumerate(queues)}
    channels = sorted({row[3] for row in cell_rows}, key=lambda channel: (channel is None, channel or ""))
    channel_index = {channel: i for i, channel in enumerate(channels)}
    reasons = fetch_table(connection, REASONS)[1]
    outcomes = sorted({row[3] for row in reasons})
    reason_names = sorted({row[4] for row in reasons})
    agent_days = connection.execute(AGENTS, {"limit": MAX_AGENT_POINTS}).fetchall()
    agent_queues = connection.execute(AGENT_QUEUES, {"limit": GRID_AGENTS}).fetchall()
    agents = sorted({row[1] for row in agent_days} | {row[1] for row in agent_queues})
    agent_index = {agent: i for i, agent in enumerate(agents)}
    return {
        "settings": settings,
        "limits": {"queues": TOP_QUEUES, "agents": TOP_AGENTS, "reasons": TOP_REASONS, "queueRows": QUEUE_ROWS},
        "byDay": by_day,
        "days": [day.isoformat() for day in days],
        "periods": [_period_text(period, by_day) for period in periods],
        "periodEnds": [f"{period + step:%H:%M}" for period in periods],
        "periodDays": [period.date().isoformat() for period in periods],
        "partial": [bool(partial.get(period, False)) for period in periods],
        "queues": queues,
        "channels": [channel or "(none)" for channel in channels],
        "cellColumns": cell_columns,
        "cells": [[period_index[row[0]], queue_index[row[1]], channel_index[row[3]], *row[4:]] for row in cell_rows],
        "profile": [[day_index[day], hour, queue_index[arn], channel_index[channel], queued]
                    for day, hour, arn, channel, queued in fetch_table(connection, PROFILE)[1]] if by_day else [],
        "outcomes": outcomes,
        "reasonNames": reason_names,
        "reasons": [[day_index[day], queue_index[arn], channel_index[channel], outcomes.index(outcome),
                     reason_names.index(reason), contacts] for day, arn, channel, outcome, reason, contacts in reasons],
        "agents": agents,
        "agentTotal": fetch_table(connection, AGENT_COUNT)[1][0][0],
        "agentDays": [[day_index[day], agent_index[agent], *values] for day, agent, *values in agent_days],
        "agentQueues": [[day_index[day], agent_index[agent], queue_index[arn], contacts]
                        for day, agent, arn, contacts in agent_queues],
    }


def _days(first: date | None, last: date | None) -> list[date]:
    if first is None:
        return []
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _periods(moments: list[datetime], step: timedelta) -> list[datetime]:
    """Every period from the first to the last of `moments`, so that quiet ones show as gaps."""
    if not moments:
        return []
    first, last = min(moments), max(moments)
    return [first + step * n for n in range(int((last - first) / step) + 1)]


def _period_text(period: datetime, by_day: bool) -> str:
    return f"{period:%Y-%m-%d}" if by_day else f"{period:%Y-%m-%dT%H:%M}"


def _queues(cell_rows: list[tuple], cell_columns: list[str]) -> list[tuple[str | None, str]]:
    """(ARN, label) per queue, busiest first; a name two queues share gets the end of each ARN."""
    queued_at, contacts_at = 4 + cell_columns.index("contacts_queued"), 4 + cell_columns.index("contacts")
    queued: dict[tuple[str | None, str], list[int]] = {}
    for row in cell_rows:
        totals = queued.setdefault((row[1], row[2]), [0, 0])
        totals[0] += row[queued_at]
        totals[1] += row[contacts_at]
    names = [name for _, name in queued]
    ordered = sorted(queued, key=lambda key: (-queued[key][0], -queued[key][1], key[1], key[0] or ""))
    return [(arn, name if names.count(name) == 1 else f"{name} (…{(arn or '').rsplit('/', 1)[-1][-8:]})")
            for arn, name in ordered]


def _page(data: dict) -> str:
    settings = data["settings"]
    threshold = settings["service_level_seconds"]
    span = f"{data['days'][0]} – {data['days'][-1]}" if data["days"] else "no contacts yet"
    definitions = [
        ("Queued", "placed in a queue (outbound contacts are not)"),
        ("Handled", "connected to an agent, incoming or outbound"),
        ("Abandoned", "queued, never connected to an agent, not a callback, not continued in another queue"),
        (f"Service level ({threshold} s)", f"left the queue within {threshold} s, over queued"),
        ("Avg speed of answer", "time in queue of contacts answered from the queue"),
        ("Avg handle time", "agent interaction + customer hold + after-contact work"),
    ]
    terms = "".join(f"<dt>{escape(term)}</dt><dd>{escape(text)}.</dd>" for term, text in definitions)
    first, last = (data["days"][0], data["days"][-1]) if data["days"] else ("", "")
    queues = "".join(f"<option value='{i}'>{escape(label)}</option>" for i, (_, label) in enumerate(data["queues"]))
    channels = "".join(f"<option value='{i}'>{escape(name)}</option>" for i, name in enumerate(data["channels"]))
    cards = "".join(f"<section class='card{' wide' if card == 'table-queues' else ''}' id='{card}'></section>"
                    for card in CARDS)
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Contact centre dashboard · {escape(span)}</title><style>{STYLE}</style></head><body><main>"
        f"<header><h1>Contact centre<span class='period' id='period'>{escape(span)}</span></h1>"
        f"<div class='meta'>Times in {escape(settings['report_timezone'])} · {settings['interval_minutes']}-minute "
        f"intervals, each contact counted at its {escape(settings['interval_rule'])} time · Amazon Connect contact "
        f"records, one row per contact after deduplication · tables built "
        f"{escape(settings['as_of'][:16].replace('T', ' '))} UTC</div></header>"
        "<form class='filters' id='filters' onsubmit='return false'>"
        f"<label>From <input type='date' id='filter-from' min='{first}' max='{last}' value='{first}'></label>"
        f"<label>To <input type='date' id='filter-to' min='{first}' max='{last}' value='{last}'></label>"
        f"<label>Queue <select id='filter-queue'><option value='-1'>All queues</option>{queues}</select></label>"
        f"<label>Channel <select id='filter-channel'><option value='-1'>All channels</option>{channels}</select>"
        "</label>"
        "<button type='reset' id='filter-reset'>Show everything</button><span id='partial-note'></span></form>"
        "<section class='kpis' id='kpis'></section>"
        f"<div class='grid'>{cards}</div>"
        f"<footer><dl>{terms}</dl></footer></main>"
        f"<script type='application/json' id='dashboard-data'>{payload}</script><script>{SCRIPT}</script></body></html>"
    )
