"""The cohort CSV as trainers write it, and every way it is refused: whole values and exact messages."""

from __future__ import annotations

import pytest

from devices.topics import DeviceRef
from hub.access.cohort_csv import MAX_CSV_BYTES, ImportLine, decode_csv, parse_csv
from hub.access.records import RegistryError

PROFILES = frozenset({"mearm", "braccio"})
BAD_NAME = "is not a valid name: use 1–32 letters, digits, '_' or '-', starting with a letter or digit"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cohort,learner\ndemo,ana\n", [ImportLine("demo", "ana", None, "generic", None, "")]),
        (  # a spreadsheet's BOM, capitals and spaces around names; blank lines skipped
            "\ufeffCohort, Learner ,Device\n demo , ana , aq1 \n\n,,\n",
            [ImportLine("demo", "ana", DeviceRef("demo", "ana", "aq1"), "generic", None, "")],
        ),
        (  # an arm without a profile gets the default one; a given profile is kept
            "cohort,learner,device,kind,profile\ndemo,ana,arm1,arm,\ndemo,ben,arm2,arm,braccio\n",
            [
                ImportLine("demo", "ana", DeviceRef("demo", "ana", "arm1"), "arm", "mearm", ""),
                ImportLine("demo", "ben", DeviceRef("demo", "ben", "arm2"), "arm", "braccio", ""),
            ],
        ),
        (  # a kind without a device names no device; descriptions are cut to 200 characters
            "cohort,learner,kind,description\ndemo,ana,arm," + "d" * 300 + "\n",
            [ImportLine("demo", "ana", None, "arm", None, "d" * 200)],
        ),
        (
            "learner,cohort,description,device,kind\nana,demo,by the window,aq1,air_quality\n",
            [ImportLine("demo", "ana", DeviceRef("demo", "ana", "aq1"), "air_quality", None, "by the window")],
        ),
    ],
)
def test_a_cohort_is_read_as_its_lines(text: str, expected: list[ImportLine]) -> None:
    assert parse_csv(text, PROFILES) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the CSV needs a header line with at least: cohort,learner (then device,kind,…)"),
        ("name,device\nx,y\n", "the CSV needs a header line with at least: cohort,learner (then device,kind,…)"),
        ("cohort,device\nx,y\n", "the CSV needs a header line with at least: cohort,learner (then device,kind,…)"),
        (
            "cohort,learner,colour\ndemo,ana,red\n",
            "unknown CSV column(s) colour (known: cohort, learner, device, kind, profile, description)",
        ),
        ("cohort,learner\n", "the CSV has no learners in it"),
        ("cohort,learner\n,,\n\n", "the CSV has no learners in it"),
        ("cohort,learner\ndemo,ana bob\n", f"line 2: 'ana bob' {BAD_NAME}"),
        ("cohort,learner\n,ana\n", f"line 2: '' {BAD_NAME}"),
        ("cohort,learner\ndemo,ana\ndemo,a/b\n", "line 3: learner id 'demo/a/b' must be cohort/learner"),
        ("cohort,learner,device\ndemo,ana,a/b\n", "line 2: device id 'demo/ana/a/b' must be cohort/learner/device"),
        ("cohort,learner,device,kind\ndemo,ana,aq1,toaster\n", "line 2: kind 'toaster' is not one of"),
        (
            "cohort,learner,device,kind,profile\ndemo,ana,arm1,arm,robotron\n",
            "line 2: arm profile 'robotron' is not one of braccio, mearm",
        ),
        ("cohort,learner\ndemo,a\x01b\n", "line 2: a control character in 'a\\\\x01b'"),
        ("cohort,learner\ndemo,a\x00\n", "line 2: a control character in 'a\\\\x00'"),
        ("co\x7fhort,learner\ndemo,ana\n", "line 1: a control character in 'co\\\\x7fhort'"),
        ("cohort,learner\ndemo,\ud800\n", "line 2: text that is not valid Unicode (a lone surrogate)"),
        ("cohort,learner\ndemo," + "x" * 1001 + "\n", "line 2: a cell of 1001 characters (at most 1000)"),
        ("cohort,learner\n" + "demo,ana\n" * 10_000, "line 10001: at most 10000 lines (split the cohort)"),
        (
            'cohort,learner\ndemo,"' + "x" * 140_000 + '"\n',
            "the CSV cannot be read: field larger than field limit (131072)",
        ),
        ("x" * (MAX_CSV_BYTES + 1), f"the CSV is too large (at most {MAX_CSV_BYTES} characters)"),
    ],
)
def test_a_bad_cohort_is_refused_with_the_line_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as refused:
        parse_csv(text, PROFILES)
    assert str(refused.value).startswith(message)


def test_tabs_and_line_breaks_inside_a_quoted_cell_are_text_not_control_characters() -> None:
    lines = parse_csv('cohort,learner,description\ndemo,ana,"by the\twindow\r\nleft"\n', PROFILES)
    assert [line.description for line in lines] == ["by the\twindow\r\nleft"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"cohort,learner\n", "cohort,learner\n"),
        (b"\xef\xbb\xbfcohort,learner\n", "cohort,learner\n"),  # a spreadsheet's BOM goes
        ("cohort,learner\ndemo,zoé\n".encode(), "cohort,learner\ndemo,zoé\n"),
    ],
)
def test_csv_bytes_are_utf8_text(data: bytes, expected: str) -> None:
    assert decode_csv(data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"cohort,learner\ndemo,zo\xe9\n",
            "line 2: the CSV is not UTF-8 text (save it from the spreadsheet as 'CSV UTF-8')",
        ),
        (b"\xff", "line 1: the CSV is not UTF-8 text (save it from the spreadsheet as 'CSV UTF-8')"),
        (
            b"x" * (MAX_CSV_BYTES + 1),
            f"the CSV is {MAX_CSV_BYTES + 1} bytes: at most {MAX_CSV_BYTES} (split the cohort)",
        ),
    ],
)
def test_csv_bytes_that_are_not_a_cohort_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(RegistryError) as refused:
        decode_csv(data)
    assert str(refused.value) == message
