"""The printable sheet: one card per device of a learner (broker, account, password, topics, a QR code of the same
settings), in the cohort's language, on A4 with print CSS that keeps each card whole. Pure HTML text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from hub.kits.qr import qr_svg
from hub.kits.settings import KitSettings

LABELS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "title": "Your devices in the lab",
        "broker": "Broker",
        "tls": "TLS: trust the lab CA (ca.crt, SHA-256 below)",
        "plain": "plain MQTT (no TLS)",
        "username": "Username",
        "client_id": "Client id",
        "password": "Password",
        "no_password": "the password your trainer gave you (not held by the lab in clear)",
        "topics": "Topics",
        "period": "One reading every",
        "files": "In the kit: esp/ (ESP32, ESP8266), micropython/, uno/ (USB + serial bridge), config.json",
        "private": "Keep this sheet private: the password gives access to this device's data.",
        "kind": "kind",
    },
    "fr": {
        "title": "Vos objets dans le labo",
        "broker": "Broker",
        "tls": "TLS : faites confiance à l'AC du labo (ca.crt, SHA-256 ci-dessous)",
        "plain": "MQTT en clair (sans TLS)",
        "username": "Identifiant",
        "client_id": "Client id",
        "password": "Mot de passe",
        "no_password": "le mot de passe donné par votre formateur (le labo ne le garde pas en clair)",
        "topics": "Topics",
        "period": "Une mesure toutes les",
        "files": "Dans le kit : esp/ (ESP32, ESP8266), micropython/, uno/ (USB + pont série), config.json",
        "private": "Gardez cette feuille pour vous : le mot de passe donne accès aux données de l'objet.",
        "kind": "type",
    },
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #111; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
.card { border: 2px solid #222; border-radius: 8px; padding: 1rem; margin-bottom: 1rem;
        display: grid; grid-template-columns: 1fr auto; gap: 1rem; break-inside: avoid; page-break-inside: avoid; }
.card h2 { font-size: 1.2rem; margin: 0 0 .5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem .75rem; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
.qr svg { width: 48mm; height: 48mm; }
.note { font-size: .85rem; color: #444; }
@page { size: A4; margin: 12mm; }
@media print { body { margin: 0; } .card { border-color: #000; } }
"""


def _row(label: str, value: str, cls: str) -> str:
    return f'<dt>{escape(label)}</dt><dd class="{cls}">{escape(value)}</dd>'


def card(s: KitSettings) -> str:
    t = LABELS.get(s.language, LABELS["en"])
    scheme = "mqtts" if s.broker.tls else "mqtt"
    rows = [
        _row(t["broker"], f"{scheme}://{s.broker.host}:{s.broker.port}", "broker"),
        _row("", t["tls"] if s.broker.tls else t["plain"], "transport"),
        _row(t["username"], s.username, "username"),
        _row(t["client_id"], s.client_id, "client-id"),
        _row(t["password"], s.password if s.password is not None else t["no_password"], "password"),
        *(_row(f"{t['topics']}: {channel}", topic, f"topic-{channel}") for channel, topic in s.topics.items()),
        _row(t["period"], f"{s.period_s:g} s", "period"),
    ]
    if s.ca_fingerprint:
        rows.append(_row("CA SHA-256", s.ca_fingerprint, "ca-sha256"))
    return (
        f'<section class="card" data-device="{escape(s.ref.key)}">'
        f"<div><h2>{escape(s.ref.device)} <small>({t['kind']} {escape(s.kind)})</small></h2>"
        f"<dl>{''.join(rows)}</dl>"
        f'<p class="note">{escape(t["files"])}</p></div>'
        f'<div class="qr">{qr_svg(s)}</div>'
        "</section>"
    )


def sheet(title: str, cards: Sequence[KitSettings]) -> str:
    """A learner's sheet (`title`: their name in the lab) with one card per device."""
    lang = cards[0].language if cards else "en"
    t = LABELS.get(lang, LABELS["en"])
    body = "".join(card(s) for s in cards)
    return (
        f'<!doctype html>\n<html lang="{escape(lang)}"><head><meta charset="utf-8">'
        f"<title>{escape(title)}: {escape(t['title'])}</title><style>{CSS}</style></head>"
        f"<body><h1>{escape(title)}: {escape(t['title'])}</h1>{body}"
        f'<p class="note">{escape(t["private"])}</p></body></html>\n'
    )
