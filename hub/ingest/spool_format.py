"""The spool's record format, pure: framing, CRC, reading back through damage.

A record is a header `<IIQQ` (body length, crc32 of body, received ns, payload digest), then the body
`device-key NUL line`. Reading back trusts only what checks out: a record whose CRC fails, or whose length is
impossible, is skipped by resynchronising on the next offset where a whole record with a good CRC starts; if
none does, the rest is an unfinished write (a torn tail). The file I/O around it is `hub.ingest.spool`'s.
"""

from __future__ import annotations

import struct
import zlib

HEADER = struct.Struct("<IIQQ")
MAX_RECORD = 1 << 20

# A record read back: (position, end, received ns, payload digest, body).
Scanned = tuple[int, int, int, int, bytes]


def encode_body(key: str, line: str) -> bytes:
    """A record's body. ValueError (UnicodeEncodeError included) for text that cannot be a record."""
    body = f"{key}\0{line}".encode()
    if len(body) > MAX_RECORD:
        raise ValueError(f"a spool record of {len(body)} bytes is over {MAX_RECORD}")
    return body


def decode_body(body: bytes) -> tuple[str, str]:
    """(device key, line). UnicodeDecodeError: a good CRC over bad text, written by something else."""
    key, _, line = body.partition(b"\0")
    return key.decode(), line.decode()


def frame(received_ns: int, digest: int, body: bytes) -> bytes:
    """One whole record, as written to disk."""
    return HEADER.pack(len(body), zlib.crc32(body), received_ns, digest) + body


def scan(data: bytes, base: int) -> tuple[list[Scanned], int, list[tuple[int, int]]]:
    """Records in `data` (which starts at spool position `base`).

    Returns (the whole records with good CRCs, where the last of them ends (relative to `data`), [(position,
    bytes) of each corrupt stretch skipped]).
    """
    out: list[Scanned] = []
    pos, end = 0, 0
    skipped: list[tuple[int, int]] = []
    size = len(data)
    while pos + HEADER.size <= size:
        length, crc, received_ns, digest = HEADER.unpack_from(data, pos)
        stop = pos + HEADER.size + length
        if 0 < length <= MAX_RECORD and stop <= size and zlib.crc32(data[pos + HEADER.size : stop]) == crc:
            out.append((base + pos, base + stop, received_ns, digest, data[pos + HEADER.size : stop]))
            pos = end = stop
            continue
        following = _resync(data, pos + 1)
        if following is None:
            break  # nothing valid after it: a torn tail
        skipped.append((base + pos, following - pos))
        pos = following
    return out, end, skipped


def _resync(data: bytes, start: int) -> int | None:
    """The first offset at or after `start` where a whole record with a good CRC begins."""
    size = len(data)
    for pos in range(start, size - HEADER.size + 1):
        length, crc = struct.unpack_from("<II", data, pos)
        stop = pos + HEADER.size + length
        if 0 < length <= MAX_RECORD and stop <= size and zlib.crc32(data[pos + HEADER.size : stop]) == crc:
            return pos
    return None


def payload_digest(payload: bytes) -> int:
    """A 64-bit digest of a raw payload, to recognise a broker's redelivery after a crash."""
    return (zlib.crc32(payload) << 32) | (len(payload) & 0xFFFFFFFF)
