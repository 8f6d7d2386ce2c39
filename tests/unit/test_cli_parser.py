"""The `labhub` command line without running anything: what each command parses to, the config its options make,
the extra workers' command lines and the serial ports a bridge is given."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pytest

from devices.topics import DeviceRef
from hub.cli import accounts, backup, bridge, demos, doctor, kit, lifecycle, replay, run, service, showcase, sim, tokens
from hub.cli.bridge import bridged_ports
from hub.cli.main import main, parser, worker_tag
from hub.cli.options import configure
from hub.cli.run import worker_argv
from hub.config import ConfigError, SerialConfig, load_config
from hub.ops.influxd import INFLUX_HUB

COMMANDS = [
    (["up"], run.cmd_up, None),
    (["hub"], run.cmd_hub, None),
    (["service", "install"], service.cmd_service, "install"),
    (["service", "status"], service.cmd_service, "status"),
    (["service", "uninstall"], service.cmd_service, "uninstall"),
    (["serial-bridge"], bridge.cmd_serial_bridge, None),
    (["device", "add", "c/l/d"], accounts.cmd_accounts, "device_add"),
    (["device", "list"], accounts.cmd_accounts, "device_list"),
    (["device", "disable", "c/l/d"], accounts.cmd_accounts, "device_disable"),
    (["device", "enable", "c/l/d"], accounts.cmd_accounts, "device_enable"),
    (["device", "rotate", "c/l/d"], accounts.cmd_accounts, "device_rotate"),
    (["device", "remove", "c/l/d"], accounts.cmd_accounts, "device_remove"),
    (["learner", "add", "c/l"], accounts.cmd_accounts, "learner_add"),
    (["learner", "disable", "c/l"], accounts.cmd_accounts, "learner_disable"),
    (["learner", "enable", "c/l"], accounts.cmd_accounts, "learner_enable"),
    (["learner", "rotate", "c/l"], accounts.cmd_accounts, "learner_rotate"),
    (["learner", "remove", "c/l"], accounts.cmd_accounts, "learner_remove"),
    (["learner", "list"], accounts.cmd_accounts, "learner_list"),
    (["cohort", "import", "x.csv"], accounts.cmd_accounts, "cohort_import"),
    (["cohort", "archive", "c", "dir"], lifecycle.cmd_archive, None),
    (["cohort", "purge", "c", "--yes"], lifecycle.cmd_purge, None),
    (["demo", "start", "c/l"], demos.cmd_demo, "start"),
    (["demo", "stop", "c/l"], demos.cmd_demo, "stop"),
    (["demo", "list"], demos.cmd_demo, "list"),
    (["grade", "--cohort", "c"], demos.cmd_grade, None),
    (["replay", "abc", "--speed", "2", "--as", "c/l/d"], replay.cmd_replay, None),
    (["showcase", "publish", "c/l", "--title", "t", "--plot", "c/l/d:f"], showcase.cmd_showcase, "publish"),
    (["showcase", "approve", "s-1", "--no-public"], showcase.cmd_showcase, "approve"),
    (["showcase", "list"], showcase.cmd_showcase, "list"),
    (["showcase", "revoke", "s-1"], showcase.cmd_showcase, "revoke"),
    (["token", "add", "--role", "viewer", "--scope", "*"], tokens.cmd_token, "add"),
    (["token", "list"], tokens.cmd_token, "list"),
    (["token", "revoke", "abc"], tokens.cmd_token, "revoke"),
    (["kit", "c/l/d"], kit.cmd_kit, None),
    (["kit", "--cohort", "c", "--out", "kits"], kit.cmd_kit, None),
    (["backup", "dir"], backup.cmd_backup, None),
    (["restore", "dir"], backup.cmd_restore, None),
    (["doctor", "c/l/d", "--json"], doctor.cmd_doctor, None),
    (["sim", "air"], sim.cmd_sim_air, None),
    (["sim", "arm"], sim.cmd_sim_arm, None),
    (["sim", "serial"], sim.cmd_sim_serial, None),
]


@pytest.mark.parametrize(("argv", "func", "action"), COMMANDS, ids=[" ".join(c[0][:2]) for c in COMMANDS])
def test_each_command_reaches_its_handler_with_its_action(argv: list[str], func: object, action: str | None) -> None:
    args = parser().parse_args(argv)
    assert args.func is func
    assert getattr(args, "action", None) == action


def test_help_lists_the_commands_in_their_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    names = [
        "init",
        "up",
        "hub",
        "service",
        "backup",
        "restore",
        "serial-bridge",
        "device",
        "learner",
        "cohort",
        "demo",
        "grade",
        "replay",
        "showcase",
        "export",
        "token",
        "kit",
        "influx",
        "doctor",
        "sim",
    ]
    listed = [line.split()[0] for line in out.splitlines() if len(line) - len(line.lstrip()) == 4]
    assert listed == names


@pytest.mark.parametrize(
    "argv",
    [[], ["device"], ["up", "--open", "--closed"], ["token", "add", "--role", "admin", "--scope", "*"], ["nope"]],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args(argv)
    assert done.value.code == 2
    assert "usage: labhub" in capsys.readouterr().err


def test_log_lines_name_the_worker_only_when_there_are_several() -> None:
    assert worker_tag(argparse.Namespace()) == ""
    assert worker_tag(argparse.Namespace(worker=0, workers=1)) == ""
    assert worker_tag(argparse.Namespace(workers=3)) == "w0 "
    assert worker_tag(argparse.Namespace(worker=2, workers=3)) == "w2 "


def test_a_config_error_exits_2_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "lab.toml"
    bad.write_text('[mqtt]\nport = "1883"\n')
    assert main(["token", "list", "--config", str(bad)]) == 2
    assert "mqtt.port: expected int" in caplog.text


def test_lab_options_override_the_config(tmp_path: Path) -> None:
    ports = ["--mqtt-port", "2883", "--influx-port", "9086", "--influx-rpc-port", "9089", "--http-port", "0"]
    args = parser().parse_args(["up", "--state-dir", str(tmp_path), *ports, "--open"])
    cfg = configure(args)
    assert cfg.state_dir == tmp_path
    assert cfg.mqtt.port == 2883
    assert cfg.influx.url == "http://127.0.0.1:9086" and cfg.influx.rpc_port == 9089
    assert cfg.hub.http_port == 0  # 0 is a port choice (any free one), not "unset"
    assert cfg.hub.open_mode is True
    assert cfg.influx.username == INFLUX_HUB  # the influxd `up` launches has auth: the hub logs in as its user
    assert configure(parser().parse_args(["up", "--closed"])).hub.open_mode is False


def test_without_options_the_config_file_rules() -> None:
    shipped = load_config()
    cfg = configure(parser().parse_args(["hub"]))
    assert (cfg.mqtt, cfg.hub, cfg.state_dir) == (shipped.mqtt, shipped.hub, shipped.state_dir)
    assert cfg.influx.url == shipped.influx.url and cfg.influx.rpc_port == shipped.influx.rpc_port


def test_an_extra_worker_runs_labhub_hub_with_this_labs_settings(tmp_path: Path) -> None:
    ports = ["--mqtt-port", "2883", "--influx-port", "9086", "--http-port", "8100"]
    args = parser().parse_args(["up", "--state-dir", str(tmp_path), *ports, "--workers", "3", "--closed"])
    cfg = configure(args)
    assert worker_argv(args, cfg, 2, 5) == (
        *(sys.executable, "-m", "hub.cli", "hub", "--config", str(args.config), "--state-dir", str(tmp_path)),
        *("--mqtt-port", "2883", "--influx-port", "9086", "--http-port", "8100", "--sim-count", "5"),
        *("--worker", "2", "--workers", "3", "--closed"),
    )
    no_sim = parser().parse_args(["up", "--no-sim", "--open", "--state-dir", str(tmp_path)])
    argv = worker_argv(no_sim, configure(no_sim), 1, 5)
    assert argv[argv.index("--sim-count") + 1] == "0" and argv[-1] == "--open"
    assert argv[argv.index("--influx-port") + 1] == "8086"  # the config's URL has no port: InfluxDB's default


def bridge_args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["serial-bridge", *argv])


def test_a_bridge_takes_the_named_port_or_the_configs() -> None:
    cfg = load_config()
    ref = DeviceRef("demo", "ana", "uno")
    assert bridged_ports(bridge_args("--port", "loop://", "--device", ref.key), cfg) == [
        SerialConfig("loop://", ref, "lines", 0)
    ]
    assert bridged_ports(
        bridge_args("--port", "/dev/ttyUSB0", "--device", ref.key, "--protocol", "sds011", "--baud", "9600"), cfg
    ) == [SerialConfig("/dev/ttyUSB0", ref, "sds011", 9600)]
    entry = SerialConfig("/dev/ttyACM0", ref, "lines", 0)
    assert bridged_ports(bridge_args(), dataclasses.replace(cfg, serial=(entry,))) == [entry]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "no --port given and no [[serial]] entries"),
        (("--port", "loop://"), "--port needs --device"),
        (("--port", "loop://", "--device", "demo/ana"), "--device: "),
        (("--port", "loop://", "--device", "demo/ana/uno", "--baud", "0"), "--baud: expected a positive rate"),
    ],
)
def test_a_bridge_refuses_what_it_cannot_bridge(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        bridged_ports(bridge_args(*argv), load_config())
