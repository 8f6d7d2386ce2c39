"""USB-serial framing (devices.serial_protocols, pure) as whole values: every problem with its code, params and
the bytes it quotes, and its message and hint as the errors topic shows them (English and French); SDS011 frames written byte by byte from the sensor's datasheet layout
(`AA C0 pm25lo pm25hi pm10lo pm10hi id id sum AB`, values in tenths of µg/m³, `sum` the low byte of bytes 2–7).
Written for issue 12's mutation testing.
"""

from __future__ import annotations

import pytest

from devices.problems import Problem
from devices.serial_protocols import (
    MAX_LINE_BYTES,
    AckLine,
    LineFramer,
    Sds011Framer,
    SerialProblem,
    Telemetry,
    encode_command,
    parse_line,
    sds011_frame,
)

GARBAGE_HINT = (
    "check that the bridge's --baud matches Serial.begin() in the sketch (boot noise after a reset is normal and can "
    "be ignored)"
)
NOT_A_READING_HINT = (
    "print readings as key=value pairs (temp=21.5,hum=40) or as a JSON object, one per line; debug prints show up "
    "here too"
)
LONG_HINT = "end every reading with Serial.println(), and keep lines short"
SDS_GARBAGE_HINT = "the SDS011 talks at 9600 baud (8N1): check --baud and that TX/RX are not swapped"
CHECKSUM_HINT = "a loose wire or electrical noise on the sensor's TX line; the frame was dropped"


def too_long(head: bytes, limit: int) -> SerialProblem:
    return SerialProblem(Problem("line_too_long", params={"limit": limit}), head)


def sds_garbage(raw: bytes) -> SerialProblem:
    return SerialProblem(Problem("serial_garbage", params={"size": len(raw)}, entry="serial_garbage_sds011"), raw)


def test_the_default_line_limit_is_one_kib() -> None:
    assert MAX_LINE_BYTES == 1024
    framer = LineFramer()
    assert framer.max_bytes == 1024
    assert framer.feed(b"a" * 1024 + b"\n") == [b"a" * 1024]
    assert framer.feed(b"b" * 1025 + b"\n") == [too_long(b"b" * 60, 1024)]


def test_a_partial_line_exactly_at_the_limit_is_kept() -> None:
    framer = LineFramer(max_bytes=8)
    assert framer.feed(b"12345678") == []  # exactly the limit, not yet ended: kept
    assert framer.feed(b"\n") == [b"12345678"]
    assert framer.feed(b"1234") == []
    assert framer.feed(b"56789") == [too_long(b"123456789", 8)]  # over the limit while still open: reported
    assert framer.feed(b"tail\nok\n") == [b"ok"]  # the rest of that line is skipped


def test_a_long_open_line_quotes_its_first_sixty_bytes() -> None:
    framer = LineFramer(max_bytes=100)
    data = bytes(range(65, 65 + 58)) + b"0123456789" * 5
    assert framer.feed(data) == [too_long(data[:60], 100)]


def test_a_long_ended_line_quotes_its_first_sixty_bytes() -> None:
    framer = LineFramer(max_bytes=10)
    assert framer.feed(b"abcd") == []
    line = b"e" * 30 + b"f" * 40
    assert framer.feed(line + b"\nok\n") == [too_long(b"abcd" + line[:60], 10), b"ok"]


def test_resync_skips_to_the_next_line_and_reset_does_not() -> None:
    framer = LineFramer(max_bytes=32)
    assert framer.feed(b"half") == []
    framer.resync()
    assert framer.feed(b" of a line\nnext=1\n") == [b"next=1"]
    assert framer.feed(b"half") == []
    framer.reset()
    assert framer.feed(b"whole=1\n") == [b"whole=1"]
    framer.resync()
    framer.reset()  # a reset after a resync does not skip the first line
    assert framer.feed(b"first=1\n") == [b"first=1"]


