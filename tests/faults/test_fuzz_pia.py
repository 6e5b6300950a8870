"""Fuzzing PIA's replies with hypothesis (derandomized, bounded).

getSignature replies (JSON shapes, base64, dates) through parse_signature_reply;
token/getSignature/bindPort replies through the real PiaClient against the simulator
answering the generated body; a whole engine whose "new port" requests are answered with
generated replies (the files only ever hold a valid port). Only the daemon's own error
classes may escape; anything else is a crash.
"""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pia_mqtt.core.engine import utc_now
from pia_mqtt.core.model import Command, GatewayTarget, valid_port
from pia_mqtt.errors import PiaMqttError, PiaReplyError
from pia_mqtt.pia.client import PiaClient
from pia_mqtt.pia.lease import Lease, parse_signature_reply
from pia_mqtt.simulator.pia import PiaSimulator, Reply
from tests.faults.conftest import FUZZ, NETWORK_FUZZ, build, json_scalars, json_values, ports
from tests.fixtures.pia import SIM_PASS, SIM_USER

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("isolated_secrets")]


moments = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 - naive on purpose: formatted below
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
)
offsets = st.sampled_from(["Z", "+00:00", "+14:00", "-12:00", "", "+0530", "z"])
expiries = (
    st.builds(
        lambda m, o, ns: m.isoformat() + (f"{ns:03d}" if "." in m.isoformat() else "") + o,
        moments,
        offsets,
        st.integers(0, 999),
    )
    | st.text(max_size=40)
    | st.integers()
    | st.none()
    | st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-01-01T00:00:00.123456789123Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01",
            "20260101T000000Z",
        ]
    )
)
payload_docs = (
    st.fixed_dictionaries(
        {"port": ports, "expires_at": expiries},
        optional={"token": st.text(max_size=20), "extra": json_values},
    )
    | json_values
)


def _b64(document: Any, mode: str) -> str:
    raw = json.dumps(document).encode()
    if mode == "urlsafe":
        return base64.urlsafe_b64encode(raw).decode()
    text = base64.b64encode(raw).decode()
    return text.rstrip("=") if mode == "unpadded" else text


payloads = (
    st.builds(_b64, payload_docs, st.sampled_from(["std", "unpadded", "urlsafe"]))
    | st.text(max_size=40)
    | json_values
)
replies = st.fixed_dictionaries(
    {"status": st.sampled_from(["OK", "ERROR", ""]) | json_scalars},
    optional={
        "payload": payloads,
        "signature": st.text(min_size=0, max_size=40) | json_scalars,
        "message": st.text(max_size=40) | json_scalars,
    },
)
reply_texts = replies.map(json.dumps) | st.text(max_size=200) | json_values.map(json.dumps)


# --- PIA replies -------------------------------------------------------------------------


def _check_lease(lease: Lease) -> None:
    assert valid_port(lease.port)
    assert lease.expires_at.tzinfo is not None
    # The lease must work with the lease manager's arithmetic.
    lease.usable(utc_now())
    lease.renew_at()


def _reply_with_expiry(expires_at: str) -> str:
    payload = _b64({"port": 51813, "expires_at": expires_at}, "std")
    return json.dumps({"status": "OK", "payload": payload, "signature": "c2ln"})


@FUZZ
@given(reply_texts)
@example(_reply_with_expiry("0001-01-01T00:00:00+01:00"))  # found by this test: OverflowError
@example(_reply_with_expiry("9999-12-31T23:59:59-01:00"))
@example(_reply_with_expiry("0001-01-01T00:00:00Z"))  # renew_at() overflowed
@example("[" * 100_000 + "]" * 100_000)
def test_any_signature_reply_parses_to_a_valid_lease_or_a_reply_error(text: str) -> None:
    """parse_signature_reply gives a valid lease or PiaReplyError, never anything else.

    parse_signature_reply never raises anything but PiaReplyError, never yields a port outside
    1-65535 or a naive expiry, and never puts the payload in its message.
    """
    try:
        lease = parse_signature_reply(text)
    except PiaReplyError as exc:
        try:
            payload = json.loads(text).get("payload")
        except (ValueError, AttributeError, RecursionError):
            payload = None
        message = str(exc)
        if isinstance(payload, str) and len(payload) >= 12:
            assert payload not in message
        return
    _check_lease(lease)


