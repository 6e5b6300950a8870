"""Wake-ups of paho's network thread while connected and idle, old loop timeout against new.

``python -m benchmarks.mqtt_wakeups [SECONDS]`` (default 60) starts one mosquitto on
127.0.0.1 and two connected, idle MQTT sinks side by side: one with paho's default loop
timeout (1 s, what ``loop_start`` uses) and one with pia-mqtt's
(:data:`pia_mqtt.mqtt.client.LOOP_TIMEOUT`). Prints the voluntary context switches of each
sink's network thread (``/proc/<pid>/task/<tid>/status``) over the window, per minute.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/mqtt_wakeups.py` from a fresh clone
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pia_mqtt import __version__
from pia_mqtt.core.model import Snapshot, Status
from pia_mqtt.mqtt import client as mqtt_client
from pia_mqtt.mqtt.sink import MqttSink
from tests.fixtures.common import RecordingInbox
from tests.fixtures.mosquitto import Broker


def _switches(thread: threading.Thread) -> int:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return next(
        int(line.split()[1])
        for line in status.splitlines()
        if line.startswith("voluntary_ctxt_switches:")
    )


def _network_thread(client_id: str) -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == f"paho-mqtt-client-{client_id}")


def main(seconds: float) -> None:
    """Measure and print."""
    with tempfile.TemporaryDirectory(prefix="pia-mqtt-wakeups-") as tmp:
        broker = Broker(Path(tmp))
        broker.start()
        sinks: dict[str, tuple[MqttSink, float]] = {}
        try:
            for name, timeout in (("paho-default", 1.0), ("pia-mqtt", mqtt_client.LOOP_TIMEOUT)):
                mqtt_client.LOOP_TIMEOUT = timeout  # read when the network thread starts
                sink = MqttSink(
                    broker.settings(mqtt_topic=f"bench-{name}", mqtt_client_id=f"bench-{name}"),
                    RecordingInbox(),
                    qbittorrent_enabled=False,
                    version=__version__,
                )
                sink.start()
                sink.publish(
                    Snapshot(status=Status.ACTIVE, updated_at=datetime.now(UTC), port=54321)
                )
                if not sink.flush(10):
                    raise SystemExit(f"{name}: could not connect to mosquitto")
                sinks[name] = (sink, timeout)
            time.sleep(1)
            threads = {name: _network_thread(f"bench-{name}") for name in sinks}
            before = {name: _switches(t) for name, t in threads.items()}
            time.sleep(seconds)
            after = {name: _switches(t) for name, t in threads.items()}
            print(f"paho network thread, connected and idle, {seconds:.0f} s (keep-alive 60 s):")
            for name, (_sink, timeout) in sinks.items():
                woke = after[name] - before[name]
                print(
                    f"  {name:13} loop timeout {timeout:4.0f} s: {woke:4d} wake-ups "
                    f"({woke * 60 / seconds:.1f} per minute)"
                )
        finally:
            for sink, _timeout in sinks.values():
                sink.close()
            broker.stop()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
