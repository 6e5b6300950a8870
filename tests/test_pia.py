"""The PIA client against the HTTPS simulator: token, getSignature, bindPort, TLS, secrets."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from pia_mqtt.core.model import GatewayTarget
from pia_mqtt.errors import (
    PiaAuthError,
    PiaError,
    PiaRefusedError,
    PiaReplyError,
    PiaTLSError,
    PiaUnavailableError,
)
from pia_mqtt.pia.client import PiaClient
from pia_mqtt.pia.lease import parse_signature_reply
from pia_mqtt.simulator.pia import (
    BAD_JSON,
    BAD_SIGNATURE,
    BUSY,
    HTML_PAGE,
    NO_AUTH_DATA,
    NOT_OK,
    SERVER_ERROR,
    UNAUTHORIZED_CLIENT,
    WRONG_CREDENTIALS,
    GatewayStats,
    PiaSimulator,
    Reply,
    SimGateway,
    payload_reply,
)
from tests.fixtures.common import free_port
from tests.fixtures.pia import SIM_PASS, SIM_USER

ClientFactory = Callable[..., PiaClient]
GATEWAY = GatewayTarget(address="127.0.0.1", hostname="sim-gateway-1")


@pytest.fixture
def make_client(pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClientFactory]:
    """Build clients against the simulator; the token CA comes from REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))
    clients: list[PiaClient] = []

    def make(**overrides: object) -> PiaClient:
        options: dict[str, object] = {
            "username": SIM_USER,
            "password": SIM_PASS,
            "token_url": pia_sim.token_url,
            "ca_file": pia_sim.ca_file,
            "gateway_port": pia_sim.gateways[0].port,
            "timeout": 2.0,
        }
        options.update(overrides)
        client = PiaClient(**options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: ClientFactory) -> PiaClient:
    """Build a client with the simulator's settings."""
    return make_client()


@pytest.fixture
def gateway(pia_sim: PiaSimulator) -> SimGateway:
    """Return the simulator's first gateway."""
    return pia_sim.gateways[0]


# --- token -------------------------------------------------------------------------------


def test_token_is_fetched_with_the_configured_credentials(
    client: PiaClient, pia_sim: PiaSimulator
) -> None:
    """A POST with the right username/password returns a token the gateways accept."""
    token = client.get_token()
    assert pia_sim.valid_token(token)
    assert (
        pia_sim.token_endpoint.stats().requests,
        pia_sim.token_endpoint.stats().issued,
    ) == (1, 1)


def test_wrong_password_names_the_variables_and_not_the_password(
    make_client: ClientFactory,
) -> None:
    """401 from the token endpoint: PiaAuthError naming PIA_USER/PIA_PASS, no password."""
    client = make_client(password="wrong-secret-pw")
    with pytest.raises(PiaAuthError) as caught:
        client.get_token()
    assert "PIA_USER" in str(caught.value)
    assert "PIA_PASS" in str(caught.value)
    assert "wrong-secret-pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (WRONG_CREDENTIALS, PiaAuthError),
        (Reply(403, '{"message": "Forbidden"}'), PiaAuthError),
        (Reply(200, '{"status": "ERROR"}'), PiaAuthError),
        (Reply(200, '{"token": ""}'), PiaAuthError),
        (SERVER_ERROR, PiaUnavailableError),
        (Reply(503, "busy"), PiaUnavailableError),
        (HTML_PAGE, PiaReplyError),
        (BAD_JSON, PiaReplyError),
        (Reply(404, "<html>not found</html>", "text/html"), PiaReplyError),
    ],
    ids=["401", "403", "200-no-token", "200-empty-token", "500", "503", "html", "bad-json", "404"],
)
def test_token_endpoint_faults_map_to_errors(
    client: PiaClient, pia_sim: PiaSimulator, reply: Reply, expected: type[PiaError]
) -> None:
    """Each kind of bad token reply raises the error class the engine acts on."""
    pia_sim.token_endpoint.fail_next(reply)
    with pytest.raises(PiaError) as caught:
        client.get_token()
    assert expected is type(caught.value)


def test_token_endpoint_timeout_is_transient(
    make_client: ClientFactory, pia_sim: PiaSimulator
) -> None:
    """No answer within the timeout: PiaUnavailableError saying so."""
    client = make_client(timeout=0.3)
    pia_sim.token_endpoint.delay_next(3.0)
    with pytest.raises(PiaUnavailableError, match=r"no answer within 0\.3 s"):
        client.get_token()


