"""Settings from the environment: the seed's names and defaults are a compatibility contract."""

from __future__ import annotations

import hashlib
import json
import os
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from pia_mqtt import redact
from pia_mqtt import settings as settings_module
from pia_mqtt.errors import ConfigError
from pia_mqtt.settings import Settings, bundled_pia_ca, load_settings

SECRET_VARIABLES = (
    "PIA_PASS",
    "QBITTORRENT_PASS",
    "QBITTORRENT_API_KEY",
    "TRANSMISSION_PASS",
    "DELUGE_PASS",
    "MQTT_PASS",
    "GLUETUN_API_KEY",
)
# sha256 of PIA's published ca.rsa.4096.crt (manual-connections), as bundled.
PIA_CA_SHA256 = "32e9b1d1433ea97614f2a14c6e358e3f57c0570cc9f6b2ee812699ba696c66ab"
CREDENTIALS = {"PIA_USER": "p1234567", "PIA_PASS": "hunter2-pia-secret"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every variable Settings reads (any case), so the host cannot leak in."""
    fields = set(Settings.model_fields)
    for key in list(os.environ):
        if key.lower() in fields:
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def fresh_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered here stay here: other test modules see the registry unchanged."""
    monkeypatch.setattr(redact, "_known", set())


def setenv(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    """Set several environment variables."""
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def problems_of(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **kwargs: Any) -> list[str]:
    """The problems load_settings reports for ``env`` (fails if it loads)."""
    setenv(monkeypatch, env)
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)
    return caught.value.problems


# --- defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("port_forward_refresh_interval", 900),
        ("port_file", Path("/config/pia-port.txt")),
        ("port_data_file", Path("/config/pia-port-data.json")),
        ("state_file", Path("/config/pia-lease.json")),
        ("pia_gateway", None),
        ("pia_hostname", None),
        ("qbittorrent_host", None),
        ("qbittorrent_user", "admin"),
        ("qbittorrent_check_interval", 300),
        ("mqtt_host", None),
        ("mqtt_port", 1883),
        ("mqtt_topic", "pia-mqtt"),
        ("mqtt_tls", False),
        ("ha_discovery", True),
        ("ha_discovery_prefix", "homeassistant"),
        ("port_source", "pia"),
        ("pia_gateway_port", 19999),
        ("pia_token_url", "https://www.privateinternetaccess.com/api/client/v2/token"),
        ("log_level", "INFO"),
        ("log_format", "text"),
    ],
)
def test_every_seed_variable_has_its_documented_default(
    monkeypatch: pytest.MonkeyPatch, field: str, expected: object
) -> None:
    """With only the credentials set, each setting takes the seed's / DESIGN's default."""
    setenv(monkeypatch, CREDENTIALS)
    assert expected == getattr(load_settings(), field)


def test_the_default_gateway_ca_is_the_bundled_pia_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PIA_CA_CERT unset -> the CA shipped in the package, which is PIA's published CA."""
    setenv(monkeypatch, CREDENTIALS)
    loaded = load_settings()
    assert (None, bundled_pia_ca(), PIA_CA_SHA256) == (
        loaded.pia_ca_cert,
        loaded.ca_cert,
        hashlib.sha256(loaded.ca_cert.read_bytes()).hexdigest(),
    )


