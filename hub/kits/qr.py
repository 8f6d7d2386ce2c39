"""The kit's QR code: the settings a phone or a provisioning app scans, drawn by segno (pure Python).

The payload is the compact JSON of config.json without the CA (a certificate would make the code too dense to
print and scan: its SHA-256 is there, to check the ca.crt a board is given)."""

from __future__ import annotations

import json

import segno

from hub.kits.settings import KitSettings, settings_json

LEFT_OUT = ("ca_pem", "sample", "password_note")


def qr_payload(s: KitSettings) -> str:
    fields = {k: v for k, v in settings_json(s, with_ca=False).items() if k not in LEFT_OUT}
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def qr_svg(s: KitSettings, scale: int = 3) -> str:
    """The QR code of `qr_payload(s)` as inline SVG (error correction M: survives a crease or a smudge)."""
    code = segno.make(qr_payload(s), error="m", boost_error=False)
    svg: str = code.svg_inline(scale=scale, title=f"{s.ref.key}: settings")
    return svg
