"""The lease: parsing getSignature replies, its validity window, and the state file."""

from __future__ import annotations

import base64
import json
import logging
import resource
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pia_mqtt.atomic import atomic_write
from pia_mqtt.errors import OutputError, PiaReplyError
from pia_mqtt.pia.lease import RENEW_MARGIN, Lease, LeaseStore, parse_signature_reply

TOKEN = "c2VjcmV0LXRva2VuLWZvci10aGUtZ2F0ZXdheQ"
SIGNATURE = "kQ9v6cJrR1Z8lWbJ2JH0hXg3p3n1sJ0M2xC1w0v8yQ1n0Lx9aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789=="
EXPIRES = "2026-01-14T19:30:00.114369906Z"


def encode(document: object) -> str:
    """Base64 of compact JSON, as PIA builds its payload."""
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


PAYLOAD = encode({"token": TOKEN, "port": 47047, "expires_at": EXPIRES})


def reply(**fields: object) -> str:
    """A getSignature reply body with PIA's field order; ``None`` drops a field."""
    document = {"status": "OK", "payload": PAYLOAD, "signature": SIGNATURE, **fields}
    return json.dumps({k: v for k, v in document.items() if v is not None}, indent=4)


def payload_with(**fields: object) -> str:
    """A payload like PAYLOAD with some fields changed (``None`` drops a field)."""
    document = {"token": TOKEN, "port": 47047, "expires_at": EXPIRES, **fields}
    return encode({k: v for k, v in document.items() if v is not None})


# --- parsing --------------------------------------------------------------------------------


def test_a_real_looking_reply_is_parsed_and_kept_byte_for_byte() -> None:
    """Port and expiry (9 fractional digits, Z) are decoded; raw, payload, signature unchanged."""
    raw = reply()
    expected = Lease(
        port=47047,
        expires_at=datetime(2026, 1, 14, 19, 30, 0, 114369, tzinfo=UTC),
        payload=PAYLOAD,
        signature=SIGNATURE,
        raw=raw,
    )
    actual = parse_signature_reply(raw)
    assert (expected, raw, PAYLOAD, SIGNATURE) == (
        actual,
        actual.raw,
        actual.payload,
        actual.signature,
    )


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        ("2026-01-14T19:30:00Z", datetime(2026, 1, 14, 19, 30, tzinfo=UTC)),
        ("2026-01-14T19:30:00.5Z", datetime(2026, 1, 14, 19, 30, 0, 500000, tzinfo=UTC)),
        ("2026-01-14T19:30:00.114369906Z", datetime(2026, 1, 14, 19, 30, 0, 114369, tzinfo=UTC)),
        (
            "2026-01-14T21:30:00.114369906+02:00",
            datetime(2026, 1, 14, 19, 30, 0, 114369, tzinfo=UTC),
        ),
        ("2026-01-14T19:30:00", datetime(2026, 1, 14, 19, 30, tzinfo=UTC)),
    ],
)
def test_expiry_is_read_in_every_iso_form_as_utc(expires_at: str, expected: datetime) -> None:
    """Nanoseconds are truncated to microseconds, offsets converted, naive read as UTC."""
    lease = parse_signature_reply(reply(payload=payload_with(expires_at=expires_at)))
    assert (expected, UTC) == (lease.expires_at, lease.expires_at.tzinfo)


def test_an_unpadded_payload_is_accepted_and_kept_as_sent() -> None:
    """Some servers strip base64 padding; the payload still decodes and is kept unpadded."""
    padded = payload_with(port=12)
    unpadded = padded.rstrip("=")
    lease = parse_signature_reply(reply(payload=unpadded))
    assert ("==", 12, unpadded) == (padded[-2:], lease.port, lease.payload)


