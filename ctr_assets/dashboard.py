"""The dashboard page: one self-contained HTML file (no scripts, no fonts, no network) from the aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2933;background:#f7f9fb}
h1{font-size:22px;margin:0 0 4px} .sub{color:#61707f;margin-bottom:20px}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:20px}
.kpi{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:12px 16px;min-width:140px}
.kpi .v{font-size:26px;font-weight:600} .kpi .l{color:#61707f}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px;margin-bottom:16px}
h2{font-size:16px;margin:0 0 12px} table{border-collapse:collapse;width:100%}
td,th{padding:3px 8px;text-align:left;border-bottom:1px solid #eef1f4} th{color:#61707f;font-weight:500}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#3b82c4;height:14px;border-radius:2px}
"""


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars, one per label."""

    title: str
    bars: list[tuple[str, float]]


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[tuple]


def render_page(title: str, subtitle: str, kpis: list[tuple[str, str]], sections: list[BarChart | Table]) -> str:
    body = [f"<h1>{escape(title)}</h1><div class='sub'>{escape(subtitle)}</div><div class='kpis'>"]
    body += [f"<div class='kpi'><div class='v'>{escape(value)}</div><div class='l'>{escape(label)}</div></div>"
             for label, value in kpis]
    body.append("</div>")
    body += [_bar_chart(section) if isinstance(section, BarChart) else _table(section) for section in sections]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def _bar_chart(chart: BarChart) -> str:
    top = max((value for _, value in chart.bars), default=0) or 1
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td class='n'>{value:,.0f}</td>"
        f"<td style='width:60%'><div class='bar' style='width:{100 * value / top:.1f}%'></div></td></tr>"
        for label, value in chart.bars
    )
    return f"<section class='chart'><h2>{escape(chart.title)}</h2><table>{rows}</table></section>"


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in table.columns)
    rows = "".join(
        "<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in table.rows
    )
    return f"<section><h2>{escape(table.title)}</h2><table><tr>{head}</tr>{rows}</table></section>"


def _cell(value: object) -> str:
    if isinstance(value, (int, float)):
        return f"<td class='n'>{value:,}</td>"
    return f"<td>{escape('' if value is None else str(value))}</td>"
