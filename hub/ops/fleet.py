"""The lab's devices besides the hub: simulated boards, USB-serial bridges, and a phone app that drives an arm.

Each is built here and started by the lab runner (`hub.ops.lab`) or by a `labhub` command; a helper that must
never take the lab down runs under `keep_running`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import aiohttp

from devices.topics import DeviceRef
from firmware_sim.air import AirSensor
from firmware_sim.app import PhoneApp
from firmware_sim.arm import ArmFirmware
from hub.access.accounts import Accounts
from hub.access.registry import Registry
from hub.bridges.serial_bridge import Bridge
from hub.config import ARM_PROFILES, DEFAULT_ARM_PROFILE, DeviceConfig, LabConfig, SerialConfig
from hub.pace import Backoff

log = logging.getLogger("labhub")

BRIDGE_RESTART = Backoff(first_s=2.0, cap_s=2.0, jitter=False)
DEMO_APP_RESTART = Backoff(first_s=5.0, cap_s=5.0, jitter=False)
DEMO_APP_DELAY_S = 2.0  # let the arm come online first


def sim_devices(cfg: LabConfig, extra: int) -> LabConfig:
    """Declare `extra` simulated air-quality sensors `sim/learnerNN/aq1` on top of the config's devices."""
    known = {d.ref for d in cfg.devices}
    added = [DeviceConfig(DeviceRef("sim", f"learner{i:02d}", "aq1"), "air_quality", True) for i in range(1, extra + 1)]
    return dataclasses.replace(cfg, devices=cfg.devices + tuple(d for d in added if d.ref not in known))


def simulators(
    cfg: LabConfig, simulated: Sequence[DeviceConfig], credentials: Mapping[str, str]
) -> list[AirSensor | ArmFirmware]:
    """The firmware of each simulated device, logging in with its password on file (none: anonymously)."""
    fleet: list[AirSensor | ArmFirmware] = []
    for i, device in enumerate(simulated):
        password = credentials.get(device.ref.key)
        if device.kind == "arm":
            profile = ARM_PROFILES[device.profile or DEFAULT_ARM_PROFILE]
            fleet.append(ArmFirmware(device.ref, profile, cfg.mqtt.host, cfg.mqtt.port, seed=i, password=password))
        else:
            fleet.append(
                AirSensor(device.ref, cfg.mqtt.host, cfg.mqtt.port, cfg.sim.period_s, seed=i, password=password)
            )
    return fleet


async def bridge_logins(cfg: LabConfig, ports: Sequence[SerialConfig]) -> dict[DeviceRef, str]:
    """Each bridged device's bridge account, with a fresh password (the lab's broker admin makes them)."""
    registry = Registry(cfg.registry_path)
    try:
        accounts = Accounts.for_lab(cfg, registry)
        return {p.device: (await accounts.bridge_login(p.device.key)).password for p in ports}
    finally:
        registry.close()


async def make_bridges(cfg: LabConfig, ports: Sequence[SerialConfig], password: str | None = None) -> list[Bridge]:
    """A bridge per port; `password`: one given login for all (default: each device's bridge account)."""
    logins = {p.device: password for p in ports} if password else await bridge_logins(cfg, ports)
    for p in ports:
        log.info("bridging %s (%s) → %s", p.port, p.protocol, p.device.key)
    return [
        Bridge(
            p.device,
            p.port,
            p.protocol,
            p.baud or None,
            mqtt_host=cfg.mqtt.host,
            mqtt_port=cfg.mqtt.port,
            username=f"bridge/{p.device.key}",
            password=logins[p.device],
            language=cfg.language(p.device.cohort),
        )
        for p in ports
    ]


async def keep_running(
    job: Callable[[], Awaitable[None]], name: str, pause: Backoff, expected: tuple[type[Exception], ...] = ()
) -> None:
    """A helper of the lab must never take the lab down: log its failure, start it again after a pause.
    `expected` failures (the network, the hub restarting) are one line; any other comes with its traceback."""
    attempt = 0
    while True:
        try:
            await job()
            return
        except expected as err:
            delay = pause.delay(attempt)
            log.warning("%s: %s; starting again in %.0f s", name, err, delay)
        except Exception:
            delay = pause.delay(attempt)
            log.exception("%s failed; starting it again in %.0f s", name, delay)
        attempt += 1
        await asyncio.sleep(delay)


async def demo_app(base_url: str, device: str, token: str) -> None:
    """A phone app driving `device` now and then, as a learner would, until cancelled."""
    await asyncio.sleep(DEMO_APP_DELAY_S)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

        async def drive() -> None:
            await PhoneApp(base_url, device, rate_per_s=0.2, unsafe_share=0.1).run(session)

        await keep_running(drive, "demo app", DEMO_APP_RESTART, expected=(aiohttp.ClientError, OSError))
