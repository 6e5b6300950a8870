"""PORT_FILE and PORT_DATA_FILE: the seed's formats, written atomically, and the healthcheck."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pia_mqtt.core.model import SinkHealth, Snapshot, Status, SyncState
from pia_mqtt.sinks.portfiles import Health, PortFilesSink, check_health, data_document

T0 = datetime(2026, 1, 14, 19, 30, 0, 114369, tzinfo=UTC)
INTERVAL = 900


def snapshot(port: int | None = 54321, **changes: object) -> Snapshot:
    """An active snapshot just after a successful bind at T0."""
    values: dict[str, object] = {
        "status": Status.ACTIVE,
        "updated_at": T0,
        "port": port,
        "gateway": "10.13.128.1",
        "hostname": "montreal424",
        "expires_at": T0 + timedelta(days=60),
        "last_refresh": T0,
        "next_refresh": T0 + timedelta(seconds=INTERVAL),
        **changes,
    }
    return Snapshot(**values)  # type: ignore[arg-type]


def test_the_data_document_has_the_seed_keys_and_more() -> None:
    """port/timestamp/next_refresh as in the seed (ISO, Z), plus expiry, gateway, status."""
    expected = {
        "port": 54321,
        "timestamp": "2026-01-14T19:30:00Z",
        "next_refresh": "2026-01-14T19:45:00Z",
        "expires_at": "2026-03-15T19:30:00Z",
        "gateway": "10.13.128.1",
        "hostname": "montreal424",
        "status": "active",
        "source": "pia",
        "refresh_interval": 900,
        "last_error": None,
        "qbittorrent": None,
        "transmission": None,
        "deluge": None,
        "gluetun": None,
        "updated_at": "2026-01-14T19:30:00Z",
    }
    assert expected == data_document(snapshot(), INTERVAL)


def test_the_data_document_carries_sink_health_and_errors() -> None:
    """qBittorrent's sync state and the last error show up for people debugging by file."""
    snap = snapshot(
        status=Status.ERROR,
        last_error="bindPort failed: timeout",
        sinks={"qbittorrent": SinkHealth(SyncState.AUTH_FAILED, error="wrong password")},
    )
    document = data_document(snap, 300)
    expected = (
        "error",
        "bindPort failed: timeout",
        {"state": "auth_failed", "port": None, "last_sync": None, "error": "wrong password"},
        300,
    )
    assert expected == (
        document["status"],
        document["last_error"],
        document["qbittorrent"],
        document["refresh_interval"],
    )


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """PORT_FILE and PORT_DATA_FILE inside a config folder."""
    return tmp_path / "config" / "pia-port.txt", tmp_path / "config" / "pia-port-data.json"


def read(port_file: Path, data_file: Path) -> tuple[str | None, object]:
    """Both files' content (None when missing), the data file parsed."""
    text = port_file.read_text(encoding="utf-8") if port_file.exists() else None
    data = json.loads(data_file.read_text(encoding="utf-8")) if data_file.exists() else None
    return text, data


def test_publish_writes_both_files(files: tuple[Path, Path]) -> None:
    r"""`54321\\n` and the data document; the config folder is created if missing."""
    port_file, data_file = files
    sink = PortFilesSink(port_file, data_file, refresh_interval=INTERVAL)
    sink.publish(snapshot())
    expected = ("54321\n", data_document(snapshot(), INTERVAL))
    assert expected == read(port_file, data_file)


def test_a_new_port_replaces_the_old_one(files: tuple[Path, Path]) -> None:
    """After a port change both files hold the new port, and no temp file is left."""
    port_file, data_file = files
    sink = PortFilesSink(port_file, data_file, refresh_interval=INTERVAL)
    sink.publish(snapshot(47047))
    sink.publish(snapshot(54321, last_refresh=T0 + timedelta(minutes=15)))
    text, data = read(port_file, data_file)
    assert ("54321\n", 54321, "2026-01-14T19:45:00Z", ["pia-port-data.json", "pia-port.txt"]) == (
        text,
        data["port"],  # type: ignore[index]
        data["timestamp"],  # type: ignore[index]
        sorted(p.name for p in port_file.parent.iterdir()),
    )


@pytest.mark.parametrize("port", [None, 0, 65536, -1])
def test_no_valid_port_means_nothing_is_written(files: tuple[Path, Path], port: int | None) -> None:
    """Port None, 0 or out of range: neither file (nor the folder) is created."""
    port_file, data_file = files
    PortFilesSink(port_file, data_file, refresh_interval=INTERVAL).publish(snapshot(port))
    assert (False, None, None) == (port_file.parent.exists(), *read(port_file, data_file))


