"""Which config a command uses, what the LABHUB_* variables change, and what `labhub init` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli.main import main, parser
from hub.cli.options import configure
from hub.cli.setup import initial_config
from hub.config import EXAMPLE_CONFIG, ConfigError, env_overrides, find_config, load_config, user_config_path


def test_the_command_line_wins_then_the_variable_then_the_written_config_then_the_example(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    written = tmp_path / "xdg" / "labhub" / "labhub.toml"
    assert find_config(None, env, root=False) == EXAMPLE_CONFIG  # nothing written yet: the demo lab
    written.parent.mkdir(parents=True)
    written.write_text("")
    assert find_config(None, env, root=False) == written
    assert find_config(None, {**env, "LABHUB_CONFIG": "/srv/lab.toml"}, root=False) == Path("/srv/lab.toml")
    assert find_config(Path("given.toml"), {**env, "LABHUB_CONFIG": "/srv/lab.toml"}, root=False) == Path("given.toml")


def test_root_keeps_its_config_in_etc_and_users_in_their_config_home(tmp_path: Path) -> None:
    assert user_config_path({}, root=True) == Path("/etc/labhub/labhub.toml")
    assert user_config_path({"XDG_CONFIG_HOME": "/x"}, root=False) == Path("/x/labhub/labhub.toml")
    assert user_config_path({"HOME": "/home/ana"}, root=False) == Path("/home/ana/.config/labhub/labhub.toml")


def test_the_packaged_example_is_the_demo_lab_with_its_arm_profile() -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    arms = [d for d in cfg.devices if d.kind == "arm"]
    assert arms and arms[0].profile == "mearm" and not cfg.lan.enabled


def test_variables_set_ports_and_the_state_dir(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    env = {
        "LABHUB_STATE_DIR": str(tmp_path),
        "LABHUB_MQTT_PORT": "2883",
        "LABHUB_HTTP_PORT": "9080",
        "LABHUB_INFLUX_PORT": "9086",
        "LABHUB_INFLUX_RPC_PORT": "9089",
        "LABHUB_MQTTS_PORT": "9883",
        "LABHUB_HTTPS_PORT": "9443",
    }
    got = env_overrides(cfg, env)
    assert got.state_dir == tmp_path and got.mqtt.port == 2883 and got.hub.http_port == 9080
    assert got.influx.url == "http://127.0.0.1:9086" and got.influx.rpc_port == 9089
    assert (got.lan.mqtts_port, got.lan.https_port) == (9883, 9443)
    assert env_overrides(cfg, {"LABHUB_MQTT_PORT": " "}) == cfg  # unset and empty are the same


@pytest.mark.parametrize("value", ["0", "65536", "http", "-1", "18 83"])
def test_a_bad_port_variable_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match=r"\$LABHUB_HTTP_PORT: expected a TCP port"):
        env_overrides(load_config(EXAMPLE_CONFIG), {"LABHUB_HTTP_PORT": value})


def test_the_command_line_overrides_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABHUB_MQTT_PORT", "2883")
    monkeypatch.setenv("LABHUB_HTTP_PORT", "9080")
    monkeypatch.setenv("LABHUB_CONFIG", str(EXAMPLE_CONFIG))
    args = parser().parse_args(["hub", "--mqtt-port", "3883", "--state-dir", str(tmp_path)])
    cfg = configure(args)
    assert cfg.mqtt.port == 3883 and cfg.hub.http_port == 9080 and cfg.state_dir == tmp_path
    assert args.config == EXAMPLE_CONFIG  # workers get the same file


def test_init_writes_an_editable_config_that_loads_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "labhub.toml"
    assert main(["init", "--to", str(target)]) == 0
    assert target.read_text() == EXAMPLE_CONFIG.read_text()
    target.write_text(target.read_text() + "\n# the trainer's edit\n")
    assert main(["init", "--to", str(target)]) == 1  # kept
    assert target.read_text().endswith("# the trainer's edit\n")
    assert main(["init", "--to", str(target), "--lan", "--force"]) == 0
    lan = load_config(target).lan
    assert lan.enabled and (lan.mqtts_port, lan.https_port) == (8883, 8443)
    assert load_config(target).devices == load_config(EXAMPLE_CONFIG).devices


def test_init_lan_only_switches_the_lan_on() -> None:
    plain, lan = initial_config(False), initial_config(True)
    assert plain.replace("[lan]\nenabled = false", "[lan]\nenabled = true") == lan


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"labhub {version('labhub')}"