def test_blank_lines_and_crlf_make_no_lines() -> None:
    framer = LineFramer()
    assert framer.feed(b"\r\n\r\n\n") == []
    assert framer.feed(b"a=1\r\n\r\nb=2\r\n") == [b"a=1", b"b=2"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"\x00\x00 t=1 \t\r\n", Telemetry(b'{"t": 1.0}')),  # NULs and blanks around a line are dropped
        (b"ok=true,bad=FALSE,word=False", Telemetry(b'{"ok": true, "bad": false, "word": false}')),
        (b"x=nan", Telemetry(b'{"x": "nan"}')),  # not a number by the pattern: kept as text
        (b"x=1e999", Telemetry(b'{"x": "1e999"}')),  # infinite: kept as text, the hub explains
        (b"x=.5", Telemetry(b'{"x": 0.5}')),
        (b"X=1", Telemetry(b'{"X": 1.0}')),  # only NULs, blanks and line ends are stripped
        (b'{"id": "m1"}', Telemetry(b'{"id": "m1"}')),  # an id without a status is a reading
        (b'{"status": "done"}', Telemetry(b'{"status": "done"}')),
        (b'{"t": "\\u00b0C"}', Telemetry(b'{"t": "\\u00b0C"}')),  # a valid escape is passed on as sent
        (b'{"t": "\\ud800"}', Telemetry('{"t": "\ufffd"}'.encode())),  # a lone surrogate escape becomes U+FFFD
        (b'{"id": "\\udc80", "status": "done"}', AckLine('{"id": "\ufffd", "status": "done"}'.encode())),
        (b'{"t": "x\xff"}', Telemetry('{"t": "x\ufffd"}'.encode())),  # 11 readable characters of 12: a line
    ],
)
def test_lines_whole(line: bytes, expected: object) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4temp=1",
            SerialProblem(Problem("serial_garbage"), b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4temp=1"),
        ),
        (
            b"  Booting sensor...\r\n",
            SerialProblem(Problem("not_a_reading"), b"Booting sensor..."),
        ),
    ],
)
def test_problems_whole(line: bytes, expected: SerialProblem) -> None:
    assert parse_line(line) == expected


def test_the_readable_share_threshold_is_nine_tenths() -> None:
    # 9 readable characters of 10 is readable enough; 8 of 9 (0.89) is not.
    assert parse_line(b"t=1234567\xff") == Telemetry(b'{"t": "1234567\\ufffd"}')
    problem = parse_line(b"t=123456\xff")
    assert isinstance(problem, SerialProblem) and problem.code == "serial_garbage"
    assert parse_line(b"t=1\t2=3") == SerialProblem(Problem("not_a_reading"), b"t=1\t2=3")


def test_a_problem_as_json() -> None:
    sums = {"got": "0x98", "expected": "0x97"}
    problem = SerialProblem(Problem("checksum_error", params=sums), b"\xaa\xc0" + b"x" * 200)
    assert problem.as_json() == {
        "code": "checksum_error",
        "severity": "error",
        "message": "an SDS011 frame whose checksum is wrong (0x98, expected 0x97)",
        "hint": CHECKSUM_HINT,
        "received": "\\xaa\\xc0" + "x" * 118,
        "source": "serial-bridge",
    }
    assert problem.as_json("fr") == problem.as_json() | {
        "message": "une trame SDS011 dont la somme de contrôle est fausse (0x98, attendu 0x97)",
        "hint": "un fil mal branché ou du bruit électrique sur la ligne TX du capteur ; la trame a été ignorée",
    }
    assert problem.as_json("de") == problem.as_json()  # an unknown language is English
    assert SerialProblem(Problem("port_lost")).as_json()["received"] == ""


PORT = {"port": "/dev/ttyACM0", "detail": "gone"}


@pytest.mark.parametrize(
    ("problem", "message", "hint"),
    [  # the English texts the bridge published before they joined the catalogue, word for word
        (too_long(b"", 1024), "a line of more than 1024 bytes", LONG_HINT),
        (SerialProblem(Problem("serial_garbage")), "unreadable bytes on the serial line", GARBAGE_HINT),
        (sds_garbage(b"abc"), "3 bytes that are not SDS011 frames", SDS_GARBAGE_HINT),
        (
            SerialProblem(Problem("not_a_reading")),
            "a line that is neither JSON nor key=value pairs",
            NOT_A_READING_HINT,
        ),
        (
            SerialProblem(Problem("port_absent", params=PORT)),
            "the serial port /dev/ttyACM0 is not there (gone)",
            "plug the board in (or check --port); the bridge opens it as soon as it appears",
        ),
        (
            SerialProblem(Problem("port_lost", params=PORT)),
            "the serial port /dev/ttyACM0 went away (gone)",
            "the cable was pulled or the board reset; the bridge reconnects when it is back",
        ),
        (
            SerialProblem(Problem("port_not_connected")),
            "a command arrived while the board's port is not open; it was not sent",
            "plug the board in (the hub reports the command as timed out)",
        ),
        (
            SerialProblem(Problem("port_not_connected", entry="port_closed_before_write")),
            "the port closed before a command was sent",
            "plug the board in (the hub reports the command as timed out)",
        ),
        (
            SerialProblem(Problem("commands_backlog")),
            "too many commands waiting for the port",
            "read Serial in the sketch's loop(); this command was not sent",
        ),
        (
            SerialProblem(Problem("write_failed", params={"detail": "Write timeout"})),
            "a command could not be written: Write timeout",
            "is the board reading its serial port?",
        ),
    ],
)
def test_every_serial_problem_in_english_and_french(problem: SerialProblem, message: str, hint: str) -> None:
    english = problem.as_json()
    assert (english["code"], english["message"], english["hint"]) == (problem.problem.code, message, hint)
    french = problem.as_json("fr")
    assert french["code"] == english["code"] and french["message"] != message and french["hint"] != hint
    assert "?" not in str(french["message"]) + str(english["message"])  # every template field supplied


