"""A small SVG writer for the report plots: one panel per field, its values as a polyline over time.

Pure functions from numbers to text, with no plotting stack, so a report renders on a Raspberry Pi-class server.
The output is standalone SVG (it parses as XML) and every piece of text in it is escaped: field names come from
devices. NaN and infinite values are skipped; a long series is cut to at most `max_vertices` per panel by keeping
the lowest and highest value of each time bucket, so a one-sample spike still shows.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

Instant = datetime | float  # a datetime (naive means UTC) or seconds since the epoch

WIDTH = 800
PANEL = 150  # one panel's height: title, plot area, time labels
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 22, 26  # the plot area's margins inside a panel
MAX_VERTICES = 1000
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800)
DAY = 86400
EARLIEST, LATEST = -62135596800.0, 253402300799.0  # years 1 to 9999: the instants a UTC label can name
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")  # not allowed even escaped


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[tuple[Instant, float]]
    unit: str = ""


def seconds(t: Instant) -> float:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    return float(t)


def text(value: str, limit: int = 80) -> str:
    """Escaped for XML text and attributes, characters XML forbids replaced, cut to `limit` characters."""
    value = _NOT_XML.sub("\ufffd", value)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return html.escape(value, quote=True)


def clean(points: Sequence[tuple[Instant, float]]) -> list[tuple[float, float]]:
    """Finite (seconds, value) pairs in time order."""
    out = [(seconds(t), float(v)) for t, v in points]
    return sorted((t, v) for t, v in out if EARLIEST <= t <= LATEST and math.isfinite(v))


def downsample(points: Sequence[tuple[float, float]], max_vertices: int = MAX_VERTICES) -> list[tuple[float, float]]:
    """At most `max_vertices` points: per time bucket, its lowest and highest point in time order (spikes stay)."""
    if len(points) <= max_vertices:
        return list(points)
    buckets = max(1, max_vertices // 2)
    t0, t1 = points[0][0], points[-1][0]
    span = (t1 - t0) or 1.0
    lows: dict[int, tuple[float, float]] = {}
    highs: dict[int, tuple[float, float]] = {}
    for point in points:
        b = min(buckets - 1, int((point[0] - t0) / span * buckets))
        if b not in lows or point[1] < lows[b][1]:
            lows[b] = point
        if b not in highs or point[1] > highs[b][1]:
            highs[b] = point
    out: list[tuple[float, float]] = []
    for b in sorted(lows):
        out.extend(sorted({lows[b], highs[b]}))
    return out


def nice_step(span: float, target: int) -> float:
    """1, 2 or 5 times a power of ten, so that about `target` steps cover `span`."""
    raw = span / target
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def value_axis(lo: float, hi: float, target: int = 5) -> tuple[float, float, list[float], int]:
    """The drawn range, its ticks and the decimals they need: a constant series gets room around it."""
    if hi - lo <= 0:
        pad = abs(lo) * 0.1 or 1.0
        lo = lo - pad if math.isfinite(lo - pad) else lo
        hi = hi + pad if math.isfinite(hi + pad) else hi
    span = hi / 2 - lo / 2  # halves: no overflow near the float limit
    if not math.isfinite(2 * span) or 2 * span < max(abs(lo), abs(hi), 1e-290) * 1e-12:
        return lo, hi, [lo, hi], -1  # -1: too wide or too fine for fixed decimals
    step = nice_step(2 * span, target)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return first * step, last * step, [k * step for k in range(first, last + 1)], decimals


def number(value: float, decimals: int) -> str:
    if decimals < 0 or abs(value) >= 1e9:
        return f"{value:.6g}"
    shown = f"{value:.{min(decimals, 12)}f}"
    return "0" if float(shown) == 0 else shown  # never "-0.0"


def short(value: float, digits: int = 5) -> str:
    """About `digits` significant digits, without an exponent for everyday magnitudes (1000000, not 1e+06)."""
    if value == 0 or not 1e-4 <= abs(value) < 1e12:
        return f"{value:.{digits}g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    shown = f"{value:.{decimals}f}"
    return shown.rstrip("0").rstrip(".") if "." in shown else shown


def utc(t: float, fmt: str) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return f"{t:.6g}"


def time_axis(t0: float, t1: float, target: int = 5) -> tuple[list[float], str, str]:
    """Ticks on round UTC times, their label format, and the axis title (with the date when labels are times)."""
    span = t1 - t0
    step: float = next((s for s in TIME_STEPS if span / s <= target), 0)
    if not step:
        step = DAY * nice_step(span / DAY, target)
    ticks = [k * step for k in range(math.ceil(t0 / step), math.floor(t1 / step) + 1)]
    if step >= DAY:
        return ticks, "%Y-%m-%d", "date (UTC)"
    if span > 2 * DAY:
        return ticks, "%m-%d %H:%M", "time (UTC)"
    first, last = utc(t0, "%Y-%m-%d"), utc(t1, "%Y-%m-%d")
    return ticks, "%H:%M:%S", f"time (UTC), {first}" + ("" if first == last else f" → {last}")


def panel(
    series: Series, x0: float, x1: float, top: float, width: int = WIDTH, max_vertices: int = MAX_VERTICES
) -> str:
    """One field's panel as an SVG group, its plot area [x0, x1] in seconds placed `top` pixels down."""
    points = clean(series.points)
    left, right, y_top, y_bottom = LEFT, width - RIGHT, top + TOP, top + PANEL - BOTTOM
    title = series.name + (f" ({series.unit})" if series.unit else "")
    parts = [
        f'<g class="panel" data-field="{text(series.name, 200)}">',
        f'<text x="{left}" y="{top + 14}" font-weight="bold">{text(title)}</text>',
        f'<rect x="{left}" y="{y_top}" width="{right - left}" height="{y_bottom - y_top}" fill="none" stroke="#999"/>',
    ]
    ticks, fmt, _ = time_axis(x0, x1)

    def x(t: float) -> float:
        return round(left + (t - x0) / (x1 - x0) * (right - left), 1)

    for t in ticks:
        parts.append(f'<line x1="{x(t)}" x2="{x(t)}" y1="{y_top}" y2="{y_bottom}" stroke="#eee"/>')
        parts.append(f'<text x="{x(t)}" y="{y_bottom + 17}" text-anchor="middle">{text(utc(t, fmt))}</text>')
    if not points:
        parts.append(f'<text x="{(left + right) / 2}" y="{(y_top + y_bottom) / 2}" text-anchor="middle" fill="#777">')
        parts.append("no finite values</text></g>")
        return "".join(parts)
    values = [v for _, v in points]
    lo, hi, yticks, decimals = value_axis(min(values), max(values))

    def y(v: float) -> float:
        return round(y_bottom - (v / 2 - lo / 2) / (hi / 2 - lo / 2) * (y_bottom - y_top), 1)

    for v in yticks:
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y(v)}" y2="{y(v)}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4}" text-anchor="end">{number(v, decimals)}</text>')
    drawn = downsample(points, max_vertices)
    coords = " ".join(f"{x(t)},{y(v)}" for t, v in drawn)
    parts.append(f'<polyline class="series" points="{coords}" fill="none" stroke="#1565c0" stroke-width="1.2"/>')
    if len(drawn) == 1:
        parts.append(f'<circle cx="{x(drawn[0][0])}" cy="{y(drawn[0][1])}" r="2.5" fill="#1565c0"/>')
    summary = f"min {short(min(values))} · max {short(max(values))} · last {short(values[-1])}"
    parts.append(f'<text class="summary" x="{right}" y="{top + 14}" text-anchor="end" fill="#555">{summary}</text>')
    parts.append("</g>")
    return "".join(parts)


