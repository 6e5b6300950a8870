"""Every exception pia-mqtt raises, in one tree.

::

    PiaMqttError                    anything this package raises on purpose
    ├── ConfigError                 settings are wrong: exit status 2, names the variables
    ├── PiaError                    talking to PIA failed
    │   ├── PiaAuthError            token endpoint refused PIA_USER/PIA_PASS (do not hammer)
    │   ├── PiaUnavailableError     network fault, timeout, 5xx: transient, retry with backoff
    │   ├── PiaTLSError             the gateway did not prove it is PIA: never fall back
    │   ├── PiaReplyError           a reply we cannot use (bad JSON, base64, port 0, ...)
    │   └── PiaRefusedError         the gateway refused the signature (busy, bad signature,
    │                               unauthorized, expired): a new signature is the cure
    ├── GatewayNotFoundError        no candidate answered like a PIA gateway
    ├── OutputError                 a port file or the state file could not be written
    ├── TorrentClientError          a torrent client's API failed (any client)
    │   ├── TorrentAuthError        refused credentials: the sink latches, no retry loop
    │   ├── TorrentBannedError      the client locked us out: retry only rarely
    │   ├── TorrentUnavailableError down, timeout, unexpected reply: retry later
    │   └── QbittorrentError        qBittorrent's Web API failed; its leaves are also the
    │       │                       generic kinds above (QbittorrentAuthError is a
    │       │                       TorrentAuthError, and so on)
    │       ├── QbittorrentAuthError    wrong QBITTORRENT_USER/QBITTORRENT_PASS or API key
    │       │   └── QbittorrentApiKeyUnsupportedError  QBITTORRENT_API_KEY on a
    │       │                       qBittorrent before 5.2, which cannot check it
    │       ├── QbittorrentBannedError  qBittorrent banned our IP (403 on login)
    │       ├── QbittorrentHostHeaderError  401 from Host-header validation (port mapping)
    │       └── QbittorrentUnavailableError down, timeout, unexpected reply
    ├── GluetunError                gluetun's control server failed (auth, not ready, down);
    │   │                           its leaves live in pia_mqtt.gluetun.client
    │   ├── GluetunAuthError        401/403: the role or GLUETUN_API_KEY
    │   ├── GluetunUnavailableError no answer: GLUETUN_CONTROL_URL, gluetun down
    │   ├── GluetunNotReadyError    5xx that passes (its tunnel has not come up yet)
    │   ├── GluetunReplyError       an answer we cannot use (wrong URL, not a port)
    │   └── GluetunRefusedError     PUT refused for good: GluetunNoPutRouteError (tagged
    │                               release), GluetunProviderForwardsError (its provider
    │                               forwards itself)
    └── MqttError                   the broker settings cannot work (bad topic, TLS files)

Messages say what was being done and what the user should change, naming the environment
variable. No message ever contains a password, token, payload or signature: clients build
messages from :func:`pia_mqtt.redact.redact` output only.
"""

from __future__ import annotations


class PiaMqttError(Exception):
    """Base of every error pia-mqtt raises on purpose."""


class ConfigError(PiaMqttError):
    """The settings cannot work; ``problems`` lists one line per variable to fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class PiaError(PiaMqttError):
    """Talking to PIA's token endpoint or gateway failed."""


class PiaAuthError(PiaError):
    """PIA's token endpoint refused the credentials (check PIA_USER/PIA_PASS)."""


class PiaUnavailableError(PiaError):
    """A network fault, timeout or server error: transient, retried with backoff."""


class PiaTLSError(PiaUnavailableError):
    """The gateway's certificate did not verify against PIA's CA or the expected name."""


class PiaReplyError(PiaError):
    """PIA answered with something we cannot use (bad JSON, base64, missing port...)."""


class PiaRefusedError(PiaError):
    """The gateway refused a payload+signature; a new signature is needed.

    ``reason`` is one of ``busy``, ``bad_signature``, ``unauthorized``, ``expired``,
    ``refused``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class GatewayNotFoundError(PiaMqttError):
    """No gateway candidate answered on the PIA API port with PIA's certificate."""


class OutputError(PiaMqttError):
    """A port file, data file or the state file could not be written."""


class TorrentClientError(PiaMqttError):
    """A torrent client's API failed (the torrent sink handles every client alike)."""


class TorrentAuthError(TorrentClientError):
    """The client refused our credentials: the sink latches instead of retrying."""


class TorrentBannedError(TorrentClientError):
    """The client locked us out (too many failed logins): retry only rarely."""


class TorrentUnavailableError(TorrentClientError):
    """The client is down, slow, or answered something unexpected: retry later."""


class QbittorrentError(TorrentClientError):
    """qBittorrent's Web API failed."""


class QbittorrentAuthError(QbittorrentError, TorrentAuthError):
    """qBittorrent refused QBITTORRENT_USER/QBITTORRENT_PASS or QBITTORRENT_API_KEY."""


class QbittorrentApiKeyUnsupportedError(QbittorrentAuthError):
    """QBITTORRENT_API_KEY is set but qBittorrent is older than 5.2 and cannot check it."""


class QbittorrentBannedError(QbittorrentError, TorrentBannedError):
    """qBittorrent banned this client's IP after too many failed logins."""


class QbittorrentHostHeaderError(QbittorrentError):
    """qBittorrent answered 401 to a Host header it does not accept (port mapping)."""


class QbittorrentUnavailableError(QbittorrentError, TorrentUnavailableError):
    """qBittorrent is down, slow, or answered something unexpected."""


class GluetunError(PiaMqttError):
    """gluetun's control server failed (auth, not ready, down)."""


class MqttError(PiaMqttError):
    """The MQTT settings cannot work (topic, TLS files)."""


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception and all it wraps (args, urllib3's ``reason``, cause, context), once each.

    Library errors are translated at the boundary by what they wrap (a TLS failure inside
    a requests ConnectionError inside a MaxRetryError...): this is the walk they share.
    """
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        item = todo.pop(0)
        if any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [a for a in item.args if isinstance(a, BaseException)]
        wrapped = getattr(item, "reason", None)
        if isinstance(wrapped, BaseException):
            todo.append(wrapped)
        todo += [e for e in (item.__cause__, item.__context__) if e is not None]
    return seen