def test_token_endpoint_down_is_transient(client: PiaClient, pia_sim: PiaSimulator) -> None:
    """Connection refused on the token endpoint: PiaUnavailableError."""
    pia_sim.token_endpoint.stop()
    with pytest.raises(PiaUnavailableError, match="connection refused"):
        client.get_token()


def test_token_endpoint_is_verified_with_the_normal_trust_store(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without REQUESTS_CA_BUNDLE the simulator's token CA is unknown: refused, hint given."""
    client = make_client()
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(PiaUnavailableError, match="REQUESTS_CA_BUNDLE") as caught:
        client.get_token()
    assert not isinstance(caught.value, PiaTLSError)


# --- getSignature ------------------------------------------------------------------------


def test_signature_is_kept_exactly_as_received(client: PiaClient, gateway: SimGateway) -> None:
    """GetSignature returns a Lease whose raw text is the reply byte for byte."""
    lease = client.get_signature(GATEWAY, client.get_token())
    assert gateway.last_signature_reply == lease.raw
    assert (lease.port,) == gateway.stats().issued_ports


@pytest.mark.parametrize(
    ("reply", "expected", "reason"),
    [
        (NOT_OK, PiaReplyError, "may not offer port forwarding"),
        (BAD_JSON, PiaReplyError, "not JSON"),
        (HTML_PAGE, PiaReplyError, "not JSON"),
        (payload_reply("not base64!!"), PiaReplyError, "not base64"),
        (
            payload_reply({"token": "t", "port": 0, "expires_at": "2030-01-01T00:00:00Z"}),
            PiaReplyError,
            "no valid port",
        ),
        (
            payload_reply({"token": "t", "expires_at": "2030-01-01T00:00:00Z"}),
            PiaReplyError,
            "no valid port",
        ),
        (payload_reply({"token": "t", "port": 4242}), PiaReplyError, "no expires_at"),
        (Reply(200, '{"status": "OK"}'), PiaReplyError, "no payload or signature"),
        (NO_AUTH_DATA, PiaReplyError, "no auth data"),
        (Reply(404, "<html>nope</html>", "text/html"), PiaReplyError, "not JSON"),
        (SERVER_ERROR, PiaUnavailableError, "HTTP 500"),
        (UNAUTHORIZED_CLIENT, PiaRefusedError, "unauthorized client"),
    ],
    ids=[
        "not-ok",
        "bad-json",
        "html",
        "bad-base64",
        "port-0",
        "no-port",
        "no-expiry",
        "no-payload",
        "no-auth-data",
        "404-html",
        "500",
        "unauthorized",
    ],
)
def test_signature_faults_map_to_errors(
    client: PiaClient,
    gateway: SimGateway,
    reply: Reply,
    expected: type[PiaError],
    reason: str,
) -> None:
    """Each malformed or refused getSignature reply raises the right error with a cause."""
    token = client.get_token()
    gateway.fail_next(reply)
    with pytest.raises(PiaError) as caught:
        client.get_signature(GATEWAY, token)
    assert expected is type(caught.value)
    assert reason in str(caught.value)


def test_signature_with_an_unknown_token_is_refused(client: PiaClient) -> None:
    """A token the token endpoint never issued: refused (a new token is the cure)."""
    with pytest.raises(PiaRefusedError) as caught:
        client.get_signature(GATEWAY, "0" * 64)
    assert caught.value.reason == "unauthorized"


def test_signature_timeout_and_gateway_down_are_transient(
    make_client: ClientFactory, gateway: SimGateway
) -> None:
    """A slow gateway and a closed port both raise PiaUnavailableError (not TLS)."""
    client = make_client(timeout=0.3)
    token = client.get_token()
    gateway.delay_next(3.0)
    with pytest.raises(PiaUnavailableError, match=r"no answer within 0\.3 s") as slow:
        client.get_signature(GATEWAY, token)
    gateway.stop()
    with pytest.raises(PiaUnavailableError, match="connection refused") as down:
        client.get_signature(GATEWAY, token)
    assert (PiaUnavailableError, PiaUnavailableError) == (type(slow.value), type(down.value))


def test_gateway_back_after_a_restart_is_used_again(client: PiaClient, gateway: SimGateway) -> None:
    """After the gateway went down and came back on its port, requests work again."""
    token = client.get_token()
    client.get_signature(GATEWAY, token)
    gateway.stop()
    with pytest.raises(PiaUnavailableError):
        client.get_signature(GATEWAY, token)
    gateway.start()
    lease = client.get_signature(GATEWAY, token)
    assert lease.port == gateway.stats().issued_ports[-1]


# --- bindPort -------------------------------------------------------------------------------


def test_bind_sends_the_payload_byte_for_byte(
    client: PiaClient, gateway: SimGateway, pia_sim: PiaSimulator
) -> None:
    """A payload with '+', '/', '=' and a 9-digit fraction reaches the gateway unchanged."""
    token = next(
        t
        for t in (f"~?>~?>{'a' * mid}~?>~?>{'b' * tail}" for mid in range(3) for tail in range(3))
        if _b64_has_specials(t)
    )
    raw = gateway.issue_signature(token, port=41234, expires_at="2099-01-02T03:04:05.123456789Z")
    lease = parse_signature_reply(raw)
    assert {"+", "/", "="} <= set(lease.payload)
    client.bind(GATEWAY, lease)
    assert lease.payload == gateway.last_payload
    assert gateway.stats().bound_ports == (41234,)
    assert pia_sim.verify(lease.payload, lease.signature)


def _b64_has_specials(token: str) -> bool:
    data = {"token": token, "port": 41234, "expires_at": "2099-01-02T03:04:05.123456789Z"}
    encoded = base64.b64encode(json.dumps(data).encode()).decode()
    return {"+", "/", "="} <= set(encoded)


def test_keep_alive_binds_reuse_one_connection(client: PiaClient, gateway: SimGateway) -> None:
    """GetSignature and repeated binds go over one kept-alive TLS connection."""
    lease = client.get_signature(GATEWAY, client.get_token())
    for _ in range(3):
        client.bind(GATEWAY, lease)
    expected = GatewayStats(
        connections=1,
        signature_requests=1,
        binds_ok=3,
        binds_failed=0,
        issued_ports=(lease.port,),
        bound_ports=(lease.port,) * 3,
    )
    assert expected == gateway.stats()


@pytest.mark.parametrize(
    ("reply", "expected", "reason"),
    [
        (BUSY, PiaRefusedError, "busy"),
        (BAD_SIGNATURE, PiaRefusedError, "bad_signature"),
        (UNAUTHORIZED_CLIENT, PiaRefusedError, "unauthorized"),
        (Reply(200, '{"status": "ERROR", "message": "nope"}'), PiaRefusedError, "refused"),
        (
            Reply(200, '{"status": "ERROR", "message": "payload expired"}'),
            PiaRefusedError,
            "expired",
        ),
        (HTML_PAGE, PiaReplyError, None),
        (BAD_JSON, PiaReplyError, None),
        (SERVER_ERROR, PiaUnavailableError, None),
    ],
    ids=["busy", "bad-signature", "unauthorized", "not-ok", "expired", "html", "bad-json", "500"],
)
def test_bind_faults_map_to_errors(
    client: PiaClient,
    gateway: SimGateway,
    reply: Reply,
    expected: type[PiaError],
    reason: str | None,
) -> None:
    """Each bindPort refusal or junk reply raises the right error (and refusal reason)."""
    lease = client.get_signature(GATEWAY, client.get_token())
    gateway.fail_next(reply)
    with pytest.raises(PiaError) as caught:
        client.bind(GATEWAY, lease)
    assert expected is type(caught.value)
    assert reason == getattr(caught.value, "reason", None)


def test_bind_after_expiry_is_refused_as_expired(client: PiaClient) -> None:
    """Two months later the gateway refuses the signature: reason ``expired``."""
    lease = client.get_signature(GATEWAY, client.get_token())
    with (
        time_machine.travel(datetime.now(UTC) + timedelta(days=61)),
        pytest.raises(PiaRefusedError) as caught,
    ):
        client.bind(GATEWAY, lease)
    assert caught.value.reason == "expired"


def test_signature_from_one_gateway_binds_on_another(
    make_client: ClientFactory, pia_sim: PiaSimulator
) -> None:
    """PIA: payload+signature are valid on every server; a strict gateway says bad signature."""
    first = make_client()
    lease = first.get_signature(GATEWAY, first.get_token())
    open_gw = pia_sim.add_gateway(cn="sim-gateway-2")
    strict_gw = pia_sim.add_gateway(cn="sim-gateway-3", accepts_foreign=False)
    make_client(gateway_port=open_gw.port).bind(GatewayTarget("127.0.0.1", "sim-gateway-2"), lease)
    with pytest.raises(PiaRefusedError) as caught:
        make_client(gateway_port=strict_gw.port).bind(
            GatewayTarget("127.0.0.1", "sim-gateway-3"), lease
        )
    assert ((lease.port,), ()) == (open_gw.stats().bound_ports, strict_gw.stats().bound_ports)
    assert caught.value.reason == "bad_signature"


# --- TLS -----------------------------------------------------------------------------------


def test_certificate_with_the_name_only_in_the_cn_is_accepted(
    make_client: ClientFactory, pia_sim: PiaSimulator
) -> None:
    """A CN-only certificate (no subjectAltName) matches on its CN, as PIA's older ones do."""
    cn_only = pia_sim.add_gateway(cn="milano402", san=False)
    client = make_client(gateway_port=cn_only.port)
    lease = client.get_signature(GatewayTarget("127.0.0.1", "milano402"), client.get_token())
    assert (lease.port,) == cn_only.stats().issued_ports


def test_certificate_for_another_name_is_refused(client: PiaClient, gateway: SimGateway) -> None:
    """A PIA-signed certificate for another server: PiaTLSError naming PIA_HOSTNAME."""
    token = client.get_token()
    with pytest.raises(PiaTLSError, match="PIA_HOSTNAME") as caught:
        client.get_signature(GatewayTarget("127.0.0.1", "Server-11555-2a"), token)
    assert "'sim-gateway-1', not 'Server-11555-2a'" in str(caught.value)
    assert gateway.stats().signature_requests == 0


def test_certificate_from_another_ca_is_refused(
    make_client: ClientFactory, pia_sim: PiaSimulator, gateway: SimGateway
) -> None:
    """Trusting only another CA file, the gateway's chain fails: PiaTLSError."""
    client = make_client(ca_file=pia_sim.token_ca_file)
    with pytest.raises(PiaTLSError, match="unable to get local issuer certificate"):
        client.get_signature(GATEWAY, client.get_token())
    assert gateway.stats().signature_requests == 0


def test_gateway_ignores_requests_ca_bundle(
    make_client: ClientFactory, pia_sim: PiaSimulator
) -> None:
    """A server trusted by REQUESTS_CA_BUNDLE (the token endpoint) is no PIA gateway."""
    client = make_client(gateway_port=pia_sim.token_endpoint.port)
    with pytest.raises(PiaTLSError):
        client.get_signature(GatewayTarget("127.0.0.1", "localhost"), "0" * 64)


def test_nothing_listening_is_not_a_tls_error(make_client: ClientFactory) -> None:
    """A wrong gateway port: connection refused, PiaUnavailableError but not PiaTLSError."""
    client = make_client(gateway_port=free_port())
    with pytest.raises(PiaUnavailableError) as caught:
        client.get_signature(GATEWAY, "0" * 64)
    assert not isinstance(caught.value, PiaTLSError)


# --- secrets -------------------------------------------------------------------------------


def test_secrets_never_reach_exception_text_or_logs(
    make_client: ClientFactory,
    pia_sim: PiaSimulator,
    gateway: SimGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Token, payload, signature and password stay out of every error and DEBUG log line."""
    caplog.set_level(logging.DEBUG)
    client = make_client(timeout=0.3)
    token = client.get_token()
    lease = client.get_signature(GATEWAY, token)
    client.bind(GATEWAY, lease)
    errors: list[BaseException] = []
    faults: list[Callable[[], object]] = [
        lambda: gateway.fail_next(BAD_SIGNATURE),
        lambda: gateway.fail_next(BUSY),
        lambda: gateway.fail_next(HTML_PAGE),
        lambda: gateway.delay_next(2.0),
    ]
    for fault in faults:
        fault()
        errors.append(_raised(lambda: client.bind(GATEWAY, lease)))
    errors.append(_raised(lambda: client.get_signature(GatewayTarget("127.0.0.1", "x"), token)))
    errors.append(_raised(lambda: make_client(ca_file=pia_sim.token_ca_file).bind(GATEWAY, lease)))
    gateway.stop()
    errors.append(_raised(lambda: client.bind(GATEWAY, lease)))
    errors.append(_raised(lambda: client.get_signature(GATEWAY, token)))
    pia_sim.token_endpoint.fail_next(WRONG_CREDENTIALS)
    errors.append(_raised(client.get_token))
    texts = [caplog.text] + ["".join(traceback.format_exception(e)) for e in errors]
    secrets = [token, lease.payload, lease.signature, SIM_PASS]
    leaks = [(s[:8], t[:200]) for t in texts for s in secrets if s in t]
    assert leaks == []
    assert "token=***" in caplog.text


def _raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except PiaError as exc:
        return exc
    raise AssertionError("no PiaError raised")


def test_importing_the_client_does_not_import_cryptography() -> None:
    """Cryptography belongs to the simulator only: the daemon's import stays lean."""
    code = "import sys, pia_mqtt.pia.client; print('cryptography' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"
