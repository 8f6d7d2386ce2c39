"""What the serial bridge says about a cable: per problem code (devices.serial_protocols, the bridge's port), a
message and a hint in English and French. Rendered by devices.feedback, like the payload texts.

Two codes have two explanations each, told apart by the problem's `entry`: `serial_garbage` on a `lines`
cable and on an SDS011 (`serial_garbage_sds011`), `port_not_connected` when a command arrives and when the
port closes before it is written (`port_closed_before_write`).
"""

from __future__ import annotations

from collections.abc import Mapping

# code (or a problem's `entry`): {lang: (message, hint)}
SERIAL_TEXTS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "line_too_long": {
        "en": (
            "a line of more than {limit} bytes",
            "end every reading with Serial.println(), and keep lines short",
        ),
        "fr": (
            "une ligne de plus de {limit} octets",
            "terminez chaque mesure par Serial.println(), et gardez des lignes courtes",
        ),
    },
    "serial_garbage": {
        "en": (
            "unreadable bytes on the serial line",
            "check that the bridge's --baud matches Serial.begin() in the sketch (boot noise after a reset is "
            "normal and can be ignored)",
        ),
        "fr": (
            "des octets illisibles sur la ligne série",
            "vérifiez que le --baud du pont correspond au Serial.begin() du croquis (le bruit de démarrage après "
            "un reset est normal et peut être ignoré)",
        ),
    },
    "serial_garbage_sds011": {
        "en": (
            "{size} bytes that are not SDS011 frames",
            "the SDS011 talks at 9600 baud (8N1): check --baud and that TX/RX are not swapped",
        ),
        "fr": (
            "{size} octets qui ne sont pas des trames SDS011",
            "le SDS011 parle à 9600 bauds (8N1) : vérifiez --baud et que TX/RX ne sont pas inversés",
        ),
    },
    "not_a_reading": {
        "en": (
            "a line that is neither JSON nor key=value pairs",
            "print readings as key=value pairs (temp=21.5,hum=40) or as a JSON object, one per line; "
            "debug prints show up here too",
        ),
        "fr": (
            "une ligne qui n'est ni du JSON ni des paires clé=valeur",
            "affichez les mesures en paires clé=valeur (temp=21.5,hum=40) ou en objet JSON, une par ligne ; "
            "les affichages de débogage arrivent ici aussi",
        ),
    },
    "checksum_error": {
        "en": (
            "an SDS011 frame whose checksum is wrong ({got}, expected {expected})",
            "a loose wire or electrical noise on the sensor's TX line; the frame was dropped",
        ),
        "fr": (
            "une trame SDS011 dont la somme de contrôle est fausse ({got}, attendu {expected})",
            "un fil mal branché ou du bruit électrique sur la ligne TX du capteur ; la trame a été ignorée",
        ),
    },
    "port_absent": {
        "en": (
            "the serial port {port} is not there ({detail})",
            "plug the board in (or check --port); the bridge opens it as soon as it appears",
        ),
        "fr": (
            "le port série {port} est absent ({detail})",
            "branchez la carte (ou vérifiez --port) ; le pont l'ouvre dès qu'il apparaît",
        ),
    },
    "port_lost": {
        "en": (
            "the serial port {port} went away ({detail})",
            "the cable was pulled or the board reset; the bridge reconnects when it is back",
        ),
        "fr": (
            "le port série {port} a disparu ({detail})",
            "le câble a été débranché ou la carte a redémarré ; le pont se reconnecte dès son retour",
        ),
    },
    "port_not_connected": {
        "en": (
            "a command arrived while the board's port is not open; it was not sent",
            "plug the board in (the hub reports the command as timed out)",
        ),
        "fr": (
            "une commande est arrivée alors que le port de la carte n'est pas ouvert ; elle n'a pas été envoyée",
            "branchez la carte (le hub signale la commande comme expirée)",
        ),
    },
    "port_closed_before_write": {
        "en": (
            "the port closed before a command was sent",
            "plug the board in (the hub reports the command as timed out)",
        ),
        "fr": (
            "le port s'est fermé avant l'envoi d'une commande",
            "branchez la carte (le hub signale la commande comme expirée)",
        ),
    },
    "commands_backlog": {
        "en": (
            "too many commands waiting for the port",
            "read Serial in the sketch's loop(); this command was not sent",
        ),
        "fr": (
            "trop de commandes attendent le port",
            "lisez Serial dans la loop() du croquis ; cette commande n'a pas été envoyée",
        ),
    },
    "write_failed": {
        "en": (
            "a command could not be written: {detail}",
            "is the board reading its serial port?",
        ),
        "fr": (
            "une commande n'a pas pu être écrite : {detail}",
            "la carte lit-elle son port série ?",
        ),
    },
}