def test_seed_variables_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every seed name is honoured with its value parsed to the right type."""
    setenv(
        monkeypatch,
        {
            **CREDENTIALS,
            "PORT_FORWARD_REFRESH_INTERVAL": "300",
            "PORT_FILE": str(tmp_path / "port.txt"),
            "PORT_DATA_FILE": str(tmp_path / "data.json"),
            "PIA_GATEWAY": "10.13.128.1",
            "QBITTORRENT_HOST": "http://qbittorrent:8080",
            "QBITTORRENT_USER": "me",
            "QBITTORRENT_PASS": "qbt-secret",
        },
    )
    loaded = load_settings()
    expected = (
        "p1234567",
        "hunter2-pia-secret",
        300,
        tmp_path / "port.txt",
        tmp_path / "data.json",
        IPv4Address("10.13.128.1"),
        "http://qbittorrent:8080",
        "me",
        "qbt-secret",
        True,
    )
    actual = (
        loaded.pia_user,
        loaded.secret("pia_pass"),
        loaded.port_forward_refresh_interval,
        loaded.port_file,
        loaded.port_data_file,
        loaded.pia_gateway,
        loaded.qbittorrent_host,
        loaded.qbittorrent_user,
        loaded.secret("qbittorrent_pass"),
        loaded.qbittorrent_enabled,
    )
    assert expected == actual


# --- single problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1),
        ("60", 60),
        ("900", 900),
    ],
)
def test_refresh_interval_up_to_900_is_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    """PORT_FORWARD_REFRESH_INTERVAL from 1 to 900 seconds is fine."""
    setenv(monkeypatch, {**CREDENTIALS, "PORT_FORWARD_REFRESH_INTERVAL": value})
    assert expected == load_settings().port_forward_refresh_interval


@pytest.mark.parametrize("value", ["901", "3600", "0", "-5", "abc", "1.5"])
def test_refresh_interval_outside_1_to_900_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Above 900 PIA drops the port; zero, negatives and non-integers make no sense."""
    problems = problems_of(monkeypatch, {**CREDENTIALS, "PORT_FORWARD_REFRESH_INTERVAL": value})
    assert [True] == [p.startswith("PORT_FORWARD_REFRESH_INTERVAL: ") for p in problems]


def test_refresh_interval_above_900_explains_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """The message says what PIA does and echoes the value given."""
    problems = problems_of(monkeypatch, {**CREDENTIALS, "PORT_FORWARD_REFRESH_INTERVAL": "901"})
    expected = [
        (
            "PORT_FORWARD_REFRESH_INTERVAL: at most 900 seconds, PIA drops a port that is not "
            "re-bound within 15 minutes (got 901)"
        )
    ]
    assert expected == problems


@pytest.mark.parametrize(
    ("topic", "ok"),
    [
        ("pia-mqtt", True),
        ("home/pia-mqtt", True),
        ("a/+/b", False),
        ("+", False),
        ("pia/#", False),
        ("#", False),
        ("/pia-mqtt", False),
        ("pia-mqtt/", False),
    ],
)
def test_mqtt_topic_must_be_a_plain_topic(
    monkeypatch: pytest.MonkeyPatch, topic: str, ok: bool
) -> None:
    """Wildcards and a leading or trailing slash are rejected, naming MQTT_TOPIC."""
    setenv(monkeypatch, {**CREDENTIALS, "MQTT_TOPIC": topic})
    try:
        load_settings()
    except ConfigError as exc:
        actual = exc.problems
    else:
        actual = []
    expected = (
        []
        if ok
        else [
            (
                "MQTT_TOPIC: must be a plain topic without +, # or a leading/trailing / "
                f"(got {topic!r})"
            )
        ]
    )
    assert expected == actual


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", IPv4Address("10.0.0.1")),
        ("127.0.0.1", IPv4Address("127.0.0.1")),
        ("10.0.0.256", None),
        ("::1", None),
        ("gateway.local", None),
        ("10.0.0", None),
    ],
)
def test_pia_gateway_must_be_an_ipv4_address(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: IPv4Address | None
) -> None:
    """PIA gateways are IPv4; anything else is a problem naming PIA_GATEWAY."""
    setenv(monkeypatch, {**CREDENTIALS, "PIA_GATEWAY": value})
    try:
        actual: object = load_settings().pia_gateway
    except ConfigError as exc:
        actual = [p.split(":", 1)[0] for p in exc.problems]
    assert (expected if expected is not None else ["PIA_GATEWAY"]) == actual


