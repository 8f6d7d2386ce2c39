"""The showcase routes (`hub.web.showcase`) in the OpenAPI description: apart, so the description does not
import the pages it describes."""

from __future__ import annotations

from typing import Any


def openapi_paths() -> dict[str, Any]:
    """The showcase routes in the OpenAPI description (`hub.web.openapi`)."""
    text = {"type": "string"}
    slug = {"name": "slug", "in": "path", "required": True, "schema": text}
    key = {"name": "k", "in": "query", "required": False, "schema": text, "description": "the share key"}
    json_ = {"application/json": {"schema": {"type": "object"}}}

    def op(summary: str, params: list[dict[str, Any]], answers: dict[str, str], media: str = "") -> dict[str, Any]:
        content_ = {media: {"schema": text}} if media else json_
        return {
            "summary": summary,
            "parameters": params,
            "responses": {c: {"description": d, "content": content_} for c, d in answers.items()},
        }

    visitor = {"200": "OK", "404": "unknown, revoked, unapproved or wrong key", "410": "expired", "429": "slow down"}
    public: list[dict[str, Any]] = [{}]  # no token: the key opens it
    paths: dict[str, Any] = {
        "/showcase/{slug}": {"get": op("A showcase's page (read-only)", [slug, key], visitor, "text/html")},
        "/showcase/{slug}/play": {"get": op("Its demo's replay page", [slug, key], visitor, "text/html")},
        "/showcase/{slug}/replay": {"get": op("Its demo's replay timeline", [slug, key], visitor)},
        "/showcase/{slug}/pack.zip": {"get": op("Its data pack (if shown)", [slug, key], visitor, "application/zip")},
        "/demo-day/{cohort}": {
            "get": op("A cohort's public showcases", [{**slug, "name": "cohort"}], {"200": "HTML"}, "text/html")
        },
        "/api/showcases": {
            "get": op("Showcases (yours, or your cohort's)", [], {"200": "OK", "403": "not your cohort"}),
            "post": op("Publish a showcase", [], {"201": "published (key shown once)", "400": "bad", "403": "no"}),
        },
        "/api/showcases/{slug}/approve": {
            "post": op("Approve (trainer): public, expiry", [slug], {"200": "OK", "403": "no", "404": "unknown"})
        },
        "/api/showcases/{slug}/key": {
            "post": op(
                "A new share link for a lost one (its learner or trainer): the key shown once, the old link 404",
                [slug],
                {"200": "OK", "403": "no", "404": "unknown", "409": "revoked"},
            )
        },
        "/api/showcases/{slug}": {
            "delete": op("Revoke (its learner or trainer)", [slug], {"200": "OK", "403": "no", "404": "unknown"})
        },
    }
    for path in paths:
        if not path.startswith("/api/"):
            paths[path]["get"]["security"] = public
    paths["/api/showcases"]["post"]["requestBody"] = {"required": True, "content": json_}
    return paths
