"""Settings from the environment, with the seed README's names and defaults.

Every secret also accepts ``<NAME>_FILE`` (Docker and Kubernetes secrets). A bad
configuration raises :class:`~pia_mqtt.errors.ConfigError` listing every problem at once,
each naming the variable to fix; secret values are never echoed.
"""

from __future__ import annotations

import os
from enum import StrEnum
from importlib import resources
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from pia_mqtt import checks, redact
from pia_mqtt.errors import ConfigError

PIA_TOKEN_URL = "https://www.privateinternetaccess.com/api/client/v2/token"  # noqa: S105
# PIA drops a forwarded port that is not re-bound within 15 minutes.
MAX_REFRESH_INTERVAL = 900
DEFAULT_GLUETUN_URL = "http://127.0.0.1:8000"
SECRET_FIELDS = (
    "pia_pass",
    "qbittorrent_pass",
    "qbittorrent_api_key",
    "transmission_pass",
    "deluge_pass",
    "mqtt_pass",
    "gluetun_api_key",
)


class PortSource(StrEnum):
    """Where the forwarded port comes from."""

    PIA = "pia"
    GLUETUN = "gluetun"


class LogFormat(StrEnum):
    """How log lines are written."""

    TEXT = "text"
    JSON = "json"


def bundled_pia_ca() -> Path:
    """Path of PIA's public CA certificate shipped inside the package."""
    return Path(str(resources.files("pia_mqtt.pia").joinpath("pia-ca.rsa.4096.crt")))


Port = Annotated[int, Field(ge=1, le=65535)]


