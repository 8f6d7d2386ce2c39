"""What the hub says about a payload it refused: per problem code (devices.decode, devices.validate, the
ingest pipeline), a message and a hint in English and French. Rendered by devices.feedback.
"""

from __future__ import annotations

from collections.abc import Mapping

# code: {lang: (message, hint)}
PAYLOAD_TEXTS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "payload_too_large": {
        "en": (
            "payload of {size} bytes is over the {limit}-byte limit",
            "send one reading per message, with short field names",
        ),
        "fr": (
            "message de {size} octets, au-delà de la limite de {limit} octets",
            "envoyez une mesure par message, avec des noms de champs courts",
        ),
    },
    "bad_utf8": {
        "en": (
            "payload is not valid UTF-8 (bad byte at offset {offset})",
            'send text: JSON like {{"temperature": 21.5}}; check the serial baud rate or the buffer you publish',
        ),
        "fr": (
            "le message n'est pas de l'UTF-8 valide (octet invalide à la position {offset})",
            'envoyez du texte : du JSON comme {{"temperature": 21.5}} ; vérifiez le tampon que vous publiez',
        ),
    },
    "invalid_unicode": {
        "en": (
            "payload holds a broken text escape (a lone \\u surrogate such as \\ud800) in {field}",
            "send plain UTF-8 text; if your code builds JSON by hand, let a JSON library escape strings",
        ),
        "fr": (
            "le message contient un échappement de texte cassé (un \\u isolé comme \\ud800) dans {field}",
            "envoyez du texte UTF-8 ; si votre code écrit le JSON à la main, laissez une bibliothèque JSON le faire",
        ),
    },
    "empty_payload": {
        "en": ("payload is empty", 'publish a JSON object such as {{"temperature": 21.5}}'),
        "fr": ("le message est vide", 'publiez un objet JSON comme {{"temperature": 21.5}}'),
    },
    "unrecognised_payload": {
        "en": (
            "payload is neither JSON, line protocol nor a number",
            'publish a JSON object such as {{"temperature": 21.5}}',
        ),
        "fr": (
            "le message n'est ni du JSON, ni du line protocol, ni un nombre",
            'publiez un objet JSON comme {{"temperature": 21.5}}',
        ),
    },
    "bare_value_needs_field": {
        "en": (
            "a bare value needs the field name in the topic",
            'publish {value} on …/telemetry/<field>, e.g. …/telemetry/temperature, or send {{"temperature": {value}}}',
        ),
        "fr": (
            "une valeur seule doit avoir le nom du champ dans le topic",
            'publiez {value} sur …/telemetry/<champ>, par ex. …/telemetry/temperature, ou envoyez {{"temperature": {value}}}',
        ),
    },
    "json_too_deep": {
        "en": ("JSON is nested too deeply", 'send a flat object: {{"field": value, …}}'),
        "fr": ("JSON trop imbriqué", 'envoyez un objet plat : {{"champ": valeur, …}}'),
    },
    "json_unquoted_key": {
        "en": (
            "invalid JSON: keys must be quoted",
            'keys must be quoted in JSON: write {{"pm2_5": 3}}, not {{pm2_5: 3}}',
        ),
        "fr": (
            "JSON invalide : les clés doivent être entre guillemets",
            'les clés doivent être entre guillemets doubles en JSON : écrivez {{"pm2_5": 3}}, pas {{pm2_5: 3}}',
        ),
    },
    "json_single_quotes": {
        "en": (
            "invalid JSON: strings use single quotes",
            "JSON needs double quotes: write {{\"pm2_5\": 3}}, not {{'pm2_5': 3}}",
        ),
        "fr": (
            "JSON invalide : apostrophes au lieu de guillemets",
            "le JSON exige des guillemets doubles : {{\"pm2_5\": 3}}, pas {{'pm2_5': 3}}",
        ),
    },
    "json_trailing_comma": {
        "en": (
            "invalid JSON: comma before a closing brace",
            'remove the last comma: {{"a": 1, "b": 2}}, not {{"a": 1, "b": 2,}}',
        ),
        "fr": (
            "JSON invalide : virgule avant l'accolade fermante",
            'supprimez la dernière virgule : {{"a": 1, "b": 2}}, pas {{"a": 1, "b": 2,}}',
        ),
    },
    "invalid_json": {
        "en": (
            "invalid JSON at line {line}, column {column}: {detail}",
            "check the characters around that column; print the payload on the serial monitor before publishing",
        ),
        "fr": (
            "JSON invalide ligne {line}, colonne {column} : {detail}",
            "vérifiez les caractères autour de cette colonne ; affichez le message sur le moniteur série avant de le publier",
        ),
    },
    "number_too_long": {
        "en": (
            "a number in the payload has thousands of digits",
            "send numbers as a sensor reads them: up to 19 digits",
        ),
        "fr": (
            "un nombre du message a des milliers de chiffres",
            "envoyez les nombres tels que le capteur les lit : 19 chiffres au plus",
        ),
    },
    "internal_error": {
        "en": (
            "the hub failed on this message (a bug of ours, logged for the trainers)",
            "nothing to change on your side if the payload follows the contract; tell your trainer",
        ),
        "fr": (
            "le hub a échoué sur ce message (un bogue de notre côté, journalisé)",
            "rien à changer de votre côté si le message respecte le contrat ; prévenez votre formateur",
        ),
    },
    "not_an_object": {
        "en": ("payload is a JSON {got}, not an object", 'wrap the values in an object: {{"temperature": 21.5}}'),
        "fr": (
            "le message est un {got} JSON, pas un objet",
            'mettez les valeurs dans un objet : {{"temperature": 21.5}}',
        ),
    },
    "two_timestamps": {
        "en": ("more than one timestamp key", "send the time under one key only: ts"),
        "fr": ("plusieurs clés d'horodatage", "envoyez l'heure sous une seule clé : ts"),
    },
    "too_many_lines": {
        "en": ("{size} lines in one message (limit {limit})", "split the batch into several messages"),
        "fr": ("{size} lignes dans un message (limite {limit})", "découpez le lot en plusieurs messages"),
    },
    "invalid_line_protocol": {
        "en": ("invalid line protocol: {detail}", "write: measurement field=1.5,other=2 [timestamp]"),
        "fr": ("line protocol invalide : {detail}", "écrivez : mesure champ=1.5,autre=2 [horodatage]"),
    },
    "duplicate_field": {
        "en": ("field '{field}' appears twice", "send each field once per reading"),
        "fr": ("le champ '{field}' apparaît deux fois", "envoyez chaque champ une seule fois par mesure"),
    },
    "empty_reading": {
        "en": ("the reading has no fields", 'send at least one field: {{"temperature": 21.5}}'),
        "fr": ("la mesure ne contient aucun champ", 'envoyez au moins un champ : {{"temperature": 21.5}}'),
    },
    "too_many_fields": {
        "en": ("{size} fields in one reading (limit {limit})", "send fewer fields, or split them across devices"),
        "fr": (
            "{size} champs dans une mesure (limite {limit})",
            "envoyez moins de champs, ou répartissez-les sur plusieurs appareils",
        ),
    },
    "too_many_distinct_fields": {
        "en": (
            "new field '{field}': this device already has {limit} different field names",
            "reuse your existing field names (a field name is a column, not a value); ask your trainer if you "
            "really need more",
        ),
        "fr": (
            "nouveau champ '{field}' : cet appareil a déjà {limit} noms de champs différents",
            "réutilisez vos noms de champs (un nom de champ est une colonne, pas une valeur) ; demandez à votre "
            "formateur s'il vous en faut vraiment plus",
        ),
    },
    "unknown_field_suggest": {
        "en": (
            "unknown field '{field}' for a device of kind {kind} — did you mean '{suggestion}'?",
            "rename '{field}' to '{suggestion}' in your code; known fields: {known}",
        ),
        "fr": (
            "champ inconnu '{field}' pour un appareil de type {kind} — vouliez-vous dire '{suggestion}' ?",
            "renommez '{field}' en '{suggestion}' dans votre code ; champs connus : {known}",
        ),
    },
    "unknown_field": {
        "en": ("unknown field '{field}' for a device of kind {kind}", "use one of: {known}"),
        "fr": ("champ inconnu '{field}' pour un appareil de type {kind}", "utilisez l'un de : {known}"),
    },
    "out_of_range": {
        "en": (
            "{field} = {value} is outside {minimum}–{maximum} {unit}",
            "a real sensor cannot report this ({sensor}); check the wiring, the unit and the conversion in your code",
        ),
        "fr": (
            "{field} = {value} est hors de {minimum}–{maximum} {unit}",
            "un vrai capteur ne peut pas donner cette valeur ({sensor}) ; vérifiez le câblage, l'unité et la conversion dans votre code",
        ),
    },
    "wrong_type": {
        "en": ("{field} should be a {expected}, got a {got}", 'send {field} as a {expected}, e.g. {{"{field}": 12.5}}'),
        "fr": (
            "{field} doit être un(e) {expected}, reçu : {got}",
            'envoyez {field} comme {expected}, par ex. {{"{field}": 12.5}}',
        ),
    },
    "number_as_string": {
        "en": ("{field} is a number inside quotes", 'send {value} without quotes: {{"{field}": {value}}}'),
        "fr": ("{field} est un nombre entre guillemets", 'envoyez {value} sans guillemets : {{"{field}": {value}}}'),
    },
    "not_finite": {
        "en": (
            "{field} is {value}, not a number a database can store",
            "the sensor read failed (often a disconnected sensor): skip the field or the reading instead of sending NaN",
        ),
        "fr": (
            "{field} vaut {value}, ce n'est pas un nombre stockable",
            "la lecture du capteur a échoué (souvent un capteur débranché) : n'envoyez pas ce champ plutôt que NaN",
        ),
    },
    "integer_too_large": {
        "en": ("{field}: integer does not fit in 64 bits", "send a smaller number, or a float"),
        "fr": ("{field} : l'entier ne tient pas sur 64 bits", "envoyez un nombre plus petit, ou un flottant"),
    },
    "bad_field_name": {
        "en": (
            "field name '{field}' is not allowed",
            "use letters, digits and '_', starting with a letter (max 64), e.g. '{suggestion}'",
        ),
        "fr": (
            "le nom de champ '{field}' n'est pas permis",
            "utilisez lettres, chiffres et '_', en commençant par une lettre (64 max), par ex. '{suggestion}'",
        ),
    },
    "reserved_field_name": {
        "en": (
            "field name '{field}' is reserved by the hub",
            "pick another name; the hub sets cohort, learner, device and time itself",
        ),
        "fr": (
            "le nom de champ '{field}' est réservé",
            "choisissez un autre nom ; le hub fixe lui-même cohort, learner, device et time",
        ),
    },
    "string_too_long": {
        "en": (
            "{field}: string of {size} characters (limit {limit})",
            "send short status strings; numbers belong in numeric fields",
        ),
        "fr": (
            "{field} : texte de {size} caractères (limite {limit})",
            "envoyez des textes courts ; les nombres vont dans des champs numériques",
        ),
    },
    "control_character": {
        "en": (
            "{field}: string contains control characters",
            "remove newlines and other control characters from the text",
        ),
        "fr": (
            "{field} : le texte contient des caractères de contrôle",
            "retirez les retours à la ligne et autres caractères de contrôle",
        ),
    },
    "type_changed": {
        "en": (
            "{field} was a {pinned} and is now a {got}",
            "a field keeps its first type: keep sending {field} as a {pinned}, or use a new field name",
        ),
        "fr": (
            "{field} était un {pinned} et devient un {got}",
            "un champ garde son premier type : continuez à envoyer {field} comme {pinned}, ou utilisez un autre nom",
        ),
    },
    "timestamp_invalid": {
        "en": (
            "timestamp {value} is not a number",
            "send ts as epoch seconds, milliseconds or nanoseconds, or leave it out and the hub stamps the reading",
        ),
        "fr": (
            "l'horodatage {value} n'est pas un nombre",
            "envoyez ts en secondes, millisecondes ou nanosecondes epoch, ou omettez-le : le hub horodate la mesure",
        ),
    },
    "timestamp_since_boot": {
        "en": (
            "timestamp {value} looks like time since the board started, not a date",
            "millis() counts from power-on: sync the clock with NTP, or leave ts out and the hub stamps the reading",
        ),
        "fr": (
            "l'horodatage {value} ressemble au temps depuis le démarrage de la carte, pas à une date",
            "millis() compte depuis la mise sous tension : synchronisez l'horloge par NTP, ou omettez ts",
        ),
    },
    "timestamp_out_of_range": {
        "en": (
            "timestamp {value} (read as {unit}) is {as_date}, too far from now ({now})",
            "set the board's clock with NTP, or leave ts out and the hub stamps the reading",
        ),
        "fr": (
            "l'horodatage {value} (lu en {unit}) correspond à {as_date}, trop loin de maintenant ({now})",
            "réglez l'horloge de la carte par NTP, ou omettez ts : le hub horodate la mesure",
        ),
    },
    "timestamp_collision": {
        "en": (
            "two readings carry the same timestamp {value}; the database keeps only the last one",
            "send ts in milliseconds, or leave it out and the hub stamps each reading uniquely",
        ),
        "fr": (
            "deux mesures portent le même horodatage {value} ; la base ne garde que la dernière",
            "envoyez ts en millisecondes, ou omettez-le : le hub horodate chaque mesure de façon unique",
        ),
    },
    "unknown_device": {
        "en": (
            "device {value} is not registered in this lab",
            "ask your trainer to add the device, or check the cohort/learner/device names in your topic",
        ),
        "fr": (
            "l'appareil {value} n'est pas enregistré dans ce labo",
            "demandez à votre formateur d'ajouter l'appareil, ou vérifiez les noms dans votre topic",
        ),
    },
    "storage_rejected": {
        "en": (
            "the database refused the reading: {detail}",
            "a field probably changed type (number ↔ text): keep one type per field name",
        ),
        "fr": (
            "la base a refusé la mesure : {detail}",
            "un champ a sans doute changé de type (nombre ↔ texte) : gardez un type par nom de champ",
        ),
    },
    "type_conflict": {
        "en": (
            "{field} is stored as a {pinned} in this lab, got a {got}",
            "send {field} as a {pinned}, or use a new field name",
        ),
        "fr": (
            "{field} est stocké comme {pinned} dans ce labo, reçu : {got}",
            "envoyez {field} comme {pinned}, ou utilisez un autre nom de champ",
        ),
    },
}
