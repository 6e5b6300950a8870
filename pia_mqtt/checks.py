"""Checks of single configuration values, for :mod:`pia_mqtt.settings`.

Each check returns the problem as one line naming the variable (or None), touches no
network, and never raises: ``check-config`` and ``run`` list the same problems because
both get them from :func:`pia_mqtt.settings.load_settings`, which calls these.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pia_mqtt import redact
from pia_mqtt.atomic import UnsafeFileError, read_regular
from pia_mqtt.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

    from pia_mqtt.settings import Settings

# A DNS label (underscores too: Docker service names have them and its DNS serves them).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_BOM = b"\xef\xbb\xbf"
MAX_SECRET_FILE_BYTES = 64 * 1024
COMMAND_VARIABLE = "PORT_CHANGE_COMMAND"
# Each URL variable's own example, shown when its value is not usable.
URL_EXAMPLES = {
    "QBITTORRENT_HOST": "http://qbittorrent:8080",
    "TRANSMISSION_URL": "http://transmission:9091/transmission/rpc",
    "DELUGE_URL": "http://deluge:8112/json",
    "GLUETUN_CONTROL_URL": "http://gluetun:8000",
    "PIA_TOKEN_URL": "https://www.privateinternetaccess.com/api/client/v2/token",
}


def is_hostname(host: str) -> bool:
    """Tell whether ``host`` is a usable DNS name (labels of 1-63 characters, at most 253)."""
    try:
        # The form the resolver gets (an internationalised name becomes xn--...); this is
        # where paho and requests fail on an empty label such as broker..lan.
        name = host.removesuffix(".").encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_problem(name: str, host: str, *, example: str) -> str | None:
    """A host name or IP address (``broker..lan`` is neither: paho would die on it)."""
    if _is_ip(host) or is_hostname(host):
        return None
    return f"{name}: {host!r} is not a valid host name or IP address (such as {example})"


def url_problem(name: str, url: str) -> str | None:
    """An http(s) URL with a valid host and port; the example is the variable's own."""
    example = URL_EXAMPLES.get(name, "http://host:port")
    wrong = f"{name}: must be an http:// or https:// URL such as {example}"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        return f"{wrong} (it does not parse as a URL)"
    if parts.scheme not in ("http", "https") or not host:
        return wrong
    if not (_is_ip(host) or is_hostname(host)):
        return f"{name}: {host!r} is not a valid host name or IP address (such as {example})"
    return None


def ca_file_problem(name: str, path: Path) -> str | None:
    """A file holding at least one PEM certificate that OpenSSL can load."""
    if not path.is_file():
        return f"{name}: no such file {path}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"{name}: {path} holds no usable PEM certificate ({_ssl_reason(exc)})"
    if not context.cert_store_stats().get("x509"):
        return f"{name}: {path} holds no certificate"
    return None


