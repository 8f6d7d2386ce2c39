"""The lab doctor's catalogue: finding codes, severities, thresholds, EN/FR texts and fix snippets. Pure.

A finding names a beginner's real firmware mistake from what the broker and the hub saw (hub.doctor finds
them); this module says what each one is called, how bad it is, when it counts, and what to do about it, in
the cohort's language. Templates use `str.format` with the finding's params; a missing one renders as '?'.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

CLIENT_ID_COLLISION = "client_id_collision"
RECONNECT_STORM = "reconnect_storm"
WRONG_PASSWORD = "wrong_password"
UNKNOWN_ACCOUNT = "unknown_account"
FOREIGN_TOPIC = "foreign_topic"
CLOCK_NOT_SET = "clock_not_set"
TOO_FAST = "too_fast"
RETAINED_TELEMETRY = "retained_telemetry"
RETAINED_COMMAND = "retained_command"
NO_LAST_WILL = "no_last_will"
STUCK_SENSOR = "stuck_sensor"
KEEPALIVE_TIMEOUT = "keepalive_timeout"
PAYLOAD_CUT_256 = "payload_cut_256"

ERROR, WARNING = "error", "warning"
SEVERITY: Mapping[str, str] = {
    CLIENT_ID_COLLISION: ERROR,
    RECONNECT_STORM: WARNING,
    WRONG_PASSWORD: ERROR,
    UNKNOWN_ACCOUNT: ERROR,
    FOREIGN_TOPIC: ERROR,
    CLOCK_NOT_SET: WARNING,
    TOO_FAST: WARNING,
    RETAINED_TELEMETRY: WARNING,
    RETAINED_COMMAND: ERROR,
    NO_LAST_WILL: WARNING,
    STUCK_SENSOR: WARNING,
    KEEPALIVE_TIMEOUT: WARNING,
    PAYLOAD_CUT_256: ERROR,
}
CODES = tuple(SEVERITY)

CHECKLIST = (
    "broker_reached",
    "account_accepted",
    "last_will_set",
    "status_online",
    "errors_subscribed",
    "first_valid_reading",
    "clock_plausible",
    "cadence_plausible",
)

# The sensors' fastest measuring period, per kind (what a board may publish at most), and per field where the
# kit's sensor is known (SDS011 particulates 1 s, SCD4x CO2 5 s): for the hints.
KIND_MIN_PERIOD_S: Mapping[str, float] = {"air_quality": 1.0}
FIELD_PERIOD_S: Mapping[str, tuple[float, str]] = {
    "pm2_5": (1.0, "SDS011"),
    "pm10": (1.0, "SDS011"),
    "co2": (5.0, "SCD4x"),
}
PUBSUBCLIENT_BUFFER = 256  # PubSubClient's default MQTT_MAX_PACKET_SIZE: longer packets are not sent whole
YEAR_2000_NS = 946_684_800 * 10**9


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a symptom becomes a finding, and when a finding is resolved (tests shorten them)."""

    collision_count: int = 2  # "already connected, closing old connection" this many times…
    collision_window_s: float = 60.0  # …within this window
    storm_connects: int = 6  # this many connects…
    storm_window_s: float = 60.0  # …within this window…
    storm_gap_s: float = 1.0  # …each less than this after the one before (no backoff)
    too_fast_readings: int = 10  # readings in a row faster than the kind's sensor
    stuck_readings: int = 10  # identical values over at least this many readings…
    stuck_s: float = 120.0  # …and this long
    will_wait_s: float = 3.0  # after an unclean end, how long an `offline` status (the will) may take
    quiet_s: float = 60.0  # a finding whose symptom has not recurred for this long is resolved
    samples: int = 5  # evidence samples kept per finding


DEFAULT_THRESHOLDS = Thresholds()

