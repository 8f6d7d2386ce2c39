"""Publishing a showcase: what the learner (or trainer) asks for, checked against the registry so a project can
only show its own learner's devices and demos."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hub.access.records import check_learner
from hub.access.registry import Registry
from hub.showcase.model import (
    MAX_PLOTS,
    Showcase,
    ShowcaseError,
    check_plot,
    check_text,
    make_slug,
    new_key,
)
from hub.showcase.store import ShowcaseStore

MAX_WINDOW_NS = 31 * 86400 * 10**9  # plots over at most a month: a page, not an archive


@dataclass(frozen=True, slots=True)
class Request:
    learner: str  # cohort/learner
    title: str
    description: str = ""
    devices: tuple[str, ...] = ()  # empty: the demo's devices, or all the learner's
    plots: tuple[str, ...] = ()  # "device-id:field"
    session: str | None = None
    start_ns: int | None = None  # the plots' window; default: the demo's
    end_ns: int | None = None
    show_grade: bool = False
    expires_ns: int | None = None


def publish(
    registry: Registry, store: ShowcaseStore, req: Request, approved: bool, now_ns: int | None = None
) -> tuple[Showcase, str]:
    """A new showcase and its share key (shown once). `approved`: published by a trainer, no approval needed."""
    now_ns = now_ns or time.time_ns()
    cohort, learner = check_learner(req.learner)
    if registry.learner(cohort, learner) is None:
        raise ShowcaseError(f"no learner {cohort}/{learner} in the registry")
    title, description = check_text(req.title, req.description)
    session = registry.session(req.session) if req.session else None
    if req.session and (session is None or (session.cohort, session.learner) != (cohort, learner)):
        raise ShowcaseError(f"no demo {req.session!r} of {cohort}/{learner}")
    if session is not None and session.stopped_ns is None:
        raise ShowcaseError(f"demo {session.id} is still running: stop it first")
    own = {d.ref.key for d in registry.learner_devices(cohort, learner)}
    if session is not None:
        own |= {key for key, _ in session.devices or ()}
    shown = sorted(key for key, _ in session.devices or ()) if session is not None else []
    devices = req.devices or tuple(shown or sorted(own))
    strangers = [d for d in devices if d not in own]
    if strangers:
        raise ShowcaseError(f"{', '.join(strangers)[:200]}: not devices of {cohort}/{learner}")
    if len(req.plots) > MAX_PLOTS:
        raise ShowcaseError(f"at most {MAX_PLOTS} plots fit on the page")
    plots = tuple(check_plot(p, devices) for p in req.plots)
    start = req.start_ns if req.start_ns is not None else session.started_ns if session else None
    end = req.end_ns if req.end_ns is not None else session.stopped_ns if session else None
    if plots and (start is None or end is None):
        raise ShowcaseError("plots need a window: a demo (--session) or --from and --to")
    start, end = start or 0, end or 0
    if end < start or end - start > MAX_WINDOW_NS:
        raise ShowcaseError("the plots' window must end after it starts and last at most 31 days")
    if req.show_grade and session is None:
        raise ShowcaseError("a grade belongs to a demo: give --session to show it")
    if req.expires_ns is not None and req.expires_ns <= now_ns:
        raise ShowcaseError("the expiry is in the past")
    key, digest = new_key()
    showcase = Showcase(
        make_slug(title),
        cohort,
        learner,
        title,
        description,
        tuple(devices),
        plots,
        session.id if session else None,
        start,
        end,
        req.show_grade,
        digest,
        now_ns,
        approved_ns=now_ns if approved else None,
        expires_ns=req.expires_ns,
    )
    store.add(showcase)
    return showcase, key