def test_commands_go_down_whole() -> None:
    assert encode_command(b'{"id": "m1", "targets": {"base": 1.5}}') == b'{"id":"m1","targets":{"base":1.5}}\n'
    assert encode_command('{"t": "é"}'.encode()) == b'{"t":"\\u00e9"}\n'
    for bad, message in (
        (b"[1]", "a command is a JSON object"),
        (b"[" * 5000, "too deeply nested"),
        (b'{"a": Infinity}', "Out of range float values are not JSON compliant"),
    ):
        with pytest.raises(ValueError) as err:
            encode_command(bad)
        assert str(err.value) == message


# SDS011 ---------------------------------------------------------------------------------------------------------

# pm2.5 = 12.3 (123 = 0x7B), pm10 = 45.6 (456 = 0x01C8), id A1 B2; sum = 7B+00+C8+01+A1+B2 = 0x297 → 97
FRAME = bytes([0xAA, 0xC0, 0x7B, 0x00, 0xC8, 0x01, 0xA1, 0xB2, 0x97, 0xAB])


def test_a_frame_as_the_sensor_sends_it() -> None:
    assert sds011_frame(12.3, 45.6) == FRAME
    assert sds011_frame(0.0, 999.9, device_id=0x0102) == bytes(
        [0xAA, 0xC0, 0x00, 0x00, 0x0F, 0x27, 0x01, 0x02, 0x39, 0xAB]
    )


def test_a_frame_is_read_and_garbage_is_reported_whole() -> None:
    framer = Sds011Framer()
    assert framer.feed(FRAME) == [Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}')]
    assert framer.feed(b"\x01\x02\x03" + FRAME) == [
        sds_garbage(b"\x01\x02\x03"),
        Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}'),
    ]
    assert framer.feed(b"\x07\x08") == [sds_garbage(b"\x07\x08")]
    assert framer.feed(FRAME[:9]) == []  # less than a frame: kept
    assert framer.feed(FRAME[9:]) == [Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}')]


def test_a_header_without_the_data_command_or_the_tail_is_skipped() -> None:
    framer = Sds011Framer()
    reply = bytes([0xAA, 0xC5]) + FRAME[2:]  # a command reply (C5), not a data frame
    assert framer.feed(reply + FRAME) == [
        sds_garbage(reply),
        Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}'),
    ]
    no_tail = FRAME[:9] + b"\x00"
    assert framer.feed(no_tail + FRAME) == [
        sds_garbage(no_tail),
        Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}'),
    ]


def test_a_bad_checksum_is_reported_whole() -> None:
    framer = Sds011Framer()
    bad = FRAME[:8] + b"\x98" + FRAME[9:]
    assert framer.feed(bad + FRAME) == [
        SerialProblem(Problem("checksum_error", params={"got": "0x98", "expected": "0x97"}), bad),
        Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}'),
    ]


def test_a_frame_cut_short_by_the_next_resyncs_there() -> None:
    framer = Sds011Framer()
    cut = FRAME[:3]  # AA C0 7B, then a whole frame: the first 10 bytes fail the checksum
    assert framer.feed(cut + FRAME + FRAME) == [
        sds_garbage(cut),
        Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}'),
        Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}'),
    ]
    # two cut frames in a row: the skipped bytes of both are reported together
    assert framer.feed(FRAME[:2] + FRAME[:3] + FRAME) == [
        sds_garbage(FRAME[:2] + FRAME[:3]),
        Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}'),
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # AA C0 7B, then a frame whose id byte is AB: the first 10 bytes end in the tail and fail the checksum
        (
            FRAME[:3] + sds011_frame(12.3, 45.6, device_id=0xAB01),
            [sds_garbage(FRAME[:3]), Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}')],
        ),
        # a header, then a frame holding a second header in its own bytes: resync at the first header found
        (
            bytes([0xAA, 0xC0]) + sds011_frame(4932.2, 0.0, device_id=0x00AB),
            [sds_garbage(bytes([0xAA, 0xC0])), Telemetry(b'{"pm2_5": 4932.2, "pm10": 0.0}')],
        ),
    ],
)
def test_a_cut_frame_ending_in_a_tail_resyncs_at_the_next_header(data: bytes, expected: list[object]) -> None:
    assert Sds011Framer().feed(data) == expected


def test_reset_and_resync_drop_a_held_partial_frame() -> None:
    framer = Sds011Framer()
    assert framer.feed(FRAME[:5]) == []
    framer.reset()
    assert framer.feed(FRAME[5:] + FRAME) == [
        sds_garbage(FRAME[5:]),
        Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}'),
    ]
    assert framer.feed(FRAME[:5]) == []
    framer.resync()
    assert framer.feed(FRAME) == [Telemetry(b'{"pm2_5": 12.3, "pm10": 45.6}')]
