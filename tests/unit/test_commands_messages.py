"""Commands over MQTT without a broker: what is published back for each kind of request and acknowledgement."""

from __future__ import annotations

import json

import pytest

from hub.adapters.mqtt import Message
from hub.commands.messages import CommandMessages
from hub.commands.relay import CommandRelay

TOPIC = "lab/c/ana/arm1/commands/request"
RESULT = "lab/c/ana/arm1/commands/result"


def messages() -> tuple[CommandMessages, list[tuple[str, dict[str, object]]], list[tuple[object, ...]]]:
    published: list[tuple[str, dict[str, object]]] = []
    warned: list[tuple[object, ...]] = []
    relay = CommandRelay(
        {}, publish=lambda *a: None, audit=lambda r: None, refused=lambda *a: None, online=lambda r: None
    )
    made = CommandMessages(
        relay, lambda topic, payload: published.append((topic, json.loads(payload))), lambda *a: warned.append(a)
    )
    return made, published, warned


MALFORMED = {"code": "malformed", "message": "a command request is a JSON object of valid UTF-8 text"}


@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        (b"{", {"request_id": None, "state": "refused", "error": MALFORMED}),
        (b'"\\ud800"', {"request_id": None, "state": "refused", "error": MALFORMED}),
        (b"\xff", {"request_id": None, "state": "refused", "error": MALFORMED}),
        (
            b'{"type": "stop", "request_id": "r1"}',
            {
                "request_id": "r1",
                "state": "refused",
                "error": {"code": "not_an_arm", "message": "c/ana/arm1 is not a known arm"},
            },
        ),
    ],
    ids=["not JSON", "a lone surrogate", "not UTF-8", "not an arm of this lab"],
)
def test_a_refused_request_is_answered_on_the_results_topic(payload: bytes, answer: dict[str, object]) -> None:
    made, published, _ = messages()
    made.handle(Message(TOPIC, payload, 1, False))
    assert published == [(RESULT, answer)]


def test_an_unreadable_acknowledgement_is_counted_and_warned_not_raised() -> None:
    made, published, warned = messages()
    made.handle(Message("lab/c/ana/arm1/ack", b"{", 1, False))
    assert made.unreadable_acks == 1 and published == []
    assert warned and warned[0][0] == "c/ana/arm1"


def test_a_topic_of_no_device_is_ignored() -> None:
    made, published, warned = messages()
    made.handle(Message("lab/x/commands/request", b"{}", 1, False))
    assert (published, warned, made.unreadable_acks) == ([], [], 0)