def client_cert_problem(cert: Path, key: Path) -> str | None:
    """MQTT_CLIENT_CERT and MQTT_CLIENT_KEY load together (an unencrypted key that matches)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # A passphrase callback: without one OpenSSL would prompt on the terminal.
        context.load_cert_chain(str(cert), str(key), password=lambda: b"")
    except (ssl.SSLError, OSError, ValueError) as exc:
        return (
            "MQTT_CLIENT_CERT and MQTT_CLIENT_KEY: cannot be loaded together "
            f"({_ssl_reason(exc)}); give a PEM certificate and its unencrypted key"
        )
    return None


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason or type(exc).__name__).replace("_", " ").lower()


def read_secret_file(name: str, path: Path) -> tuple[str | None, str | None]:
    """Read ``<NAME>_FILE``: ``(value, None)`` or ``(None, problem)``.

    A leading UTF-8 byte order mark and trailing newlines are dropped (editors add them);
    anything else that is not UTF-8 is a problem naming the variable, never the value.
    """
    variable = f"{name.upper()}_FILE"
    try:
        data, _mode = read_regular(path, limit=MAX_SECRET_FILE_BYTES)
    except UnsafeFileError as exc:
        return None, f"{variable}: cannot use {path}: {exc}"
    except OSError as exc:
        return None, f"{variable}: cannot read {path}: {exc.strerror or type(exc).__name__}"
    data = data.removeprefix(_BOM).rstrip(b"\r\n")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"{variable}: {path} is not UTF-8 text; save it as UTF-8"
    if not text:
        return None, f"{variable}: {path} is empty"
    return text, None


def same_file_problems(paths: dict[str, Path]) -> list[str]:
    """Output files that are one file (PORT_FILE = STATE_FILE would overwrite the lease)."""
    seen: dict[str, str] = {}
    problems: list[str] = []
    for name, path in paths.items():
        real = os.path.realpath(path)
        if real in seen:
            problems.append(
                f"{seen[real]} and {name}: both are {path}; give each its own file "
                "(one would overwrite the other)"
            )
        else:
            seen[real] = name
    return problems


def split_command(command_line: str) -> list[str]:
    """Split PORT_CHANGE_COMMAND like a shell would; raises ConfigError if it cannot."""
    try:
        argv = shlex.split(command_line)
    except ValueError as exc:
        message = f"{COMMAND_VARIABLE}: cannot be split like a shell would: {exc}"
        raise ConfigError([message]) from None
    if not argv:
        raise ConfigError([f"{COMMAND_VARIABLE}: is empty"])
    return argv


def command_problem(command_line: str) -> str | None:
    """What :func:`split_command` would refuse, as a problem line."""
    try:
        split_command(command_line)
    except ConfigError as exc:
        return exc.problems[0]
    return None


_PATTERN_HINTS = {"log_level": "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"}


def field_problem(err: Any, secret_fields: Collection[str]) -> str:
    """One pydantic validation error as a line naming the variable (secret values not shown)."""
    field = str(err["loc"][0]) if err["loc"] else "?"
    name = field.upper()
    message = err["msg"]
    if err.get("type") == "string_pattern_mismatch" and field in _PATTERN_HINTS:
        message = _PATTERN_HINTS[field]  # not the raw regular expression
    if field in secret_fields:
        return f"{name}: {message}"
    return f"{name}: {message} (got {redact.redact(err.get('input'))!r})"


def pia_problems(s: Settings) -> list[str]:
    """PIA_CA_CERT (a loadable certificate) and PIA_HOSTNAME (a server name)."""
    problems: list[str] = []
    if s.pia_ca_cert is not None and (problem := ca_file_problem("PIA_CA_CERT", s.pia_ca_cert)):
        problems.append(problem)
    if s.pia_hostname is not None and not is_hostname(s.pia_hostname):
        problems.append(
            f"PIA_HOSTNAME: {s.pia_hostname!r} is not a valid server name (such as milano402); "
            "unset it to learn the name from the gateway's certificate"
        )
    return problems


def sweep_problems(s: Settings) -> list[str]:
    """GATEWAY_SWEEP: a range of the N in 10.N.0.1 within 0-255, or off."""
    octets = s.sweep_octets
    if octets is None or 0 <= octets.start < octets.stop <= 256:
        return []
    problem = (
        "GATEWAY_SWEEP: a range of N within 0-255 such as 0-255 or 13-13, or off "
        f"(got {s.gateway_sweep!r})"
    )
    return [problem]


def peer_problems(s: Settings) -> list[str]:
    """The URLs of the torrent clients, gluetun and PIA's token endpoint; DELUGE_PASS."""
    problems: list[str] = []
    for name, url in (
        ("QBITTORRENT_HOST", s.qbittorrent_host),
        ("TRANSMISSION_URL", s.transmission_url),
        ("DELUGE_URL", s.deluge_url),
        ("GLUETUN_CONTROL_URL", s.gluetun_control_url),
        ("PIA_TOKEN_URL", s.pia_token_url),
    ):
        if url is not None and (problem := url_problem(name, url)):
            problems.append(problem)
    if s.deluge_url is not None and s.deluge_pass is None:
        problems.append(
            "DELUGE_PASS: required with DELUGE_URL (or DELUGE_PASS_FILE): the Web UI's "
            "password, 'deluge' until it is changed"
        )
    return problems


def local_problems(s: Settings) -> list[str]:
    """PORT_CHANGE_COMMAND as the hook splits it, and output files that are one file."""
    problems: list[str] = []
    if s.port_change_command and (problem := command_problem(s.port_change_command)):
        problems.append(problem)
    files = {"PORT_FILE": s.port_file, "PORT_DATA_FILE": s.port_data_file}
    return problems + same_file_problems({**files, "STATE_FILE": s.state_file})


def mqtt_problems(s: Settings) -> list[str]:
    """The MQTT settings: topics, MQTT_HOST, TLS files, user and password."""
    problems: list[str] = []
    topic = s.mqtt_topic
    if not topic or any(c in topic for c in "+#\0") or topic.startswith("/") or topic.endswith("/"):
        problems.append(
            "MQTT_TOPIC: must be a plain topic without +, # or a leading/trailing / "
            f"(got {topic!r})"
        )
    prefix = s.ha_discovery_prefix
    if not prefix or any(c in prefix for c in "+#\0"):
        problems.append(f"HA_DISCOVERY_PREFIX: must be a plain topic (got {prefix!r})")
    if s.mqtt_host is not None and (
        problem := host_problem("MQTT_HOST", s.mqtt_host, example="mosquitto or 192.0.2.10")
    ):
        problems.append(problem)
    if (s.mqtt_client_cert is None) != (s.mqtt_client_key is None):
        problems.append("MQTT_CLIENT_CERT and MQTT_CLIENT_KEY: set both or neither")
    missing = False
    for name in ("mqtt_client_cert", "mqtt_client_key"):
        path: Path | None = getattr(s, name)
        if path is not None and not path.is_file():
            problems.append(f"{name.upper()}: no such file {path}")
            missing = True
    if s.mqtt_ca_cert is not None and (problem := ca_file_problem("MQTT_CA_CERT", s.mqtt_ca_cert)):
        problems.append(problem)
    if s.mqtt_client_cert and s.mqtt_client_key and not missing:
        problem = client_cert_problem(s.mqtt_client_cert, s.mqtt_client_key)
        problems += [problem] if problem else []
    if s.mqtt_user is None and s.mqtt_pass is not None:
        problems.append("MQTT_USER: required when MQTT_PASS is set")
    return problems
