"""`labhub kit <cohort/learner/device> | --cohort C`: each device's ready kit (sheet, sketches, config) in a folder.

Run by the trainer on the lab's machine: passwords the lab holds in clear (declared devices, in the state dir's
credentials file) go into the kits; the registry keeps only digests of the others, so `--passwords` takes what
`labhub cohort import` or `labhub device add|rotate` printed (`username,password` lines). Kits without a password
say "the password your trainer gave you", and the command says which.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from devices.topics import DeviceRef, TopicError
from hub.access.records import RegistryError
from hub.access.registry import Registry
from hub.adapters.tls import lan_tls
from hub.cli.options import configure, lab_command
from hub.config import ConfigError, LabConfig
from hub.kits.settings import KitSettings, KitSource
from hub.kits.writer import kit_files, write_kit

if TYPE_CHECKING:
    from hub.cli.options import Subparsers

MAX_PASSWORDS_BYTES = 1 << 20


def register(sub: Subparsers) -> None:
    kit = lab_command(sub, "kit", "each device's ready kit: printable sheet, sketches, MicroPython, config", cmd_kit)
    which = kit.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="cohort/learner/device")
    which.add_argument("--cohort", help="every device of a cohort (declared and registered)")
    kit.add_argument("--out", type=Path, default=Path("labhub-kits"), help="folder to write (default ./labhub-kits)")
    kit.add_argument("--lan", action="store_true", help="kits for LAN mode (TLS with the lab CA), as `labhub up --lan`")
    kit.add_argument("--host", help="the broker's address as boards reach it (default: found from the config)")
    kit.add_argument("--port", type=int, help="the broker's port for boards (default: 1883, or 8883 in LAN mode)")
    kit.add_argument("--passwords", type=Path, help="`username,password` lines (what cohort import printed)")
    kit.add_argument("--wifi-ssid", default="", help="the classroom Wi-Fi, written into the sketches")
    kit.add_argument("--wifi-password", default="")


def read_passwords(path: Path) -> dict[str, str]:
    """`username,password` lines (a `username,password` header and other lines are skipped)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PASSWORDS_BYTES + 1)
    except OSError as err:
        raise RegistryError(f"{path}: cannot read: {err.strerror}") from None
    if len(data) > MAX_PASSWORDS_BYTES:
        raise RegistryError(f"{path}: over {MAX_PASSWORDS_BYTES} bytes")
    found = {}
    for line in data.decode("utf-8", "replace").splitlines():
        user, sep, password = line.strip().partition(",")
        if sep and user.count("/") == 2 and password and user != "username":
            found[user] = password
    return found


def lab_devices(cfg: LabConfig, registry: Registry, cohort: str | None) -> dict[DeviceRef, str]:
    """Declared and registered devices (the registry's kind wins, as in the hub) → kind."""
    found = {d.ref: d.kind for d in cfg.devices if cohort is None or d.ref.cohort == cohort}
    found |= {r.ref: r.kind for r in registry.devices(cohort)}
    return found


def cmd_kit(args: argparse.Namespace) -> int:
    cfg = configure(args)
    if args.lan:
        cfg = dataclasses.replace(cfg, lan=dataclasses.replace(cfg.lan, enabled=True))
    registry = Registry(cfg.registry_path)
    try:
        if args.id:
            try:
                ref = DeviceRef.parse(args.id)
            except TopicError as err:
                raise ConfigError(str(err)) from None
            devices = {r: k for r, k in lab_devices(cfg, registry, ref.cohort).items() if r == ref}
            if not devices:
                raise RegistryError(f"no device {ref.key}: neither declared in the config nor registered")
        else:
            devices = lab_devices(cfg, registry, args.cohort)
            if not devices:
                raise RegistryError(f"no devices in cohort {args.cohort!r}")
    finally:
        registry.close()
    source = KitSource.for_lab(cfg, lan_tls(cfg.state_dir, cfg.lan), args.host, args.port)
    extra = read_passwords(args.passwords) if args.passwords else {}
    wifi = {"wifi_ssid": args.wifi_ssid, "wifi_password": args.wifi_password}
    settings = [source.settings(ref, kind, True, extra, **wifi) for ref, kind in sorted(devices.items(), key=_key)]
    written = write_kit(args.out, kit_files(settings))
    print(report(settings, args.out, len(written)))
    return 0


def _key(item: tuple[DeviceRef, str]) -> str:
    return item[0].key


def report(settings: list[KitSettings], out: Path, files: int) -> str:
    """What was written, where the sheets are, and which kits lack a password (never a password itself)."""
    first = settings[0]
    scheme = "mqtts" if first.broker.tls else "mqtt"
    lines = [
        f"{len(settings)} device kits ({files} files) in {out}/ for {scheme}://{first.broker.host}:{first.broker.port}",
        *sorted({f"  {out / s.ref.cohort / s.ref.learner / 'sheet.html'}" for s in settings}),
        "The files hold passwords: they are readable by this account only; hand each learner their own folder.",
    ]
    missing = [s.ref.key for s in settings if s.password is None]
    if missing:
        lines += [
            f"{len(missing)} without a password (the lab keeps only digests of registered devices' passwords):",
            *(f"  {key}" for key in missing),
            "  their kits say 'the password your trainer gave you'; pass --passwords FILE (what `labhub cohort",
            "  import` printed), or give them new ones with `labhub device rotate ID` first.",
        ]
    return "\n".join(lines)