@pytest.mark.parametrize(
    ("env", "require", "expected"),
    [
        ({}, False, []),
        (
            {},
            True,
            [
                "PIA_USER: required (your PIA username, p1234567)",
                "PIA_PASS: required (or PIA_PASS_FILE)",
            ],
        ),
        ({"PIA_USER": "p1234567"}, True, ["PIA_PASS: required (or PIA_PASS_FILE)"]),
        (
            {"PIA_PASS": "hunter2-pia-secret"},
            True,
            ["PIA_USER: required (your PIA username, p1234567)"],
        ),
        (CREDENTIALS, True, []),
        ({"PORT_SOURCE": "gluetun"}, True, []),
        ({"PORT_SOURCE": "gluetun"}, False, []),
    ],
)
def test_pia_credentials_are_required_only_when_asked_and_in_pia_mode(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], require: bool, expected: list[str]
) -> None:
    """require_credentials=True needs PIA_USER and PIA_PASS, unless PORT_SOURCE=gluetun."""
    setenv(monkeypatch, env)
    try:
        load_settings(require_credentials=require)
    except ConfigError as exc:
        actual = exc.problems
    else:
        actual = []
    assert expected == actual


@pytest.mark.parametrize(
    ("variable", "default"),
    [
        ("MQTT_PORT", 1883),
        ("PORT_FORWARD_REFRESH_INTERVAL", 900),
        ("QBITTORRENT_USER", "admin"),
        ("MQTT_TOPIC", "pia-mqtt"),
        ("PORT_FILE", Path("/config/pia-port.txt")),
        ("HA_DISCOVERY", True),
        ("PIA_GATEWAY", None),
        ("QBITTORRENT_HOST", None),
    ],
)
def test_an_empty_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, variable: str, default: object
) -> None:
    """``VAR=`` (common in compose files and Helm values) means the default, not an error."""
    setenv(monkeypatch, {**CREDENTIALS, variable: ""})
    assert default == getattr(load_settings(), variable.lower())


def test_an_empty_password_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PIA_PASS=`` is reported as missing, not accepted as an empty password."""
    problems = problems_of(monkeypatch, {"PIA_USER": "p1234567", "PIA_PASS": ""})
    assert ["PIA_PASS: required (or PIA_PASS_FILE)"] == problems


# --- several problems at once ---------------------------------------------------------------


def test_several_cross_check_problems_come_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every problem found after parsing is listed in one ConfigError, each naming its variable."""
    problems = problems_of(
        monkeypatch,
        {
            "PORT_FORWARD_REFRESH_INTERVAL": "1000",
            "MQTT_TOPIC": "pia/#",
            "QBITTORRENT_HOST": "qbittorrent:8080",
        },
    )
    expected = [
        "PORT_FORWARD_REFRESH_INTERVAL",
        "PIA_USER",
        "PIA_PASS",
        "QBITTORRENT_HOST",
        "MQTT_TOPIC",
    ]
    assert expected == [p.split(":", 1)[0] for p in problems]


def test_transmission_and_deluge_urls_are_checked_and_deluge_needs_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bad URLs name their variable with an example; DELUGE_URL alone asks for DELUGE_PASS."""
    problems = problems_of(
        monkeypatch,
        {
            **CREDENTIALS,
            "TRANSMISSION_URL": "transmission:9091",
            "DELUGE_URL": "http://deluge:8112",
        },
    )
    url = "http://transmission:9091/transmission/rpc"
    password = "the Web UI's password, 'deluge' until it is changed"
    assert [
        f"TRANSMISSION_URL: must be an http:// or https:// URL such as {url}",
        f"DELUGE_PASS: required with DELUGE_URL (or DELUGE_PASS_FILE): {password}",
    ] == problems


def test_several_parse_problems_come_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several unparsable values are all listed in one ConfigError, each naming its variable."""
    problems = problems_of(
        monkeypatch,
        {
            **CREDENTIALS,
            "MQTT_PORT": "abc",
            "PIA_GATEWAY": "not-an-ip",
            "HA_DISCOVERY": "perhaps",
            "QBITTORRENT_CHECK_INTERVAL": "0",
        },
    )
    expected = ["QBITTORRENT_CHECK_INTERVAL", "PIA_GATEWAY", "MQTT_PORT", "HA_DISCOVERY"]
    assert sorted(expected) == sorted(p.split(":", 1)[0] for p in problems)


