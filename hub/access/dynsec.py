"""Who may connect, publish and subscribe: Mosquitto's dynamic security plugin, enforced by the broker itself.

The rules are pure functions of a device or learner (`device_acls`, `learner_acls`); `Dynsec` is the thin
adapter that sends them to the broker's `$CONTROL/dynamic-security/v1` topic as its admin account. Changes
take effect at once, without restarting the broker, and disabling a client disconnects it.

Accounts are named after what they are, never after a client id (which any client may pick): a device is
`cohort/learner/device`, a learner `cohort/learner`; the hub and the admin have fixed names without a slash,
so no registry name can collide with them.

Telemetry is `telemetry` or `telemetry/<field>`, one level: nothing deeper is accepted from anyone. Mosquitto
2.0's ACLs cannot tell a retained publish from another, so a device may still retain a reading on its own
`telemetry` topics (one per field name at most); the hub ignores retained telemetry and clears it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from devices.topics import ROOT, DeviceRef
from hub.access.records import learner_key
from hub.adapters.mqtt import Message, MqttClient

log = logging.getLogger(__name__)

ADMIN_USER = "labhub-admin"
HUB_USER = "labhub-hub"
HUB_ROLE = "labhub-hub"
ADMIN_ROLE = "labhub-admin"
OPEN_ROLE = "labhub-open"
OPEN_GROUP = "labhub-anonymous"
CONTROL = "$CONTROL/dynamic-security/v1"
DISCOVERY_PREFIX = "homeassistant"  # Home Assistant's MQTT discovery topics (hub.integrations.homeassistant)
ITERATIONS = 101  # the plugin's own choice for the passwords it hashes; ours are random 128-bit secrets

Acl = dict[str, Any]


class DynsecError(RuntimeError):
    """The broker refused a security command, or did not answer."""


def password_record(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict[str, Any]:
    """A password as the plugin stores it: PBKDF2-HMAC-SHA512, base64 hash and salt."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def _acl(kind: str, topic: str, allow: bool = True) -> Acl:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": allow}


def device_username(ref: DeviceRef) -> str:
    return ref.key


def learner_username(cohort: str, learner: str) -> str:
    return learner_key(cohort, learner)


def device_role(ref: DeviceRef) -> str:
    return f"device:{ref.key}"


def learner_role(cohort: str, learner: str) -> str:
    return f"learner:{learner_key(cohort, learner)}"


def device_acls(ref: DeviceRef) -> list[Acl]:
    """A device publishes its own telemetry, ack and status; it hears only its own commands and errors."""
    base = f"{ROOT}/{ref.key}"
    acls = [_acl("publishClientSend", f"{base}/{channel}") for channel in ("telemetry", "ack", "status")]
    acls.append(_acl("publishClientSend", f"{base}/telemetry/+"))  # one field: never a tree of retained topics
    for channel in ("commands", "errors"):
        acls.append(_acl("subscribePattern", f"{base}/{channel}"))
        acls.append(_acl("publishClientReceive", f"{base}/{channel}"))
    return acls


def bridge_username(ref: DeviceRef) -> str:
    return f"bridge/{ref.key}"


def bridge_role(ref: DeviceRef) -> str:
    return f"bridge:{ref.key}"


def bridge_acls(ref: DeviceRef) -> list[Acl]:
    """A serial bridge speaks for its one device, and also reports the cable's problems on its errors topic."""
    return [*device_acls(ref), _acl("publishClientSend", f"{ROOT}/{ref.key}/errors")]


def learner_acls(cohort: str, learner: str) -> list[Acl]:
    """A learner's own app: command requests to their devices; their devices' telemetry, status, results."""
    base = f"{ROOT}/{cohort}/{learner}/+"
    acls = [_acl("publishClientSend", f"{base}/commands/request")]
    for topic in (f"{base}/telemetry", f"{base}/telemetry/+", f"{base}/status", f"{base}/commands/result"):
        acls.append(_acl("subscribePattern", topic))
        acls.append(_acl("publishClientReceive", topic))
    return acls


def hub_acls() -> list[Acl]:
    """The hub sees and may publish everything under the lab root, and reads the broker's own counters."""
    acls = []
    for topic in (f"{ROOT}/#", "$SYS/#"):
        acls += [_acl("subscribePattern", topic), _acl("publishClientReceive", topic)]
    acls.append(_acl("subscribePattern", f"$share/+/{ROOT}/#"))  # workers sharing the load
    acls.append(_acl("publishClientSend", f"{ROOT}/#"))
    # Home Assistant discovery: the hub publishes its retained configs and reads them back (to clear stale ones).
    discovery = f"{DISCOVERY_PREFIX}/#"
    acls += [_acl(kind, discovery) for kind in ("publishClientSend", "subscribePattern", "publishClientReceive")]
    return acls


def reader_username(cohort: str, name: str) -> str:
    """`reader.<cohort>.<name>`: dots are in no lab name, so no device, learner or bridge can have it."""
    return f"reader.{cohort}.{name}"


