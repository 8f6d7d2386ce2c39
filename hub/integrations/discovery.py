"""The hub's Home Assistant discovery publisher: keeps the broker's retained configs equal to what the lab declares.

A reconciler with its own connection (the hub's account, a random client id). It subscribes to every sensor
config under the discovery prefix, so it always knows which of this lab's configs the broker retains, and to
a private sync topic: mosquitto delivers a subscription's retained messages before anything published after
its SUBACK, so once our own QoS 1 sync message comes back the retained set is complete. Then, and on every
registry change, it publishes the configs that are missing or differ and clears (empty retained payload) the
ones no longer wanted: a removed device, a cohort whose `home_assistant` was turned off, a field a kind lost.

A device that sends a field on `telemetry/<field>` gets that sensor's state topic moved there; the choice is
remembered in the retained config itself, so a restart keeps it. Only worker 0 runs it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable, Mapping

from devices.arm import ArmProfile
from devices.topics import ROOT, DeviceRef, TopicError, parse_topic
from hub.access.dynsec import DISCOVERY_PREFIX
from hub.access.registry import Registry
from hub.adapters.mqtt import Message, MqttClient
from hub.config import ARM_PROFILES, DeviceConfig, LabConfig
from hub.credentials import read_secret
from hub.integrations.homeassistant import NotDiscoverable, device_configs, is_ours, sensor_fields, state_topic_of

log = logging.getLogger(__name__)

POLL_S = 0.5  # how soon a registry change reaches Home Assistant
SYNC_TIMEOUT_S = 10.0
CONFIGS = f"{DISCOVERY_PREFIX}/sensor/+/+/config"


def declared_devices(cfg: LabConfig, registry: Registry) -> list[DeviceConfig]:
    """The lab's devices as the hub sees them: the config's, then the registry's (which win, as in the hub)."""
    declared = {d.ref: d for d in cfg.devices}
    for record in registry.devices():
        declared[record.ref] = DeviceConfig(record.ref, record.kind, False, record.profile)
    return list(declared.values())


def wanted_configs(
    devices: Iterable[DeviceConfig],
    cohorts: frozenset[str],
    profiles: Mapping[str, ArmProfile],
    per_field: Mapping[DeviceRef, Iterable[str]],
) -> tuple[dict[str, bytes], dict[DeviceRef, str]]:
    """The retained configs the broker should hold, by topic, and the devices skipped (with the reason)."""
    wanted: dict[str, bytes] = {}
    skipped: dict[DeviceRef, str] = {}
    for device in devices:
        if device.ref.cohort not in cohorts:
            continue
        try:
            wanted |= device_configs(device, profiles, per_field.get(device.ref, ()))
        except NotDiscoverable as err:
            skipped[device.ref] = str(err)
    return wanted, skipped


def plan(wanted: Mapping[str, bytes], retained: Mapping[str, bytes]) -> dict[str, bytes]:
    """What to publish (retained) so the broker holds exactly `wanted` of our configs; b"" clears one."""
    changes = {topic: payload for topic, payload in wanted.items() if retained.get(topic) != payload}
    changes |= {topic: b"" for topic in retained if topic not in wanted and is_ours(topic)}
    return changes