def test_parse_and_cross_check_problems_come_in_one_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unparsable MQTT_PORT does not hide the too-long interval or the missing password."""
    problems = problems_of(
        monkeypatch,
        {"PIA_USER": "p1234567", "MQTT_PORT": "abc", "PORT_FORWARD_REFRESH_INTERVAL": "1000"},
    )
    expected = ["MQTT_PORT", "PORT_FORWARD_REFRESH_INTERVAL", "PIA_PASS"]
    assert sorted(expected) == sorted(p.split(":", 1)[0] for p in problems)


def test_the_error_text_lists_every_problem_on_its_own_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """str(ConfigError) is the one message the CLI prints: a header and one line per problem."""
    setenv(monkeypatch, {"PORT_FORWARD_REFRESH_INTERVAL": "901", "PIA_USER": "p1234567"})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    expected = (
        "invalid configuration:\n"
        "  - PORT_FORWARD_REFRESH_INTERVAL: at most 900 seconds, PIA drops a port that is not "
        "re-bound within 15 minutes (got 901)\n"
        "  - PIA_PASS: required (or PIA_PASS_FILE)"
    )
    assert expected == str(caught.value)


# --- secrets --------------------------------------------------------------------------------


class _WrongTypedSecret(Settings):
    """Settings whose PIA_PASS arrives as a non-string (as a future source could deliver)."""

    def __init__(self, **values: Any) -> None:
        wrong: Any = ["hunter2-wrong-type"]
        super().__init__(**{"pia_pass": wrong, **values})


def test_a_wrong_typed_secret_is_named_but_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret that fails validation names its variable; its value is not in the message."""
    monkeypatch.setattr(settings_module, "Settings", _WrongTypedSecret)
    setenv(monkeypatch, {"PIA_USER": "p1234567"})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert (["PIA_PASS"], False) == (
        [p.split(":", 1)[0] for p in caught.value.problems],
        "hunter2-wrong-type" in str(caught.value),
    )


