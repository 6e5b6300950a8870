"""Scrubbing secrets from any text before it is logged, raised or published."""

from __future__ import annotations

import pytest

from pia_mqtt import redact
from pia_mqtt.redact import describe, register


@pytest.fixture(autouse=True)
def fresh_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets and leaves the real registry unchanged."""
    monkeypatch.setattr(redact, "_known", set())
    monkeypatch.setattr(redact, "_rotating", {})


@pytest.mark.parametrize(
    ("secrets", "text", "expected"),
    [
        pytest.param(
            ("hunter2-pia",),
            "login as p1234567 with hunter2-pia failed",
            "login as p1234567 with *** failed",
            id="a-password",
        ),
        pytest.param(
            ("hunter2-pia",),
            "hunter2-pia/hunter2-pia",
            "***/***",
            id="every-occurrence",
        ),
        pytest.param(
            ("abcd", "abcdefgh"),
            "key abcdefgh",
            "key ***",
            id="longest-first",
        ),
        pytest.param(
            ("tok3n-value",),
            "ConnectionError('https://10.0.0.1:19999/x/tok3n-value/y')",
            "ConnectionError('https://10.0.0.1:19999/x/***/y')",
            id="inside-library-error-text",
        ),
        pytest.param((None, ""), "nothing to hide", "nothing to hide", id="none-and-empty-ignored"),
    ],
)
def test_registered_secrets_are_masked_anywhere(
    secrets: tuple[str | None, ...], text: str, expected: str
) -> None:
    """Every registered value is replaced by *** wherever it appears."""
    register(*secrets)
    assert expected == redact.redact(text)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("a", "port a is abc; admin"),
        ("abc", "port a is abc; admin"),
        ("admi", "port a is abc; ***n"),
        ("admin", "port a is abc; ***"),
    ],
)
def test_values_shorter_than_four_characters_are_not_registered(secret: str, expected: str) -> None:
    """Short values would mask ordinary text (ports, 'abc'): they are ignored."""
    register(secret)
    assert expected == redact.redact("port a is abc; admin")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "https://10.0.0.1:19999/getSignature?token=abc123def",
            "https://10.0.0.1:19999/getSignature?token=***",
            id="token",
        ),
        pytest.param(
            "https://10.0.0.1:19999/bindPort?payload=eyJwb3J0IjoxfQ%3D%3D&signature=c2ln%2B%2F",
            "https://10.0.0.1:19999/bindPort?payload=***&signature=***",
            id="payload-and-signature",
        ),
        pytest.param(
            "GET /x?user=p1&password=hunter2&next=1 HTTP/1.1",
            "GET /x?user=p1&password=***&next=1 HTTP/1.1",
            id="password-then-more",
        ),
        pytest.param(
            "url 'http://q/api?PASSWORD=x#frag' failed",
            "url 'http://q/api?PASSWORD=***#frag' failed",
            id="case-and-quote",
        ),
        pytest.param(
            "?port=54321&hostname=host.example",
            "?port=54321&hostname=host.example",
            id="ordinary-params-kept",
        ),
    ],
)
def test_secret_query_parameters_are_masked_in_urls(text: str, expected: str) -> None:
    """token, payload, signature and password values in a query string become ***."""
    assert expected == redact.redact(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '{"token": "abc123", "port": 47047}',
            '{"token": "***", "port": 47047}',
            id="json-token",
        ),
        pytest.param(
            '{"payload":"eyJ0b2tlbiI6","signature":"c2lnbmF0dXJl"}',
            '{"payload":"***","signature":"***"}',
            id="payload-and-signature",
        ),
        pytest.param(
            '{"password": "with \\"quote\\" inside", "user": "p1"}',
            '{"password": "***", "user": "p1"}',
            id="escaped-quotes",
        ),
        pytest.param(
            "{'password': 'hunter2', 'port': 1}",
            "{'password': '***', 'port': 1}",
            id="python-repr",
        ),
        pytest.param(
            '{"apikey": "k", "api_key": "k2"}',
            '{"apikey": "***", "api_key": "***"}',
            id="api-key",
        ),
        pytest.param(
            '{"port": 47047, "status": "OK"}', '{"port": 47047, "status": "OK"}', id="kept"
        ),
    ],
)
def test_secret_json_fields_are_masked(text: str, expected: str) -> None:
    """String values of secret-named JSON (or repr) fields become ***."""
    assert expected == redact.redact(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("X-API-Key: k3y-value", "X-API-Key: ***", id="x-api-key"),
        pytest.param("x-api-key=k3y-value, next", "x-api-key=***, next", id="x-api-key-lower"),
        pytest.param("Cookie: SID=abcdef; path=/", "Cookie: ***; path=/", id="cookie"),
        pytest.param("Set-Cookie: SID=abcdef", "Set-Cookie: ***", id="set-cookie"),
        pytest.param("Authorization: c2VjcmV0", "Authorization: ***", id="authorization-bare"),
        pytest.param(
            "Authorization: Bearer eyJhbGciOi.abc.def",
            "Authorization: ***",
            id="authorization-bearer",
        ),
        pytest.param(
            "Authorization: Basic dXNlcjpodW50ZXIy",
            "Authorization: ***",
            id="authorization-basic",
        ),
        pytest.param(
            "{'X-API-Key': 'k3y-value', 'Accept': '*/*'}",
            "{'X-API-Key': '***', 'Accept': '*/*'}",
            id="headers-dict-repr",
        ),
    ],
)
def test_secret_headers_are_masked(text: str, expected: str) -> None:
    """X-API-Key, Authorization and cookie header values become ***."""
    assert expected == redact.redact(text)


def test_redact_accepts_any_object() -> None:
    """Non-strings are converted with str() first (exceptions, dicts)."""
    register("hunter2-pia")
    assert "boom hunter2 ***" == redact.redact(ValueError("boom hunter2 hunter2-pia"))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(ValueError("boom"), "boom", id="message"),
        pytest.param(ValueError(), "ValueError", id="no-message-names-the-type"),
        pytest.param(
            RuntimeError("first line\n  second line\nthird"), "first line", id="first-line-only"
        ),
        pytest.param(
            OSError("GET https://gw/bindPort?payload=abc&signature=def failed"),
            "GET https://gw/bindPort?payload=***&signature=*** failed",
            id="redacted",
        ),
        pytest.param(
            ConnectionError("login with hunter2-pia refused\nretry"),
            "login with *** refused",
            id="registered-secret",
        ),
    ],
)
def test_describe_gives_one_redacted_line(exc: BaseException, expected: str) -> None:
    """describe() is the one line logs and state documents carry for an exception."""
    register("hunter2-pia")
    actual = describe(exc)
    assert (expected, 1) == (actual, len(actual.splitlines()))


# --- a bounded registry ---------------------------------------------------------------------


def test_a_new_token_retires_the_one_before_the_last() -> None:
    """Three tokens registered in turn: the newest two are masked, the first is forgotten."""
    register("token-one-aaaa", kind="token")
    register("token-two-bbbb", kind="token")
    register("token-three-cc", kind="token")
    assert "token-one-aaaa *** ***" == redact.redact("token-one-aaaa token-two-bbbb token-three-cc")


def test_passwords_stay_whatever_tokens_come_and_go() -> None:
    """A password (no kind) is masked after a thousand tokens and signatures."""
    register("hunter2-pia")
    for n in range(1000):
        register(f"token-{n:06d}", kind="token")
        register(f"payload-{n:06d}", f"signature-{n:06d}", kind="signature")
    assert "login with ***" == redact.redact("login with hunter2-pia")


def test_ten_thousand_tokens_and_signatures_keep_the_registry_small() -> None:
    """The registry holds a password plus two generations of each kind, not 30,001 values."""
    register("hunter2-pia")
    for n in range(10_000):
        register(f"token-{n:06d}", kind="token")
        register(f"payload-{n:06d}", f"signature-{n:06d}", kind="signature")
    assert 1 + 2 * 1 + 2 * 2 == redact.size()
    assert "*** ***" == redact.redact("token-009999 signature-009999")


def test_binding_the_same_signature_again_keeps_it_newest() -> None:
    """Keep-alives re-register the lease in use: it is never pushed out by its successors."""
    register("payload-A-xxxx", "signature-A-xx", kind="signature")
    register("payload-B-xxxx", "signature-B-xx", kind="signature")
    register("payload-A-xxxx", "signature-A-xx", kind="signature")
    register("payload-C-xxxx", "signature-C-xx", kind="signature")
    assert "*** signature-B-xx ***" == redact.redact("signature-A-xx signature-B-xx signature-C-xx")