class Settings(BaseModel):
    """The daemon's configuration; field ``x_y`` is read from ``X_Y`` (see :func:`from_env`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # PIA (seed names)
    pia_user: str | None = None
    pia_pass: SecretStr | None = None
    pia_pass_file: Path | None = None
    port_forward_refresh_interval: int = Field(default=MAX_REFRESH_INTERVAL, ge=1)
    port_file: Path = Path("/config/pia-port.txt")
    port_data_file: Path = Path("/config/pia-port-data.json")
    pia_gateway: IPv4Address | None = None
    pia_hostname: str | None = None
    state_file: Path = Path("/config/pia-lease.json")
    # advanced / testing
    pia_token_url: str = PIA_TOKEN_URL
    pia_ca_cert: Path | None = None
    pia_gateway_port: Port = 19999
    gateway_watch_interval: float = Field(default=2.0, gt=0, le=300)
    gateway_probe_target: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")
    gateway_sweep: str = Field(default="0-255", pattern=r"(?i)^(off|\d{1,3}(-\d{1,3})?)$")
    # qBittorrent
    qbittorrent_host: str | None = None
    qbittorrent_user: str = "admin"
    qbittorrent_pass: SecretStr | None = None
    qbittorrent_pass_file: Path | None = None
    qbittorrent_api_key: SecretStr | None = None
    qbittorrent_api_key_file: Path | None = None
    # 300 s, not 60: at one a minute the check alone cost more CPU per hour than PIA's own
    # loop (docs/performance.md); a tunnel change re-applies at once, not through it.
    qbittorrent_check_interval: int = Field(default=300, ge=1)
    # Transmission and Deluge (the Web UI); QBITTORRENT_CHECK_INTERVAL paces their checks too
    transmission_url: str | None = None
    transmission_user: str | None = None
    transmission_pass: SecretStr | None = None
    transmission_pass_file: Path | None = None
    deluge_url: str | None = None
    deluge_pass: SecretStr | None = None
    deluge_pass_file: Path | None = None
    # MQTT
    mqtt_host: str | None = None
    mqtt_port: Port = 1883
    mqtt_user: str | None = None
    mqtt_pass: SecretStr | None = None
    mqtt_pass_file: Path | None = None
    mqtt_tls: bool = False
    mqtt_ca_cert: Path | None = None
    mqtt_client_cert: Path | None = None
    mqtt_client_key: Path | None = None
    mqtt_client_id: str | None = None
    mqtt_topic: str = "pia-mqtt"
    ha_discovery: bool = True
    ha_discovery_prefix: str = "homeassistant"
    # hook and gluetun
    port_change_command: str | None = None
    port_change_command_timeout: float = Field(default=60.0, gt=0, le=3600)
    port_source: PortSource = PortSource.PIA
    gluetun_control_url: str | None = None
    gluetun_api_key: SecretStr | None = None
    gluetun_api_key_file: Path | None = None
    gluetun_check_interval: float = Field(default=30.0, gt=0)
    # status page, probes and metrics (off unless HTTP_PORT is set)
    http_port: Port | None = None
    # All addresses by default, so that Kubernetes probes (sent to the pod IP) reach it.
    http_address: IPv4Address | IPv6Address = IPv4Address("0.0.0.0")  # noqa: S104
    # logging
    log_level: str = Field(default="INFO", pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: LogFormat = LogFormat.TEXT

    @property
    def ca_cert(self) -> Path:
        """The CA that gateway certificates must chain to."""
        return self.pia_ca_cert or bundled_pia_ca()

    @property
    def probe_target(self) -> str | None:
        """Where the hop probe sends toward: GATEWAY_PROBE_TARGET, else PIA_TOKEN_URL's host."""
        return self.gateway_probe_target or urlsplit(self.pia_token_url).hostname

    @property
    def sweep_octets(self) -> range | None:
        """The N of the sweep's ``10.N.0.1``/``10.N.128.1`` (None: no sweep)."""
        if self.gateway_sweep.lower() == "off":
            return None
        first, _, last = self.gateway_sweep.partition("-")
        return range(int(first), int(last or first) + 1)

    @property
    def gluetun_url(self) -> str:
        """The gluetun control server URL, with the default filled in."""
        return (self.gluetun_control_url or DEFAULT_GLUETUN_URL).rstrip("/")

    @property
    def qbittorrent_enabled(self) -> bool:
        """Whether qBittorrent is to be kept in sync."""
        return self.qbittorrent_host is not None

    @property
    def http_enabled(self) -> bool:
        """Whether the status endpoint listens (HTTP_PORT set)."""
        return self.http_port is not None

    @property
    def mqtt_enabled(self) -> bool:
        """Whether to publish to MQTT."""
        return self.mqtt_host is not None

    def secret(self, name: str) -> str | None:
        """The plain value of a secret field (``pia_pass``...), or None."""
        value: SecretStr | None = getattr(self, name)
        return value.get_secret_value() if value is not None else None

    def masked(self) -> dict[str, Any]:
        """Every effective setting with secrets masked, for ``check-config``."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            if name.endswith("_file") and name.removesuffix("_file") in SECRET_FIELDS:
                continue
            value = getattr(self, name)
            if name in SECRET_FIELDS:
                shown[name.upper()] = "***" if value is not None else None
            elif isinstance(value, StrEnum):
                shown[name.upper()] = value.value
            elif isinstance(value, Path | IPv4Address | IPv6Address):
                shown[name.upper()] = str(value)
            else:
                shown[name.upper()] = value
        shown["PIA_CA_CERT"] = str(self.ca_cert)
        # Derived values as they will be used, not null.
        if self.mqtt_enabled and self.mqtt_client_id is None:
            from pia_mqtt.mqtt.client import default_client_id  # noqa: PLC0415 - paho

            shown["MQTT_CLIENT_ID"] = default_client_id(self.mqtt_topic)
        if self.port_source is PortSource.GLUETUN or self.gluetun_control_url:
            shown["GLUETUN_CONTROL_URL"] = self.gluetun_url
        return shown


def _read_secret_files(values: Settings, problems: list[str]) -> dict[str, SecretStr]:
    resolved: dict[str, SecretStr] = {}
    for name in SECRET_FIELDS:
        path: Path | None = getattr(values, f"{name}_file")
        if path is None:
            continue
        if getattr(values, name) is not None:
            problems.append(f"{name.upper()} and {name.upper()}_FILE are both set: keep one")
            continue
        text, problem = checks.read_secret_file(name, path)
        if problem is not None or text is None:
            problems.append(problem or f"{name.upper()}_FILE: {path} is empty")
            continue
        resolved[name] = SecretStr(text)
    return resolved


def _cross_checks(s: Settings, *, require_credentials: bool) -> list[str]:
    problems: list[str] = []
    if s.port_forward_refresh_interval > MAX_REFRESH_INTERVAL:
        problems.append(
            "PORT_FORWARD_REFRESH_INTERVAL: at most 900 seconds, PIA drops a port that is not "
            f"re-bound within 15 minutes (got {s.port_forward_refresh_interval})"
        )
    if require_credentials and s.port_source is PortSource.PIA:
        if not s.pia_user:
            problems.append("PIA_USER: required (your PIA username, p1234567)")
        if s.pia_pass is None:
            problems.append("PIA_PASS: required (or PIA_PASS_FILE)")
    problems += checks.pia_problems(s) + checks.sweep_problems(s) + checks.peer_problems(s)
    return problems + checks.local_problems(s) + checks.mqtt_problems(s)


def from_env() -> dict[str, str]:
    """Each field's environment variable (any case; empty counts as unset), as text.

    Every field is a scalar that pydantic converts from text, so plain pydantic is enough:
    pydantic-settings cost the daemon 1.4 MiB of resident memory for nothing more. A value
    that is not UTF-8 is left out here and reported by :func:`undecodable`.
    """
    names = {name.upper(): name for name in Settings.model_fields}
    return {
        names[key.upper()]: value
        for key, value in os.environ.items()
        if value and key.upper() in names and _utf8(value)
    }


def _utf8(value: str) -> bool:
    # os.environ holds undecodable bytes as lone surrogates (surrogateescape).
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def undecodable() -> list[str]:
    """One problem per setting whose value holds bytes that are not UTF-8 (value not shown)."""
    names = {name.upper() for name in Settings.model_fields}
    return [
        f"{key.upper()}: holds bytes that are not UTF-8 text; set it again as UTF-8"
        for key, value in sorted(os.environ.items())
        if key.upper() in names and not _utf8(value)
    ]


def load_settings(*, require_credentials: bool = True) -> Settings:
    """Read and check the settings from the environment.

    Raises ConfigError listing every problem. ``require_credentials=False`` serves the
    commands that never talk to PIA's token endpoint (check-config, detect-gateway,
    healthcheck).
    """
    problems: list[str] = undecodable()
    bad: set[str] = {p.split(":", 1)[0].lower() for p in problems}
    try:
        settings = Settings.model_validate(from_env())
    except ValidationError as exc:
        problems += [checks.field_problem(e, SECRET_FIELDS) for e in exc.errors()]
        # Check the rest too, with the bad fields at their defaults, so that one run
        # reports every problem.
        fields = Settings.model_fields
        bad |= {str(e["loc"][0]) for e in exc.errors() if e["loc"]} & set(fields)
        try:
            defaults = {name: fields[name].get_default() for name in bad}
            settings = Settings.model_validate({**from_env(), **defaults})
        except (ValidationError, TypeError):
            raise ConfigError(problems) from None
    secrets = _read_secret_files(settings, problems)
    if secrets:
        settings = settings.model_copy(update=secrets)
    # A field already reported as invalid is not reported again as missing.
    problems += [
        problem
        for problem in _cross_checks(settings, require_credentials=require_credentials)
        if problem.split(":", 1)[0].lower() not in bad
    ]
    if problems:
        raise ConfigError(problems)
    redact.register(*(settings.secret(name) for name in SECRET_FIELDS))
    return settings
