"""MicroPython for a device's kit: `secrets.py` (the account, the lab CA) and `main.py` (`umqtt.simple`).

The same first-hour habits as the Arduino sketch: client id = username, a retained "offline" last will and a
retained "online" at connect, reconnects with a capped backoff, `ts` only once NTP has set the clock (and in Unix
seconds whatever the port's epoch), the kind's publish period, and the hub's answers printed. Pure renderers.
"""

from __future__ import annotations

import base64

from hub.kits.settings import KitSettings

BACKOFF_MAX_S = 60


def secrets_py(s: KitSettings) -> str:
    lines = [
        f'"""{s.ref.key}\'s account on the lab\'s broker. Keep this file private: never publish it."""',
        "",
        f"WIFI_SSID = {s.ssid_text!r}",
        f"WIFI_PASSWORD = {s.wifi_password_text!r}",
        "",
        f"MQTT_HOST = {s.broker.host!r}",
        f"MQTT_PORT = {s.broker.port}",
        f"MQTT_TLS = {s.broker.tls!r}",
        f"MQTT_USERNAME = {s.username!r}",
        f"MQTT_PASSWORD = {s.password_text!r}" + ("" if s.password is not None else "  # paste it here"),
        "MQTT_CLIENT_ID = MQTT_USERNAME  # the broker takes the username as the client id: one board per account",
        "",
        f"TOPIC_TELEMETRY = {s.topics['telemetry']!r}",
        f"TOPIC_STATUS = {s.topics['status']!r}",
        f"TOPIC_ERRORS = {s.topics['errors']!r}",
        f"PERIOD_MS = {round(s.period_s * 1000)}  # one reading every {s.period_s:g} s",
    ]
    der = s.ca_der
    if der is not None:
        encoded = base64.b64encode(der).decode()
        chunks = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
        lines += [
            "",
            f"# The lab CA (DER, base64; SHA-256 {s.ca_fingerprint}): the board trusts the broker through it.",
            "LAB_CA_DER_B64 = (",
            *(f"    {chunk!r}" for chunk in chunks),
            ")",
        ]
    else:
        lines += ["", "LAB_CA_DER_B64 = None"]
    return "\n".join(lines) + "\n"


def main_py(s: KitSettings) -> str:
    sample = ",\n".join(f"        {name!r}: {value!r} + wobble" for name, value in s.sample)
    return f'''"""LabHub kit: {s.ref.key} ({s.kind}) on a MicroPython board (ESP32, ESP8266, Pico W), MicroPython 1.23+.

Copy secrets.py and main.py to the board (mpremote cp secrets.py main.py :) and reset it. The REPL shows the
connection's steps and whatever the hub says about the readings (the errors topic).
"""

import json
import time

import network
from umqtt.simple import MQTTClient

import secrets

BACKOFF_MAX_S = {BACKOFF_MAX_S}  # reconnect backoff: 1 s, 2 s, 4 s... up to a minute
KEEPALIVE_S = 60  # the broker drops a client silent for 1.5 times this; umqtt.simple never pings by itself
CLOCK_SET_AFTER = 1700000000  # a clock before Nov 2023 is not set: readings then go without "ts"
EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0  # some ports count from 2000


def connect_wifi():
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        print("Wi-Fi", secrets.WIFI_SSID)
        wlan.connect(secrets.WIFI_SSID, secrets.WIFI_PASSWORD)
        for _ in range(60):
            if wlan.isconnected():
                break
            time.sleep_ms(250)
    return wlan


def set_clock():
    try:
        import ntptime

        ntptime.settime()  # UTC; TLS needs the date to check the broker's certificate
    except Exception as err:
        print("no NTP time, readings go without ts:", err)


def unix_time():
    """Unix time in seconds, or None while the clock is not set (the hub then stamps each reading)."""
    now = int(time.time()) + EPOCH_OFFSET
    return now if now > CLOCK_SET_AFTER else None


def tls_context():
    if not secrets.MQTT_TLS:
        return None
    import binascii
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=binascii.a2b_base64("".join(secrets.LAB_CA_DER_B64)))
    return ctx


def on_message(topic, msg):
    print("hub says:", msg.decode())  # what was wrong with a reading, and a hint


def connect_mqtt():
    client = MQTTClient(
        secrets.MQTT_CLIENT_ID,  # = the username
        secrets.MQTT_HOST,
        port=secrets.MQTT_PORT,
        user=secrets.MQTT_USERNAME,
        password=secrets.MQTT_PASSWORD,
        keepalive=KEEPALIVE_S,
        ssl=tls_context(),
    )
    # last will: the broker publishes "offline" (retained) if the board vanishes
    client.set_last_will(secrets.TOPIC_STATUS, b"offline", retain=True, qos=1)
    client.set_callback(on_message)
    client.connect()
    client.publish(secrets.TOPIC_STATUS, b"online", retain=True, qos=1)
    client.subscribe(secrets.TOPIC_ERRORS)
    print("MQTT connected to", secrets.MQTT_HOST)
    return client


def read_sensor():
    """Your sensor's readings. DEMO VALUES until you replace them with your sensor library's calls: they only
    prove the path to the lab works (they wobble so that the hub does not report a stuck sensor)."""
    wobble = (time.ticks_ms() // 1000 % 10) / 10
    return {{
{sample},
    }}


def main():
    connect_wifi()
    set_clock()
    client = None
    backoff = 1
    last = None
    pinged = time.ticks_ms()
    while True:
        if client is None:
            try:
                client = connect_mqtt()
                backoff = 1
            except Exception as err:  # refused login (wrong password?), no route, TLS...
                print("MQTT connect failed:", err, "- retry in", backoff, "s")
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
        try:
            client.check_msg()  # the hub's answers; never block the loop for long
            if last is None or time.ticks_diff(time.ticks_ms(), last) >= secrets.PERIOD_MS:
                last = time.ticks_ms()
                reading = read_sensor()
                ts = unix_time()
                if ts is not None:
                    reading["ts"] = ts
                client.publish(secrets.TOPIC_TELEMETRY, json.dumps(reading))
            if time.ticks_diff(time.ticks_ms(), pinged) >= KEEPALIVE_S * 1000 // 2:
                pinged = time.ticks_ms()
                client.ping()  # a slow period would otherwise let the keepalive run out
            time.sleep_ms(50)
        except OSError as err:
            print("connection lost:", err)
            try:
                client.disconnect()
            except Exception:
                pass
            client = None
            connect_wifi()


main()
'''
