"""Commands over MQTT: arms' acknowledgements in, MQTT apps' requests in, every command's result out.

A request on `…/commands/request` is checked exactly like an HTTP one; a refusal is answered on the device's
`…/commands/result` topic, where every transition of every command is published too. An unreadable
acknowledgement is counted and logged (once a minute per device), never raised.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from devices.arm import CommandError, decode_ack
from devices.text import json_has_surrogates
from devices.topics import TopicError, parse_topic
from hub.adapters.mqtt import Message
from hub.commands.audit import text_of
from hub.commands.relay import CommandRecord, CommandRelay, OfflineError

MALFORMED = {"code": "malformed", "message": "a command request is a JSON object of valid UTF-8 text"}


class CommandMessages:
    def __init__(
        self,
        relay: CommandRelay,
        publish: Callable[[str, bytes], object],
        warn: Callable[..., None],
    ) -> None:
        self._relay = relay
        self._publish = publish  # QoS 0: results are for whoever listens now
        self._warn = warn  # (source, message, *args): logged at most once a minute per source
        self.unreadable_acks = 0

    def handle(self, msg: Message) -> None:
        """An arm's acknowledgement, or a command request from an MQTT app (validated exactly like HTTP ones)."""
        try:
            parsed = parse_topic(msg.topic)
        except TopicError:
            return
        if parsed.channel == "ack":
            try:
                self._relay.on_ack(parsed.ref, decode_ack(msg.payload))
            except ValueError as err:
                self.unreadable_acks += 1
                self._warn(parsed.ref.key, "%s: unreadable acknowledgement: %s", parsed.ref.key, err)
            return
        request_id = None
        try:
            request = json.loads(msg.payload)
            if json_has_surrogates(request):
                raise ValueError("not valid Unicode")
            if isinstance(request, dict) and request.get("request_id") is not None:
                request_id = text_of(request["request_id"])[:64]
            self._relay.submit(parsed.ref, request, "mqtt", request_id=request_id)
        except CommandError as err:
            body: dict[str, object] = {"request_id": request_id, "state": "refused", "error": err.as_json()}
            self._publish(parsed.ref.topic("commands/result"), json.dumps(body).encode())
        except (ValueError, RecursionError):
            body = {"request_id": None, "state": "refused", "error": MALFORMED}
            self._publish(parsed.ref.topic("commands/result"), json.dumps(body).encode())
        except OfflineError:
            pass  # its `failed` result has been published like every other transition

    def publish_result(self, record: CommandRecord) -> None:
        """A relay listener: each transition of a command, on its device's results topic."""
        self._publish(record.device.topic("commands/result"), json.dumps(record.as_json()).encode())
