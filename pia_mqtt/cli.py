"""The ``pia-mqtt`` command: parse arguments, load settings, configure logging, run.

Exit status: 0 success, 1 failure (no port, unhealthy), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pia_mqtt import __version__

if TYPE_CHECKING:
    from pia_mqtt.core.engine import Engine
    from pia_mqtt.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

COMMANDS = {
    "run": "keep the port forward alive (default)",
    "once": "acquire, bind, write the files, update every sink, then exit",
    "detect-gateway": "list every gateway candidate and its verdict",
    "check-config": "print the effective settings with secrets masked",
    "healthcheck": "exit 0 only if the last successful bind is recent",
    "demo": "run the whole loop against the built-in PIA simulator",
}


def _bounded_int(low: int, high: int, why: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: {low} to {high} ({why})")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


def _plain_topic(text: str) -> str:
    if not text or any(c in text for c in "+#\0"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a plain topic without + or #")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pia-mqtt",
        description="Keep a PIA forwarded port alive and hand it to files, qBittorrent, a hook "
        "and MQTT. Configured by environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"pia-mqtt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == "demo":
            command.add_argument(
                "--dir",
                default="demo-config",
                help="folder for the port files and the simulator (default ./demo-config)",
            )
            command.add_argument(
                "--duration",
                type=_positive,
                default=None,
                help="stop after this many seconds (default: until Ctrl-C)",
            )
            command.add_argument(
                "--interval",
                type=_bounded_int(1, 900, "PIA drops a port after 15 minutes"),
                default=30,
                help="keep-alive interval in seconds for the demo, 1 to 900 (default 30)",
            )
            command.add_argument(
                "--topic",
                type=_plain_topic,
                default="pia-mqtt-demo",
                help="MQTT topic (and client id, HA device) of the demo, removed again on exit "
                "(default pia-mqtt-demo; never the real install's)",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pia-mqtt`` console script."""
    args = _parser().parse_args(argv)
    command = args.command or "run"
    from pia_mqtt.errors import ConfigError  # noqa: PLC0415 - keep --version fast

    try:
        if command == "check-config":
            return _check_config()
        settings = _settings(require_credentials=command in ("run", "once"))
        if command == "healthcheck":
            return _healthcheck(settings)
        _configure_logging(settings)
        if command == "detect-gateway":
            return _detect_gateway(settings)
        if command == "demo":
            from pathlib import Path  # noqa: PLC0415

            from pia_mqtt.simulator.demo import DemoUnavailableError, demo_settings  # noqa: PLC0415

            try:
                with demo_settings(
                    settings, folder=Path(args.dir), interval=args.interval, topic=args.topic
                ) as demo:
                    return _run(demo, once=False, duration=args.duration, demo=True)
            except DemoUnavailableError as exc:
                print(f"pia-mqtt: {exc}", file=sys.stderr)
                return EXIT_FAILED
        return _run(settings, once=command == "once")
    except ConfigError as exc:
        print(f"pia-mqtt: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _settings(*, require_credentials: bool) -> Settings:
    from pia_mqtt.settings import load_settings  # noqa: PLC0415

    return load_settings(require_credentials=require_credentials)


def _configure_logging(settings: Settings) -> None:
    from pia_mqtt.logs import configure  # noqa: PLC0415

    configure(settings.log_level, settings.log_format.value)


def _check_config() -> int:
    import json  # noqa: PLC0415

    from pia_mqtt.errors import ConfigError  # noqa: PLC0415

    # The full check first (what `run` refuses, every problem at once), then the settings
    # as far as they can be shown.
    try:
        settings = _settings(require_credentials=True)
    except ConfigError as exc:
        try:
            shown = _settings(require_credentials=False).masked()
        except ConfigError:
            pass
        else:
            print(json.dumps(shown, indent=2, default=str))
        print(f"pia-mqtt: not ready to run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(settings.masked(), indent=2, default=str))
    print("configuration OK", file=sys.stderr)
    if settings.gluetun_control_url:
        _check_gluetun(settings)
    return EXIT_OK


def _check_gluetun(settings: Settings) -> None:
    """One GET to gluetun after validation (never a change); its outcome keeps exit 0."""
    from pia_mqtt.gluetun.check import gluetun_report  # noqa: PLC0415
    from pia_mqtt.gluetun.client import GluetunClient  # noqa: PLC0415
    from pia_mqtt.settings import PortSource  # noqa: PLC0415

    key = settings.secret("gluetun_api_key")
    client = GluetunClient(settings.gluetun_url, api_key=key, timeout=5.0)
    try:
        lines = gluetun_report(
            client, follows=settings.port_source is PortSource.GLUETUN, has_key=bool(key)
        )
    finally:
        client.close()
    print("\n".join(lines), file=sys.stderr)


def _healthcheck(settings: Settings) -> int:
    from datetime import UTC, datetime  # noqa: PLC0415

    from pia_mqtt.sinks.portfiles import check_health  # noqa: PLC0415

    health = check_health(
        settings.port_data_file,
        refresh_interval=settings.port_forward_refresh_interval,
        now=datetime.now(UTC),
    )
    print(("healthy: " if health.ok else "unhealthy: ") + health.reason)
    return EXIT_OK if health.ok else EXIT_FAILED


def _detect_gateway(settings: Settings) -> int:
    from pia_mqtt.gateway.finder import format_results  # noqa: PLC0415
    from pia_mqtt.pia.lease import LeaseStore  # noqa: PLC0415
    from pia_mqtt.wiring import build_finder  # noqa: PLC0415

    finder = build_finder(settings)
    results = finder.detect_all(saved=LeaseStore(settings.state_file).load_gateway())
    print(format_results(results, notes=finder.notes))
    if any(r.probe.ok for r in results):
        return EXIT_OK
    print(
        "no gateway candidate verified: is the VPN up? "
        "(README, troubleshooting: Could not detect gateway IP)"
    )
    return EXIT_FAILED


def _run(
    settings: Settings, *, once: bool, duration: float | None = None, demo: bool = False
) -> int:
    import logging  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from pia_mqtt.core.engine import ShutdownRequestedError  # noqa: PLC0415
    from pia_mqtt.wiring import build_engine, describe_once, run_once  # noqa: PLC0415

    log = logging.getLogger("pia_mqtt")
    log.info("pia-mqtt %s starting (%s)", __version__, "once" if once else "run")
    received: list[str] = []
    engine: Engine | None = None

    def stop(signum: int, _frame: object) -> None:
        # No logging in the handler: writing to stderr while the interrupted main thread is
        # writing there raises "reentrant call". The line is logged once the loop returns.
        received.append(signal.Signals(signum).name)
        if engine is None:
            # Still building (settings, files, MQTT): abort whatever blocks, nothing to close.
            raise ShutdownRequestedError
        engine.request_stop()

    # Installed before anything can block, so that SIGTERM ends start-up within 2 s too.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        engine = build_engine(settings, once=once, demo=demo)
    except ShutdownRequestedError:
        log.info("Received %s during start-up: stopping", received[0] if received else "a signal")
        return EXIT_FAILED if once else EXIT_OK
    if once:
        try:
            ok = run_once(engine)
        except ShutdownRequestedError:
            return EXIT_FAILED
        print(describe_once(engine))
        return EXIT_OK if ok else EXIT_FAILED
    return _serve(engine, duration, received)


def _serve(engine: Engine, duration: float | None, received: list[str]) -> int:
    """Run the engine until a signal (or ``duration``), then close it within the budget."""
    import logging  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from pia_mqtt.core import signals  # noqa: PLC0415
    from pia_mqtt.core.engine import ShutdownRequestedError  # noqa: PLC0415

    log = logging.getLogger("pia_mqtt")

    # _run's handler runs only once the main thread wakes; a signal the kernel handed to
    # another thread stops the engine from the signal thread at once (core.signals).
    def stop_now(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        engine.request_stop()

    forget = signals.on([signal.SIGTERM, signal.SIGINT], stop_now)
    try:
        engine.start()
        engine.run(timeout=duration)
    except ShutdownRequestedError:
        log.info("Received %s during a request: stopping", received[0] if received else "a signal")
    except Exception:
        log.exception("pia-mqtt stopped by a bug; the container restarts it with the same port")
        return EXIT_FAILED
    else:
        if received:
            log.info("Received %s: stopping", received[0])
    finally:
        forget()
        # Bounded (core.engine.CLOSE_TIMEOUT): a hung peer cannot hold the exit past 2 s.
        engine.close()
    log.info("pia-mqtt stopped")
    return EXIT_OK
