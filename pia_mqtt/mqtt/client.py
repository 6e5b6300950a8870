"""The paho-mqtt client as pia-mqtt configures it, and the reading of button presses.

:func:`build_client` turns the settings into a client (client id, MQTT_USER/MQTT_PASS, TLS,
reconnect backoff) without connecting it; :func:`classify_press` tells what an inbound
message on a command topic asks for. :class:`pia_mqtt.mqtt.sink.MqttSink` owns the lifecycle.

Protocol: MQTT 5 first, for two things 3.1.1 cannot do: the subscription option "retain as
published" (a retained PRESS sent while we are connected arrives with its retain flag, so
it is recognised and cleared instead of firing) and reason codes on PUBACK (a publish the
broker's ACL refuses is reported, not assumed delivered). A broker that answers "unsupported
protocol version" gets 3.1.1 from the next attempt on (:func:`downgrade`).

paho's network thread: ``loop_start`` runs ``loop_forever(timeout=1.0)``, a wake-up every
second for nothing. :class:`Client` runs it with :data:`LOOP_TIMEOUT` instead: the thread
sleeps in ``select`` until the broker sends something, another thread publishes (paho
writes a byte to its socket pair, which is in the same ``select``), or the keep-alive ping
is due; the ping check runs after every wake-up, so a timeout of a third of the keep-alive
sends the ping at most 20 s late, well inside the broker's 1.5 x keep-alive limit.
Reconnecting (with its backoff) is ``loop_forever``'s own code, unchanged.
"""

from __future__ import annotations

import enum
import logging
import ssl
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from pia_mqtt import redact
from pia_mqtt.errors import MqttError
from pia_mqtt.mqtt import discovery
from pia_mqtt.mqtt.discovery import PRESS

if TYPE_CHECKING:
    from pia_mqtt.settings import Settings

log = logging.getLogger(__name__)

MAX_RECONNECT_DELAY = 60  # every backoff in pia-mqtt is capped at 60 s
MAX_COMMAND_BYTES = 64
KEEPALIVE = 60
LOOP_TIMEOUT = KEEPALIVE / 3
UNSUPPORTED_PROTOCOL = 132  # CONNACK "Unsupported protocol version" (3.1.1's code 1)


class Client(paho.Client):
    """paho's client whose network thread sleeps until there is work and never dies.

    The loop timeout is raised from 1 s (see the module doc).

    paho's loop retries a connect that raises OSError but lets anything else (an idna
    UnicodeError for a bad host name, a ValueError from ssl) end its thread: MQTT would
    stay silently dead. Such errors are logged and turned into OSError, so paho reports
    them (on_connect_fail) and retries with its backoff.
    """

    def reconnect(self) -> MQTTErrorCode:
        """Connect again; any failure is an OSError for paho's retry loop."""
        try:
            return super().reconnect()
        except OSError:
            raise
        except Exception as exc:  # any failure is retried, never fatal
            reason = redact.describe(exc)
            log.warning("connecting to the MQTT broker failed: %s; check MQTT_HOST", reason)
            raise OSError(reason) from None

    def _thread_main(self) -> None:
        # paho 2.x's own _thread_main, with the loop timeout raised from 1 s.
        try:
            self.loop_forever(timeout=LOOP_TIMEOUT, retry_first_connection=True)
        finally:
            self._thread = None


def uses_v5(client: paho.Client) -> bool:
    """Whether the client speaks MQTT 5 (false after :func:`downgrade`)."""
    return client.protocol == paho.MQTTv5


def downgrade(client: paho.Client) -> None:
    """Speak MQTT 3.1.1 from the next connection attempt on (the broker refused 5).

    paho has no public switch for this; it downgrades 3.1.1 to 3.1 itself the same way.
    """
    client._protocol = paho.MQTTv311  # noqa: SLF001
    client._clean_session = True  # noqa: SLF001 - what clean_start=True was in MQTT 5


class Inbound(enum.Enum):
    """What a message on a command topic asks for."""

    PRESS = "press"  # a button press: run the command
    RETAINED = "retained"  # a retained message: ignore it and clear it
    IGNORED = "ignored"  # anything else (logged here)


def default_client_id(topic: str) -> str:
    """Return the client id used when MQTT_CLIENT_ID is unset.

    Stable per instance (derived from MQTT_TOPIC, which must differ between instances):
    after a crash the new process takes over the old session, and the broker sends the old
    connection's will *before* our ``online`` instead of after it.
    """
    return discovery.device_id(topic).replace("_", "-")


def subscribe(client: paho.Client, topics: list[str], *, qos: int) -> int | None:
    """Subscribe to ``topics``; with MQTT 5 "retain as published". Returns the message id.

    Retain as published: a PRESS retained while we are connected still carries its retain
    flag, so :func:`classify_press` recognises it as a leftover and it is cleared.
    """
    if uses_v5(client):
        options = SubscribeOptions(qos=qos, retainAsPublished=True)
        _rc, mid = client.subscribe([(topic, options) for topic in topics])
    else:
        _rc, mid = client.subscribe([(topic, qos) for topic in topics])
    return mid


def build_client(s: Settings) -> paho.Client:
    """Build the paho client from the settings (not connected, no callbacks set)."""
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=s.mqtt_client_id or default_client_id(s.mqtt_topic),
        protocol=paho.MQTTv5,
    )
    if s.mqtt_user:
        client.username_pw_set(s.mqtt_user, s.secret("mqtt_pass"))
    if s.mqtt_tls or s.mqtt_ca_cert or s.mqtt_client_cert:
        try:
            client.tls_set(
                ca_certs=str(s.mqtt_ca_cert) if s.mqtt_ca_cert else None,
                certfile=str(s.mqtt_client_cert) if s.mqtt_client_cert else None,
                keyfile=str(s.mqtt_client_key) if s.mqtt_client_key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ValueError) as exc:
            raise MqttError(
                "setting up TLS for MQTT: check MQTT_CA_CERT, MQTT_CLIENT_CERT and "
                f"MQTT_CLIENT_KEY ({redact.describe(exc)})"
            ) from None
    client.reconnect_delay_set(min_delay=1, max_delay=MAX_RECONNECT_DELAY)
    return client


def classify_press(msg: paho.MQTTMessage) -> Inbound:
    """Tell whether a message on a command topic is a press; log why it is not."""
    if not msg.payload:  # how a retained message is cleared (by us, too): not a command
        log.debug("empty message on %s", msg.topic)
        return Inbound.IGNORED
    if msg.retain:
        # A leftover retained PRESS would fire on every reconnect: ignore it, and clear it.
        # With MQTT 5 (retain as published) this also catches one retained while connected.
        log.warning("ignoring a retained message on %s and clearing it", msg.topic)
        return Inbound.RETAINED
    if len(msg.payload) > MAX_COMMAND_BYTES:
        log.warning(
            "ignoring a %d-byte message on %s (expected PRESS)", len(msg.payload), msg.topic
        )
        return Inbound.IGNORED
    try:
        text = msg.payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        log.warning("ignoring a message on %s that is not UTF-8 (expected PRESS)", msg.topic)
        return Inbound.IGNORED
    if text != PRESS:
        log.warning("ignoring %r on %s (expected PRESS)", redact.redact(text)[:20], msg.topic)
        return Inbound.IGNORED
    return Inbound.PRESS
