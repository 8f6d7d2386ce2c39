"""Kits without services: what each artefact says equals the device's settings (sheet, QR payload, config.json,
secrets.py, secrets.h), passwords only where the caller may see them, `labhub kit` on a lab's files, and the API
route's answers per token. The firmware itself is compiled and run in test_kit_firmware.py and
tests/integration/test_kit.py."""

from __future__ import annotations

import io
import json
import ssl
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import segno
from aiohttp.test_utils import TestClient, TestServer

from devices.decode import decode_payload
from devices.kinds import KINDS
from devices.topics import DeviceRef
from devices.validate import validate
from hub.access.registry import Registry
from hub.adapters.tls import ensure_tls
from hub.cli.main import main
from hub.config import HubConfig, LanConfig
from hub.credentials import CREDENTIALS_FILE, save_credentials
from hub.kits.arduino import c_string, secrets_h
from hub.kits.qr import qr_payload, qr_svg
from hub.kits.settings import (
    PASSWORD_PLACEHOLDER,
    Broker,
    KitSettings,
    KitSource,
    board_address,
    make_settings,
    settings_json,
)
from hub.kits.sheet import sheet
from hub.kits.writer import ESP_SECRETS, MICROPYTHON_MAIN, MICROPYTHON_SECRETS, device_files, kit_files, kit_zip
from hub.web.app import create_app
from tests.unit.test_web_routes import fake_deps

AQ1 = DeviceRef("demo", "ana", "aq1")


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real lab CA, made as LAN mode makes it."""
    return ensure_tls(tmp_path_factory.mktemp("tls"), LanConfig(enabled=True)).ca_pem().decode()


def tls_settings(ca_pem: str, password: str | None = "s3cret-pw") -> KitSettings:
    return make_settings(AQ1, "air_quality", Broker("192.168.1.10", 8883, True, ca_pem), password)


class Cards(HTMLParser):
    """The sheet's cards: per device, each <dd>'s class → its text; and the inline SVGs seen."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, dict[str, str]] = {}
        self.svgs = 0
        self._card: str | None = None
        self._dd: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "card":
            self._card = str(a["data-device"])
            self.cards[self._card] = {}
        elif tag == "dd" and self._card:
            self._dd = a.get("class")
        elif tag == "svg":
            self.svgs += 1

    def handle_data(self, data: str) -> None:
        if self._card and self._dd:
            self.cards[self._card][self._dd] = self.cards[self._card].get(self._dd, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "dd":
            self._dd = None


def parse_sheet(html: str) -> Cards:
    parser = Cards()
    parser.feed(html)
    parser.close()
    return parser


def test_the_sheet_holds_each_devices_settings_in_a_card_with_its_qr(ca_pem: str) -> None:
    s = tls_settings(ca_pem)
    other = make_settings(DeviceRef("demo", "ana", "uno"), "generic", s.broker, None)
    parsed = parse_sheet(sheet("demo/ana", [s, other]))
    assert set(parsed.cards) == {"demo/ana/aq1", "demo/ana/uno"} and parsed.svgs == 2
    card = parsed.cards["demo/ana/aq1"]
    assert card["broker"] == "mqtts://192.168.1.10:8883"
    assert card["username"] == card["client-id"] == "demo/ana/aq1"
    assert card["password"] == "s3cret-pw"
    assert card["topic-telemetry"] == "lab/demo/ana/aq1/telemetry"
    assert card["topic-errors"] == "lab/demo/ana/aq1/errors"
    assert card["topic-status"] == "lab/demo/ana/aq1/status"
    assert card["ca-sha256"] == s.ca_fingerprint and len(s.ca_fingerprint or "") == 95
    assert "trainer" in parsed.cards["demo/ana/uno"]["password"]  # no password held: the placeholder says whose


def test_the_sheet_speaks_the_cohorts_language(ca_pem: str) -> None:
    s = make_settings(AQ1, "air_quality", Broker("h", 1883), None, language="fr")
    html = sheet("demo/ana", [s])
    assert '<html lang="fr">' in html and "Mot de passe" in html and "formateur" in html


def test_the_qr_code_encodes_the_same_settings_without_the_ca(ca_pem: str) -> None:
    s = tls_settings(ca_pem)
    payload = json.loads(qr_payload(s))
    full = settings_json(s)
    assert payload == {k: v for k, v in full.items() if k not in ("ca_pem", "sample")}
    assert payload["password"] == "s3cret-pw" and payload["ca_sha256"] == s.ca_fingerprint
    code = segno.make(qr_payload(s), error="m", boost_error=False)  # what qr_svg draws: it fits a printable code
    assert code.version <= 20  # type: ignore[operator]
    svg = qr_svg(s)
    assert svg.startswith("<svg") and 'class="qrline"' in svg


def test_config_json_and_secrets_py_say_the_same_as_the_settings(ca_pem: str) -> None:
    s = tls_settings(ca_pem)
    files = device_files(s)
    config = json.loads(files["config.json"])
    assert config == settings_json(s) and config["ca_pem"] == ca_pem and files["ca.crt"] == ca_pem
    namespace: dict[str, Any] = {}
    exec(files[MICROPYTHON_SECRETS], namespace)  # it is Python: read it as the board does
    assert (namespace["MQTT_HOST"], namespace["MQTT_PORT"], namespace["MQTT_TLS"]) == ("192.168.1.10", 8883, True)
    assert namespace["MQTT_USERNAME"] == namespace["MQTT_CLIENT_ID"] == "demo/ana/aq1"
    assert namespace["MQTT_PASSWORD"] == "s3cret-pw"
    assert namespace["TOPIC_TELEMETRY"] == "lab/demo/ana/aq1/telemetry" and namespace["PERIOD_MS"] == 5000
    import base64

    assert base64.b64decode("".join(namespace["LAB_CA_DER_B64"])) == ssl.PEM_cert_to_DER_cert(ca_pem)
    compile(files[MICROPYTHON_MAIN], "main.py", "exec")  # valid Python (it runs in tests/integration/test_kit.py)


def test_the_sample_reading_is_valid_for_the_kind() -> None:
    for kind in ("air_quality", "generic"):
        s = make_settings(AQ1, kind, Broker("h", 1883), None)
        payload = json.dumps(dict(s.sample)).encode()
        (decoded,) = decode_payload(payload, None, 16384)
        assert validate(KINDS[kind], decoded, 0, {}).fields == dict(s.sample)


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("plain", '"plain"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("tab\there", '"tab\\011here"'),
        ("é", '"\\303\\251"'),
        ("1?\x001", '"1?\\0001"'),
        ("??=", '"?\\077="'),  # no trigraph
    ],
)
def test_c_strings_escape_what_a_compiler_would_misread(text: str, literal: str) -> None:
    assert c_string(text) == literal


