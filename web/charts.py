"""Charts drawn on the server as inline SVG: stacked bars per category (weeks, townships) and
single bars with a value per row (response times).

No chart library reaches the browser: an SVG of a few kilobytes renders without JavaScript,
prints, scales to 360 px, and obeys a CSP without inline scripts or styles (colours are
presentation attributes, not ``style``). Each chart is a ``<figure>`` whose SVG is labelled by
its caption and followed by the same figures as a table, for screen readers and for anyone who
wants the numbers (WCAG 1.1.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count

from markupsafe import Markup, escape

# Colours with at least 3:1 against white (WCAG 1.4.11, graphical objects).
ON_TIME, LATE, MISSED, OPEN, BLUE = "#1b7f3b", "#a15c00", "#c62828", "#5f6b7a", "#1f5fa8"

_ids = count(1)


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    values: Sequence[float]


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _legend(series: Sequence[Series]) -> str:
    items = "".join(
        f'<li><span class="swatch s-{s.colour.lstrip("#")}" aria-hidden="true"></span>{escape(s.label)}</li>'
        for s in series
    )
    return f'<ul class="legend">{items}</ul>'


def _table(caption: str, head: str, categories: Sequence[str], series: Sequence[Series]) -> str:
    header = "".join(f'<th scope="col">{escape(s.label)}</th>' for s in series)
    rows = "".join(
        f'<tr><th scope="row">{escape(c)}</th>' + "".join(f"<td>{_number(s.values[i])}</td>" for s in series) + "</tr>"
        for i, c in enumerate(categories)
    )
    return (
        f'<details class="chart-data"><summary>{escape(caption)}</summary>'
        f'<div class="table-wrap"><table><thead><tr><th scope="col">{escape(head)}</th>{header}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></details>"
    )


def stacked_columns(
    caption: str, head: str, categories: Sequence[str], series: Sequence[Series], *, data_label: str
) -> Markup:
    """Vertical stacked columns, one per category (weeks): for a handful of categories."""
    n = max(len(categories), 1)
    width, height, left, bottom, top = 320, 180, 28, 34, 8
    plot_w, plot_h = width - left - 4, height - bottom - top
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    peak = max([*totals, 1])
    step = plot_w / n
    bar = step * 0.62
    parts = []
    for tick in (0, round(peak / 2), peak) if peak >= 2 else (0, peak):  # counts: whole numbers
        y = top + plot_h - plot_h * tick / peak
        parts.append(
            f'<line x1="{left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d5dc" stroke-width="0.5"/>'
        )
        parts.append(
            f'<text x="{left - 3}" y="{y + 3:.1f}" text-anchor="end" font-size="9" fill="#333">{tick:g}</text>'
        )
    for i, category in enumerate(categories):
        x = left + i * step + (step - bar) / 2
        y = top + plot_h
        for s in series:
            h = plot_h * s.values[i] / peak
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{s.colour}">'
                    f"<title>{escape(category)} {escape(s.label)}: {_number(s.values[i])}</title></rect>"
                )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 13}" text-anchor="middle" font-size="9" fill="#333">'
            f"{escape(category)}</text>"
        )
        if totals[i]:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{y - 2:.1f}" text-anchor="middle" font-size="9" fill="#333">'
                f"{_number(totals[i])}</text>"
            )
    return _figure(caption, head, categories, series, width, height, "".join(parts), data_label)


def stacked_rows(
    caption: str, head: str, categories: Sequence[str], series: Sequence[Series], *, data_label: str
) -> Markup:
    """Horizontal stacked bars, one row per category (townships, villages): long names fit."""
    row_h, label_w, width = 24, 100, 320
    height = max(len(categories), 1) * row_h + 6
    plot_w = width - label_w - 30
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    peak = max([*totals, 1])
    parts = []
    for i, category in enumerate(categories):
        y = 3 + i * row_h
        name = category if len(category) <= 7 else category[:6] + "…"
        parts.append(
            f'<text x="{label_w - 4}" y="{y + 16}" text-anchor="end" font-size="12" fill="#222">{escape(name)}</text>'
        )
        x = float(label_w)
        for s in series:
            w = plot_w * s.values[i] / peak
            if w > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 7}" fill="{s.colour}">'
                    f"<title>{escape(category)} {escape(s.label)}: {_number(s.values[i])}</title></rect>"
                )
                x += w
        parts.append(f'<text x="{x + 3:.1f}" y="{y + 16}" font-size="11" fill="#333">{_number(totals[i])}</text>')
    return _figure(caption, head, categories, series, width, height, "".join(parts), data_label)


def _figure(
    caption: str,
    head: str,
    categories: Sequence[str],
    series: Sequence[Series],
    width: int,
    height: int,
    body: str,
    data_label: str,
) -> Markup:
    ident = f"chart-{next(_ids)}"
    return Markup(
        f'<figure class="chart" data-chart="{escape(data_label)}">'
        f'<figcaption id="{ident}">{escape(caption)}</figcaption>'
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="{ident}" preserveAspectRatio="xMinYMin meet">'
        f"{body}</svg>{_legend(series) if len(series) > 1 else ''}"
        f"{_table(caption, head, categories, series)}</figure>"
    )
