"""Grades from InfluxDB, and the reports trainers keep: HTML (scores, evidence, plots), CSV and JSON.

`hub.grading.evidence` reads what InfluxDB holds for each device over a demo window; `hub.grading.rubrics`
turns that into scores; `write_reports` renders them. Plots are drawn on the server as SVG (`hub.grading.svgplot`)
inside the HTML, so a report is one static file that prints and archives well.
"""

from __future__ import annotations

import csv
import html
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.kinds import KINDS
from devices.topics import DeviceRef
from hub.access.records import DemoSession
from hub.access.registry import Registry
from hub.adapters.influx_read import Reader
from hub.credentials import private_dir, write_private
from hub.grading import svgplot
from hub.grading.evidence import Window, fetch_window
from hub.grading.rubrics import DeviceGrade, Rubric, grade, learner_score, percent


@dataclass(frozen=True, slots=True)
class LearnerReport:
    session: DemoSession
    end_ns: int  # the session's stop, or when the grade was made for a running one
    grades: tuple[DeviceGrade, ...]
    windows: tuple[Window, ...]

    @property
    def learner(self) -> str:
        return f"{self.session.cohort}/{self.session.learner}"

    @property
    def score(self) -> float | None:
        return learner_score(self.grades)

    def as_json(self) -> dict[str, Any]:
        score = self.score
        return {
            "learner": self.learner,
            "session": self.session.as_json(),
            "window": {"start_ns": self.session.started_ns, "end_ns": self.end_ns},
            "score_percent": percent(score),
            "score_20": None if score is None else round(20 * score, 1),
            "devices": [g.as_json() for g in self.grades],
        }


def learner_devices(registry: Registry, cohort: str, learner: str) -> list[tuple[DeviceRef, str]]:
    return [(d.ref, d.kind) for d in registry.devices(cohort) if d.ref.learner == learner]


def session_devices(registry: Registry, session: DemoSession) -> list[tuple[DeviceRef, str]]:
    """The devices as they were when the demo started (a later registry change does not regrade it)."""
    if session.devices is not None:
        return [(DeviceRef.parse(key), kind) for key, kind in session.devices]
    return learner_devices(registry, session.cohort, session.learner)


async def grade_session(
    reader: Reader,
    registry: Registry,
    session: DemoSession,
    rubrics: Mapping[str, Rubric],
    now_ns: int | None = None,
) -> LearnerReport:
    end = session.stopped_ns or now_ns or time.time_ns()
    windows = [
        await fetch_window(reader, ref, kind, session.started_ns, end)
        for ref, kind in session_devices(registry, session)
    ]
    grades = tuple(grade(w, rubrics) for w in windows)
    return LearnerReport(session, end, grades, tuple(windows))


def sessions_to_grade(
    registry: Registry, cohort: str, learner: str | None = None, session_id: str | None = None
) -> list[DemoSession]:
    """The named session, or each learner's latest session (a finished one if there is one)."""
    if session_id:
        session = registry.session(session_id)
        return [session] if session is not None else []
    chosen = []
    for record in registry.learners(cohort):
        if learner and record.learner != learner:
            continue
        sessions = registry.sessions(cohort, record.learner)
        finished = [s for s in sessions if not s.running]
        if finished or sessions:
            chosen.append((finished or sessions)[0])
    return chosen


# Rendering ----------------------------------------------------------------------------------------------


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(score: float | None) -> str:
    shown = percent(score)
    return "n/a" if shown is None else f"{shown:g}%"


def _twenty(score: float | None) -> str:
    return "n/a" if score is None else f"{20 * score:.1f}/20"


def plot_svg(window: Window) -> str:
    """The device's numeric fields over the window, one panel each, as inline SVG (our own small writer)."""
    numeric: dict[str, list[tuple[float, float]]] = {}
    for t, fields in sorted(window.readings, key=lambda r: r[0]):
        for name, value in fields.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                numeric.setdefault(name, []).append((t / 1e9, float(value)))
    if not numeric:
        return "<p class='muted'>No numeric readings in the window.</p>"
    kind = KINDS.get(window.kind)
    series = []
    for name in sorted(numeric)[:8]:
        spec = kind.fields.get(name) if kind else None
        series.append(svgplot.Series(name, numeric[name], spec.unit if spec else ""))
    return svgplot.render(series, window.start_ns / 1e9, window.end_ns / 1e9)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 960px; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 20px; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 6px; text-align: left; vertical-align: top; }