def test_secrets_h_without_a_password_says_so_and_plain_mqtt_has_no_ca() -> None:
    text = secrets_h(make_settings(AQ1, "air_quality", Broker("10.0.0.2", 1883), None))
    assert f'#define MQTT_PASSWORD "{PASSWORD_PLACEHOLDER}"' in text and "MQTT_TLS 0" in text
    assert "const char LAB_CA" not in text


def test_a_board_is_given_a_real_address_for_a_wildcard_broker() -> None:
    assert board_address("192.168.1.10", [], "lab") == "192.168.1.10"
    assert board_address("0.0.0.0", ["127.0.0.1", "fe80::1", "2001:db8::5", "10.1.2.3"], "lab") == "10.1.2.3"
    assert board_address("0.0.0.0", ["127.0.0.1"], "lab") == "lab"


def test_a_kit_source_reveals_a_stored_password_only_when_asked(tmp_path: Path) -> None:
    save_credentials(tmp_path, {"demo/ana/aq1": "stored-pw"})
    source = KitSource(Broker("h", 1883), tmp_path / CREDENTIALS_FILE, {"demo": "fr"})
    assert source.settings(AQ1, "air_quality", True).password == "stored-pw"
    assert source.settings(AQ1, "air_quality", False).password is None
    assert source.settings(AQ1, "air_quality", True, {"demo/ana/aq1": "given"}).password == "given"
    assert source.settings(DeviceRef("demo", "ben", "x"), "generic", True).password is None
    assert source.settings(AQ1, "air_quality", True).language == "fr"


def test_a_cohorts_kit_has_one_sheet_per_learner_and_a_folder_per_device() -> None:
    broker = Broker("h", 1883)
    devices = [
        make_settings(DeviceRef("c", learner, d), "generic", broker, "pw")
        for learner, d in [("a", "x"), ("a", "y"), ("b", "x")]
    ]
    files = kit_files(devices)
    assert {name for name in files if name.endswith("sheet.html")} == {"c/a/sheet.html", "c/b/sheet.html"}
    assert set(parse_sheet(files["c/a/sheet.html"]).cards) == {"c/a/x", "c/a/y"}
    assert f"c/b/x/{ESP_SECRETS}" in files and "c/b/x/uno/labhub_uno/labhub_uno.ino" in files
    with zipfile.ZipFile(io.BytesIO(kit_zip(files))) as archive:
        assert sorted(archive.namelist()) == sorted(files)


# `labhub kit` on a lab's files -------------------------------------------------------------------------------


