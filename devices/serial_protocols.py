"""What comes up a USB-serial cable, and what goes down it. Pure functions over bytes, no I/O.

Two protocols:

- `lines`: newline-delimited text, as Arduino sketches print it. A line is a JSON object (a reading, or an
  acknowledgement when it has "id" and "status"), or `key=value` / `key:value` pairs separated by spaces,
  commas, semicolons or tabs (`temp=21.5,hum=40`). Commands go down as one JSON object per line.
- `sds011`: the Nova SDS011 particulate sensor's 10-byte frames `AA C0 pm25lo pm25hi pm10lo pm10hi id id sum AB`
  (values in tenths of µg/m³; `sum` is the low byte of the sum of bytes 2–7).

Real cables bring boot garbage, half lines, wrong-baud gibberish and corrupted frames: each becomes a
`SerialProblem` (a `devices.problems.Problem`, explained in English or French by `devices.feedback`), and
framing always recovers at the next line or frame header.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from devices.feedback import render
from devices.problems import Problem
from devices.text import has_surrogates, valid_text

MAX_LINE_BYTES = 1024  # a sketch's line longer than this is cut off and reported
PROTOCOLS = ("lines", "sds011")


@dataclass(frozen=True, slots=True)
class SerialProblem:
    """Something on the cable that is not a reading: a problem (its texts in devices.feedback_serial) and the
    bytes it quotes. Reported on the device's errors topic."""

    problem: Problem
    raw: bytes = b""

    @property
    def code(self) -> str:
        return self.problem.code

    def as_json(self, lang: str = "en") -> dict[str, object]:
        """The errors topic's report, in `lang` (rendered as the payload problems are)."""
        text = render(self.problem, lang)
        return {
            "code": self.problem.code,
            "severity": text["severity"],
            "message": text["message"],
            "hint": text["hint"],
            "received": self.raw[:120].decode("utf-8", "backslashreplace"),
            "source": "serial-bridge",
        }


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A reading for the device's telemetry topic (JSON, validated by the hub like any other)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class AckLine:
    """An acknowledgement line for the device's ack topic."""

    payload: bytes


Event = Telemetry | AckLine | SerialProblem


# lines --------------------------------------------------------------------------------------------------


class LineFramer:
    """Bytes in any chunks → complete lines. Keeps a partial line for the next chunk; a line longer than
    MAX_LINE_BYTES is reported once and skipped up to its end."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._partial = bytearray()
        self._skipping = False

    def reset(self) -> None:
        """The port was closed: a half line from before is not the start of the next one."""
        self._partial.clear()
        self._skipping = False

    def resync(self) -> None:
        """After a failure in the middle of a chunk: drop what is held and skip to the next line's start."""
        self._partial.clear()
        self._skipping = True

    def feed(self, data: bytes) -> list[bytes | SerialProblem]:
        out: list[bytes | SerialProblem] = []
        data = data.replace(b"\r", b"\n")  # CR, LF or CRLF all end a line (blank lines are skipped later)
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            piece = data[start:end]
            start = end + 1
            if self._skipping:
                self._skipping = False
                continue
            if not piece and not self._partial:
                continue  # the LF of a CRLF, or a blank line
            if len(self._partial) + len(piece) > self.max_bytes:
                out.append(self._too_long(bytes(self._partial + piece[:60])))
                self._partial.clear()
                continue
            self._partial += piece
            out.append(bytes(self._partial))
            self._partial.clear()
        rest = data[start:]
        if not self._skipping:
            self._partial += rest
            if len(self._partial) > self.max_bytes:
                out.append(self._too_long(bytes(self._partial[:60])))
                self._partial.clear()
                self._skipping = True
        return out

    def _too_long(self, head: bytes) -> SerialProblem:
        return SerialProblem(Problem("line_too_long", params={"limit": self.max_bytes}), head)


PAIR_SPLIT_RE = re.compile(r"[,;\t ]+")
PAIR_RE = re.compile(r"([A-Za-z][A-Za-z0-9_]{0,63})\s*[=:]\s*(\S+)")
NUMBER_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _value(text: str) -> float | bool | str:
    if NUMBER_RE.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def _readable_share(text: str) -> float:
    """Share of characters that are printable text (UTF-8 such as °C or µg/m³ included)."""
    if not text:
        return 1.0
    return sum(1 for c in text if (c.isprintable() and c != "\ufffd") or c == "\t") / len(text)