# code: {lang: (message, hint)}
TEXTS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    CLIENT_ID_COLLISION: {
        "en": (
            "two connections use the account {device} and knock each other off ({count} times)",
            "only one board (or app) may use a device account: give each board its own account",
        ),
        "fr": (
            "deux connexions utilisent le compte {device} et se déconnectent l'une l'autre ({count} fois)",
            "un seul boîtier (ou une seule appli) par compte d'appareil : donnez à chaque boîtier son compte",
        ),
    },
    RECONNECT_STORM: {
        "en": (
            "{count} connections in {window} s, less than a second apart: the board reconnects without waiting",
            "wait before reconnecting, longer after each failure (1 s, 2 s, 4 s… up to 30 s)",
        ),
        "fr": (
            "{count} connexions en {window} s, à moins d'une seconde d'intervalle : le boîtier se reconnecte sans "
            "attendre",
            "attendez avant de vous reconnecter, plus longtemps après chaque échec (1 s, 2 s, 4 s… jusqu'à 30 s)",
        ),
    },
    WRONG_PASSWORD: {
        "en": (
            "the broker refused a login from {address}, the address {device} connects from: wrong password",
            "copy the password from your kit (secrets.h / secrets.py) exactly, without spaces",
        ),
        "fr": (
            "le broker a refusé une connexion depuis {address}, l'adresse de {device} : mot de passe erroné",
            "recopiez exactement le mot de passe de votre kit (secrets.h / secrets.py), sans espace",
        ),
    },
    UNKNOWN_ACCOUNT: {
        "en": (
            "the broker refused a login from {address}, the address {device} connected from: "
            "that username is no longer an account",
            "the username is cohort/learner/device, as in your kit; ask your trainer if the device was removed",
        ),
        "fr": (
            "le broker a refusé une connexion depuis {address}, l'adresse de {device} : "
            "ce nom d'utilisateur n'est plus un compte",
            "le nom d'utilisateur est cohorte/apprenant/appareil, comme dans votre kit ; demandez au formateur "
            "si l'appareil a été supprimé",
        ),
    },
    FOREIGN_TOPIC: {
        "en": (
            "your account is {device}, you {action} {topic}: the broker refused it",
            "publish only under lab/{device}/ (telemetry, status, ack); subscribe only to its commands and errors",
        ),
        "fr": (
            "votre compte est {device} ; {action} {topic} : le broker l'a refusé",
            "publiez seulement sous lab/{device}/ (telemetry, status, ack) ; abonnez-vous seulement à ses "
            "commands et errors",
        ),
    },
    CLOCK_NOT_SET: {
        "en": (
            "timestamp {value} is {as_date}: the board's clock is not set",
            "sync the clock with NTP before sending ts, or leave ts out and the hub stamps each reading",
        ),
        "fr": (
            "l'horodatage {value} correspond à {as_date} : l'horloge du boîtier n'est pas réglée",
            "synchronisez l'horloge par NTP avant d'envoyer ts, ou n'envoyez pas ts et le hub horodate",
        ),
    },
    TOO_FAST: {
        "en": (
            "a reading every {interval} s, faster than the sensor measures (every {period} s at best)",
            "publish once per {period} s or slower: time the loop with millis(), never with a tight loop",
        ),
        "fr": (
            "une mesure toutes les {interval} s, plus vite que le capteur ne mesure (au mieux toutes les {period} s)",
            "publiez au plus une fois toutes les {period} s : cadencez la boucle avec millis()",
        ),
    },
    RETAINED_TELEMETRY: {
        "en": (
            "telemetry published with the retain flag on {topic}",
            "publish readings without retain: the broker would replay an old reading to every new subscriber",
        ),
        "fr": (
            "mesure publiée avec le drapeau retain sur {topic}",
            "publiez les mesures sans retain : le broker rejouerait une vieille mesure à chaque abonné",
        ),
    },
    RETAINED_COMMAND: {
        "en": (
            "a retained message on the commands topic {topic}: it would be replayed at each reconnect",
            "never retain commands; send them through the hub (commands/request), which delivers them once",
        ),
        "fr": (
            "un message retenu sur le topic de commandes {topic} : il serait rejoué à chaque reconnexion",
            "ne retenez jamais une commande ; passez par le hub (commands/request), qui la livre une fois",
        ),
    },
    NO_LAST_WILL: {
        "en": (
            "the connection ended without a clean disconnect and no 'offline' status followed: no last will",
            "set a last will at connect: status topic, payload offline, retained",
        ),
        "fr": (
            "la connexion s'est coupée sans déconnexion propre et aucun statut 'offline' n'a suivi : pas de "
            "dernière volonté",
            "définissez une dernière volonté à la connexion : topic status, message offline, retenu",
        ),
    },
    STUCK_SENSOR: {
        "en": (
            "{field} has stayed at {value} for {seconds} s over {count} readings: the sensor looks stuck",
            "check the sensor's wiring and that the code reads it again each time instead of a saved value",
        ),
        "fr": (
            "{field} est resté à {value} pendant {seconds} s sur {count} mesures : le capteur semble bloqué",
            "vérifiez le câblage du capteur et que le code le relit à chaque fois au lieu d'une valeur gardée",
        ),
    },
    KEEPALIVE_TIMEOUT: {
        "en": (
            "the broker dropped the board: nothing heard within its keepalive ({count} times)",
            "call client.loop() often: no long delay() in loop(); wait with millis() instead",
        ),
        "fr": (
            "le broker a coupé le boîtier : rien reçu pendant son keepalive ({count} fois)",
            "appelez client.loop() souvent : pas de long delay() dans loop() ; attendez avec millis()",
        ),
    },
    PAYLOAD_CUT_256: {
        "en": (
            "a {size}-byte payload that does not decode: cut at PubSubClient's 256-byte buffer",
            "call client.setBufferSize(1024) before connecting, or send fewer fields per message",
        ),
        "fr": (
            "un message de {size} octets illisible : coupé par le tampon de 256 octets de PubSubClient",
            "appelez client.setBufferSize(1024) avant de vous connecter, ou envoyez moins de champs par message",
        ),
    },
}

