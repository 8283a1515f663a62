"""Inline SVG charts drawn on the server: stacked bars per day, no script and no build step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

# Colour-blind-safe (Okabe-Ito), then grey for "other".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
OTHER = "#999999"


@dataclass(frozen=True)
class Series:
    name: str
    colour: str


def stacked_bars(
    days: Sequence[str],
    values: Mapping[str, Mapping[str, Decimal | int]],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    width: int = 720,
    height: int = 220,
) -> str:
    """An SVG stacked bar chart: one bar per day, one segment per series (`values[day][name]`).

    Accessible: role=img with a title, and each segment's value in its own <title>."""
    pad_l, pad_b, pad_t = 56, 28, 10
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    totals = [sum((Decimal(v) for v in values.get(d, {}).values()), Decimal(0)) for d in days]
    top = max(totals, default=Decimal(0)) or Decimal(1)
    n = max(len(days), 1)
    slot = plot_w / n
    bar = max(min(slot * 0.7, 48), 2)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0, 0.5, 1):
        y = pad_t + plot_h * (1 - frac)
        label = _short(top * Decimal(str(frac)))
        parts.append(
            f'<line x1="{pad_l}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{pad_l - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(unit)}{label}</text>'
        )
    for i, day in enumerate(days):
        x = pad_l + slot * i + (slot - bar) / 2
        y = pad_t + plot_h
        for s in series:
            v = Decimal(values.get(day, {}).get(s.name, 0))
            if v <= 0:
                continue
            h = float(v / top) * plot_h
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{s.colour}"><title>{escape(day)} · {escape(s.name)}: '
                f"{escape(unit)}{_short(v)}</title></rect>"
            )
        if n <= 14 or i % max(n // 7, 1) == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{escape(day[5:])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def legend(series: Sequence[Series]) -> list[tuple[str, str]]:
    return [(s.name, s.colour) for s in series]


def top_series(totals: Sequence[tuple[str, Decimal]], keep: int = 6) -> list[Series]:
    """The `keep` largest ids in palette colours; the rest are folded into "other"."""
    out = [Series(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(totals[:keep])]
    if len(totals) > keep:
        out.append(Series("other", OTHER))
    return out


def _short(v: Decimal) -> str:
    f = float(v)
    if f >= 1_000_000:
        return f"{f / 1_000_000:.1f}M"
    if f >= 1_000:
        return f"{f / 1_000:.1f}k"
    if f >= 1 or f == 0:
        return f"{f:.2f}".rstrip("0").rstrip(".")
    return f"{f:.4g}"