def parse_line(line: bytes) -> Event | None:
    """One line of a `lines` sketch → a reading, an acknowledgement, a problem, or None (a blank line)."""
    text_bytes = line.strip(b"\r\n\t \x00")
    if not text_bytes:
        return None
    text = text_bytes.decode("utf-8", "replace")
    if _readable_share(text) < 0.9:
        return SerialProblem(Problem("serial_garbage"), text_bytes)
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = None
        payload = text.encode()  # valid UTF-8 whatever came up the cable (bad bytes are U+FFFD by now)
        if "\\u" in text and isinstance(body, dict):
            decoded = json.dumps(body, ensure_ascii=False)
            if has_surrogates(decoded):  # a lone surrogate escape (\ud800) is not Unicode: U+FFFD instead
                payload = valid_text(decoded).encode()
        if isinstance(body, dict) and "id" in body and "status" in body:
            return AckLine(payload)
        return Telemetry(payload)  # the hub checks it and explains any JSON mistake
    pairs = [PAIR_RE.fullmatch(part) for part in PAIR_SPLIT_RE.split(text) if part]
    if pairs and all(pairs):
        fields = {m.group(1): _value(m.group(2)) for m in pairs if m}
        return Telemetry(json.dumps(fields).encode())
    return SerialProblem(Problem("not_a_reading"), text_bytes)


def encode_command(payload: bytes) -> bytes:
    """A command from the hub (a JSON object) as one line down the cable; ValueError for anything else."""
    try:
        command = json.loads(payload)
    except RecursionError:
        raise ValueError("too deeply nested") from None
    if not isinstance(command, dict):
        raise ValueError("a command is a JSON object")
    return json.dumps(command, separators=(",", ":"), allow_nan=False).encode() + b"\n"


# sds011 -------------------------------------------------------------------------------------------------

SDS_HEAD, SDS_CMD, SDS_TAIL, SDS_LEN = 0xAA, 0xC0, 0xAB, 10


def sds011_frame(pm2_5: float, pm10: float, device_id: int = 0xA1B2) -> bytes:
    """A data frame as the sensor sends it (values rounded to tenths, as it reports them)."""
    body = bytes(
        [
            *round(pm2_5 * 10).to_bytes(2, "little"),
            *round(pm10 * 10).to_bytes(2, "little"),
            *device_id.to_bytes(2, "big"),
        ]
    )
    return bytes([SDS_HEAD, SDS_CMD]) + body + bytes([sum(body) & 0xFF, SDS_TAIL])


class Sds011Framer:
    """Bytes in any chunks → readings {"pm2_5", "pm10"} and problems. Resynchronises on the next header after
    garbage or a bad frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def reset(self) -> None:
        self._buffer.clear()

    def resync(self) -> None:
        """After a failure: start again at the next frame header."""
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Event]:
        buf = self._buffer
        buf += data
        out: list[Event] = []
        skipped = bytearray()
        while buf:
            if buf[0] != SDS_HEAD:
                skipped.append(buf.pop(0))
                continue
            if len(buf) < SDS_LEN:
                break
            frame = bytes(buf[:SDS_LEN])
            if frame[1] != SDS_CMD or frame[9] != SDS_TAIL:  # not a data frame here: look for the next header
                skipped.append(buf.pop(0))
                continue
            if skipped:
                out.append(_garbage(bytes(skipped)))
                skipped.clear()
            if sum(frame[2:8]) & 0xFF != frame[8]:
                later = frame.find(bytes([SDS_HEAD, SDS_CMD]), 1)
                if later > 0:  # a cut-off frame with the next one starting inside it: resync there
                    skipped += buf[:later]
                    del buf[:later]
                    continue
                del buf[:SDS_LEN]
                sums = {"got": f"0x{frame[8]:02X}", "expected": f"0x{sum(frame[2:8]) & 0xFF:02X}"}
                out.append(SerialProblem(Problem("checksum_error", params=sums), frame))
                continue
            del buf[:SDS_LEN]
            pm2_5 = int.from_bytes(frame[2:4], "little") / 10
            pm10 = int.from_bytes(frame[4:6], "little") / 10
            out.append(Telemetry(json.dumps({"pm2_5": pm2_5, "pm10": pm10}).encode()))
        if skipped:
            out.append(_garbage(bytes(skipped)))
        return out  # what is left is less than one frame, starting with a header


def _garbage(raw: bytes) -> SerialProblem:
    return SerialProblem(Problem("serial_garbage", params={"size": len(raw)}, entry="serial_garbage_sds011"), raw)