def test_secrets_are_not_echoed_when_other_variables_are_bad(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Problems elsewhere never quote a password or API key that was set correctly."""
    secrets = {name: f"{name.lower()}-s3cret-value" for name in SECRET_VARIABLES}
    setenv(monkeypatch, {**secrets, "MQTT_PORT": "99999", "MQTT_USER": "u"})
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert [] == [value for value in secrets.values() if value in str(caught.value)]


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("s3cret-from-file\n", "s3cret-from-file"),
        ("s3cret-from-file\r\n", "s3cret-from-file"),
        ("s3cret-from-file", "s3cret-from-file"),
        ("with inner\nline\n", "with inner\nline"),
    ],
)
def test_every_secret_can_come_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, content: str, expected: str
) -> None:
    """<SECRET>_FILE is read with the trailing newline stripped (Docker/Kubernetes secrets)."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(content, encoding="utf-8")
    setenv(monkeypatch, {**CREDENTIALS, "MQTT_USER": "u", f"{variable}_FILE": str(secret_file)})
    if variable == "PIA_PASS":
        monkeypatch.delenv("PIA_PASS")
    assert expected == load_settings().secret(variable.lower())


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_secret_and_its_file_together_are_a_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    """Setting both <SECRET> and <SECRET>_FILE is ambiguous: keep one."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file-value\n", encoding="utf-8")
    problems = problems_of(
        monkeypatch,
        {
            **CREDENTIALS,
            "MQTT_USER": "u",
            variable: "from-env-value",
            f"{variable}_FILE": str(secret_file),
        },
    )
    assert [f"{variable} and {variable}_FILE are both set: keep one"] == problems


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "{var}_FILE: cannot read {path}: No such file or directory"),
        ("", "{var}_FILE: {path} is empty"),
        ("\n", "{var}_FILE: {path} is empty"),
    ],
)
def test_a_missing_or_empty_secret_file_is_a_problem(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variable: str,
    content: str | None,
    problem: str,
) -> None:
    """A secret file that cannot be read or holds nothing is named with its path."""
    secret_file = tmp_path / "secret"
    if content is not None:
        secret_file.write_text(content, encoding="utf-8")
    env = {**CREDENTIALS, "MQTT_USER": "u", f"{variable}_FILE": str(secret_file)}
    setenv(monkeypatch, env)
    if variable == "PIA_PASS":
        monkeypatch.delenv("PIA_PASS")
        expected = [
            problem.format(var=variable, path=secret_file),
            "PIA_PASS: required (or PIA_PASS_FILE)",
        ]
    else:
        expected = [problem.format(var=variable, path=secret_file)]
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected == caught.value.problems


def test_masked_shows_every_setting_but_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """check-config's view: secrets become ***, unset secrets None, *_FILE paths hidden."""
    secret_file = tmp_path / "mqtt-pass"
    secret_file.write_text("mqtt-file-s3cret\n", encoding="utf-8")
    setenv(
        monkeypatch,
        {
            **CREDENTIALS,
            "QBITTORRENT_HOST": "http://qbittorrent:8080",
            "QBITTORRENT_PASS": "qbt-s3cret-value",
            "MQTT_HOST": "127.0.0.1",
            "MQTT_USER": "mqtt-user",
            "MQTT_PASS_FILE": str(secret_file),
        },
    )
    masked = load_settings().masked()
    text = json.dumps(masked)
    leaked = [
        s for s in ("hunter2-pia-secret", "qbt-s3cret-value", "mqtt-file-s3cret") if s in text
    ]
    shown = {k: masked[k] for k in (*SECRET_VARIABLES, "PIA_USER", "MQTT_PORT", "PIA_CA_CERT")}
    expected_shown = {
        "PIA_PASS": "***",
        "QBITTORRENT_PASS": "***",
        "QBITTORRENT_API_KEY": None,
        "TRANSMISSION_PASS": None,
        "DELUGE_PASS": None,
        "MQTT_PASS": "***",
        "GLUETUN_API_KEY": None,
        "PIA_USER": "p1234567",
        "MQTT_PORT": 1883,
        "PIA_CA_CERT": str(bundled_pia_ca()),
    }
    file_keys = [
        k for k in masked if k.endswith("_FILE") and k.removesuffix("_FILE") in SECRET_VARIABLES
    ]
    assert ([], expected_shown, []) == (leaked, shown, file_keys)


def test_load_settings_registers_every_secret_with_redact(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After loading, every secret value (from env or file) is masked in any text."""
    secret_file = tmp_path / "key"
    secret_file.write_text("gluetun-api-key-value\n", encoding="utf-8")
    setenv(
        monkeypatch,
        {
            **CREDENTIALS,
            "QBITTORRENT_PASS": "qbt-s3cret-value",
            "MQTT_USER": "u",
            "MQTT_PASS": "mqtt-s3cret-value",
            "GLUETUN_API_KEY_FILE": str(secret_file),
        },
    )
    text = "hunter2-pia-secret qbt-s3cret-value mqtt-s3cret-value gluetun-api-key-value p1234567"
    assert text == redact.redact(text)
    load_settings()
    assert "*** *** *** *** p1234567" == redact.redact(text)


def test_a_failed_load_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets are registered only once the settings are accepted."""
    setenv(monkeypatch, {**CREDENTIALS, "PORT_FORWARD_REFRESH_INTERVAL": "901"})
    with pytest.raises(ConfigError):
        load_settings()
    assert "hunter2-pia-secret" == redact.redact("hunter2-pia-secret")