def render(
    series: Sequence[Series],
    start: Instant | None = None,
    end: Instant | None = None,
    *,
    width: int = WIDTH,
    max_vertices: int = MAX_VERTICES,
) -> str:
    """Standalone SVG with one panel per series over [start, end] (widened to hold every point), or "" for no series.

    The time axis is shared so panels line up; its title names the UTC date when the labels are times of day.
    """
    if not series:
        return ""
    times = [t for s in series for t, _ in clean(s.points)]
    bounds = times + [t for t in (seconds(t) for t in (start, end) if t is not None) if EARLIEST <= t <= LATEST]
    x0, x1 = (min(bounds), max(bounds)) if bounds else (0.0, 1.0)
    if x1 - x0 <= 0:
        x0, x1 = x0 - 1, x1 + 1
    height = PANEL * len(series) + 16
    _, _, axis_title = time_axis(x0, x1)
    body = "".join(panel(s, x0, x1, i * PANEL, width, max_vertices) for i, s in enumerate(series))
    label = text("readings: " + ", ".join(s.name for s in series), 200)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
        'font-family="sans-serif" font-size="11" style="max-width:100%;height:auto">'
        f"{body}"
        f'<text x="{(LEFT + width - RIGHT) / 2}" y="{height - 4}" text-anchor="middle">{text(axis_title)}</text>'
        "</svg>"
    )
