"""Showcases without services: who may open one when (key, approval, revocation 404, expiry 410), the Markdown
that cannot carry a script, and the read-only side over HTTP (no token, only the key's own showcase, CSP)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from devices.topics import DeviceRef
from hub.config import HubConfig
from hub.showcase.content import shown_session
from hub.showcase.model import Access, ShowcaseError, access, check_plot, check_slug, new_key, render_description
from hub.showcase.publish import Request, publish
from hub.showcase.store import ShowcaseStore
from tests.unit.test_web_routes import ARM_ANA, COHORT, Lab, fake_deps, lab  # noqa: F401 (lab: the fixture)


def test_markdown_keeps_no_html_no_script_links_no_images() -> None:
    html = render_description(
        "# Air <script>alert(1)</script>\n\n<img src=x onerror=alert(1)> [a](javascript:alert(1)) "
        "[b](https://example.org) ![c](https://example.org/t.png) <a href='https://x'>raw</a>"
    )
    assert set(re.findall(r"<(\w+)", html)) == {"h1", "p", "a"}  # every other tag typed is text
    assert 'href="javascript' not in html and "<a href='https://x'>" not in html
    assert '<a rel="nofollow noopener noreferrer" href="https://example.org">b</a>' in html
    assert "<h1>Air &lt;script&gt;" in html


def test_access_key_approval_revocation_expiry(tmp_path: Path) -> None:
    _, registry, _, relay = fake_deps(tmp_path, HubConfig())
    registry.add_device(ARM_ANA, "arm", "mearm")
    store = ShowcaseStore(registry.path)
    try:
        now = time.time_ns()
        show, key = publish(registry, store, Request(f"{COHORT}/ana", "My arm", "hi"), approved=False)
        assert show.devices == (ARM_ANA.key,)
        assert access(store.get(show.slug), key, now) is Access.NOT_FOUND  # awaiting approval
        approved = store.approve(show.slug, expires_ns=now + 10**9)
        assert access(approved, key, now) is Access.OPEN
        assert access(approved, None, now) is Access.NOT_FOUND and access(approved, key + "x", now) is Access.NOT_FOUND
        assert access(approved, new_key()[0], now) is Access.NOT_FOUND
        assert access(approved, key, now + 10**9) is Access.GONE
        assert access(approved, None, now + 10**9) is Access.NOT_FOUND  # expiry is told only to who could open it
        assert access(replace(approved, public=True), None, now) is Access.OPEN
        rekeyed, fresh = store.rekey(show.slug)  # a lost link: a new key, the approval and expiry kept
        assert access(rekeyed, key, now) is Access.NOT_FOUND and access(rekeyed, fresh, now) is Access.OPEN
        assert (rekeyed.approved_ns, rekeyed.expires_ns) == (approved.approved_ns, approved.expires_ns)
        key = fresh
        assert access(store.revoke(show.slug), key, now) is Access.NOT_FOUND
        with pytest.raises(ShowcaseError):
            store.rekey(show.slug)  # revoked stays revoked
        with pytest.raises(ShowcaseError):
            store.approve(show.slug)  # revoked stays revoked
        with pytest.raises(ShowcaseError, match="not devices of"):
            publish(registry, store, Request(f"{COHORT}/ana", "t", devices=(f"{COHORT}/ben/arm1",)), approved=True)
        with pytest.raises(ShowcaseError):
            check_plot(f"{COHORT}/ben/arm1:x", (ARM_ANA.key,))
    finally:
        store.close()
        relay.shutdown()
        registry.close()


async def test_a_key_opens_its_showcase_and_nothing_else(lab: Lab) -> None:  # noqa: F811
    lab.add_token("ana", "learner", f"{COHORT}/ana")
    lab.add_token("trainer", "trainer", COHORT)
    status, made = await lab.call(
        "POST", "/api/showcases", "ana", {"learner": f"{COHORT}/ana", "title": "Arm", "description": "**hello**"}
    )
    assert status == 201 and made["state"] == "awaiting approval", made
    link, key, slug = made["link"], made["key"], made["slug"]
    assert (await lab.call("GET", link, None))[0] == 404  # not yet approved
    assert (await lab.call("POST", f"/api/showcases/{slug}/approve", "ana", {}))[0] == 403
    assert (await lab.call("POST", f"/api/showcases/{slug}/approve", "trainer", {}))[0] == 200
    async with lab.client.get(link) as resp:
        page = await resp.text()
        assert resp.status == 200
        csp = resp.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Robots-Tag"].startswith("noindex")
    assert "<strong>hello</strong>" in page and '<meta name="robots" content="noindex' in page
    assert "lh_" not in page and "Bearer" not in page and "<script" not in page
    assert (await lab.call("GET", f"/showcase/{slug}", None))[0] == 404  # no key
    for path in (f"/api/devices/{ARM_ANA.key}?k={key}", f"/api/sessions?k={key}", f"/api/showcases?k={key}"):
        assert (await lab.call("GET", path, None))[0] == 401, path  # the key is no API token
    assert (await lab.call("DELETE", f"/api/showcases/{slug}", "ana"))[0] == 200
    assert (await lab.call("GET", link, None))[0] == 404


async def test_demo_day_lists_public_showcases_only_and_visitors_are_rate_limited(lab: Lab) -> None:  # noqa: F811
    lab.add_token("trainer", "trainer", COHORT)
    made = {}
    for title in ("Public one", "Keyed one"):
        status, made[title] = await lab.call(
            "POST", "/api/showcases", "trainer", {"learner": f"{COHORT}/ana", "title": title}
        )
        assert status == 201
    slug = made["Public one"]["slug"]
    assert (await lab.call("POST", f"/api/showcases/{slug}/approve", "trainer", {"public": True}))[0] == 200
    async with lab.client.get(f"/demo-day/{COHORT}") as resp:
        page = await resp.text()
        assert resp.status == 200 and "X-Robots-Tag" in resp.headers
    assert f'href="/showcase/{slug}"' in page and "Keyed one" not in page
    async with lab.client.get(f"/showcase/{slug}") as resp:
        assert resp.status == 200 and "X-Robots-Tag" not in resp.headers  # public: no key, indexable
        assert "noindex" not in await resp.text()
    statuses = []
    for _ in range(40):  # a burst of 20 per address, then 5 a second
        async with lab.client.get(f"/showcase/{slug}") as resp:
            statuses.append(resp.status)
    assert statuses[:15] == [200] * 15 and 429 in statuses


@pytest.mark.parametrize("slug", ["ana-weather\n", "", "-x", "A", "x" * 62, "a/b", "a\x00"])
def test_a_name_that_is_not_a_slug_is_refused(slug: str) -> None:
    with pytest.raises(ShowcaseError):
        check_slug(slug)


def test_a_slug_is_kept_as_it_is() -> None:
    assert check_slug("ana-weather-2") == "ana-weather-2"


def test_a_showcase_sees_its_demo_narrowed_to_the_projects_devices(tmp_path: Path) -> None:
    """Its replay, grade and pack read the demo through `shown_session`: only the devices the project chose, also
    for a demo recorded before sessions kept their device list (the learner's devices then), and none at all for
    a project whose devices the demo never had."""
    _, registry, _, relay = fake_deps(tmp_path, HubConfig())
    aq1, aq2 = DeviceRef(COHORT, "ana", "aq1"), DeviceRef(COHORT, "ana", "aq2")
    for ref in (aq1, aq2):
        registry.add_device(ref, "air_quality", None)
    session = registry.stop_session(registry.start_session(COHORT, "ana", "t").id)
    store = ShowcaseStore(registry.path)
    try:
        chosen, _ = publish(
            registry, store, Request(f"{COHORT}/ana", "one", devices=(aq1.key,), session=session.id), True
        )
        shown = shown_session(registry, chosen)
        assert shown is not None and shown.devices == ((aq1.key, "air_quality"),)
        assert (shown.id, shown.started_ns, shown.stopped_ns) == (session.id, session.started_ns, session.stopped_ns)
        every, _ = publish(registry, store, Request(f"{COHORT}/ana", "all", session=session.id), True)
        assert {key for key, _ in shown_session(registry, every).devices or ()} == {aq1.key, aq2.key}  # the default
        registry._write("UPDATE demo_sessions SET devices = NULL WHERE id = ?", (session.id,))  # an old demo
        registry.remove_device(aq2)  # gone since: an old demo's devices are the learner's as they are now
        assert shown_session(registry, chosen).devices == ((aq1.key, "air_quality"),)
        assert shown_session(registry, replace(chosen, devices=(aq2.key,))).devices == ()
        assert shown_session(registry, replace(chosen, session=None)) is None
    finally:
        store.close()
        relay.shutdown()
        registry.close()
