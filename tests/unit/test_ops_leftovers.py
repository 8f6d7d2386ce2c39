"""Which processes a lab takes for the services a killed lab left running (hub.ops.leftovers): only its own state
dir's mosquitto and influxd, and only orphans, never those of a live labhub."""

from __future__ import annotations

from pathlib import Path

from hub.ops.leftovers import Proc, config_files, leftovers

STATE = Path("/var/lib/labhub")
MQ, DB = str(STATE / "mosquitto.conf"), str(STATE / "influxdb.conf")
INIT, PY = "/sbin/init", "/usr/bin/python3.11"


def found(*procs: Proc) -> list[int]:
    return [p.pid for p in leftovers(procs, {MQ, DB})]


def test_an_orphaned_broker_and_database_of_this_state_dir_are_leftovers() -> None:
    assert found(
        Proc(10, ("/usr/sbin/mosquitto", "-c", MQ), INIT), Proc(11, ("/usr/bin/influxd", "-config", DB), "")
    ) == [
        10,
        11,
    ]


def test_a_live_labhub_s_services_are_not() -> None:
    """Another lab on the same state dir, or a backup that started influxd: their parent is Python."""
    assert (
        found(Proc(10, ("/usr/sbin/mosquitto", "-c", MQ), PY), Proc(11, ("/usr/bin/influxd", "-config", DB), PY)) == []
    )


def test_other_state_dirs_other_programs_and_other_command_lines_are_not() -> None:
    assert (
        found(
            Proc(1, ("/usr/sbin/mosquitto", "-c", "/srv/other/mosquitto.conf"), INIT),  # another lab's
            Proc(2, ("/usr/bin/vi", "-c", MQ), INIT),  # someone editing the config
            Proc(3, ("/usr/sbin/mosquitto", "-config", MQ), INIT),  # not how the lab starts it
            Proc(4, ("/usr/sbin/mosquitto", "-c", MQ, "-v"), INIT),
            Proc(5, ("/usr/sbin/mosquitto",), INIT),
            Proc(6, (), INIT),  # a kernel thread
        )
        == []
    )


def test_the_config_files_are_the_state_dir_s_as_real_paths(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert config_files(tmp_path / "link") == {str(real / "mosquitto.conf"), str(real / "influxdb.conf")}