BAD_REPLIES = [
    pytest.param("", "getSignature answered with something that is not JSON", id="empty"),
    pytest.param(
        "<html><body>502 Bad Gateway</body></html>",
        "getSignature answered with something that is not JSON",
        id="html-error-page",
    ),
    pytest.param(
        '{"status": "OK", "payload": ',
        "getSignature answered with something that is not JSON",
        id="truncated",
    ),
    pytest.param(
        json.dumps([PAYLOAD, SIGNATURE]),
        "getSignature answered with JSON that is not an object",
        id="not-an-object",
    ),
    pytest.param(
        reply(status="ERROR", message="port forwarding is not available"),
        "getSignature answered status 'ERROR': port forwarding is not available; this server "
        "may not offer port forwarding (PIA disables it on US servers): pick another region",
        id="status-not-ok",
    ),
    pytest.param(
        json.dumps({"payload": PAYLOAD, "signature": SIGNATURE}),
        "getSignature answered status 'None'; this server may not offer port forwarding "
        "(PIA disables it on US servers): pick another region",
        id="no-status",
    ),
    pytest.param(
        reply(payload=None),
        "getSignature reply has no payload or signature",
        id="missing-payload",
    ),
    pytest.param(
        reply(signature=None),
        "getSignature reply has no payload or signature",
        id="missing-signature",
    ),
    pytest.param(
        reply(signature=""),
        "getSignature reply has no payload or signature",
        id="empty-signature",
    ),
    pytest.param(
        reply(payload=12345),
        "getSignature reply has no payload or signature",
        id="payload-not-a-string",
    ),
    pytest.param(
        reply(payload="!!not*base64!!"),
        "getSignature payload is not base64-encoded JSON",
        id="bad-base64",
    ),
    pytest.param(
        reply(payload=base64.b64encode(b"port=47047").decode()),
        "getSignature payload is not base64-encoded JSON",
        id="payload-not-json",
    ),
    pytest.param(
        reply(payload=base64.b64encode(b"\xff\xfe\x00").decode()),
        "getSignature payload is not base64-encoded JSON",
        id="payload-not-utf8",
    ),
    pytest.param(
        reply(payload=encode([47047])),
        "getSignature payload is not a JSON object",
        id="payload-not-an-object",
    ),
    pytest.param(
        reply(payload=payload_with(port=0)),
        "getSignature payload has no valid port (got '0')",
        id="port-0",
    ),
    pytest.param(
        reply(payload=payload_with(port=70000)),
        "getSignature payload has no valid port (got '70000')",
        id="port-70000",
    ),
    pytest.param(
        reply(payload=payload_with(port="abc")),
        "getSignature payload has no valid port (got 'abc')",
        id="port-abc",
    ),
    pytest.param(
        reply(payload=payload_with(port="47047")),
        "getSignature payload has no valid port (got '47047')",
        id="port-as-text",
    ),
    pytest.param(
        reply(payload=payload_with(port=True)),
        "getSignature payload has no valid port (got 'True')",
        id="port-true",
    ),
    pytest.param(
        reply(payload=payload_with(port=47047.0)),
        "getSignature payload has no valid port (got '47047.0')",
        id="port-float",
    ),
    pytest.param(
        reply(payload=payload_with(port=None)),
        "getSignature payload has no valid port (got 'None')",
        id="port-missing",
    ),
    pytest.param(
        reply(payload=payload_with(expires_at=None)),
        "getSignature payload has no expires_at",
        id="missing-expires-at",
    ),
    pytest.param(
        reply(payload=payload_with(expires_at=1768419000)),
        "getSignature payload has no expires_at",
        id="expires-at-number",
    ),
    pytest.param(
        reply(payload=payload_with(expires_at="next tuesday")),
        "getSignature expires_at is not a date ('next tuesday')",
        id="bad-date",
    ),
    pytest.param(
        reply(payload=payload_with(expires_at="2026-13-40T99:00:00.123456789Z")),
        "getSignature expires_at is not a date ('2026-13-40T99:00:00.123456Z')",
        id="impossible-date",
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD_REPLIES)
def test_a_bad_reply_is_a_clear_error_without_the_secrets(raw: str, message: str) -> None:
    """Each unusable reply raises PiaReplyError saying what is wrong, never the payload/signature."""
    with pytest.raises(PiaReplyError) as caught:
        parse_signature_reply(raw)
    text = str(caught.value)
    assert (message, False, False, False) == (
        text,
        PAYLOAD in text,
        SIGNATURE in text,
        TOKEN in text,
    )


def test_a_lease_repr_hides_payload_and_signature() -> None:
    """Logging a Lease by accident shows the port and expiry only."""
    lease = parse_signature_reply(reply())
    expected = "Lease(port=47047, expires_at=2026-01-14T19:30:00.114369+00:00)"
    assert (expected, expected) == (repr(lease), str(lease))


# --- validity window ------------------------------------------------------------------------

EXPIRY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = Lease(port=47047, expires_at=EXPIRY, payload="p", signature="s", raw="{}")


@pytest.mark.parametrize(
    ("now", "usable"),
    [
        (EXPIRY - timedelta(days=60), True),
        (EXPIRY - RENEW_MARGIN - timedelta(seconds=1), True),
        (EXPIRY - RENEW_MARGIN, False),
        (EXPIRY - RENEW_MARGIN + timedelta(seconds=1), False),
        (EXPIRY - timedelta(hours=1), False),
        (EXPIRY + timedelta(days=1), False),
    ],
)
def test_a_lease_is_usable_only_with_more_than_seven_days_left(now: datetime, usable: bool) -> None:
    """A saved signature is reused while strictly more than RENEW_MARGIN (7 days) remains."""
    assert (timedelta(days=7), usable) == (RENEW_MARGIN, LEASE.usable(now))


def test_renewal_is_due_seven_days_before_expiry() -> None:
    """renew_at() is the moment the lease stops being usable."""
    expected = datetime(2026, 2, 22, 12, 0, tzinfo=UTC)
    assert (expected, False, True) == (
        LEASE.renew_at(),
        LEASE.usable(LEASE.renew_at()),
        LEASE.usable(LEASE.renew_at() - timedelta(microseconds=1)),
    )


def test_remaining_is_the_time_to_expiry() -> None:
    """remaining(now) is expires_at - now, negative once expired."""
    assert (timedelta(days=1), timedelta(hours=-2)) == (
        LEASE.remaining(EXPIRY - timedelta(days=1)),
        LEASE.remaining(EXPIRY + timedelta(hours=2)),
    )


# --- the state file -------------------------------------------------------------------------


def test_a_saved_lease_loads_back_equal(tmp_path: Path) -> None:
    """save() then load() gives the same Lease, raw reply included."""
    store = LeaseStore(tmp_path / "pia-lease.json")
    lease = parse_signature_reply(reply())
    store.save(lease)
    assert lease == store.load()


def test_the_state_file_holds_the_raw_reply_and_what_it_decodes_to(tmp_path: Path) -> None:
    """The document keeps the reply verbatim plus port and expiry for humans."""
    path = tmp_path / "pia-lease.json"
    raw = reply()
    LeaseStore(path).save(parse_signature_reply(raw))
    expected = {
        "reply": raw,
        "port": 47047,
        "expires_at": "2026-01-14T19:30:00.114369+00:00",
        "last_port": 47047,
    }
    assert expected == json.loads(path.read_text(encoding="utf-8"))


def test_the_state_file_is_private_even_when_replacing_a_readable_one(tmp_path: Path) -> None:
    """Mode 0600: the signature is a credential for the port."""
    path = tmp_path / "pia-lease.json"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o644)
    LeaseStore(path).save(parse_signature_reply(reply()))
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)