def lab_files(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    config = tmp_path / "lab.toml"
    config.write_text(
        f'state_dir = "{state}"\n[mqtt]\nhost = "10.9.8.7"\nport = 1999\n'
        '[[devices]]\nid = "demo/ana/aq1"\nkind = "air_quality"\n'
        '[[devices]]\nid = "demo/ben/aq2"\nkind = "air_quality"\n'
    )
    save_credentials(state, {"demo/ana/aq1": "ana-pw"})
    registry = Registry(state / "registry.sqlite3")
    registry.add_device(DeviceRef("demo", "cy", "uno"), "generic", None, "")
    registry.close()
    return config


def test_labhub_kit_writes_a_device_kit_with_its_stored_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = lab_files(tmp_path)
    out = tmp_path / "kits"
    assert main(["kit", "demo/ana/aq1", "--config", str(config), "--out", str(out)]) == 0
    settings = json.loads((out / "demo/ana/aq1/config.json").read_text())
    assert (settings["host"], settings["port"], settings["password"]) == ("10.9.8.7", 1999, "ana-pw")
    assert parse_sheet((out / "demo/ana/sheet.html").read_text()).cards["demo/ana/aq1"]["password"] == "ana-pw"
    assert (out / "demo/ana/aq1/micropython/main.py").stat().st_mode & 0o077 == 0  # it holds an account
    printed = capsys.readouterr().out
    assert "1 device kits" in printed and "ana-pw" not in printed


def test_labhub_kit_for_a_cohort_names_the_devices_without_a_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = lab_files(tmp_path)
    out = tmp_path / "kits"
    given = tmp_path / "import.txt"
    given.write_text("3 lines read, 1 new accounts (passwords shown once):\nusername,password\ndemo/cy/uno,cy-pw\n")
    argv = ["kit", "--cohort", "demo", "--config", str(config), "--out", str(out), "--host", "lab.local"]
    assert main([*argv, "--passwords", str(given), "--wifi-ssid", "classroom"]) == 0
    passwords = {
        key: json.loads((out / key / "config.json").read_text())["password"]
        for key in ("demo/ana/aq1", "demo/ben/aq2", "demo/cy/uno")
    }
    assert passwords == {"demo/ana/aq1": "ana-pw", "demo/ben/aq2": None, "demo/cy/uno": "cy-pw"}
    assert '#define WIFI_SSID "classroom"' in (out / "demo/cy/uno" / ESP_SECRETS).read_text()
    assert "MQTT_HOST = 'lab.local'" in (out / "demo/ben/aq2" / MICROPYTHON_SECRETS).read_text()
    printed = capsys.readouterr().out
    assert "1 without a password" in printed and "demo/ben/aq2" in printed
    assert main(["kit", "demo/ana/nope", "--config", str(config), "--out", str(out)]) == 2


# The API: GET /api/devices/<c>/<l>/<d>/kit ---------------------------------------------------------------------


async def test_the_api_gives_the_password_to_the_learner_and_trainer_but_never_a_viewer(tmp_path: Path) -> None:
    deps, registry, _, relay = fake_deps(tmp_path, HubConfig(api_requests_per_second=1000.0))
    ref = DeviceRef("demo", "ana", "arm1")
    registry.add_device(ref, "arm", "mearm")
    deps.apply_registry()
    save_credentials(tmp_path, {ref.key: "arm-pw"})
    tokens = {
        role: registry.add_token(role, scope, "t")[1]
        for role, scope in [("learner", "demo/ana"), ("trainer", "demo"), ("viewer", "demo")]
    }
    other = registry.add_token("learner", "demo/ben", "t")[1]
    deps.apply_registry()
    url = f"/api/devices/{ref.key}/kit"
    async with TestClient(TestServer(create_app(deps))) as client:

        async def get(token: str, query: str = "") -> tuple[int, bytes, Any]:
            async with client.get(url + query, headers={"Authorization": f"Bearer {token}"}) as resp:
                return resp.status, await resp.read(), resp.headers

        for role, expected in (("learner", "arm-pw"), ("trainer", "arm-pw"), ("viewer", None)):
            status, body, headers = await get(tokens[role])
            assert status == 200 and headers["Content-Type"] == "application/zip"
            assert headers["Cache-Control"] == "no-store"
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                config = json.loads(archive.read("config.json"))
                assert MICROPYTHON_MAIN in archive.namelist() and "sheet.html" in archive.namelist()
            assert config["password"] == expected, role
            assert (expected or PASSWORD_PLACEHOLDER) in archive_text(body, MICROPYTHON_SECRETS)
        status, body, headers = await get(tokens["learner"], "?file=main.py")
        assert status == 200 and body.startswith(b'"""LabHub kit: demo/ana/arm1')
        assert headers["Content-Disposition"] == 'attachment; filename="main.py"'
        for hostile in ("nothing.txt", "../config.json", "/etc/passwd", "%00main.py", "x" * 5000):
            status, body, _ = await get(tokens["learner"], "?file=" + hostile)
            assert status == 404 and len(body) < 1000  # only the kit's own files, named in a bounded answer
        assert (await get(other))[0] == 403  # another learner's device
    relay.shutdown()
    registry.close()


def archive_text(body: bytes, name: str) -> str:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return archive.read(name).decode()
