"""The Node-RED example flow (config/node-red/labhub-flow.json) against the hub's own contract: its topics, the
learner's broker ACL, and the hub's command parser and MQTT command path. The flow cannot drift silently from
the hub. (That it imports into Node-RED 4 and moves the demo arm: benchmarks/check_node_red.py, run by hand.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devices.arm import check_command, parse_command
from devices.topics import DeviceRef, parse_topic, subscriptions
from hub.access.dynsec import learner_acls, learner_username
from hub.adapters.mqtt import Message
from hub.commands.messages import CommandMessages
from hub.commands.relay import CommandRelay
from hub.config import ARM_PROFILES, CONFIG_DIR, EXAMPLE_CONFIG, load_config

FLOW_PATH = CONFIG_DIR / "node-red" / "labhub-flow.json"  # as an installed hub finds it
FLOW: list[dict[str, Any]] = json.loads(FLOW_PATH.read_text())
LAB = load_config(EXAMPLE_CONFIG)
# Node-RED 4's core nodes only: the flow imports without installing anything from the palette.
CORE_TYPES = {"tab", "mqtt-broker", "comment", "mqtt in", "mqtt out", "inject", "json", "debug"}
TAKES_INPUT = {"mqtt out", "json", "debug"}


def nodes(type_: str) -> list[dict[str, Any]]:
    return [n for n in FLOW if n["type"] == type_]


def one(type_: str, **match: str) -> dict[str, Any]:
    found = [n for n in nodes(type_) if all(n.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"{type_} {match}: {len(found)} nodes"
    return found[0]


def matches(pattern: str, topic: str) -> bool:
    """MQTT wildcard matching: does `pattern` (with + and #) cover `topic`?"""
    p, t = pattern.split("/"), topic.split("/")
    if p[-1] == "#":
        return len(t) >= len(p) - 1 and all(a in ("+", b) for a, b in zip(p[:-1], t, strict=False))
    return len(p) == len(t) and all(a in ("+", b) for a, b in zip(p, t, strict=True))


BROKER = one("mqtt-broker")
COHORT, LEARNER = BROKER["credentials"]["user"].split("/")
TELEMETRY_IN = one("mqtt in", datatype="utf8")
RESULTS_IN = one("mqtt in", datatype="json")
COMMANDS_OUT = one("mqtt out")
ARM = parse_topic(COMMANDS_OUT["topic"]).ref
BUTTONS = nodes("inject")
PROFILE = ARM_PROFILES[next(d.profile for d in LAB.devices if d.ref == ARM) or ""]


def acl_topics(kind: str) -> set[str]:
    return {a["topic"] for a in learner_acls(COHORT, LEARNER) if a["acltype"] == kind and a["allow"]}


def test_the_flow_is_one_tab_of_core_nodes_with_unique_ids() -> None:
    (tab,) = nodes("tab")
    assert len({n["id"] for n in FLOW}) == len(FLOW)
    assert {n["type"] for n in FLOW} <= CORE_TYPES
    assert all(n.get("z") == tab["id"] for n in FLOW if n is not tab)
    assert len(nodes("comment")) >= 4  # one on the account, one per part


def test_wires_lead_to_nodes_that_take_input_and_mqtt_nodes_use_the_one_broker() -> None:
    by_id = {n["id"]: n for n in FLOW}
    for node in FLOW:
        for output in node.get("wires", []):
            for target in output:
                assert by_id[target]["type"] in TAKES_INPUT, f"{node['name']} → {target}"
    assert all(n["broker"] == BROKER["id"] for n in FLOW if n["type"] in ("mqtt in", "mqtt out"))
    assert all(b["wires"] == [[COMMANDS_OUT["id"]]] for b in BUTTONS) and len(BUTTONS) >= 2
    json_node = one("json")
    assert TELEMETRY_IN["wires"] == [[json_node["id"]]] and json_node["wires"] == [
        [one("debug", name="Telemetry")["id"]]
    ]
    assert RESULTS_IN["wires"] == [[one("debug", name="Command result")["id"]]]


def test_the_broker_is_the_example_labs_and_no_password_ships() -> None:
    assert (BROKER["broker"], int(BROKER["port"])) == (LAB.mqtt.host, LAB.mqtt.port)
    assert BROKER["usetls"] is False and BROKER["cleansession"] is True
    assert BROKER["credentials"]["user"] == learner_username(COHORT, LEARNER)
    assert "labhub-learner-add" in BROKER["credentials"]["password"]  # a placeholder that says where to look
    assert (
        BROKER["willTopic"] == BROKER["birthTopic"] == BROKER["closeTopic"] == ""
    )  # the account may not publish there


def test_the_arm_driven_is_the_example_labs_simulated_arm_of_the_learner() -> None:
    declared = {d.ref: d for d in LAB.devices}
    assert ARM.cohort == COHORT and ARM.learner == LEARNER
    assert declared[ARM].kind == "arm" and declared[ARM].simulate


def test_the_subscriptions_are_the_learners_acl_and_see_the_hubs_topics() -> None:
    allowed = acl_topics("subscribePattern")
    assert TELEMETRY_IN["topic"] in allowed and RESULTS_IN["topic"] in allowed
    for device in (d.ref for d in LAB.devices if (d.ref.cohort, d.ref.learner) == (COHORT, LEARNER)):
        assert matches(TELEMETRY_IN["topic"], device.topic("telemetry"))
    assert matches(RESULTS_IN["topic"], ARM.topic("commands/result"))  # where CommandMessages publishes
    assert parse_topic(TELEMETRY_IN["topic"].replace("+", "aq1")).channel == "telemetry"


def test_commands_go_where_the_learner_may_publish_and_the_hub_listens_never_retained() -> None:
    parsed = parse_topic(COMMANDS_OUT["topic"])
    assert (parsed.channel, parsed.field) == ("commands", "request")
    assert any(matches(p, COMMANDS_OUT["topic"]) for p in acl_topics("publishClientSend"))
    assert any(matches(s, COMMANDS_OUT["topic"]) for s in subscriptions())
    assert COMMANDS_OUT["retain"] == "false" and COMMANDS_OUT["qos"] == "1"


def sent_bytes(button: dict[str, Any]) -> bytes:
    """What Node-RED publishes: the inject's JSON parsed, then stringified by the mqtt out node."""
    assert button["payloadType"] == "json" and button["props"] == [{"p": "payload"}]
    return json.dumps(json.loads(button["payload"]), separators=(",", ":")).encode()


@pytest.mark.parametrize("button", BUTTONS, ids=[b["name"] for b in BUTTONS])
def test_each_button_is_a_command_the_hub_accepts_for_the_arm(button: dict[str, Any]) -> None:
    request = json.loads(sent_bytes(button))
    check_command(
        parse_command(request), PROFILE, PROFILE.home_pose()
    )  # raises CommandError when the hub would refuse it
    assert isinstance(request["request_id"], str) and len(request["request_id"]) <= 64  # the hub keeps 64


def test_request_ids_tell_the_buttons_apart() -> None:
    ids = [json.loads(b["payload"])["request_id"] for b in BUTTONS]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("button", BUTTONS, ids=[b["name"] for b in BUTTONS])
async def test_each_button_goes_through_the_hubs_mqtt_command_path(button: dict[str, Any]) -> None:
    """The bytes Node-RED publishes, handled as the hub handles a request from the broker: the arm gets a
    command, and the flow's results subscription sees each state with the button's request_id."""
    to_device: list[str] = []
    results: list[tuple[str, dict[str, Any]]] = []
    relay = CommandRelay(
        {ARM: PROFILE},
        publish=lambda topic, payload, qos: to_device.append(topic),
        audit=lambda r: None,
        refused=lambda *a: None,
        online=lambda ref: True,
    )
    made = CommandMessages(relay, lambda topic, payload: results.append((topic, json.loads(payload))), lambda *a: None)
    relay.listeners.append(made.publish_result)
    try:
        made.handle(Message(COMMANDS_OUT["topic"], sent_bytes(button), 1, False))
    finally:
        relay.shutdown()
    assert to_device == [DeviceRef.parse(ARM.key).topic("commands")]
    request_id = json.loads(button["payload"])["request_id"]
    assert results and all(matches(RESULTS_IN["topic"], t) and r["request_id"] == request_id for t, r in results)
    assert "sent" in [r["state"] for _, r in results]  # what the results debug node's status shows
    assert one("debug", name="Command result")["statusVal"] == "payload.state"