# code: (Arduino C++, MicroPython)
FIXES: Mapping[str, tuple[str, str]] = {
    CLIENT_ID_COLLISION: (
        "// one account per board: the client id is the username from secrets.h\n"
        "client.connect(MQTT_USER, MQTT_USER, MQTT_PASSWORD);",
        "# one account per board: the client id is the username from secrets.py\n"
        "client = MQTTClient(MQTT_USER, BROKER, user=MQTT_USER, password=MQTT_PASSWORD)",
    ),
    RECONNECT_STORM: (
        "unsigned long backoff = 1000;\n"
        "while (!client.connected()) {\n"
        "  if (client.connect(MQTT_USER, MQTT_USER, MQTT_PASSWORD)) { backoff = 1000; break; }\n"
        "  delay(backoff);\n"
        "  backoff = min(backoff * 2, 30000UL);\n"
        "}",
        "backoff = 1\n"
        "while True:\n"
        "    try:\n"
        "        client.connect()\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(backoff)\n"
        "        backoff = min(backoff * 2, 30)",
    ),
    WRONG_PASSWORD: (
        '#define MQTT_PASSWORD "paste the password from your kit"  // secrets.h',
        'MQTT_PASSWORD = "paste the password from your kit"  # secrets.py',
    ),
    UNKNOWN_ACCOUNT: (
        '#define MQTT_USER "cohort/learner/device"  // secrets.h, as in your kit',
        'MQTT_USER = "cohort/learner/device"  # secrets.py, as in your kit',
    ),
    FOREIGN_TOPIC: (
        '#define TOPIC_BASE "lab/" MQTT_USER  // lab/<cohort>/<learner>/<device>\n'
        'client.publish(TOPIC_BASE "/telemetry", payload);',
        'TOPIC_BASE = "lab/" + MQTT_USER\nclient.publish(TOPIC_BASE + "/telemetry", payload)',
    ),
    CLOCK_NOT_SET: (
        '#include <time.h>\nconfigTime(0, 0, "pool.ntp.org");\nwhile (time(nullptr) < 1700000000) delay(200);\n'
        "// or leave ts out of the payload: the hub stamps each reading",
        "import ntptime\nntptime.settime()\n# or leave ts out of the payload: the hub stamps each reading",
    ),
    TOO_FAST: (
        "unsigned long last = 0;\n"
        "void loop() {\n"
        "  client.loop();\n"
        "  if (millis() - last >= PERIOD_MS) { last = millis(); publishReading(); }\n"
        "}",
        "while True:\n    client.check_msg()\n    publish_reading()\n    time.sleep(PERIOD_S)",
    ),
    RETAINED_TELEMETRY: (
        'client.publish(TOPIC_BASE "/telemetry", payload, false);  // retain = false',
        'client.publish(TOPIC_BASE + "/telemetry", payload, retain=False)',
    ),
    RETAINED_COMMAND: (
        "// a board never publishes on its commands topic; it subscribes to it\n"
        'client.subscribe(TOPIC_BASE "/commands");',
        '# a board never publishes on its commands topic; it subscribes to it\nclient.subscribe(TOPIC_BASE + "/commands")',
    ),
    NO_LAST_WILL: (
        'client.connect(MQTT_USER, MQTT_USER, MQTT_PASSWORD, TOPIC_BASE "/status", 1, true, "offline");\n'
        'client.publish(TOPIC_BASE "/status", "online", true);',
        'client.set_last_will(TOPIC_BASE + "/status", b"offline", retain=True, qos=1)\n'
        "client.connect()\n"
        'client.publish(TOPIC_BASE + "/status", b"online", retain=True)',
    ),
    STUCK_SENSOR: (
        "float value = sensor.read();  // read the sensor again for every reading\n"
        "if (isnan(value)) { /* wiring? skip this reading */ }",
        "value = sensor.read()  # read the sensor again for every reading",
    ),
    KEEPALIVE_TIMEOUT: (
        "void loop() {\n  client.loop();  // often: no long delay() here\n"
        "  if (millis() - last >= PERIOD_MS) { last = millis(); publishReading(); }\n}",
        "while True:\n    client.check_msg()  # often\n    time.sleep_ms(100)",
    ),
    PAYLOAD_CUT_256: (
        "client.setBufferSize(1024);  // before client.connect(...)",
        "# umqtt.simple has no 256-byte buffer: keep each payload short anyway\n"
        'client.publish(TOPIC_BASE + "/telemetry", ujson.dumps(reading))',
    ),
}


