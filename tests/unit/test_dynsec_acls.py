"""The broker's rules as pure data: each account's topics, whole, and the plugin's file for a new broker.

What the broker does with them is tested against a real mosquitto (test_security, test_broker_limits).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest

from devices.topics import DeviceRef
from hub.access.dynsec import (
    ADMIN_ROLE,
    ADMIN_USER,
    HUB_ROLE,
    HUB_USER,
    Account,
    Acl,
    admin_acls,
    bridge_account,
    bridge_acls,
    device_account,
    device_acls,
    hub_acls,
    initial_config,
    learner_account,
    learner_acls,
    open_acls,
    password_record,
)

ANA = DeviceRef("demo", "ana", "aq1")
SEND, SUB, RECV = "publishClientSend", "subscribePattern", "publishClientReceive"
DEVICE_RULES = [
    (SEND, "lab/demo/ana/aq1/telemetry"),
    (SEND, "lab/demo/ana/aq1/ack"),
    (SEND, "lab/demo/ana/aq1/status"),
    (SEND, "lab/demo/ana/aq1/telemetry/+"),
    (SUB, "lab/demo/ana/aq1/commands"),
    (RECV, "lab/demo/ana/aq1/commands"),
    (SUB, "lab/demo/ana/aq1/errors"),
    (RECV, "lab/demo/ana/aq1/errors"),
]
LEARNER_RULES = [
    (SEND, "lab/demo/ana/+/commands/request"),
    (SUB, "lab/demo/ana/+/telemetry"),
    (RECV, "lab/demo/ana/+/telemetry"),
    (SUB, "lab/demo/ana/+/telemetry/+"),
    (RECV, "lab/demo/ana/+/telemetry/+"),
    (SUB, "lab/demo/ana/+/status"),
    (RECV, "lab/demo/ana/+/status"),
    (SUB, "lab/demo/ana/+/commands/result"),
    (RECV, "lab/demo/ana/+/commands/result"),
]


def rules(acls: list[Acl] | tuple[Acl, ...]) -> list[tuple[str, str]]:
    """The rules in order; every one must be an allow rule of priority 0 (the default denies the rest)."""
    assert all(set(a) == {"acltype", "topic", "priority", "allow"} for a in acls)
    assert all(a["priority"] == 0 and a["allow"] is True for a in acls)
    return [(a["acltype"], a["topic"]) for a in acls]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: device_acls(ANA), DEVICE_RULES),
        (lambda: bridge_acls(ANA), [*DEVICE_RULES, (SEND, "lab/demo/ana/aq1/errors")]),
        (lambda: learner_acls("demo", "ana"), LEARNER_RULES),
        (
            hub_acls,
            [
                (SUB, "lab/#"),
                (RECV, "lab/#"),
                (SUB, "$SYS/#"),
                (RECV, "$SYS/#"),
                (SUB, "$share/+/lab/#"),
                (SEND, "lab/#"),
                (SEND, "homeassistant/#"),  # Home Assistant discovery configs (hub.integrations)
                (SUB, "homeassistant/#"),
                (RECV, "homeassistant/#"),
            ],
        ),
        (
            admin_acls,
            [
                (SEND, "$CONTROL/dynamic-security/#"),
                (SUB, "$CONTROL/dynamic-security/#"),
                (RECV, "$CONTROL/dynamic-security/#"),
            ],
        ),
        (
            open_acls,
            [
                (SEND, "lab/+/+/+/telemetry"),
                (SEND, "lab/+/+/+/ack"),
                (SEND, "lab/+/+/+/status"),
                (SEND, "lab/+/+/+/telemetry/+"),
                (SEND, "lab/+/+/+/commands/request"),
                (SUB, "lab/#"),
                (RECV, "lab/#"),
            ],
        ),
    ],
)
def test_each_account_has_exactly_its_rules(make: Callable[[], list[Acl]], expected: list[tuple[str, str]]) -> None:
    assert rules(make()) == expected


@pytest.mark.parametrize(
    ("account", "expected"),
    [
        (device_account(ANA), ("demo/ana/aq1", "device:demo/ana/aq1", DEVICE_RULES, True, "")),
        (
            device_account(ANA, enabled=False, text="window"),
            ("demo/ana/aq1", "device:demo/ana/aq1", DEVICE_RULES, False, "window"),
        ),
        (
            bridge_account(ANA),
            (
                "bridge/demo/ana/aq1",
                "bridge:demo/ana/aq1",
                [*DEVICE_RULES, (SEND, "lab/demo/ana/aq1/errors")],
                True,
                "serial bridge for demo/ana/aq1",
            ),
        ),
        (learner_account("demo", "ana"), ("demo/ana", "learner:demo/ana", LEARNER_RULES, True, "")),
        (learner_account("demo", "ana", False), ("demo/ana", "learner:demo/ana", LEARNER_RULES, False, "")),
    ],
)
def test_accounts_are_named_after_what_they_are(
    account: Account, expected: tuple[str, str, list[tuple[str, str]], bool, str]
) -> None:
    assert (account.username, account.role, rules(account.acls), account.enabled, account.text) == expected


def test_password_records_are_pbkdf2_sha512_as_mosquitto_stores_them() -> None:
    record = password_record("s3cret", salt=b"0123456789ab", iterations=101)
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", b"0123456789ab", 101, 64)
    assert record == {
        "password": base64.b64encode(expected).decode(),
        "salt": base64.b64encode(b"0123456789ab").decode(),
        "iterations": 101,
    }
    assert len(base64.b64decode(password_record("s3cret")["salt"])) == 12
    assert password_record("s3cret")["salt"] != password_record("s3cret")["salt"]  # a fresh salt each time
    assert password_record("s3cret")["iterations"] == 101


def test_a_new_broker_knows_only_the_admin_and_the_hub_and_denies_by_default() -> None:
    config = initial_config("admin-pw", "hub-pw")
    clients = [{k: v for k, v in c.items() if k not in ("password", "salt")} for c in config["clients"]]
    assert clients == [
        {
            "username": ADMIN_USER,
            "textname": "LabHub registry admin",
            "roles": [{"rolename": ADMIN_ROLE}],
            "iterations": 101,
        },
        {"username": HUB_USER, "textname": "LabHub hub", "roles": [{"rolename": HUB_ROLE}], "iterations": 101},
    ]
    admin, hub = config["clients"]
    salt = base64.b64decode(admin["salt"])
    assert admin["password"] == password_record("admin-pw", salt)["password"]
    assert hub["password"] == password_record("hub-pw", base64.b64decode(hub["salt"]))["password"]
    assert config["roles"] == [
        {"rolename": ADMIN_ROLE, "acls": admin_acls()},
        {"rolename": HUB_ROLE, "acls": hub_acls()},
    ]
    assert config["groups"] == []
    assert config["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