class Discovery:
    """`await Discovery(cfg, registry).run()`: runs until cancelled."""

    def __init__(self, cfg: LabConfig, registry: Registry) -> None:
        self.cfg = cfg
        self.registry = registry
        self.cohorts = cfg.home_assistant
        self.retained: dict[str, bytes] = {}  # our configs the broker holds (as far as it has told us)
        self.sent: dict[str, bytes] = {}  # published on this connection, not yet echoed
        self.per_field: dict[DeviceRef, set[str]] = {}
        self.failures = 0
        self.published = 0
        self._sync = f"{DISCOVERY_PREFIX}/labhub/sync-{secrets.token_hex(6)}"
        self._synced = asyncio.Event()
        self._dirty = True
        self._fields: dict[DeviceRef, frozenset[str]] = {}
        subscriptions = [(CONFIGS, 1), (self._sync, 1)]
        subscriptions += [(f"{ROOT}/{cohort}/+/+/telemetry/+", 0) for cohort in sorted(self.cohorts)]
        password = read_secret(cfg.secret_file(cfg.mqtt.password_file, "mqtt-hub")) if cfg.mqtt.username else None
        self.client = MqttClient(
            cfg.mqtt.hub_host,
            cfg.mqtt.hub_port,
            f"{cfg.mqtt.client_id}-ha-{secrets.token_hex(6)}",  # the hub's prefix: the doctor keeps it private
            on_message=self._on_message,
            on_connect=self._on_connect,
            subscriptions=subscriptions,
            username=cfg.mqtt.username if password else None,
            password=password,
        )

    def _on_connect(self) -> None:
        """A new session: the broker sends the retained configs again; what we sent may not have arrived."""
        self.retained.clear()
        self.sent.clear()
        self._synced.clear()

    def _on_message(self, msg: Message) -> None:
        try:
            self._receive(msg)
        except Exception:  # the boundary: one message never stops the publisher
            self.failures += 1
            log.exception("Home Assistant discovery: message on %r not handled", msg.topic[:200])

    def _receive(self, msg: Message) -> None:
        if msg.topic == self._sync:
            self._synced.set()
        elif msg.topic.startswith(DISCOVERY_PREFIX + "/"):
            if not is_ours(msg.topic):
                return
            if msg.payload:
                self.retained[msg.topic] = msg.payload
                for ref, fields in self._remembered_split(msg.topic, msg.payload):
                    self.per_field.setdefault(ref, set()).update(fields)
            else:
                self.retained.pop(msg.topic, None)
            if self.sent.get(msg.topic) == msg.payload:
                del self.sent[msg.topic]
        else:
            self._field_topic(msg.topic)

    def _remembered_split(self, topic: str, payload: bytes) -> list[tuple[DeviceRef, set[str]]]:
        """A retained config whose state topic is `…/telemetry/<field>`: that device sends the field alone."""
        state = state_topic_of(payload)
        if state is None:
            return []
        try:
            parsed = parse_topic(state)
        except TopicError:
            return []
        return [(parsed.ref, {parsed.field})] if parsed.channel == "telemetry" and parsed.field else []

    def _field_topic(self, topic: str) -> None:
        """A reading on `telemetry/<field>` of a device whose sensors we announce: move that sensor there."""
        try:
            parsed = parse_topic(topic)
        except TopicError:
            return
        field = parsed.field
        if field is None or field not in self._fields.get(parsed.ref, frozenset()):
            return  # bounded: only the declared fields of declared devices are remembered
        seen = self.per_field.setdefault(parsed.ref, set())
        if field not in seen:
            seen.add(field)
            self._dirty = True

    def reconcile(self) -> int:
        """Publish what differs from the wanted configs; returns how many messages were sent."""
        devices = declared_devices(self.cfg, self.registry)
        self._fields = {}
        for device in devices:
            if device.ref.cohort in self.cohorts:
                try:
                    profile = ARM_PROFILES.get(device.profile) if device.profile else None
                    self._fields[device.ref] = frozenset(f.name for f in sensor_fields(device.kind, profile))
                except NotDiscoverable:
                    pass
        wanted, skipped = wanted_configs(devices, self.cohorts, ARM_PROFILES, self.per_field)
        for ref, reason in skipped.items():
            log.debug("Home Assistant: no sensors for %s: %s", ref.key, reason)
        count = 0
        for topic, payload in plan(wanted, self.retained).items():
            if self.sent.get(topic) == payload:
                continue  # on its way
            self.client.publish(topic, payload, qos=1, retain=True)
            self.sent[topic] = payload
            count += 1
        self.published += count
        if count:
            log.info("Home Assistant discovery: %d configs published or cleared", count)
        return count

    async def run(self) -> None:
        task = asyncio.create_task(self.client.run(), name="home-assistant-mqtt")
        try:
            version = None
            connects = -1
            while True:
                if connects != self.client.connects or not self._synced.is_set():
                    try:
                        await self.client.wait_connected(60)
                    except TimeoutError:
                        continue  # the broker is away: the client keeps trying
                    connects = self.client.connects
                    self.client.publish(self._sync, b"", qos=1)
                    try:
                        async with asyncio.timeout(SYNC_TIMEOUT_S):  # not wait_for: it may swallow a cancellation
                            await self._synced.wait()
                    except TimeoutError:
                        log.warning("Home Assistant discovery: the broker did not return the retained configs")
                        continue
                    self._dirty = True
                if self._dirty or self.registry.version() != version:
                    version = self.registry.version()
                    self._dirty = False
                    try:
                        self.reconcile()
                    except Exception:  # a registry read that failed: try again at the next change or poll
                        self.failures += 1
                        self._dirty = True
                        log.exception("Home Assistant discovery: configs not brought up to date")
                await asyncio.sleep(POLL_S)
        finally:
            await self.client.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def home_assistant(cfg: LabConfig, registry: Registry, worker: int = 0) -> None:
    """The hub's wiring: worker 0 keeps the discovery configs (and clears them all when no cohort opts in)."""
    if worker == 0:
        await Discovery(cfg, registry).run()
