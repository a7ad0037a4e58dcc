"""Charts drawn on the server as SVG: no script, nothing fetched, every label escaped.

Each function returns :class:`markupsafe.Markup`, so a template inserts it as
is; every string that came from data goes through :func:`markupsafe.escape`
on the way in (a model name or template id is data, and data is untrusted).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

#: Colour-blind-safe categorical palette (Okabe-Ito), repeated when there are more series.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]


def _num(v: float) -> str:
    if abs(v) >= 1e9:
        return f"{v / 1e9:.1f}G"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.3g}" if isinstance(v, float) and v != int(v) else f"{int(v)}"


def stacked_bars(title: str, categories: Sequence[str], series: dict[str, Sequence[float]],
                 width: int = 760, height: int = 240) -> Markup:
    """Bars per category (x), stacked by series; a legend below. Empty input draws a note."""
    if not categories or not series:
        return Markup('<p class="empty">no data yet</p>')
    left, top, bottom = 56, 24, 40
    plot_w, plot_h = width - left - 10, height - top - bottom
    totals = [sum(float(s[i] or 0) for s in series.values()) for i in range(len(categories))]
    peak = max(totals) or 1.0
    slot = plot_w / len(categories)
    bar_w = max(1.0, slot * 0.8)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height + 20 * ((len(series) + 3) // 4)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>']
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="axis">{_num(peak * frac)}</text>')
    for i, cat in enumerate(categories):
        x, base = left + i * slot + (slot - bar_w) / 2, top + plot_h
        for k, (name, values) in enumerate(series.items()):
            v = float(values[i] or 0)
            if v <= 0:
                continue
            h = plot_h * v / peak
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(cat)} {escape(name)}: {_num(v)}'
                         '</title></rect>')
        if len(categories) <= 16 or i % max(1, len(categories) // 8) == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                         f'class="axis">{escape(cat)}</text>')
    for k, name in enumerate(series):
        lx, ly = left + (k % 4) * (plot_w / 4), height + 4 + 20 * (k // 4)
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 10}" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
                     f'<text x="{lx + 14:.1f}" y="{ly}" class="legend">{escape(str(name)[:40])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def heatmap(title: str, rows: Sequence[str], cols: Sequence[str], values: dict[tuple[str, str], float],
            counts: dict[tuple[str, str], int], scale: float | None) -> Markup:
    """A rows x cols grid coloured by value / scale (white -> blue), with the value and n in each cell."""
    if not rows or not cols:
        return Markup('<p class="empty">no scores yet</p>')
    cell_w, cell_h, left, top = 110, 34, 200, 90
    width, height = left + cell_w * len(cols) + 10, top + cell_h * len(rows) + 10
    top_value = scale or max(values.values(), default=1.0) or 1.0
    width = max(width + 120, 560)  # room for the last column's slanted label and the title
    parts = [f'<svg class="chart heatmap" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<text x="4" y="14" class="chart-title">{escape(title)}</text>']
    for j, c in enumerate(cols):
        x = left + j * cell_w + cell_w / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 8}" text-anchor="start" transform="rotate(-30 {x:.1f} {top - 8})" '
                     f'class="axis">{escape(str(c)[:28])}</text>')
    for i, r in enumerate(rows):
        y = top + i * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end" class="axis">'
                     f'{escape(str(r)[:30])}</text>')
        for j, c in enumerate(cols):
            v = values.get((r, c))
            x = left + j * cell_w
            if v is None:
                parts.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" class="cell-empty"/>')
                continue
            t = max(0.0, min(1.0, v / top_value))
            fill = f"rgb({int(255 - 200 * t)},{int(255 - 140 * t)},{int(255 - 60 * t)})"
            ink = "#fff" if t > 0.6 else "#111"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}">'
                         f'<title>{escape(r)} x {escape(c)}: {v:.2f} (n={counts.get((r, c), 0)})</title></rect>'
                         f'<text x="{x + cell_w / 2 - 1:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="middle" '
                         f'fill="{ink}" class="cell">{v:.2f} <tspan class="n">n={counts.get((r, c), 0)}</tspan>'
                         '</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