def test_no_state_file_means_no_lease_and_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh install has no saved lease; that is normal, not worth a warning."""
    caplog.set_level(logging.DEBUG)
    assert (None, []) == (LeaseStore(tmp_path / "none.json").load(), caplog.record_tuples)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("", id="empty"),
        pytest.param('{"reply": "{\\"status\\": \\"OK\\", \\"pay', id="truncated"),
        pytest.param("not json at all", id="not-json"),
        pytest.param("[]", id="a-list"),
        pytest.param('{"port": 47047}', id="no-reply"),
        pytest.param('{"reply": "garbage"}', id="reply-not-json"),
        pytest.param(json.dumps({"reply": reply(payload=payload_with(port=0))}), id="port-0"),
    ],
)
def test_a_corrupt_state_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    """load() returns None and logs one WARNING naming the path: a new port is requested."""
    path = tmp_path / "pia-lease.json"
    path.write_text(content, encoding="utf-8")
    caplog.set_level(logging.DEBUG)
    expected = [
        (
            "pia_mqtt.pia.lease",
            logging.WARNING,
            f"Ignoring saved lease {path}: it is corrupt or truncated; a new port will be requested",
        )
    ]
    assert (None, expected) == (LeaseStore(path).load(), caplog.record_tuples)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), id="not-utf8"),
        pytest.param(lambda p: p.mkdir(), id="a-directory"),
    ],
)
def test_an_unreadable_state_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make: object
) -> None:
    """A state file that cannot be read is ignored with one WARNING naming the path."""
    path = tmp_path / "pia-lease.json"
    make(path)  # type: ignore[operator]
    caplog.set_level(logging.DEBUG)
    lease = LeaseStore(path).load()
    actual = [
        (r.name, r.levelno, f"Ignoring saved lease {path}: cannot read it" in r.getMessage())
        for r in caplog.records
    ]
    assert (None, [("pia_mqtt.pia.lease", logging.WARNING, True)]) == (lease, actual)


def test_clear_forgets_the_lease_and_tolerates_a_missing_file(tmp_path: Path) -> None:
    """After clear() there is no lease but the last port stays.

    Clearing twice is fine, and a store that never knew a port removes the file.
    """
    store = LeaseStore(tmp_path / "pia-lease.json")
    store.save(parse_signature_reply(reply()))
    store.clear()
    store.clear()
    assert (None, 47047) == (store.load(), store.last_port())
    assert {"last_port": 47047} == json.loads((tmp_path / "pia-lease.json").read_text())
    other = tmp_path / "other.json"
    other.write_text("{}")
    LeaseStore(other).clear()
    assert [tmp_path / "pia-lease.json"] == list(tmp_path.iterdir())


def test_clear_failure_is_an_output_error_naming_the_path(tmp_path: Path) -> None:
    """A state path that cannot be removed (a directory) raises OutputError with the path."""
    path = tmp_path / "pia-lease.json"
    path.mkdir()
    with pytest.raises(OutputError) as caught:
        LeaseStore(path).clear()
    assert str(caught.value).startswith(f"removing the saved lease {path} failed: ")


# --- atomic_write ---------------------------------------------------------------------------


def test_atomic_write_replaces_the_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """The file holds exactly the new text; the folder holds only the file."""
    path = tmp_path / "pia-port.txt"
    path.write_text("11111\n", encoding="utf-8")
    atomic_write(path, "54321\n")
    assert ("54321\n", ["pia-port.txt"], 0o644) == (
        path.read_text(encoding="utf-8"),
        sorted(p.name for p in tmp_path.iterdir()),
        stat.S_IMODE(path.stat().st_mode),
    )


@pytest.mark.parametrize(
    ("layout", "reason"),
    [
        pytest.param("parent-is-a-file", "Not a directory", id="parent-is-a-file"),
        pytest.param("parent-missing", "No such file or directory", id="parent-missing"),
        pytest.param("target-is-a-directory", "Is a directory", id="target-is-a-directory"),
    ],
)
def test_atomic_write_failure_is_an_output_error_naming_the_path(
    tmp_path: Path, layout: str, reason: str
) -> None:
    """Failures say which file and folder, with the OS reason, and leave no temp files behind."""
    if layout == "parent-is-a-file":
        (tmp_path / "config").write_text("I am a file", encoding="utf-8")
    elif layout == "target-is-a-directory":
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "pia-port.txt").mkdir()
    path = tmp_path / "config" / "pia-port.txt"
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputError) as caught:
        atomic_write(path, "54321\n")
    expected = (
        f"writing {path} failed: {reason}; check that {path.parent} exists and is writable "
        "by this user (uid 1000 in the container)"
    )
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert (expected, before) == (str(caught.value), after)


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    """Disk full mid-write (RLIMIT_FSIZE): OutputError, old content intact, no temp file left."""
    path = tmp_path / "pia-port-data.json"
    path.write_text('{"port": 11111}\n', encoding="utf-8")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # CPython ignores SIGXFSZ, so an oversized write fails with EFBIG instead of killing us.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        with pytest.raises(OutputError) as caught:
            atomic_write(path, "x" * 4096)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert (True, '{"port": 11111}\n', ["pia-port-data.json"]) == (
        str(caught.value).startswith(f"writing {path} failed: File too large; "),
        path.read_text(encoding="utf-8"),
        [p.name for p in tmp_path.iterdir()],
    )


def test_last_port_is_remembered_across_restarts_and_kept_with_the_lease(tmp_path: Path) -> None:
    """remember() records the published port without touching the saved lease.

    A new store (a restart) reads it back; files from before last_port existed give the
    lease's port.
    """
    path = tmp_path / "pia-lease.json"
    raw = reply()
    LeaseStore(path).save(parse_signature_reply(raw))
    store = LeaseStore(path)
    assert 47047 == store.last_port()
    store.remember(50123)
    restarted = LeaseStore(path)
    lease = restarted.load()
    assert (50123, raw) == (restarted.last_port(), lease.raw if lease else None)
    path.write_text(json.dumps({"reply": raw, "port": 47047, "expires_at": "x"}))
    assert 47047 == LeaseStore(path).last_port()
    assert None is LeaseStore(tmp_path / "missing.json").last_port()
