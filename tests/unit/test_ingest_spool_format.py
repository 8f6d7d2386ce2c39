"""The spool's record format, whole values: exact frames, and what a scan gives back from damaged bytes."""

from __future__ import annotations

import pytest

from hub.ingest.spool_format import HEADER, MAX_RECORD, decode_body, encode_body, frame, payload_digest, scan

# Two known records: the CRCs are written out, so a change of checksum or header layout fails here.
A = frame(7, 9, b"c/l/d\x00m x=1")
B = frame(8, 0, b"ab")


def test_a_frame_is_the_header_then_the_body() -> None:
    assert A == (
        (11).to_bytes(4, "little")
        + (0x595B1E9A).to_bytes(4, "little")
        + (7).to_bytes(8, "little")
        + (9).to_bytes(8, "little")
        + b"c/l/d\x00m x=1"
    )
    assert B[4:8] == (0x9E83486D).to_bytes(4, "little") and len(B) == HEADER.size + 2


@pytest.mark.parametrize(
    ("key", "line", "body"),
    [
        ("c/l/d", "m x=1", b"c/l/d\x00m x=1"),
        ("c/l/d", "", b"c/l/d\x00"),
        ("c/élève/d", 'm s="\u2028"', 'c/élève/d\x00m s="\u2028"'.encode()),
    ],
)
def test_a_body_is_key_nul_line_and_reads_back(key: str, line: str, body: bytes) -> None:
    assert encode_body(key, line) == body
    assert decode_body(body) == (key, line)


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("c/l/d", 'm s="\ud800"'),  # a lone surrogate cannot be written
        ("c/l/d", "x" * MAX_RECORD),  # one byte over with the key and NUL
    ],
)
def test_a_body_that_cannot_be_a_record_is_refused(key: str, line: str) -> None:
    with pytest.raises(ValueError):
        encode_body(key, line)


def test_the_largest_body_is_allowed() -> None:
    assert len(encode_body("k", "x" * (MAX_RECORD - 2))) == MAX_RECORD


def test_text_that_is_not_utf8_does_not_read_back() -> None:
    with pytest.raises(UnicodeDecodeError):
        decode_body(b"c/l/d\x00\xff")


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


# (bytes, base) → (positions and ends of the records found, where the last good one ends, skipped stretches)
SCANS: list[tuple[str, bytes, int, list[tuple[int, int]], int, list[tuple[int, int]]]] = [
    ("nothing", b"", 0, [], 0, []),
    ("one record", A, 0, [(0, len(A))], len(A), []),
    ("two, at a base", A + B, 1000, [(1000, 1000 + len(A)), (1000 + len(A), 1000 + len(A + B))], len(A + B), []),
    ("a torn tail is left out", A + B[:-1], 0, [(0, len(A))], len(A), []),
    ("a header alone", A + HEADER.pack(100, 0, 0, 0), 0, [(0, len(A))], len(A), []),
    (
        "a bad CRC in the middle is skipped, the next record kept",
        flip(A, HEADER.size + 1) + B,
        0,
        [(len(A), len(A + B))],
        len(A + B),
        [(0, len(A))],
    ),
    (
        "an impossible length is skipped",
        HEADER.pack(MAX_RECORD + 1, 0, 0, 0) + B,
        0,
        [(HEADER.size, HEADER.size + len(B))],
        HEADER.size + len(B),
        [(0, HEADER.size)],
    ),
    (
        "a zero length is skipped",
        HEADER.pack(0, 0, 0, 0) + A,
        50,
        [(50 + HEADER.size, 50 + HEADER.size + len(A))],
        HEADER.size + len(A),
        [(50, HEADER.size)],
    ),
    ("garbage only", b"\xff" * 100, 0, [], 0, []),
]


@pytest.mark.parametrize(
    ("data", "base", "records", "end", "skipped"), [c[1:] for c in SCANS], ids=[c[0] for c in SCANS]
)
def test_scan(data: bytes, base: int, records: list[tuple[int, int]], end: int, skipped: list[tuple[int, int]]) -> None:
    found, last_end, stretches = scan(data, base)
    assert [(at, stop) for at, stop, *_ in found] == records
    assert (last_end, stretches) == (end, skipped)


def test_scan_gives_back_each_records_fields() -> None:
    found, _, _ = scan(A + B, 0)
    assert [(ns, digest, body) for _, _, ns, digest, body in found] == [(7, 9, b"c/l/d\x00m x=1"), (8, 0, b"ab")]


@pytest.mark.parametrize(
    ("payload", "digest"),
    [
        (b"", 0),
        (b"ab", (0x9E83486D << 32) | 2),
    ],
)
def test_payload_digest(payload: bytes, digest: int) -> None:
    assert payload_digest(payload) == digest
