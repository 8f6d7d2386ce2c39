"""`labhub doctor <cohort/learner/device> [--json]`: the lab doctor's checklist and findings for one device.

Asks the running hub's API (GET /api/devices/<c>/<l>/<d>/diagnosis) with the lab's trainer token from the
state dir, as `labhub up` wrote it; the doctor lives in the hub, which follows the broker's events.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from devices.topics import DeviceRef, TopicError
from hub.cli.options import configure, lab_command
from hub.config import ConfigError, ServiceError
from hub.credentials import read_secret, secret_path
from hub.ops.state import TRAINER_TOKEN

if TYPE_CHECKING:
    from hub.cli.options import Subparsers

MARKS = {True: "ok", False: "NO", None: "--"}


def register(sub: Subparsers) -> None:
    doctor = lab_command(sub, "doctor", "a device's connection checklist and the lab doctor's findings", cmd_doctor)
    doctor.add_argument("id", help="cohort/learner/device")
    doctor.add_argument("--json", action="store_true", help="the API's JSON as it is")
    doctor.add_argument("--fixes", action="store_true", help="also print each finding's Arduino and MicroPython fix")


def cmd_doctor(args: argparse.Namespace) -> int:
    cfg = configure(args)
    try:
        ref = DeviceRef.parse(args.id)
    except TopicError as err:
        raise ConfigError(str(err)) from None
    token = read_secret(secret_path(cfg.state_dir, TRAINER_TOKEN))
    if not token:
        raise ServiceError(f"no trainer token in {secret_path(cfg.state_dir, TRAINER_TOKEN)}: is `labhub up` running?")
    url = f"http://{cfg.hub.http_host}:{cfg.hub.http_port}/api/devices/{ref.key}/diagnosis"
    report = fetch(url, token)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render(report, args.fixes))
    return 1 if report.get("open") else 0


def fetch(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            result: dict[str, Any] = json.load(resp)
            return result
    except urllib.error.HTTPError as err:
        try:
            detail = json.load(err).get("error", "")
        except ValueError:
            detail = ""
        raise ServiceError(f"the hub answered {err.code} for {url}: {detail or err.reason}") from None
    except OSError as err:
        raise ServiceError(f"cannot reach the hub at {url} ({err}): is `labhub up` running?") from None


def when(ns: object) -> str:
    if not isinstance(ns, int):
        return ""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(report: dict[str, Any], fixes: bool = False) -> str:
    """The diagnosis as a trainer reads it in a terminal: the checklist, then open and resolved findings."""
    lines = [f"{report.get('device')}: {report.get('open', 0)} open finding(s)", "", "Checklist"]
    for item in report.get("checklist", []):
        stamp = when(item.get("at_ns"))
        lines.append(
            f"  [{MARKS.get(item.get('ok'), '--')}] {item.get('item', '?'):<20} {stamp:<24} {item.get('evidence', '')}"
        )
    findings = report.get("findings", [])
    for title, wanted in (("Open findings", False), ("Resolved", True)):
        chosen = [f for f in findings if bool(f.get("resolved")) is wanted]
        if not chosen:
            continue
        lines += ["", title]
        for f in chosen:
            evidence = f.get("evidence", {})
            lines.append(f"  {f.get('severity', '?').upper():<7} {f.get('code')}: {f.get('message')}")
            lines.append(f"          hint: {f.get('hint')}")
            seen = f"first {when(f.get('first_seen_ns'))}, last {when(f.get('last_seen_ns'))}"
            lines.append(f"          {evidence.get('count', 0)} time(s), {seen}")
            if wanted:
                lines.append(f"          resolved {when(f.get('resolved_ns'))}")
            lines += [f"          > {sample}" for sample in evidence.get("samples", [])[-3:]]
            if fixes:
                for platform, code in f.get("fix", {}).items():
                    lines.append(f"          fix ({platform}):")
                    lines += [f"            {line}" for line in str(code).splitlines()]
    if not findings:
        lines += ["", "No findings."]
    return "\n".join(lines)
