"""gluetun's control server client: reading what gluetun forwards, errors that name the fix.

Pushing our port is tests/test_gluetun_push.py, following gluetun's port
tests/test_gluetun_follow.py, whole daemons tests/test_gluetun_e2e.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pia_mqtt.errors import GluetunError
from pia_mqtt.gluetun.client import (
    GluetunAuthError,
    GluetunClient,
    GluetunPortReader,
    GluetunReplyError,
    GluetunUnavailableError,
)
from tests.fake_gluetun import GET_LEGACY, GET_PF, FakeGluetun
from tests.fixtures.common import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "k3y-for-the-control-server"


@pytest.fixture
def gluetun() -> Iterator[FakeGluetun]:
    """Serve a fake gluetun without auth (as before gluetun had roles)."""
    with FakeGluetun() as fake:
        yield fake


@pytest.fixture
def keyed() -> Iterator[FakeGluetun]:
    """Serve a fake gluetun whose apikey role covers the port-forward routes."""
    with FakeGluetun(api_key=KEY) as fake:
        yield fake


def reader_for(url: str, api_key: str | None = None) -> GluetunPortReader:
    """Build a reader as the engine does for PORT_SOURCE=gluetun."""
    return GluetunPortReader(GluetunClient(url, api_key=api_key, timeout=5.0))


def read_error(reader: GluetunPortReader) -> GluetunError:
    """Return the GluetunError one read raises (and close the reader)."""
    with pytest.raises(GluetunError) as caught:
        reader.read()
    reader.close()
    return caught.value


# --- reading the port (PORT_SOURCE=gluetun) ---------------------------------------------


def test_port_zero_while_gluetun_starts_means_not_forwarded_yet() -> None:
    """Before its tunnel first came up gluetun says ports null, then []: no port, never 0."""
    with FakeGluetun(started=False) as fake:
        reader = reader_for(fake.url)
        before_start = reader.read()
        fake.start()
        started_without_port = reader.read()
        reader.close()
    assert (before_start.port, before_start.started) == (None, False)
    assert (started_without_port.port, started_without_port.started) == (None, True)


def test_reads_the_forwarded_port_and_follows_its_changes(gluetun: FakeGluetun) -> None:
    """{"port": N, "ports": [N]} gives N; a new port is seen at the next read."""
    reader = reader_for(gluetun.url)
    gluetun.forward(51413)
    first = reader.read().port
    gluetun.forward(40001)
    second = reader.read().port
    reader.close()
    assert (first, second) == (51413, 40001)
    assert gluetun.requests == [GET_PF, GET_PF]


def test_older_reply_shape_and_several_ports_give_the_first() -> None:
    """v3.41.0/1 answer {"port": N} or {"ports": [...]}: both are understood, first port used."""
    with FakeGluetun(older_shape=True) as fake:
        reader = reader_for(fake.url)
        fake.forward(30000)
        single = reader.read()
        fake.forward(30001, 30002)
        several = reader.read()
        reader.close()
    assert (single.ports, single.port, single.shape) == ((30000,), 30000, "port")
    assert (several.ports, several.port, several.shape) == ((30001, 30002), 30001, "ports")


def test_current_reply_shape_with_several_ports(gluetun: FakeGluetun) -> None:
    """{"port": N, "ports": [N, M]} (v3.41.2+, development builds): every port, N first."""
    gluetun.forward(30001, 30002)
    reader = reader_for(gluetun.url)
    reply = reader.read()
    reader.close()
    assert (reply.ports, reply.port, reply.shape, reply.started) == (
        (30001, 30002),
        30001,
        "port+ports",
        True,
    )


def test_falls_back_to_the_legacy_route_when_gluetun_lacks_the_new_one() -> None:
    """A gluetun without /v1/portforward (400 not found) is read on /v1/openvpn/portforwarded."""
    with FakeGluetun(legacy_only=True) as fake:
        fake.forward(45678)
        reader = reader_for(fake.url)
        ports = [reader.read().port, reader.read().port]
        reader.close()
    assert ports == [45678, 45678]
    # The legacy route is remembered: the new one is asked only once.
    assert fake.requests == [GET_PF, GET_LEGACY, GET_LEGACY]


def test_default_auth_roles_leave_only_the_legacy_route_public() -> None:
    """v3.40's default 'public' role covers the legacy GET only: it is used without a key."""
    with FakeGluetun(
        api_key=KEY,
        key_routes=frozenset(),
        public_routes=frozenset({GET_LEGACY}),
        legacy_only=True,
    ) as fake:
        fake.forward(23456)
        reader = reader_for(fake.url)
        port = reader.read().port
        reader.close()
    assert port == 23456


