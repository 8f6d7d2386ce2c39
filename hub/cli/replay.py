"""`labhub replay SESSION [--speed X] [--as c/l/d] [--device c/l/d]`: a finished demo's recorded readings, read
from InfluxDB, published again over MQTT with their original spacing, so a learner can test a new dashboard, flow
or rule against their own real demo.

Each reading is published as the device it goes to, through that device's own broker account (its password from
the lab's credentials file): the broker's access rules then confine the replay to that device's topics, exactly as
the board itself is confined, and the hub handles the readings as any device's. The hub's account could publish
anywhere, which is more than a replay needs. In an open lab, a device without a saved password connects
anonymously. The client id is the device's name (the lab listener wants client id = username): a board of that
name online at the same time is disconnected by the broker, so replay into a fresh device or switch the board off.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

from devices.topics import DeviceRef, TopicError
from hub.access.records import RegistryError
from hub.access.registry import Registry
from hub.cli.options import configure, lab_command
from hub.config import ConfigError

if TYPE_CHECKING:
    from hub.adapters.influx_read import FieldValue
    from hub.cli.options import Subparsers
    from hub.config import LabConfig
    from hub.exports.selection import Target
    from hub.replay.publish import Send

CONNECT_TIMEOUT_S = 10.0


def register(sub: Subparsers) -> None:
    p = lab_command(sub, "replay", "publish a finished demo's recorded readings again, with their spacing", cmd_replay)
    p.add_argument("session", help="demo session id (labhub demo list)")
    p.add_argument("--speed", type=float, default=1.0, help="1 = as recorded, 2 = twice as fast… (default 1)")
    p.add_argument("--device", help="replay only this recorded device (cohort/learner/device)")
    p.add_argument(
        "--as", dest="as_device", metavar="C/L/D", help="publish as this device instead (one recorded device only)"
    )


def _chosen(args: argparse.Namespace, registry: Registry) -> tuple[list[Target], tuple[int, int], dict[str, DeviceRef]]:
    from hub.exports.scopes import session_targets, session_window

    session = registry.session(args.session)
    if session is None:
        raise RegistryError(f"no demo session {args.session}")
    if session.running:
        raise RegistryError(f"demo {session.id} is still running: stop it first (labhub demo stop {session.id})")
    targets = list(session_targets(registry, session))
    if args.device:
        targets = [t for t in targets if t.ref.key == args.device]
        if not targets:
            raise RegistryError(f"demo {session.id} has no device {args.device}")
    retarget = {}
    if args.as_device:
        if len(targets) != 1:
            names = ", ".join(t.ref.key for t in targets)
            raise RegistryError(f"--as needs one recorded device: choose one with --device ({names})")
        retarget[targets[0].ref.key] = DeviceRef.parse(args.as_device)
    return targets, session_window(session, time.time_ns()), retarget


async def _recorded(
    cfg: LabConfig, targets: list[Target], window: tuple[int, int]
) -> list[tuple[DeviceRef, int, dict[str, FieldValue]]]:
    from hub.adapters.influx import lab_backend
    from hub.replay.source import recorded_readings

    db = lab_backend(cfg)
    await db.start()
    try:
        return [(t.ref, ts, f) for t in targets for ts, f in await recorded_readings(db, t, *window)]
    finally:
        await db.close()


def _progress(sent: int, total: int, elapsed: float, total_s: float) -> None:
    print(
        f"\rreplay: {sent}/{total} readings, {elapsed:6.1f} s of {total_s:.1f} s", end="", file=sys.stderr, flush=True
    )


async def _ensure_device(cfg: LabConfig, ref: DeviceRef, kind: str) -> None:
    """`--as` a device that does not exist yet: registered here (the recorded device's kind), its password kept
    in the lab's credentials file like a declared device's, so the replay can log in as it. An existing device
    whose password was only shown (`labhub device add`) is not touched: rotating it would cut its board off."""
    from hub.access.accounts import Accounts
    from hub.credentials import save_credentials
    from hub.runtime import REGISTRY_POLL_S

    if cfg.hub.open_mode:
        return
    registry = Registry(cfg.registry_path)
    try:
        if registry.device(ref) is not None:
            return
        made = await Accounts.for_lab(cfg, registry).add_device(ref.key, kind, None, "replay target (labhub replay)")
        save_credentials(cfg.state_dir, {made.username: made.password})
        print(f"registered {ref.key} ({kind}) for the replay", file=sys.stderr)
        # The hub reads the registry every REGISTRY_POLL_S: until it has, it would refuse the device's first
        # readings as those of a device the lab does not know.
        await asyncio.sleep(2 * REGISTRY_POLL_S)
    finally:
        registry.close()


async def _publish(cfg: LabConfig, sends: list[Send]) -> int:
    from hub.adapters.mqtt import MqttClient
    from hub.credentials import load_credentials
    from hub.replay.publish import play

    passwords = load_credentials(cfg.state_dir)
    clients = {}
    for key in sorted({s.target for s in sends}):
        password = passwords.get(key)
        if password is None and not cfg.hub.open_mode:
            raise ConfigError(
                f"no password for {key} in the lab's credentials (`labhub device add` shows it once and keeps it "
                "nowhere): replay --as a new name, which is registered for the replay"
            )
        user = key if password is not None else None
        clients[key] = MqttClient(cfg.mqtt.host, cfg.mqtt.port, key, username=user, password=password)
    async with asyncio.TaskGroup() as group:
        for client in clients.values():
            group.create_task(client.run())
        try:
            for key, client in clients.items():
                try:
                    await client.wait_connected(CONNECT_TIMEOUT_S)
                except TimeoutError:
                    raise ConfigError(f"{key} could not connect to the broker: {client.last_error}") from None
            sent = await play(sends, lambda s: clients[s.target].publish(s.topic, s.payload, qos=1), _progress)
            print(file=sys.stderr)
        finally:
            for client in clients.values():
                await client.stop(timeout=5.0)
    return sent


def cmd_replay(args: argparse.Namespace) -> int:
    from hub.replay.publish import plan

    if not args.speed > 0:
        raise ConfigError("--speed must be above 0")
    cfg = configure(args)
    registry = Registry(cfg.registry_path)
    try:
        targets, window, retarget = _chosen(args, registry)
    except TopicError as err:
        raise ConfigError(f"labhub replay: {err}") from None
    finally:
        registry.close()
    recorded = asyncio.run(_recorded(cfg, targets, window))
    sends = plan(recorded, args.speed, retarget)
    for recorded_key, fresh in retarget.items():
        asyncio.run(_ensure_device(cfg, fresh, next(t.kind.name for t in targets if t.ref.key == recorded_key)))
    if not sends:
        print(f"demo {args.session}: no readings stored to replay", file=sys.stderr)
        return 1
    sent = asyncio.run(_publish(cfg, sends))
    who = ", ".join(sorted({s.target for s in sends}))
    print(
        f"replayed {sent} of {len(sends)} readings of demo {args.session} as {who} at {args.speed:g}x", file=sys.stderr
    )
    return 0 if sent == len(sends) else 1