.score { font-weight: 700; } .muted { color: #777; } code { font-size: 12px; }
"""


def _evidence(evidence: Mapping[str, Any]) -> str:
    return "<br>".join(f"{html.escape(str(k))}: <code>{html.escape(json.dumps(v))}</code>" for k, v in evidence.items())


def learner_html(report: LearnerReport, rubrics: Mapping[str, Rubric]) -> str:
    s = report.session
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(report.learner)} — demo"
        f"</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(report.learner)}: {_pct(report.score)} ({_twenty(report.score)})</h1>",
        f"<p>Demo session <code>{html.escape(s.id)}</code> run by {html.escape(s.trainer)}, "
        f"{_when(s.started_ns)} → {_when(report.end_ns)}{' (still running)' if s.running else ''}. "
        "Every number below was read back from InfluxDB for this window.</p>",
    ]
    for device_grade, window in zip(report.grades, report.windows, strict=True):
        parts.append(
            f"<h2>{html.escape(device_grade.ref.key)} <span class='muted'>({html.escape(device_grade.kind)})</span>: "
            f"{_pct(device_grade.score)}</h2>"
        )
        parts.append("<table><tr><th>criterion</th><th>value</th><th>score</th><th>weight</th><th>evidence</th></tr>")
        for r in device_grade.results:
            value = "n/a" if r.value is None else f"{r.value:.4g}"
            parts.append(
                f"<tr><td>{html.escape(r.criterion.title)}</td><td>{value}</td>"
                f"<td class='score'>{_pct(r.score)}</td><td>{r.criterion.weight:g}</td>"
                f"<td>{_evidence(r.evidence)}</td></tr>"
            )
        parts.append("</table>")
        parts.append(plot_svg(window))
    parts.append("</body></html>")
    return "\n".join(parts)


def cohort_html(cohort: str, reports: Sequence[LearnerReport], pages: Sequence[str] | None = None) -> str:
    pages = page_names(reports) if pages is None else pages
    rows = "".join(
        f"<tr><td><a href='{html.escape(page)}'>{html.escape(r.learner)}</a></td>"
        f"<td class='score'>{_pct(r.score)}</td><td>{_twenty(r.score)}</td>"
        f"<td>{html.escape(', '.join(f'{g.ref.device} {_pct(g.score)}' for g in r.grades))}</td>"
        f"<td>{_when(r.session.started_ns)} → {_when(r.end_ns)}</td></tr>"
        for r, page in zip(reports, pages, strict=True)
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(cohort)} — grades</title>"
        f"<style>{STYLE}</style></head><body><h1>Cohort {html.escape(cohort)}</h1>"
        "<table><tr><th>learner</th><th>score</th><th>/20</th><th>devices</th><th>demo window</th></tr>"
        f"{rows}</table></body></html>"
    )


def rows_csv(reports: Sequence[LearnerReport]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "learner",
            "session",
            "device",
            "kind",
            "criterion",
            "value",
            "score",
            "weight",
            "device_score",
            "learner_score",
            "evidence",
        ]
    )
    for r in reports:
        for g in r.grades:
            for res in g.results:
                writer.writerow(
                    [
                        r.learner,
                        r.session.id,
                        g.ref.key,
                        g.kind,
                        res.criterion.id,
                        "" if res.value is None else round(res.value, 4),
                        "" if res.score is None else round(res.score, 4),
                        res.criterion.weight,
                        "" if g.score is None else round(g.score, 4),
                        "" if r.score is None else round(r.score, 4),
                        json.dumps(dict(res.evidence)),
                    ]
                )
    return out.getvalue()


COHORT_FILES = ("cohort.html", "grades.csv", "grades.json")


def page_names(reports: Sequence[LearnerReport]) -> list[str]:
    """Each report's file name, never one of the cohort's files nor another report's: `<learner>.html`; a
    learner whose page would take a cohort file's name (a learner called `cohort`) gets
    `<learner>.learner.html`, and a learner's second report `<learner>.<session id>.html` (names have no dot)."""
    taken = set(COHORT_FILES)
    names = []
    for report in reports:
        learner = report.session.learner
        name = f"{learner}.html"
        if name in taken:
            name = f"{learner}.learner.html"
        if name in taken:
            name = f"{learner}.{report.session.id}.html"
        if name in taken:
            raise RuntimeError(f"two reports of session {report.session.id}")
        taken.add(name)
        names.append(name)
    return names


def write_reports(
    out_dir: Path, cohort: str, reports: Sequence[LearnerReport], rubrics: Mapping[str, Rubric]
) -> list[Path]:
    """The reports, readable by their owner only (0600; the folder 0700 when made here): grades are personal."""
    if not out_dir.exists():
        private_dir(out_dir)
    names = page_names(reports)
    written = []
    for report, name in zip(reports, names, strict=True):
        write_private(out_dir / name, learner_html(report, rubrics))
        written.append(out_dir / name)
    for name, text in zip(
        COHORT_FILES,
        (
            cohort_html(cohort, reports, names),
            rows_csv(reports),
            json.dumps({"cohort": cohort, "learners": [r.as_json() for r in reports]}, indent=1),
        ),
        strict=True,
    ):
        write_private(out_dir / name, text)
        written.append(out_dir / name)
    return written


def table(reports: Sequence[LearnerReport]) -> str:
    """The terminal table `labhub grade` prints."""
    lines = [f"{'learner':24} {'device':28} {'kind':12} {'score':>6} {'/20':>6}  window"]
    for r in reports:
        window = f"{_when(r.session.started_ns)} → {_when(r.end_ns)}{' (running)' if r.session.running else ''}"
        for g in r.grades:
            lines.append(f"{r.learner:24} {g.ref.key:28} {g.kind:12} {_pct(g.score):>6} {_twenty(g.score):>6}")
        lines.append(f"{r.learner:24} {'= learner':28} {'':12} {_pct(r.score):>6} {_twenty(r.score):>6}  {window}")
    return "\n".join(lines)
