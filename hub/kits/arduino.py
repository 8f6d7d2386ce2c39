"""Arduino C++ for a device's kit: `secrets.h`, a complete ESP32/ESP8266 sketch (PubSubClient) and a USB-only
Arduino Uno sketch for the serial bridge's `lines` protocol. Pure text renderers over `KitSettings`.

The ESP sketch does what beginners' boards get wrong in their first hour: the client id is the account's
username (two boards with one kit knock each other off visibly), a retained "offline" last will and a retained
"online" at each connect, a 512-byte buffer (PubSubClient's 256 bytes cut longer payloads), reconnects with a
capped, jittered exponential backoff that never blocks `loop()`, `ts` only once NTP has set the clock, the
publish period of the kind's sensor, and the hub's answers on the errors topic printed to the serial monitor.
"""

from __future__ import annotations

from hub.kits.settings import KitSettings

BUFFER_BYTES = 512
RETRY_MAX_MS = 60_000
CLOCK_SET_AFTER = 1_700_000_000  # a clock before Nov 2023 is not set: readings then go without `ts`


def c_string(text: str) -> str:
    """A C string literal of `text` (UTF-8): quotes, backslashes and anything unprintable escaped in octal
    (octal escapes stop after three digits, hex ones would swallow a following digit)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F and not (char == "?" and out and out[-1] == "?"):  # no trigraphs
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _identifier(field: str) -> str:
    return "read_" + "".join(c if c.isalnum() else "_" for c in field)


def secrets_h(s: KitSettings) -> str:
    password_note = "" if s.password is not None else "  // paste the password your trainer gave you"
    lines = [
        f"// secrets.h: {s.ref.key}'s account on the lab's broker, for the sketch beside it.",
        "// Keep this file private: never publish it (on GitHub, a forum, a photo of your screen).",
        "#pragma once",
        "",
        f"#define WIFI_SSID {c_string(s.ssid_text)}",
        f"#define WIFI_PASSWORD {c_string(s.wifi_password_text)}",
        "",
        f"#define MQTT_HOST {c_string(s.broker.host)}",
        f"#define MQTT_PORT {s.broker.port}",
        f"#define MQTT_TLS {1 if s.broker.tls else 0}  // 1: TLS, the board checks the lab's certificate with LAB_CA",
        f"#define MQTT_USERNAME {c_string(s.username)}",
        f"#define MQTT_PASSWORD {c_string(s.password_text)}{password_note}",
        "#define MQTT_CLIENT_ID MQTT_USERNAME  // the broker takes the username as the client id: one board per account",
        "",
        f"#define TOPIC_TELEMETRY {c_string(s.topics['telemetry'])}",
        f"#define TOPIC_STATUS {c_string(s.topics['status'])}",
        f"#define TOPIC_ERRORS {c_string(s.topics['errors'])}",
        f"#define PUBLISH_PERIOD_MS {round(s.period_s * 1000)}UL  // one reading every {s.period_s:g} s",
    ]
    if s.broker.tls and s.broker.ca_pem:
        lines += [
            "",
            f"// The lab CA (SHA-256 {s.ca_fingerprint}): the board trusts the lab's broker through it.",
            f'static const char LAB_CA[] = R"PEM({s.broker.ca_pem.strip()}\n)PEM";',
        ]
    return "\n".join(lines) + "\n"


def _reader_functions(s: KitSettings) -> list[str]:
    lines = [
        "// Your sensor's readings. DEMO VALUES until you replace each body with your sensor library's call: they",
        "// only prove the path to the lab works (they wobble so that the hub does not report a stuck sensor).",
        "float demo(float base) { return base + (float)((millis() / 1000) % 10) / 10.0f; }",
    ]
    lines += [f"float {_identifier(name)}() {{ return demo({value:.1f}f); }}" for name, value in s.sample]
    return lines


def esp_sketch(s: KitSettings) -> str:
    fields = [name for name, _ in s.sample]
    json_format = ",".join(f'\\"{name}\\":%.2f' for name in fields)
    values = "".join(f", {name}" for name in fields)
    reads = [f"  float {name} = {_identifier(name)}();" for name in fields]
    nan_check = " || ".join(f"isnan({name})" for name in fields)
    lines = [
        f"// LabHub kit: {s.ref.key} ({s.kind}) on an ESP32 or ESP8266 (Arduino core, library PubSubClient).",
        "// Put secrets.h beside this file, flash, and open the serial monitor at 115200 baud: it prints the",
        "// connection's steps and whatever the hub says about the readings (the errors topic).",
        "#if defined(ESP8266)",
        "#include <ESP8266WiFi.h>",
        "#else",
        "#include <WiFi.h>",
        "#endif",
        "#include <time.h>",
        "#include <PubSubClient.h>",
        '#include "secrets.h"',
        "",
        "#if MQTT_TLS",
        "#include <WiFiClientSecure.h>",
        "WiFiClientSecure net;  // TLS: the broker's certificate is checked against the lab CA (secrets.h)",
        "#if defined(ESP8266)",
        "X509List labCa(LAB_CA);",
        "#endif",
        "#else",
        "WiFiClient net;",
        "#endif",
        "PubSubClient mqtt(net);",
        "",
        f"const unsigned long RETRY_MAX_MS = {RETRY_MAX_MS}UL;  // reconnect backoff: 1 s, 2 s, 4 s… up to a minute",
        "unsigned long retryDelay = 1000;",
        "unsigned long nextAttempt = 0;",
        "unsigned long lastPublish = 0;",
        "bool published = false;",
        "",
        *_reader_functions(s),
        "",
        "// The hub answers every reading it refuses on the errors topic: print it.",
        "void onMessage(char* topic, byte* payload, unsigned int length) {",
        "  (void)topic;  // always TOPIC_ERRORS: the one topic subscribed to",
        '  Serial.print("hub says: ");',
        "  Serial.write(payload, length);",
        "  Serial.println();",
        "}",
        "",
        f"bool clockSet() {{ return time(nullptr) > {CLOCK_SET_AFTER}; }}  // NTP answered: the date is real",
        "",
        "void connectWifi() {",
        '  Serial.print("Wi-Fi ");',
        "  Serial.println(WIFI_SSID);",
        "  WiFi.mode(WIFI_STA);",
        "  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);",
        "  for (int i = 0; i < 60 && WiFi.status() != WL_CONNECTED; i++) delay(250);",
        "}",
        "",
        "bool connectMqtt() {",
        '  Serial.print("MQTT ");',
        "  Serial.println(MQTT_HOST);",
        '  // client id = username; last will: the broker publishes "offline" (retained) if the board vanishes',
        '  if (!mqtt.connect(MQTT_CLIENT_ID, MQTT_USERNAME, MQTT_PASSWORD, TOPIC_STATUS, 1, true, "offline")) {',
        '    Serial.print("MQTT refused, state ");  // 4 or 5: wrong password or account; -2: no route',
        "    Serial.println(mqtt.state());",
        "    return false;",
        "  }",
        '  mqtt.publish(TOPIC_STATUS, "online", true);  // retained: the dashboard knows at once',
        "  mqtt.subscribe(TOPIC_ERRORS);",
        '  Serial.println("MQTT connected");',
        "  return true;",
        "}",
        "",
        "void setup() {",
        "  Serial.begin(115200);",
        "  connectWifi();",
        '  configTime(0, 0, "pool.ntp.org", "time.google.com");  // UTC; TLS needs the date to check certificates',
        "  for (int i = 0; i < 20 && !clockSet(); i++) delay(500);",
        "#if MQTT_TLS",
        "#if defined(ESP8266)",
        "  net.setTrustAnchors(&labCa);",
        "#else",
        "  net.setCACert(LAB_CA);",
        "#endif",
        "#endif",
        "  mqtt.setServer(MQTT_HOST, MQTT_PORT);",
        "  mqtt.setCallback(onMessage);",
        f"  mqtt.setBufferSize({BUFFER_BYTES});  // the default 256 bytes silently cut longer messages",
        "}",
        "",
        "void publishReading() {",
        *reads,
        f"  if ({nan_check}) return;  // a failed read: send nothing rather than NaN",
        "  char payload[256];",
        f'  int n = snprintf(payload, sizeof payload, "{{{json_format}"{values});',
        "  if (clockSet()) {  // a real date: stamp the reading; otherwise the hub stamps it on arrival",
        '    n += snprintf(payload + n, sizeof payload - n, ",\\"ts\\":%lld", (long long)time(nullptr));',
        "  }",
        '  snprintf(payload + n, sizeof payload - n, "}");',
        "  mqtt.publish(TOPIC_TELEMETRY, payload);",
        "}",
        "",
        "void loop() {",
        "  if (WiFi.status() != WL_CONNECTED) connectWifi();",
        "  if (!mqtt.connected()) {",
        "    if ((long)(millis() - nextAttempt) < 0) return;  // waiting out the backoff, without blocking loop()",
        "    if (!connectMqtt()) {",
        "      nextAttempt = millis() + retryDelay + random(0, retryDelay / 4);  // jitter: a classroom reboots at once",
        "      retryDelay = retryDelay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retryDelay * 2;",
        "      return;",
        "    }",
        "    retryDelay = 1000;",
        "  }",
        "  mqtt.loop();  // keeps the connection alive and delivers the hub's answers: never block loop() with delay()",
        "  if (!published || millis() - lastPublish >= PUBLISH_PERIOD_MS) {",
        "    lastPublish = millis();",
        "    published = true;",
        "    publishReading();",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def uno_sketch(s: KitSettings) -> str:
    """An Uno has no network: it prints `field=value` lines, and `labhub serial-bridge` publishes them."""
    lines = [
        f"// LabHub kit: {s.ref.key} ({s.kind}) on an Arduino Uno (or any board without Wi-Fi) over USB.",
        "// It prints one reading per line (`pm2_5=12.4,pm10=19.0`); on the lab's machine, the serial bridge",
        "// publishes each line as this device's reading:",
        f"//   labhub serial-bridge --port /dev/ttyACM0 --device {s.ref.key}",
        "// The bridge's own account speaks for this device: no password on the board. Print nothing else on",
        "// Serial (a debug line is reported as not_a_reading on the device's errors topic).",
        "",
        f"const unsigned long PERIOD_MS = {round(s.period_s * 1000)}UL;  // one reading every {s.period_s:g} s",
        "unsigned long last = 0;",
        "bool printed = false;",
        "",
        *_reader_functions(s),
        "",
        "void setup() {",
        "  Serial.begin(115200);  // the bridge's default rate for the lines protocol",
        "}",
        "",
        "void loop() {",
        "  if (printed && millis() - last < PERIOD_MS) return;",
        "  last = millis();",
        "  printed = true;",
    ]
    for name, _ in s.sample:
        lines += [
            f"  float {name} = {_identifier(name)}();",
            f"  if (isnan({name})) return;  // a failed read: print nothing rather than nan",
        ]
    lines.append("  // the Uno's printf has no %f: floats are printed with Serial.print(value, decimals)")
    for i, (name, _) in enumerate(s.sample):
        lines += [f'  Serial.print("{"," if i else ""}{name}=");', f"  Serial.print({name}, 2);"]
    lines += ["  Serial.println();", "}"]
    return "\n".join(lines) + "\n"
