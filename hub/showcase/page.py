"""A showcase's HTML: one self-contained page (its style inline, hashed into the page's CSP; no script of its own),
laid out for a phone and for one printed A4 page; and the demo-day index of a cohort's public showcases. Pure."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from hub.showcase.model import Showcase, render_description

STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px auto; max-width: 820px; padding: 0 12px; color: #222;
  overflow-wrap: anywhere; }
h1 { font-size: 1.6em; margin: 0 0 4px; } .by { color: #555; margin: 0 0 12px; }
.description { line-height: 1.45; } .devices { padding-left: 18px; }
figure { margin: 12px 0; } svg { max-width: 100%; height: auto; }
iframe.replay { width: 100%; height: 520px; border: 1px solid #ccc; border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; table-layout: fixed; } td, th { border-bottom: 1px solid #ddd; padding: 3px 5px; text-align: left; vertical-align: top; }
col.device { width: 24%; } col.criterion { width: 44%; } col.measured { width: 20%; } col.score { width: 12%; }
.muted { color: #777; font-size: 13px; } .print-only { display: none; }
@media (max-width: 600px) { body { margin: 8px; } h1 { font-size: 1.3em; } iframe.replay { height: 640px; } }
@page { size: A4; margin: 12mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 11px; }
  h1 { font-size: 18px; } iframe.replay, .download { display: none; } .print-only { display: block; }
  figure { margin: 4px 0; break-inside: avoid; } svg { max-height: 62mm; width: auto; }
  section { break-inside: avoid; } table.grade { font-size: 9px; } table.grade td, table.grade th { padding: 1px 4px; }
  h2 { font-size: 14px; margin: 8px 0 4px; }
}
"""
_STYLE_ATTR = re.compile(r' style="[^"]*"')


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _link(showcase: Showcase, tail: str, key: str | None, query: Mapping[str, str] | None = None) -> str:
    params = {**(query or {}), **({"k": key} if key and not showcase.public else {})}
    q = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params.items())
    return html.escape(f"/showcase/{showcase.slug}{tail}" + (f"?{q}" if q else ""))


def _grade(report: Mapping[str, Any]) -> str:
    rows = []
    for device in report.get("devices", []):
        criteria = device.get("criteria", [])
        # The device's name once, beside all its criteria: a project of several devices still prints on one page.
        head = f"<td rowspan='{len(criteria)}'>{html.escape(str(device.get('device', '')))}</td>"
        for i, c in enumerate(criteria):
            score = "n/a" if c.get("score") is None else f"{round(100 * c['score'])} %"
            value = "" if c.get("value") is None else f"{c['value']} {c.get('measure', '')}"
            rows.append(
                f"<tr>{head if i == 0 else ''}<td>{html.escape(str(c.get('title', '')))}"
                f"</td><td>{html.escape(value)}</td><td>{score}</td></tr>"
            )
    total, whole = report.get("score_percent"), report.get("demo_score_percent", False)
    beside = "" if whole is False else f" (over all of the demo's devices: {html.escape(str(whole))} %)"
    return (
        f"<section><h2>Grade: {html.escape(str(total if total is not None else 'n/a'))} %</h2>"
        f"<p class='muted'>The demo's grade over this project's devices{beside}, by the course's rubrics.</p>"
        "<table class='grade'><colgroup><col class='device'><col class='criterion'><col class='measured'>"
        "<col class='score'></colgroup><tr><th>device</th><th>criterion</th><th>measured</th><th>score</th></tr>"
        + "".join(rows)
        + "</table></section>"
    )


def showcase_html(
    showcase: Showcase, key: str | None, plots_svg: str, grade: Mapping[str, Any] | None, now_ns: int
) -> str:
    """The page. `key` is the visitor's own share key, repeated only in links to this showcase's sub-resources."""
    title = html.escape(showcase.title)
    robots = "" if showcase.public else '<meta name="robots" content="noindex, nofollow">'
    devices = "".join(f"<li><code>{html.escape(d)}</code></li>" for d in showcase.devices)
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{robots}',
        '<link rel="icon" href="data:,">',  # no /favicon.ico request: that path needs a token
        f"<style>{STYLE}</style></head><body>",
        f"<header><h1>{title}</h1><p class='by'>A project by {html.escape(showcase.learner)}"
        f" ({html.escape(showcase.cohort)})</p></header>",
        f'<section class="description">{render_description(showcase.description)}</section>',
        f'<section><h2>Devices</h2><ul class="devices">{devices}</ul></section>',
    ]
    if showcase.plots:
        window = f"{_when(showcase.start_ns)} → {_when(showcase.end_ns)}"
        svg = _STYLE_ATTR.sub("", plots_svg, count=1)
        parts.append(
            f'<section><h2>Data</h2><figure class="plots">{svg}<figcaption class="muted">{window}'
            "</figcaption></figure></section>"
        )
    if showcase.session:
        src = _link(showcase, "/play", key, {"showcase": showcase.slug})
        parts.append(
            f'<section><h2>The demo, replayed</h2><iframe class="replay" title="replay of the demo" src="{src}">'
            "</iframe><p class='print-only muted'>The demo's replay plays on this page's link.</p></section>"
        )
    if grade is not None:
        parts.append(_grade(grade))
        parts.append(
            f'<p class="download"><a href="{_link(showcase, "/pack.zip", key)}" download>Download the data pack</a>'
            " (readings as CSV, the grade, a notebook)</p>"
        )
    parts.append(f"<footer class='muted'>Published with LabHub · read-only · {_when(now_ns)}</footer></body></html>")
    return "".join(parts)


def index_html(cohort: str, showcases: Sequence[Showcase]) -> str:
    """A demo day: the cohort's public showcases (a keyed one is never listed: its link is its owner's to give)."""
    items = "".join(
        f'<li><a href="/showcase/{html.escape(s.slug)}">{html.escape(s.title)}</a> — {html.escape(s.learner)}</li>'
        for s in showcases
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo day: {html.escape(cohort)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head><body>'
        f"<h1>Demo day: {html.escape(cohort)}</h1>"
        + (f"<ul>{items}</ul>" if items else "<p class='muted'>No project is published yet.</p>")
        + "</body></html>"
    )