status_codes = st.sampled_from(
    [200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502]
)
content_types = st.sampled_from(["application/json", "text/html; charset=utf-8", "text/plain"])
bodies = reply_texts.filter(lambda t: len(t) < 5000) | st.text(max_size=50)


@NETWORK_FUZZ
@given(status_codes, bodies, content_types)
def test_pia_client_survives_any_gateway_reply(
    pia_sim: PiaSimulator, status: int, body: str, content_type: str
) -> None:
    """The real PiaClient over HTTPS.

    getSignature and bindPort answered with a generated reply either succeed with a valid lease or
    raise the daemon's own errors.
    """
    gateway = pia_sim.gateways[0]
    target = GatewayTarget(address=gateway.host, hostname=gateway.cn)
    client = PiaClient(
        username=SIM_USER,
        password=SIM_PASS,
        token_url=pia_sim.token_url,
        ca_file=pia_sim.ca_file,
        gateway_port=gateway.port,
        timeout=5,
    )
    token = pia_sim.new_token()
    good = parse_signature_reply(gateway.issue_signature(token))
    try:
        gateway.fail_next(Reply(status, body, content_type))
        with contextlib.suppress(PiaMqttError):
            _check_lease(client.get_signature(target, token))
        gateway.fail_next(Reply(status, body, content_type))
        with contextlib.suppress(PiaMqttError):
            client.bind(target, good)
    finally:
        client.close()


@NETWORK_FUZZ
@given(status_codes, bodies, content_types)
def test_pia_client_survives_any_token_reply(
    pia_sim: PiaSimulator,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    body: str,
    content_type: str,
) -> None:
    """The token endpoint answering anything: a non-empty token string or a PIA error."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))
    client = PiaClient(
        username=SIM_USER,
        password=SIM_PASS,
        token_url=pia_sim.token_url,
        ca_file=pia_sim.ca_file,
        gateway_port=pia_sim.gateways[0].port,
        timeout=5,
    )
    pia_sim.token_endpoint.fail_next(Reply(status, body, content_type))
    try:
        token = client.get_token()
    except PiaMqttError:
        return
    finally:
        client.close()
    assert isinstance(token, str)
    assert token


@NETWORK_FUZZ
@given(st.lists(reply_texts.filter(lambda t: len(t) < 5000), min_size=1, max_size=3))
def test_new_port_requests_answered_with_junk_never_write_a_bad_port(
    pia_sim: PiaSimulator,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    bodies_in_a_row: list[str],
) -> None:
    """A running engine whose getSignature answers are generated.

    the loop survives, and both files hold either nothing or a valid port that PIA really bound.
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))
    folder = tmp_path_factory.mktemp("fuzz-engine")
    daemon = build(pia_sim, folder, timeout=5)
    gateway = pia_sim.gateways[0]
    try:
        daemon.engine.start()
        daemon.engine.run_pending()
        for body in bodies_in_a_row:
            gateway.fail_next(Reply(200, body))
            daemon.engine.command(Command.NEW_PORT, source="fuzz")
            daemon.engine.run_pending()  # raises if the engine hit a bug
        snapshot = daemon.engine.snapshot
        if daemon.port_file.exists():
            port = int(daemon.port_file.read_text())
            assert valid_port(port)
            assert port == daemon.data()["port"]
            assert port in gateway.stats().bound_ports
        assert snapshot.port is None or valid_port(snapshot.port)
    finally:
        daemon.engine.close()


def test_fuzz_strategies_reach_both_outcomes() -> None:
    """The reply strategy is not degenerate: known-good and known-bad samples behave."""
    expires = (datetime.now(UTC) + timedelta(days=60)).isoformat()
    good = {"status": "OK", "payload": _b64({"port": 51813, "expires_at": expires}, "std"),
            "signature": "c2ln"}  # fmt: skip
    assert 51813 == parse_signature_reply(json.dumps(good)).port
    with pytest.raises(PiaReplyError):
        parse_signature_reply(json.dumps({**good, "status": "ERROR"}))
