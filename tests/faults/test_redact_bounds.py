"""The redaction registry under many renewals: bounded, and still masking what is in use.

The real PiaClient against the HTTPS simulator fetches 300 tokens and signatures (a
`new_port` press every minute for five hours). The registry keeps only the secrets in use,
so logging costs the same after the 300th as after the first, and the current token,
payload and signature are still masked in any text.
"""

from __future__ import annotations

import pytest

from pia_mqtt import redact
from pia_mqtt.core.model import GatewayTarget
from pia_mqtt.pia.client import PiaClient
from pia_mqtt.simulator.pia import PiaSimulator
from tests.fixtures.pia import SIM_PASS, SIM_USER

RENEWALS = 300


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from an empty registry and leave the real one as it was."""
    monkeypatch.setattr(redact, "_known", set())
    monkeypatch.setattr(redact, "_rotating", {})


@pytest.mark.usefixtures("fresh_registry")
def test_three_hundred_renewals_keep_the_registry_bounded(
    pia_sim: PiaSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 token + getSignature + bindPort rounds.

    At most the password and two generations of token and of payload+signature stay
    registered; the last ones are masked.
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))
    gateway = pia_sim.gateways[0]
    client = PiaClient(
        username=SIM_USER,
        password=SIM_PASS,
        token_url=pia_sim.token_url,
        ca_file=pia_sim.ca_file,
        gateway_port=gateway.port,
    )
    target = GatewayTarget(address="127.0.0.1", hostname="sim-gateway-1")
    try:
        for _ in range(RENEWALS):
            token = client.get_token()
            lease = client.get_signature(target, token)
            client.bind(target, lease)
    finally:
        client.close()
    assert redact.size() <= 1 + 2 + 2 * 2
    text = f"{token} {lease.payload} {lease.signature} {SIM_PASS}"
    assert "*** *** *** ***" == redact.redact(text)
