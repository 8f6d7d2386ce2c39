"""A showcase: a learner's project as an employer sees it, and who may open it when. Pure.

A showcase is published by its learner (or their trainer), opened to the world only once a trainer approves it,
and read through a share link that carries a random key (only its digest is kept, as for API tokens) unless the
trainer makes it public. Revoked: 404, as if it never existed; past its expiry: 410, so the visitor knows it was
there. The description is Markdown rendered with raw HTML off and an allow-list of link schemes, so a learner's
text can never become a script in a visitor's browser.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import Enum

from markdown_it import MarkdownIt

MAX_TITLE = 120
MAX_DESCRIPTION = 4000  # a short description: a few paragraphs
MAX_PLOTS = 4  # what fits on one printed A4 page with the description
LINK_SCHEMES = ("http://", "https://", "mailto:")
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,60}")


class ShowcaseError(ValueError):
    """A showcase that cannot be published or changed as asked."""


class Access(Enum):
    OPEN = 200
    NOT_FOUND = 404  # unknown, revoked, not yet approved, or the wrong key: all look alike
    GONE = 410  # it was there and has expired


@dataclass(frozen=True, slots=True)
class Showcase:
    slug: str
    cohort: str
    learner: str
    title: str
    description: str  # Markdown, as the learner typed it
    devices: tuple[str, ...]  # device ids (cohort/learner/device), the learner's own
    plots: tuple[str, ...]  # "device-id:field", each drawn over the window
    session: str | None  # the demo whose replay (and window) is shown
    start_ns: int  # the plots' window
    end_ns: int
    show_grade: bool  # the learner opted in: the demo's grade, its evidence and the data pack
    key_digest: str
    created_ns: int
    approved_ns: int | None = None
    public: bool = False  # the trainer made it public: no key needed, listed on the demo-day page, indexable
    expires_ns: int | None = None
    revoked_ns: int | None = None

    @property
    def learner_key(self) -> str:
        return f"{self.cohort}/{self.learner}"

    def link(self, key: str) -> str:
        """Its share link (path and key): a public one opens without the key too."""
        return f"/showcase/{self.slug}?k={key}"

    def state(self, now_ns: int) -> str:
        if self.revoked_ns is not None:
            return "revoked"
        if self.expires_ns is not None and now_ns >= self.expires_ns:
            return "expired"
        return "published" if self.approved_ns is not None else "awaiting approval"

    def as_json(self, now_ns: int) -> dict[str, object]:
        return {
            "slug": self.slug,
            "learner": self.learner_key,
            "title": self.title,
            "devices": list(self.devices),
            "plots": list(self.plots),
            "session": self.session,
            "window": {"start_ns": self.start_ns, "end_ns": self.end_ns},
            "show_grade": self.show_grade,
            "public": self.public,
            "expires_ns": self.expires_ns,
            "state": self.state(now_ns),
            "path": f"/showcase/{self.slug}",
        }


def new_key() -> tuple[str, str]:
    """A share key and its digest (the key is shown once; the registry keeps the digest)."""
    key = secrets.token_urlsafe(18)
    return key, key_digest(key)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def access(showcase: Showcase | None, key: str | None, now_ns: int) -> Access:
    """May a visitor with `key` (None: none given) open this showcase now? Expiry is told only to a visitor who
    could have opened it (the right key, or a public showcase)."""
    if showcase is None or showcase.revoked_ns is not None or showcase.approved_ns is None:
        return Access.NOT_FOUND
    if not showcase.public:
        if key is None or not hmac.compare_digest(key_digest(key), showcase.key_digest):
            return Access.NOT_FOUND
    if showcase.expires_ns is not None and now_ns >= showcase.expires_ns:
        return Access.GONE
    return Access.OPEN


def make_slug(title: str) -> str:
    """A readable, unguessable-enough name for the link: the title's words and a random tail."""
    words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")
    return f"{words or 'project'}-{secrets.token_hex(3)}"


def check_slug(slug: str) -> str:
    if not _SLUG_RE.fullmatch(slug):  # fullmatch: `$` alone would let a slug end in a newline
        raise ShowcaseError(f"{slug[:80]!r} is not a showcase name")
    return slug


def check_plot(spec: str, devices: tuple[str, ...]) -> str:
    """A plot is "device-id:field" of one of the showcase's own devices."""
    device, sep, field = spec.rpartition(":")
    if not sep or device not in devices or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", field):
        raise ShowcaseError(f"plot {spec[:100]!r} must be <device id>:<field> of one of the project's devices")
    return spec


def check_text(title: str, description: str) -> tuple[str, str]:
    title = title.strip()
    if not title or len(title) > MAX_TITLE:
        raise ShowcaseError(f"a title is 1 to {MAX_TITLE} characters")
    if len(description) > MAX_DESCRIPTION:
        raise ShowcaseError(f"a description is at most {MAX_DESCRIPTION} characters")
    return title, description


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable(["image", "html_block", "html_inline"])  # no images from elsewhere, no raw HTML at all
    md.validateLink = lambda url: url.strip().lower().startswith(LINK_SCHEMES)  # type: ignore[method-assign]
    return md


_MD = _markdown()


def render_description(text: str) -> str:
    """The learner's Markdown as safe HTML: every `<` they typed is escaped, links are http(s)/mailto only and
    open nothing in this page's context (rel noopener nofollow)."""
    html: str = _MD.render(text[:MAX_DESCRIPTION])
    return html.replace("<a href=", '<a rel="nofollow noopener noreferrer" href=')