def test_a_gluetun_upgraded_past_the_legacy_route_is_followed_through_its_301() -> None:
    """Read on the legacy route (v3.40), gluetun upgraded: its 301 leads back to the new route."""
    with FakeGluetun(legacy_only=True) as fake:
        fake.forward(45678)
        reader = reader_for(fake.url)
        before = reader.read().port
        fake.legacy_only = False
        fake.restart_process()
        fake.start()
        fake.forward(45679)
        after = [reader.read().port, reader.read().port]
        reader.close()
    assert (before, after) == (45678, [45679, 45679])
    # Legacy (301), then the new route it points to, and from then on the new route only.
    assert fake.requests[-3:] == [GET_LEGACY, GET_PF, GET_PF]


def test_api_key_travels_in_the_x_api_key_header(keyed: FakeGluetun) -> None:
    """With GLUETUN_API_KEY set the protected route answers."""
    keyed.forward(34567)
    reader = reader_for(keyed.url, KEY)
    port = reader.read().port
    reader.close()
    assert port == 34567
    assert keyed.requests == [GET_PF]


def test_wrong_api_key_is_an_auth_error_naming_the_variable_not_the_key(keyed: FakeGluetun) -> None:
    """401 with a wrong key: GluetunAuthError names GLUETUN_API_KEY and the role routes."""
    error = read_error(reader_for(keyed.url, "wrong-key-value"))
    assert isinstance(error, GluetunAuthError)
    text = str(error)
    assert text == (
        f"gluetun's control server at {keyed.url} refused GET /v1/portforward (HTTP 401, "
        "GLUETUN_API_KEY was not accepted): set GLUETUN_API_KEY to the API key of a role with "
        'auth = "apikey" whose routes include "GET /v1/portforward", in gluetun\'s '
        "control-server auth config (HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH, e.g. "
        "/gluetun/auth/config.toml)"
    )
    assert "wrong-key-value" not in text
    assert KEY not in text


def test_missing_api_key_is_an_auth_error_saying_none_is_set(keyed: FakeGluetun) -> None:
    """401 without a key: the message says GLUETUN_API_KEY is not set."""
    error = read_error(reader_for(keyed.url))
    assert isinstance(error, GluetunAuthError)
    assert "HTTP 401, no GLUETUN_API_KEY set" in str(error)


def test_unreachable_control_server_names_gluetun_control_url() -> None:
    """Nothing listening: GluetunUnavailableError naming GLUETUN_CONTROL_URL."""
    url = f"http://127.0.0.1:{free_port()}"
    error = read_error(reader_for(url))
    assert isinstance(error, GluetunUnavailableError)
    assert f"cannot reach gluetun's control server at {url} for GET /v1/portforward" in str(error)
    assert "check GLUETUN_CONTROL_URL" in str(error)


def test_a_url_that_is_not_the_control_server_is_a_reply_error(gluetun: FakeGluetun) -> None:
    """A wrong path in GLUETUN_CONTROL_URL: gluetun's 404 for the first route is reported."""
    error = read_error(reader_for(gluetun.url + "/wrong"))
    assert isinstance(error, GluetunReplyError)
    assert str(error).startswith(
        f"gluetun's control server at {gluetun.url}/wrong answered HTTP 404 to GET "
        "/v1/portforward (Not Found): check GLUETUN_CONTROL_URL"
    )


def test_credentials_in_the_url_never_show_in_messages() -> None:
    """Basic-auth user:password@ written into GLUETUN_CONTROL_URL is left out of errors."""
    url = f"http://someone:s3cret-pw@127.0.0.1:{free_port()}"
    error = read_error(reader_for(url))
    assert "s3cret-pw" not in str(error)
    assert "someone" not in str(error)


def test_client_refuses_to_push_port_zero_or_nothing(gluetun: FakeGluetun) -> None:
    """set_forwarded_ports([0]) and ([]) raise before any request."""
    client = GluetunClient(gluetun.url, api_key=None)
    for ports in ([0], [], [70000]):
        with pytest.raises(ValueError, match="refusing to push invalid ports"):
            client.set_forwarded_ports(ports)
    client.close()
    assert gluetun.requests == []


def test_a_redirect_elsewhere_is_refused_and_the_key_never_travels(keyed: FakeGluetun) -> None:
    """A 301 to another address is an error naming GLUETUN_CONTROL_URL; nothing is sent there."""
    with FakeGluetun() as elsewhere:
        original = keyed.answer

        def redirect(
            method: str, target: str, headers: dict[str, str], body: bytes
        ) -> tuple[int, dict[str, str], bytes]:
            if target.startswith("/v1/portforward"):
                return 301, {"Location": f"{elsewhere.url}/v1/portforward"}, b""
            return original(method, target, headers, body)

        keyed.answer = redirect  # type: ignore[method-assign]
        error = read_error(reader_for(keyed.url, KEY))
    assert isinstance(error, GluetunReplyError)
    assert str(error) == (
        f"gluetun's control server at {keyed.url} redirects GET /v1/portforward to "
        f"{elsewhere.url}/v1/portforward: check GLUETUN_CONTROL_URL"
    )
    assert elsewhere.requests == []