def reader_role(cohort: str, name: str) -> str:
    return f"reader:{cohort}/{name}"


def reader_acls(cohort: str, discovery_filter: str) -> list[Acl]:
    """A read-only account (Home Assistant, Node-RED): the cohort's telemetry and status, and its discovery
    configs. It may subscribe to any filter inside the cohort or the discovery prefix (Home Assistant subscribes
    to `homeassistant/#`-like filters), but the broker delivers only these topics; it publishes nothing."""
    base = f"{ROOT}/{cohort}/+/+"
    acls = [_acl("subscribePattern", f"{ROOT}/{cohort}/#"), _acl("subscribePattern", f"{DISCOVERY_PREFIX}/#")]
    for topic in (f"{base}/telemetry", f"{base}/telemetry/+", f"{base}/status", discovery_filter):
        acls.append(_acl("publishClientReceive", topic))
    acls.append(_acl("publishClientSend", "#", allow=False))
    return acls


def admin_acls() -> list[Acl]:
    topic = "$CONTROL/dynamic-security/#"
    return [_acl("publishClientSend", topic), _acl("subscribePattern", topic), _acl("publishClientReceive", topic)]


def open_acls() -> list[Acl]:
    """Classroom open mode, for anonymous clients: publish as any device or app, read the lab; never speak
    for the hub (commands and errors)."""
    acls = [_acl("publishClientSend", f"{ROOT}/+/+/+/{channel}") for channel in ("telemetry", "ack", "status")] + [
        _acl("publishClientSend", f"{ROOT}/+/+/+/telemetry/+"),
        _acl("publishClientSend", f"{ROOT}/+/+/+/commands/request"),
        _acl("subscribePattern", f"{ROOT}/#"),
        _acl("publishClientReceive", f"{ROOT}/#"),
    ]
    return acls


DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False, "unsubscribe": True}


def initial_config(admin_password: str, hub_password: str) -> dict[str, Any]:
    """The plugin's file for a new broker: the admin and hub accounts; everything else comes over $CONTROL."""
    return {
        "clients": [
            {"username": ADMIN_USER, "textname": "LabHub registry admin", "roles": [{"rolename": ADMIN_ROLE}]}
            | password_record(admin_password),
            {"username": HUB_USER, "textname": "LabHub hub", "roles": [{"rolename": HUB_ROLE}]}
            | password_record(hub_password),
        ],
        "roles": [
            {"rolename": ADMIN_ROLE, "acls": admin_acls()},
            {"rolename": HUB_ROLE, "acls": hub_acls()},
        ],
        "groups": [],
        "defaultACLAccess": DEFAULT_ACCESS,
    }


@dataclass(frozen=True, slots=True)
class Account:
    """A broker account as the lab wants it: its role's rules, and whether it may connect."""

    username: str
    role: str
    acls: tuple[Acl, ...]
    enabled: bool = True
    text: str = ""


def device_account(ref: DeviceRef, enabled: bool = True, text: str = "") -> Account:
    return Account(device_username(ref), device_role(ref), tuple(device_acls(ref)), enabled, text)


def bridge_account(ref: DeviceRef) -> Account:
    return Account(
        bridge_username(ref), bridge_role(ref), tuple(bridge_acls(ref)), True, f"serial bridge for {ref.key}"
    )


def learner_account(cohort: str, learner: str, enabled: bool = True) -> Account:
    return Account(
        learner_username(cohort, learner), learner_role(cohort, learner), tuple(learner_acls(cohort, learner)), enabled
    )


def reader_account(cohort: str, name: str, discovery_filter: str) -> Account:
    return Account(
        reader_username(cohort, name),
        reader_role(cohort, name),
        tuple(reader_acls(cohort, discovery_filter)),
        True,
        f"read-only account for cohort {cohort}",
    )


