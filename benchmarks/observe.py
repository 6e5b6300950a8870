"""Watching the four places a port shows up, each with its own clock reading.

MQTT is watched by a subscriber that stamps every message on arrival (``time.monotonic``,
one clock for every process on the machine, namespaces included). Files, qBittorrent and
the simulator's bind counter are polled by one thread each, so a slow qBittorrent read
never delays noticing a file. Every wait is bounded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class BenchError(RuntimeError):
    """A benchmark step did not happen in time (the message says which)."""


@dataclass(frozen=True)
class Message:
    """One MQTT message and when it arrived."""

    at: float
    topic: str
    payload: str
    retain: bool


class MqttWatch:
    """Subscribe to ``topic/#`` and keep every message with its arrival time."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{topic}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{topic}/#", qos=1)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise BenchError("the benchmark's MQTT subscriber could not subscribe")

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        message = Message(time.monotonic(), msg.topic, msg.payload.decode(), bool(msg.retain))
        with self._lock:
            self._messages.append(message)

    def first(self, check: Callable[[Message], bool], *, after: float) -> float | None:
        """Arrival time of the first message after ``after`` that passes ``check``."""
        with self._lock:
            messages = list(self._messages)
        for message in messages:
            if message.at >= after and check(message):
                return message.at
        return None

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        """Publish as a user would (QoS 1) and wait until the broker has it."""
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def clear_retained(self, *suffixes: str) -> None:
        """Delete retained messages under the topic (an empty retained payload)."""
        for suffix in suffixes:
            self.publish(f"{self.topic}/{suffix}", "", retain=True)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def port_message(topic: str, port: Callable[[], int | None]) -> Callable[[Message], bool]:
    """Check for ``topic/port`` carrying the expected port (once it is known)."""

    def check(message: Message) -> bool:
        expected = port()
        return (
            message.topic == f"{topic}/port"
            and expected is not None
            and message.payload == str(expected)
        )

    return check


def state_message(topic: str, port: Callable[[], int | None]) -> Callable[[Message], bool]:
    """Check for ``topic/state`` showing the expected port ``active``."""

    def check(message: Message) -> bool:
        if message.topic != f"{topic}/state" or not message.payload:
            return False
        expected, state = port(), json.loads(message.payload)
        return expected is not None and (state["status"], state["port"]) == ("active", expected)

    return check


@dataclass
class Poller:
    """Polls ``check`` in its own thread until it passes; keeps the time it first did."""

    name: str
    check: Callable[[], bool]
    interval: float
    at: float | None = None
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Poller:
        """Start polling."""
        self._thread = threading.Thread(target=self._loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.check():
                    self.at = time.monotonic()
                    return
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None while it is missing or being replaced."""
    try:
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return result


def files_show(
    port_file: Path, data_file: Path, port: Callable[[], int | None]
) -> Callable[[], bool]:
    """Check that both port files show the expected port (data file: ``active``)."""

    def check() -> bool:
        expected = port()
        if expected is None:
            return False
        try:
            text = port_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        data = read_json(data_file)
        return (
            text == f"{expected}\n"
            and data is not None
            and (data["port"], data["status"]) == (expected, "active")
        )

    return check


def wait_all(
    pollers: list[Poller],
    mqtt: list[tuple[str, MqttWatch, Callable[[Message], bool]]],
    *,
    after: float,
    timeout: float,
    alive: Callable[[], str | None] = lambda: None,
) -> dict[str, float]:
    """Wait until every poller and MQTT check passed; seconds after ``after`` for each."""
    for poller in pollers:
        poller.start()
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    try:
        while True:
            for poller in pollers:
                if poller.at is not None:
                    found[poller.name] = poller.at - after
            for name, watch, check in mqtt:
                at = watch.first(check, after=after)
                if at is not None:
                    found[name] = at - after
            if len(found) == len(pollers) + len(mqtt):
                return found
            problem = alive()
            if problem is not None or time.monotonic() > deadline:
                missing = [p.name for p in pollers if p.at is None] + [
                    n for n, _, _ in mqtt if n not in found
                ]
                errors = {p.name: p.error for p in pollers if p.error}
                raise BenchError(
                    f"not seen within {timeout} s: {missing} (poll errors {errors}) {problem or ''}"
                )
            time.sleep(0.002)
    finally:
        for poller in pollers:
            poller.stop()
