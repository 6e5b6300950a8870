"""The status endpoint in process: routes, probes, counters, metrics text, page, limits."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pia_mqtt import redact
from pia_mqtt.core.model import Event, EventKind, Snapshot
from pia_mqtt.errors import ConfigError
from pia_mqtt.http import page, probes, wire
from pia_mqtt.http.server import HttpSink
from pia_mqtt.settings import Settings, load_settings
from pia_mqtt.simulator.pia import PiaSimulator
from tests.fixtures.common import eventually
from tests.http_helpers import INTERVAL, T0, bound, samples


class FakeClocks:
    """Wall and monotonic clocks that move only when told."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def now(self) -> datetime:
        """The fake wall clock."""
        return self.wall

    def monotonic(self) -> float:
        """The fake monotonic clock."""
        return self.mono

    def advance(self, seconds: float) -> None:
        """Move both clocks."""
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clocks() -> FakeClocks:
    """Fresh fake clocks at T0."""
    return FakeClocks()


@pytest.fixture
def sink(clocks: FakeClocks) -> Iterator[HttpSink]:
    """An endpoint on a free loopback port with fake clocks."""
    endpoint = HttpSink(
        "127.0.0.1", 0, version="1.2.3", refresh_interval=INTERVAL, clock=clocks.now,
        monotonic=clocks.monotonic,
    )  # fmt: skip
    try:
        yield endpoint
    finally:
        endpoint.close()


def get(sink: HttpSink, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request: status, headers, body."""
    host, port = sink.bound
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path)
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


# --- settings and wiring ------------------------------------------------------------------


def test_http_settings_default_to_off_on_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PORT unset means off; HTTP_ADDRESS defaults to 0.0.0.0 (Kubernetes probes)."""
    for name in ("HTTP_PORT", "HTTP_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(require_credentials=False)
    assert (settings.http_port, str(settings.http_address), settings.http_enabled) == (
        None, "0.0.0.0", False,
    )  # fmt: skip
    assert settings.masked()["HTTP_ADDRESS"] == "0.0.0.0"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"HTTP_PORT": "0"}, "HTTP_PORT"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"HTTP_PORT": "8976", "HTTP_ADDRESS": "status.local"}, "HTTP_ADDRESS"),
    ],
)
def test_bad_http_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    """A port outside 1-65535 or an address that is not an IP literal is refused at once."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(require_credentials=False)
    assert [p for p in caught.value.problems if p.startswith(problem)]


def wired_sinks(tmp_path: Path, *, serve_http: bool = True, **extra: Any) -> list[str]:
    """The sink names build_engine wires for these settings."""
    from pia_mqtt.wiring import build_engine

    settings = Settings(
        pia_user="p1", pia_pass="x" * 8, port_file=tmp_path / "p", port_data_file=tmp_path / "d",
        state_file=tmp_path / "s", **extra,
    )  # fmt: skip
    engine = build_engine(settings, once=not serve_http)
    try:
        return [s.name for s in engine.sinks]
    finally:
        engine.close()


def test_nothing_listens_without_http_port(tmp_path: Path) -> None:
    """Without HTTP_PORT there is no HTTP sink; `once` never serves either."""
    assert "http" not in wired_sinks(tmp_path)
    assert "http" not in wired_sinks(tmp_path, serve_http=False, http_port=8976)


def test_http_port_adds_the_endpoint(tmp_path: Path) -> None:
    """With HTTP_PORT set, `run` wires the HTTP sink (here on a free loopback port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert "http" in wired_sinks(tmp_path, http_port=port, http_address="127.0.0.1")


def test_a_busy_port_is_a_configuration_error_naming_http_port() -> None:
    """Another listener on HTTP_PORT stops the start with a message naming HTTP_PORT."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            HttpSink("127.0.0.1", port, version="1", refresh_interval=INTERVAL)
    assert caught.value.problems[0].startswith(f"HTTP_PORT: cannot listen on 127.0.0.1 port {port}")


# --- routes -------------------------------------------------------------------------------


def test_status_is_the_state_document(sink: HttpSink) -> None:
    """/status serves the same JSON as MQTT's state topic, port at the top level."""
    snapshot = bound()
    sink.publish(snapshot)
    status, headers, body = get(sink, "/status")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body) == snapshot.to_json()
    assert json.loads(body)["port"] == 54321
    schema = json.loads((Path(__file__).parents[1] / "docs" / "state.schema.json").read_text())
    jsonschema.validate(json.loads(body), schema)


