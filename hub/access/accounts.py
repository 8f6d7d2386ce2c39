"""Registry changes together with their broker accounts: the one place that keeps the two in step.

Used by the `labhub device|learner|cohort` commands and by the hub's trainer API alike. Each change is made
on the broker first and then recorded, so a registry entry never claims an account the broker does not
have. New passwords are returned to the caller once and never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devices.topics import DeviceRef
from hub.access.cohort_csv import ImportLine
from hub.access.dynsec import (
    Account,
    Dynsec,
    DynsecError,
    bridge_account,
    bridge_role,
    bridge_username,
    device_account,
    device_role,
    learner_account,
    learner_role,
    learner_username,
)
from hub.access.records import DeviceRecord, LearnerRecord, RegistryError, check_device, check_learner
from hub.access.registry import Registry
from hub.config import ARM_PROFILES, DeviceConfig, LabConfig
from hub.credentials import new_password, read_secret

log = logging.getLogger(__name__)
PROFILES = frozenset(ARM_PROFILES)


@dataclass(frozen=True, slots=True)
class Credential:
    """An account's new password, shown once."""

    username: str
    password: str


class Accounts:
    def __init__(self, registry: Registry, host: str, port: int, admin_password_file: Path) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.admin_password_file = admin_password_file

    @classmethod
    def for_lab(cls, cfg: LabConfig, registry: Registry) -> Accounts:
        """The admin connects to the broker's internal listener: a full lab listener never locks it out."""
        admin_password_file = cfg.secret_file(cfg.mqtt.admin_password_file, "mqtt-admin")
        return cls(registry, cfg.mqtt.hub_host, cfg.mqtt.hub_port, admin_password_file)

    def broker(self) -> Dynsec:
        password = read_secret(self.admin_password_file)
        if password is None:
            raise DynsecError(
                f"no broker admin password in {self.admin_password_file}: this lab's broker was not started by "
                "labhub (set mqtt.admin_password_file)"
            )
        return Dynsec(self.host, self.port, password)

    async def _new_password(self, account: Account) -> str:
        """Make or update `account` on the broker with a fresh password, in a session of its own."""
        async with self.broker() as sec:
            return await _with_new_password(sec, account)

    # Devices ---------------------------------------------------------------------------------------

    async def add_device(self, key: str, kind: str, profile: str | None = None, description: str = "") -> Credential:
        ref, profile = check_device(key, kind, profile, PROFILES)
        if self.registry.device(ref) is not None:
            raise RegistryError(f"device {ref.key} is already registered (rotate its password to get a new one)")
        # The registry row first: its primary key makes two simultaneous adds (a CLI and the API) one winner,
        # so nobody is handed a password the other then overwrote. It goes again if the broker says no.
        self.registry.add_device(ref, kind, profile, description)
        try:
            password = await self._new_password(device_account(ref, text=description))
        except BaseException:
            self.registry.remove_device(ref)
            raise
        log.info("device %s registered (%s); its account can connect now", ref.key, kind)
        return Credential(ref.key, password)

    def _known(self, key: str) -> DeviceRecord:
        ref = _ref(key)
        record = self.registry.device(ref)
        if record is None:
            raise RegistryError(f"no device {ref.key} in the registry")
        return record

    async def set_device_enabled(self, key: str, enabled: bool) -> None:
        record = self._known(key)
        async with self.broker() as sec:
            await sec.set_enabled(record.ref.key, enabled)
            if (await sec.command("getClient", ignore=["Client not found"], username=bridge_username(record.ref))).get(
                "data"
            ):
                await sec.set_enabled(bridge_username(record.ref), enabled)  # its serial bridge too
        self.registry.set_device_enabled(record.ref, enabled)
        log.info("device %s %s", record.ref.key, "enabled" if enabled else "disabled (and disconnected)")

    async def rotate_device(self, key: str) -> Credential:
        record = self._known(key)
        password = await self._new_password(device_account(record.ref, record.enabled, record.description))
        self.registry.device_rotated(record.ref)
        log.info("device %s has a new password; the old one no longer works", record.ref.key)
        return Credential(record.ref.key, password)

    async def remove_device(self, key: str) -> None:
        record = self._known(key)
        async with self.broker() as sec:
            await sec.remove(record.ref.key, device_role(record.ref))
            await sec.remove(bridge_username(record.ref), bridge_role(record.ref))
        self.registry.remove_device(record.ref)
        log.info("device %s removed (its stored readings stay in InfluxDB)", record.ref.key)

    async def bridge_login(self, key: str) -> Credential:
        """A serial bridge's account for a registered device, with a fresh password (kept in memory by the
        bridge only: every start makes a new one)."""
        record = self._known(key)
        if not record.enabled:
            raise RegistryError(f"device {record.ref.key} is disabled")
        password = await self._new_password(bridge_account(record.ref))
        return Credential(bridge_username(record.ref), password)

    # Learners --------------------------------------------------------------------------------------

    async def add_learner(self, key: str) -> Credential:
        """A learner's own MQTT account, for an MQTT phone app (the learner row may exist already)."""
        cohort, learner = check_learner(key)
        existing = self.registry.learner(cohort, learner)
        if existing is not None and existing.has_account:
            raise RegistryError(f"learner {key} already has an account (rotate its password to get a new one)")
        password = await self._new_password(learner_account(cohort, learner))
        self.registry.set_learner_account(cohort, learner)
        return Credential(learner_username(cohort, learner), password)

    async def rotate_learner(self, key: str) -> Credential:
        cohort, learner = check_learner(key)
        record = self.registry.learner(cohort, learner)
        if record is None or not record.has_account:
            raise RegistryError(f"learner {key} has no MQTT account (add one with `labhub learner add {key}`)")
        password = await self._new_password(learner_account(cohort, learner, record.enabled))
        return Credential(record.key, password)

    async def set_learner_enabled(self, key: str, enabled: bool) -> None:
        """A disabled learner's account and all their devices are cut off."""
        record, devices = self._known_learner(key)
        async with self.broker() as sec:
            if record.has_account:
                await sec.set_enabled(record.key, enabled)
            for device in devices:
                await sec.set_enabled(device.ref.key, enabled)
        self.registry.set_learner_enabled(record.cohort, record.learner, enabled)
        for device in devices:
            self.registry.set_device_enabled(device.ref, enabled)

    async def remove_learner(self, key: str) -> None:
        record, devices = self._known_learner(key)
        async with self.broker() as sec:
            for device in devices:
                await sec.remove(device.ref.key, device_role(device.ref))
            await sec.remove(record.key, learner_role(record.cohort, record.learner))
        for device in devices:
            self.registry.remove_device(device.ref)
        self.registry.remove_learner(record.cohort, record.learner)

    def _known_learner(self, key: str) -> tuple[LearnerRecord, list[DeviceRecord]]:
        cohort, learner = check_learner(key)
        record = self.registry.learner(cohort, learner)
        if record is None:
            raise RegistryError(f"no learner {key} in the registry")
        return record, self.registry.learner_devices(cohort, learner)

    # Bulk --------------------------------------------------------------------------------------------

    async def import_lines(self, lines: Iterable[ImportLine], learner_accounts: bool = True) -> list[Credential]:
        """A cohort from its CSV: every learner (with an MQTT account) and device that is new gets an account;
        ones already registered are left as they are."""
        made: list[Credential] = []
        async with self.broker() as sec:
            for line in lines:
                existing = self.registry.learner(line.cohort, line.learner)
                if learner_accounts and (existing is None or not existing.has_account):
                    account = learner_account(line.cohort, line.learner)
                    password = await _with_new_password(sec, account)
                    self.registry.set_learner_account(line.cohort, line.learner)
                    made.append(Credential(account.username, password))
                if line.device is not None and self.registry.device(line.device) is None:
                    password = await _with_new_password(sec, device_account(line.device, text=line.description))
                    self.registry.add_device(line.device, line.kind, line.profile, line.description)
                    made.append(Credential(line.device.key, password))
        return made

    async def import_config(self, declared: Iterable[DeviceConfig]) -> list[Credential]:
        """The lab config's declared devices: new ones are registered with a fresh account; a changed kind or
        profile in the config wins over the registry."""
        made: list[Credential] = []
        todo = []
        for device in declared:
            record = self.registry.device(device.ref)
            if record is None:
                todo.append(device)
            elif (record.kind, record.profile) != (device.kind, device.profile):
                self.registry.update_device(device.ref, device.kind, device.profile)
        if not todo:
            return made
        async with self.broker() as sec:
            for device in todo:
                password = await _with_new_password(sec, device_account(device.ref))
                self.registry.add_device(device.ref, device.kind, device.profile, from_config=True)
                made.append(Credential(device.ref.key, password))
        return made


async def _with_new_password(sec: Dynsec, account: Account) -> str:
    """New passwords are returned to be shown once, never logged."""
    password = new_password()
    await sec.ensure(account, password)
    return password


def _ref(key: str) -> DeviceRef:
    ref, _ = check_device(key, "generic", None, PROFILES)
    return ref