def test_an_invalid_port_leaves_the_previous_files_untouched(files: tuple[Path, Path]) -> None:
    """An error snapshot without a port does not wipe the last good files."""
    port_file, data_file = files
    sink = PortFilesSink(port_file, data_file, refresh_interval=INTERVAL)
    sink.publish(snapshot(54321))
    before = read(port_file, data_file)
    sink.publish(snapshot(None, status=Status.ERROR, last_error="lost"))
    assert before == read(port_file, data_file)


def test_a_deleted_folder_is_recreated(files: tuple[Path, Path]) -> None:
    """The volume emptied while running: the next publish recreates folder and files."""
    port_file, data_file = files
    sink = PortFilesSink(port_file, data_file, refresh_interval=INTERVAL)
    sink.publish(snapshot())
    shutil.rmtree(port_file.parent)
    sink.publish(snapshot())
    assert ("54321\n", data_document(snapshot(), INTERVAL)) == read(port_file, data_file)


def test_a_deleted_port_file_is_written_again_for_the_same_port(files: tuple[Path, Path]) -> None:
    """Even when the port did not change, a missing PORT_FILE is restored."""
    port_file, data_file = files
    sink = PortFilesSink(port_file, data_file, refresh_interval=INTERVAL)
    sink.publish(snapshot())
    port_file.unlink()
    sink.publish(snapshot())
    assert "54321\n" == read(port_file, data_file)[0]


