"""influxd's HTTP API used while the lab starts it (blocking, from the starting thread): is it up, and one InfluxQL
statement as its admin. The hub itself speaks to InfluxDB through `hub.adapters.influx`."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from hub.adapters.influx import basic_auth, error_text


def admin_query(url: str, q: str, auth: tuple[str, str] | None, database: str | None = None) -> dict[str, object]:
    """One InfluxQL statement, POSTed (the statement, which may hold a password, stays out of URLs); `database`:
    for statements that need one (DROP SERIES)."""
    form = {"q": q, **({"db": database} if database else {})}
    request = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode(form).encode(), method="POST")
    if auth is not None:
        request.add_header("Authorization", basic_auth(*auth))
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            body: dict[str, object] = json.load(resp)
    except urllib.error.HTTPError as err:
        body = {"error": error_text(err.read().decode(errors="replace")), "status": err.code}
    results = body.get("results")
    if isinstance(results, list) and results and isinstance(results[0], dict) and "error" in results[0]:
        body["error"] = results[0]["error"]
    return body


def pings(url: str) -> bool:
    """influxd answers its /ping (204): it is up."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 204)
    except (urllib.error.URLError, OSError):
        return False