def test_metrics_content_type_is_prometheus_text_0_0_4(sink: HttpSink) -> None:
    """/metrics answers text/plain; version=0.0.4 with the port gauge."""
    sink.publish(bound())
    status, headers, body = get(sink, "/metrics")
    assert (status, headers["Content-Type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "\npia_mqtt_forwarded_port 54321\n" in body.decode()


def test_readyz_needs_a_port_bound_within_two_intervals(sink: HttpSink, clocks: FakeClocks) -> None:
    """503 before a bind, 200 after it, 503 again once the last bind is over two intervals old."""
    assert get(sink, "/readyz")[0] == 503
    sink.publish(bound())
    status, _, body = get(sink, "/readyz")
    assert (status, body) == (200, b"ok: port 54321 bound 0 s ago (status active)\n")
    clocks.advance(2 * INTERVAL)
    assert get(sink, "/readyz")[0] == 200
    clocks.advance(1)
    status, _, body = get(sink, "/readyz")
    assert (status, body.decode().split(" (")[0]) == (
        503,
        "not ok: last successful bind 1801 s ago",
    )


def test_healthz_follows_the_engine_heartbeat(sink: HttpSink, clocks: FakeClocks) -> None:
    """Alive while the engine thread reaches the sink (check heartbeat); 503 once it goes silent."""
    assert sink.check_interval == probes.HEARTBEAT
    assert get(sink, "/healthz")[0] == 200
    clocks.advance(probes.LIVENESS_WINDOW + 1)
    status, _, body = get(sink, "/healthz")
    assert (status, body) == (503, b"not ok: engine loop silent for 121 s (more than 120 s)\n")
    sink.check(bound())
    assert get(sink, "/healthz")[0] == 200


def test_the_page_shows_the_port_in_large_type_and_reloads_itself(sink: HttpSink) -> None:
    """/ is HTML with the port in its own element, a meta refresh and no script or asset."""
    sink.publish(bound())
    sink.event(Event(EventKind.PORT_CHANGED, T0, "Port 54321 bound on 10.13.128.1", port=54321))
    status, headers, body = get(sink, "/")
    text = body.decode()
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert '<div class="port" id="port">54321</div>' in text
    assert f'<meta http-equiv="refresh" content="{page.REFRESH_SECONDS}">' in text
    for expected in ("active", "amsterdam404", "10.13.128.1", "qbittorrent", "in_sync",
                     "port_changed", "Port 54321 bound on 10.13.128.1"):  # fmt: skip
        assert expected in text
    assert "<script" not in text
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", text)


def test_unknown_paths_are_404_and_head_has_no_body(sink: HttpSink) -> None:
    """Unknown paths answer 404; HEAD answers like GET without a body."""
    assert get(sink, "/nope")[0] == 404
    status, headers, body = get(sink, "/metrics", "HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_read_only_other_methods_get_405(sink: HttpSink, method: str) -> None:
    """The endpoint changes nothing: writing methods answer 405 with Allow: GET, HEAD."""
    status, headers, _ = get(sink, "/status", method)
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


def test_oversized_requests_are_refused(sink: HttpSink) -> None:
    """Request line and headers past 8 KiB get 431; the server keeps serving."""
    host, port = sink.bound
    with socket.create_connection((host, port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n")
        answer = raw.recv(200)
    assert answer.startswith(b"HTTP/1.0 431")
    assert get(sink, "/healthz")[0] == 200


def test_a_silent_client_never_blocks_the_engine_and_is_cut_off(sink: HttpSink) -> None:
    """While a client holds the one thread, engine calls return; the client is dropped after 2 s."""
    host, port = sink.bound
    with socket.create_connection((host, port), timeout=10) as silent:
        for i in range(100):  # the engine publishing and emitting meanwhile
            sink.publish(bound(port=1000 + i))
            sink.event(Event(EventKind.BOUND, T0, f"bound {i}"))
        assert silent.recv(100) == b""  # closed by the server's timeout, never answered
    assert json.loads(get(sink, "/status")[2])["port"] == 1099


def test_close_stops_the_thread_and_releases_the_port(clocks: FakeClocks) -> None:
    """After close() the port can be bound again and the thread is gone."""
    endpoint = HttpSink("127.0.0.1", 0, version="1", refresh_interval=INTERVAL)
    host, port = endpoint.bound
    endpoint.close()
    assert not endpoint._thread.is_alive()
    with socket.socket() as again:
        again.bind((host, port))


def test_ipv6_loopback_works() -> None:
    """HTTP_ADDRESS may be an IPv6 literal."""
    try:
        endpoint = HttpSink("::1", 0, version="1", refresh_interval=INTERVAL)
    except ConfigError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert endpoint.url_host.startswith("[::1]:")
        conn = http.client.HTTPConnection("::1", endpoint.bound[1], timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        endpoint.close()


def test_no_secret_reaches_the_page_the_status_or_the_metrics(sink: HttpSink) -> None:
    """A registered secret inside an error or event message is masked everywhere."""
    secret = "hunter2-very-secret"
    redact.register(secret)
    sink.publish(bound(last_error=f"login failed for {secret}"))
    sink.event(Event(EventKind.ERROR, T0, f"token {secret} refused"))
    for path in ("/", "/status", "/metrics"):
        body = get(sink, path)[2].decode()
        assert secret not in body, path


def test_the_serving_thread_is_named() -> None:
    """The serving thread is named, so a thread dump shows what it is."""
    endpoint = HttpSink("127.0.0.1", 0, version="1", refresh_interval=INTERVAL)
    try:
        assert eventually(endpoint._thread.is_alive)
        assert endpoint._thread.name == "pia-mqtt-http"
    finally:
        endpoint.close()


def raw(sink: HttpSink, data: bytes) -> bytes:
    """Send raw bytes and end the sending side, return the whole answer."""
    with socket.create_connection(sink.bound, timeout=5) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.0 200 OK"),
        (b"\r\nGET /healthz HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK"),
        (b"GET /healthz\r\n\r\n", b"HTTP/1.0 400 Bad Request"),
        (b"GET healthz HTTP/1.0\r\n\r\n", b"HTTP/1.0 400 Bad Request"),
        (b"BREW /pot HTTP/1.0\r\n\r\n", b"HTTP/1.0 501 Not Implemented"),
        (b"GET /healthz HTTP/1.0\r\nHost: x\r\n", b"HTTP/1.0 400 Bad Request"),
    ],
)
def test_requests_on_the_wire(sink: HttpSink, request_bytes: bytes, status_line: bytes) -> None:
    """HTTP/1.0 and 1.1 requests are answered (and closed); malformed ones get 400, unknown methods 501."""
    answer = raw(sink, request_bytes)
    assert answer.split(b"\r\n", 1)[0] == status_line
    assert b"\r\nConnection: close\r\n" in answer


def test_a_client_that_sends_nothing_gets_no_answer(sink: HttpSink) -> None:
    """Connecting and closing without a request is not an error and gets no bytes."""
    with socket.create_connection(sink.bound, timeout=5) as conn:
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(100) == b""
    assert get(sink, "/healthz")[0] == 200


def test_the_endpoint_imports_neither_http_server_nor_html() -> None:
    """The 0.6 MiB that http.server and html's entity table would cost stay out of the daemon."""
    code = (
        "import sys, pia_mqtt.wiring, pia_mqtt.pia.manager, pia_mqtt.mqtt.sink, "
        "pia_mqtt.torrent.qbittorrent, pia_mqtt.http.server; "
        "print(sorted({'html', 'http.server'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_engine_sends_the_heartbeat_and_the_endpoint_counts_real_binds(
    pia_sim: PiaSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a real engine: check() every 30 s reaches the sink; keep-alives count as binds."""
    from tests.harness import advance, at, build_daemon

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pia_sim.token_ca_file))
    endpoint = HttpSink("127.0.0.1", 0, version="1", refresh_interval=60)
    beats: list[Snapshot] = []
    real_check = endpoint.check

    def check(snapshot: Snapshot) -> None:
        beats.append(snapshot)
        real_check(snapshot)

    monkeypatch.setattr(endpoint, "check", check)
    try:
        with at(datetime.now(UTC)) as traveller:
            daemon = build_daemon(pia_sim, tmp_path, interval=60, extra_sinks=[endpoint])
            daemon.engine.start()
            advance(daemon.engine, traveller, 1)
            assert beats == []
            advance(daemon.engine, traveller, 30)
            assert len(beats) == 1
            advance(daemon.engine, traveller, 150)  # two more keep-alives, five more beats
            assert len(beats) == 6
            text = get(endpoint, "/metrics")[2].decode()
            port = int(daemon.port_file.read_text())
        assert samples(text)["pia_mqtt_binds_total"] == 4  # the first bind + three keep-alives
        assert samples(text)["pia_mqtt_forwarded_port"] == port
    finally:
        endpoint.close()


@given(data=st.binary(max_size=10_000))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_a_request_none_or_a_clean_refusal(data: bytes) -> None:
    """Fuzz: whatever a client sends, parsing ends in a Request, None, or a 400/431, nothing else."""
    refused = None
    try:
        request = wire.read_request(io.BytesIO(data))
    except wire.RequestError as exc:
        refused, request = exc.status, None
    assert refused in (None, 400, 431)
    assert request is None or (request.path.startswith("/") and request.method)


def accept_queue(port: int) -> int:
    """Connections waiting in the listen queue of 127.0.0.1:``port`` (Linux /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return int(queues.split(":")[1], 16)
    raise AssertionError(f"no listener on port {port}")


def test_close_does_not_wait_for_a_slow_client() -> None:
    """Shutdown stays within its 2 s budget: close() returns while a client still holds the thread."""
    endpoint = HttpSink("127.0.0.1", 0, version="1", refresh_interval=INTERVAL)
    port = endpoint.bound[1]
    with socket.create_connection(endpoint.bound, timeout=5) as silent:
        silent.sendall(b"GET / HTTP/1.0\r\n")  # never finishes its headers
        eventually(lambda: accept_queue(port) == 0)  # the thread accepted it and is reading
        endpoint.close()
        assert endpoint._thread.is_alive()  # still inside that request: close did not wait
        # The client is dropped at its 2 s timeout; the thread then ends and frees the port.
        eventually(lambda: not endpoint._thread.is_alive(), timeout=5)
        assert silent.recv(100) == b""
    assert endpoint._server.socket.fileno() == -1