def test_an_unwritable_path_is_logged_once_and_the_sink_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One ERROR naming the path for repeated failures; once fixed, files are written again."""
    blocker = tmp_path / "config"
    blocker.write_text("a file where the folder should be", encoding="utf-8")
    port_file, data_file = blocker / "pia-port.txt", blocker / "pia-port-data.json"
    sink = PortFilesSink(port_file, data_file, refresh_interval=INTERVAL)
    caplog.set_level(logging.INFO, logger="pia_mqtt.sinks.portfiles")
    for _ in range(3):
        sink.publish(snapshot())
    blocker.unlink()
    blocker.mkdir()
    sink.publish(snapshot())
    expected_logs = [
        (
            "pia_mqtt.sinks.portfiles",
            logging.ERROR,
            (
                f"writing {port_file} failed: Not a directory; check that {blocker} exists and is "
                "writable by this user (uid 1000 in the container) (PORT_FILE/PORT_DATA_FILE); "
                "the keep-alive goes on"
            ),
        ),
        ("pia_mqtt.sinks.portfiles", logging.INFO, f"Port files written again to {blocker}"),
    ]
    assert (expected_logs, ("54321\n", data_document(snapshot(), INTERVAL))) == (
        caplog.record_tuples,
        read(port_file, data_file),
    )


def test_the_files_sink_has_no_periodic_check(files: tuple[Path, Path]) -> None:
    """Every keep-alive produces a snapshot that rewrites the files; no check timer is needed."""
    sink = PortFilesSink(*files, refresh_interval=INTERVAL)
    assert ("files", None) == (sink.name, sink.check_interval)


# --- healthcheck ----------------------------------------------------------------------------

NOW = T0 + timedelta(minutes=5)


def write_data(path: Path, **changes: object) -> Path:
    """A data file as the sink writes it after a bind at T0, with some keys changed."""
    document = {**data_document(snapshot(), INTERVAL), **changes}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_fresh_install_is_not_healthy(tmp_path: Path) -> None:
    """No data file yet: unhealthy, naming the file and PORT_DATA_FILE."""
    path = tmp_path / "missing" / "pia-port-data.json"
    expected = Health(ok=False, reason=f"no data file yet at {path} (PORT_DATA_FILE)")
    assert expected == check_health(path, refresh_interval=INTERVAL, now=NOW)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), Health(ok=True, reason="port 54321 bound 0 s ago (status active)")),
        (
            timedelta(minutes=5),
            Health(ok=True, reason="port 54321 bound 300 s ago (status active)"),
        ),
        (
            timedelta(seconds=1800),
            Health(ok=True, reason="port 54321 bound 1800 s ago (status active)"),
        ),
        (
            timedelta(seconds=1801),
            Health(
                ok=False,
                reason="last successful bind 1801 s ago (more than two intervals of 900 s)",
            ),
        ),
        (
            timedelta(days=1),
            Health(
                ok=False,
                reason="last successful bind 86400 s ago (more than two intervals of 900 s)",
            ),
        ),
    ],
)
def test_healthy_only_within_two_intervals_of_the_last_bind(
    tmp_path: Path, age: timedelta, expected: Health
) -> None:
    """The last successful bind (timestamp) must be at most 2 x refresh interval old."""
    path = write_data(tmp_path / "data.json", timestamp="2026-01-14T19:30:00Z")
    now = datetime(2026, 1, 14, 19, 30, tzinfo=UTC) + age
    assert expected == check_health(path, refresh_interval=INTERVAL, now=now)


def test_the_interval_recorded_in_the_file_wins(tmp_path: Path) -> None:
    """The daemon's own interval (written in the file) decides, not the checker's setting."""
    path = write_data(tmp_path / "data.json", timestamp="2026-01-14T19:30:00Z", refresh_interval=60)
    now = datetime(2026, 1, 14, 19, 32, 1, tzinfo=UTC)
    expected = Health(
        ok=False, reason="last successful bind 121 s ago (more than two intervals of 60 s)"
    )
    assert expected == check_health(path, refresh_interval=INTERVAL, now=now)


def test_a_seed_format_data_file_is_understood(tmp_path: Path) -> None:
    """A file with only the seed's three keys is judged by its timestamp and the setting."""
    path = tmp_path / "data.json"
    path.write_text(
        '{"port": 54321, "timestamp": "2026-01-14T19:30:00Z", "next_refresh": "2026-01-14T19:45:00Z"}',
        encoding="utf-8",
    )
    now = datetime(2026, 1, 14, 19, 40, tzinfo=UTC)
    expected = Health(ok=True, reason="port 54321 bound 600 s ago (status None)")
    assert expected == check_health(path, refresh_interval=INTERVAL, now=now)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param("[1, 2]", "{path} holds no valid port", id="a-list"),
        pytest.param("54321\n", "{path} holds no valid port", id="the-port-file-by-mistake"),
        pytest.param(
            '{"port": 0, "timestamp": "2026-01-14T19:30:00Z"}',
            "{path} holds no valid port",
            id="port-0",
        ),
        pytest.param(
            '{"port": "54321", "timestamp": "2026-01-14T19:30:00Z"}',
            "{path} holds no valid port",
            id="port-text",
        ),
        pytest.param(
            '{"timestamp": "2026-01-14T19:30:00Z"}', "{path} holds no valid port", id="no-port"
        ),
        pytest.param('{"port": 54321}', "{path} has no time of the last bind", id="no-timestamp"),
        pytest.param(
            '{"port": 54321, "timestamp": null}',
            "{path} has no time of the last bind",
            id="null-timestamp",
        ),
        pytest.param(
            '{"port": 54321, "timestamp": "soon"}',
            "{path} has no time of the last bind",
            id="bad-timestamp",
        ),
    ],
)
def test_a_garbage_data_file_is_not_healthy(tmp_path: Path, content: str, reason: str) -> None:
    """Anything but a valid port with a bind time is unhealthy, with the reason."""
    path = tmp_path / "data.json"
    path.write_text(content, encoding="utf-8")
    expected = Health(ok=False, reason=reason.format(path=path))
    assert expected == check_health(path, refresh_interval=INTERVAL, now=NOW)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    ],
)
def test_an_unreadable_data_file_is_not_healthy(tmp_path: Path, content: bytes) -> None:
    """A data file that is not JSON text is unhealthy with a 'cannot read' reason."""
    path = tmp_path / "data.json"
    path.write_bytes(content)
    health = check_health(path, refresh_interval=INTERVAL, now=NOW)
    assert (False, True) == (health.ok, health.reason.startswith(f"cannot read {path}: "))


def test_a_timestamp_without_offset_is_read_as_utc(tmp_path: Path) -> None:
    """A hand-written or foreign timestamp without Z is UTC, as everywhere else, not a crash."""
    path = write_data(tmp_path / "data.json", timestamp="2026-01-14T19:30:00")
    expected = Health(ok=True, reason="port 54321 bound 300 s ago (status active)")
    assert expected == check_health(path, refresh_interval=INTERVAL, now=NOW)


@pytest.mark.parametrize(
    "interval",
    [
        pytest.param(
            "abc",
            id="text",
        ),
        pytest.param(
            [900],
            id="a-list",
        ),
        pytest.param(None, id="null"),
        pytest.param(0, id="zero"),
    ],
)
def test_an_odd_recorded_interval_gives_a_verdict_not_a_crash(
    tmp_path: Path, interval: object
) -> None:
    """The healthcheck always answers; a file's unusable refresh_interval is not a traceback."""
    path = write_data(tmp_path / "data.json", refresh_interval=interval)
    health = check_health(path, refresh_interval=INTERVAL, now=NOW)
    assert (Health, bool) == (type(health), type(health.ok))