class _Lenient(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "?"


# foreign_topic's `action` param, in each language's words
ACTIONS: Mapping[str, Mapping[str, str]] = {
    "en": {"publish": "published to", "subscribe": "subscribed to"},
    "fr": {"publish": "vous avez publié sur", "subscribe": "vous vous êtes abonné à"},
}


def render_finding(code: str, params: Mapping[str, object], lang: str = "en") -> tuple[str, str]:
    """The (message, hint) of a finding in `lang` (falls back to English)."""
    entries = TEXTS.get(code)
    if entries is None:
        return code.replace("_", " "), ""
    if lang not in entries:
        lang = "en"
    message, hint = entries[lang]
    values = _Lenient(params)
    if "action" in params:
        values["action"] = ACTIONS[lang].get(str(params["action"]), str(params["action"]))
    formatter = string.Formatter()
    return formatter.vformat(message, (), values), formatter.vformat(hint, (), values)


def fix_for(code: str) -> dict[str, str]:
    arduino, micropython = FIXES.get(code, ("", ""))
    return {"arduino": arduino, "micropython": micropython}


def worst(severities: list[str]) -> str | None:
    """The worst of some findings' severities, for a badge: error, warning or None."""
    if ERROR in severities:
        return ERROR
    return WARNING if severities else None