class Dynsec:
    """The broker's security admin, over MQTT. `async with Dynsec(...) as sec: await sec.ensure(account)`."""

    def __init__(self, host: str, port: int, password: str, username: str = ADMIN_USER, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._client = MqttClient(
            host,
            port,
            f"labhub-admin-{secrets.token_hex(4)}",
            on_message=self._on_message,
            subscriptions=[(CONTROL + "/response", 1)],
            username=username,
            password=password,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Dynsec:
        self._task = asyncio.create_task(self._client.run(), name="dynsec")
        try:
            await self._client.wait_connected(self.timeout)
        except TimeoutError:
            await self.close()
            raise DynsecError(
                f"cannot reach the broker's security admin at {self._client.host}:{self._client.port}: "
                f"{self._client.last_error or 'no answer'}"
            ) from None
        except BaseException:  # cancelled: never leave an admin connection behind
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _on_message(self, msg: Message) -> None:
        try:
            body = json.loads(msg.payload)
            responses = body["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable security response from the broker")
            return
        for response in responses:
            pending = self._pending.get(str(response.get("correlationData")))
            if pending is not None and not pending[1].done() and response.get("command") == pending[0]:
                pending[1].set_result(response)

    async def command(self, name: str, ignore: Iterable[str] = (), **args: Any) -> dict[str, Any]:
        """Send one command; DynsecError unless it succeeded (or failed with one of the `ignore` errors)."""
        key = uuid.uuid4().hex  # every admin session hears every response: ids must not collide
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[key] = (name, future)
        try:
            body = {"commands": [{"command": name, "correlationData": key, **args}]}
            self._client.publish(CONTROL, json.dumps(body).encode(), qos=1)
            async with asyncio.timeout(self.timeout):
                response = await future
        except TimeoutError:
            raise DynsecError(f"the broker did not answer {name} within {self.timeout:.0f} s") from None
        finally:
            self._pending.pop(key, None)
        error = response.get("error")
        if error and error not in ignore:
            raise DynsecError(f"{name} refused by the broker: {error}")
        return response

    async def ensure(self, account: Account, password: str | None = None) -> bool:
        """Create or update an account and its role. A new account needs `password`; an existing one keeps
        its password unless one is given. Returns whether the account was created."""
        await self.set_role(account.role, account.acls)
        exists = await self.command("getClient", ignore=["Client not found"], username=account.username)
        created = bool(exists.get("error"))
        if created:
            if password is None:
                raise DynsecError(f"account {account.username} does not exist on the broker and needs a password")
            await self.command(
                "createClient",
                username=account.username,
                password=password,
                textname=account.text or account.username,
                roles=[{"rolename": account.role}],
            )
        else:
            if account.role not in _rolenames(exists, "client"):
                await self.command("addClientRole", username=account.username, rolename=account.role)
            if password is not None:
                await self.command("setClientPassword", username=account.username, password=password)
        await self.set_enabled(account.username, account.enabled)
        return created

    async def set_enabled(self, username: str, enabled: bool) -> None:
        """Disabling also disconnects the client, at once."""
        await self.command("enableClient" if enabled else "disableClient", username=username)

    async def remove(self, username: str, role: str) -> None:
        await self.command("deleteClient", ignore=["Client not found"], username=username)
        await self.command("deleteRole", ignore=["Role not found"], rolename=role)

    async def set_role(self, rolename: str, acls: Iterable[Acl]) -> None:
        """Create a role, or make an existing role's rules exactly `acls`."""
        wanted = {(a["acltype"], a["topic"]): a for a in acls}
        created = await self.command("createRole", ignore=["Role already exists"], rolename=rolename)
        have: set[tuple[str, str]] = set()
        if created.get("error"):
            current = await self.command("getRole", rolename=rolename)
            for acl in current.get("data", {}).get("role", {}).get("acls", []):
                key = (acl["acltype"], acl["topic"])
                if key in wanted and acl.get("allow") == wanted[key]["allow"]:
                    have.add(key)
                else:
                    await self.command("removeRoleACL", rolename=rolename, acltype=key[0], topic=key[1])
        for key, acl in wanted.items():
            if key not in have:
                await self.command("addRoleACL", rolename=rolename, **acl)

    async def narrow_telemetry(self) -> int:
        """Roles made by older versions allowed `telemetry/#` (any depth): make them `telemetry/+`. Returns
        how many rules were changed."""
        listing = await self.command("listRoles", verbose=True, count=-1, offset=0)
        changed = 0
        for role in listing.get("data", {}).get("roles", []):
            for acl in role.get("acls", []):
                topic = str(acl.get("topic", ""))
                if topic.endswith("/telemetry/#"):
                    rolename, acltype = role["rolename"], acl["acltype"]
                    await self.command("removeRoleACL", rolename=rolename, acltype=acltype, topic=topic)
                    narrow = {**acl, "topic": topic[:-1] + "+"}
                    await self.command(
                        "addRoleACL", ignore=["ACL with this topic already exists"], rolename=rolename, **narrow
                    )
                    changed += 1
        if changed:
            log.info("%d broker rules narrowed from telemetry/# to telemetry/+", changed)
        return changed

    async def configure_lab(self, open_mode: bool) -> None:
        """At broker start: the hub's rules as this version wants them, and the anonymous (open mode) role."""
        await self.set_role(HUB_ROLE, hub_acls())
        await self.narrow_telemetry()
        await self.set_role(OPEN_ROLE, open_acls() if open_mode else [])
        await self.command("createGroup", ignore=["Group already exists"], groupname=OPEN_GROUP)
        group = await self.command("getGroup", groupname=OPEN_GROUP)
        if OPEN_ROLE not in _rolenames(group, "group"):
            await self.command("addGroupRole", groupname=OPEN_GROUP, rolename=OPEN_ROLE)
        await self.command("setAnonymousGroup", groupname=OPEN_GROUP)


def _rolenames(response: dict[str, Any], entity: str) -> list[Any]:
    """The roles of a client or group, from the broker's answer to getClient or getGroup."""
    return [r.get("rolename") for r in response.get("data", {}).get(entity, {}).get("roles", [])]
