"""The text a running lab prints once it is up: what runs where, and commands to try.

A lab screen is often projected: the banner says where passwords and tokens are, never what they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from devices.topics import DeviceRef
from hub.adapters.tls import LabTls, lan_addresses
from hub.config import DeviceConfig, LabConfig
from hub.credentials import CREDENTIALS_FILE, load_credentials, secret_path
from hub.ops.state import TRAINER_TOKEN


def lan_lines(cfg: LabConfig, tls: LabTls | None) -> list[str]:
    """LAN mode: the addresses to give boards and phones, and the lab CA they must trust (with its fingerprint,
    to check what a phone downloaded)."""
    if tls is None:
        return []
    addresses = lan_addresses(tls.names, cfg.lan)
    first = f"[{addresses[0]}]" if ":" in addresses[0] else addresses[0]
    https = f"https://{first}:{cfg.lan.https_port}"
    return [
        f"  LAN            {', '.join(addresses)}  (TLS with the lab CA; the loopback listeners above stay)",
        f"    boards       mqtts://{first}:{cfg.lan.mqtts_port}  (a device's account; trust the lab CA)",
        f"    phones       {https}/phone  (install and trust the lab CA first)",
        f"    lab CA       {https}/ca.crt  (also {tls.ca_cert})",
        f"                 SHA-256 {tls.fingerprint}",
        *(
            ["  WARNING        lan.plain: plain MQTT and HTTP on the LAN too; passwords and tokens cross it in clear"]
            if cfg.lan.plain
            else []
        ),
    ]


def banner(
    cfg: LabConfig, http_port: int, simulated: Sequence[DeviceConfig], workers: int, tls: LabTls | None = None
) -> str:
    """What runs where (in LAN mode with `tls`, the LAN's addresses and the lab CA), the declared devices' broker
    accounts, and commands to try (for stdout, not the log)."""
    example = next((d.ref for d in cfg.devices if d.kind == "air_quality"), DeviceRef("demo", "ana", "aq1"))
    arms = [d.ref for d in simulated if d.kind == "arm"]
    air = sum(1 for d in simulated if d.kind == "air_quality")
    credentials_file = cfg.state_dir / CREDENTIALS_FILE
    credentials = load_credentials(cfg.state_dir)  # only which accounts have one
    declared = [d.ref.key for d in cfg.devices if d.ref.key in credentials]
    login = f'-u {example.key} -P "$PW" ' if example.key in credentials else ""
    watch = f'-u {cfg.mqtt.username} -P "$HUBPW" ' if login else ""
    token_file = secret_path(cfg.state_dir, TRAINER_TOKEN)
    api = f"http://{cfg.hub.http_host}:{http_port}"
    mode = (
        "open (classroom): anonymous clients allowed, unknown devices stored as generic"
        if cfg.hub.open_mode
        else "closed: every device and app uses its own account"
    )
    lines = [
        "",
        "LabHub is up",
        f"  MQTT broker    {cfg.mqtt.host}:{cfg.mqtt.port}  ({mode})",
        f"  InfluxDB       {cfg.influx.url}  (database '{cfg.influx.database}')",
        f"  hub API        {api}/  (health: /healthz; API token for trainers in {token_file})",
        f"  simulated      {air} air-quality sensors, {len(arms)} arm{'s' if len(arms) != 1 else ''}",
        f"  hub workers    {workers}"
        + (f" (APIs on ports {http_port}…{http_port + workers - 1})" if workers > 1 else ""),
        *lan_lines(cfg, tls),
        f"  accounts       {len(declared)} declared devices' MQTT passwords are in {credentials_file}",
        "                 (readable by this account only; not shown here: a screen may be projected)",
        "  try:",
        *(
            [
                f"    PW=$(grep '\"{example.key}\"' {credentials_file} | cut -d'\"' -f4)",
                # One account is one connection (the broker binds client ids to usernames): watch with the
                # hub's account, publish for a moment in the board's place.
                f"    HUBPW=$(cat {cfg.secret_file(cfg.mqtt.password_file, 'mqtt-hub')})",
            ]
            if login
            else []
        ),
        f"    mosquitto_sub -p {cfg.mqtt.port} {watch}-t '{example.topic('errors')}' &",
        f"    mosquitto_pub -p {cfg.mqtt.port} {login}-t '{example.topic('telemetry')}' -m '{{\"pm25\": \"twelve\"}}'",
        f'    curl -s -H "Authorization: Bearer $(cat {token_file})" {api}/api/devices',
        *(
            [
                f'    curl -s -H "Authorization: Bearer $(cat {token_file})" -X POST '
                f"{api}/api/devices/{arms[0].key}/commands?wait=5 "
                '-d \'{"type": "move", "targets": {"base": 45}}\''
            ]
            if arms
            else []
        ),
        f"    open {api}/dashboard (the live cohort dashboard) or {api}/phone, and paste the token",
        "    labhub demo start demo/ana; …; labhub demo stop demo/ana; labhub grade --cohort demo --learner ana",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)
