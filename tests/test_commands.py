"""The command gate as a table: presses and deferred runs in, verdicts out (pure)."""

from __future__ import annotations

import pytest

from pia_mqtt.core.commands import Action, CommandGate, Verdict
from pia_mqtt.core.model import Command

R, N = Command.REFRESH, Command.NEW_PORT


def _play(steps: list[tuple[str, Command, float, float | None]]) -> list[Verdict]:
    gate = CommandGate()
    verdicts = []
    for kind, command, now, hold in steps:
        verdicts.append(getattr(gate, kind)(command, now, hold_until=hold))
    return verdicts


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [("press", R, 0.0, None)],
            [Verdict(Action.RUN)],
            id="first-press-at-once",
        ),
        pytest.param(
            [
                ("press", R, 0.0, None),
                ("press", R, 1.0, None),
                ("press", R, 2.0, None),
                ("fire", R, 5.0, None),
            ],
            [
                Verdict(Action.RUN),
                Verdict(Action.DEFER, at=5.0),
                Verdict(Action.MERGED),
                Verdict(Action.RUN, merged=1),
            ],
            id="refresh-limit-5s-one-deferred",
        ),
        pytest.param(
            [("press", N, 0.0, None), ("press", N, 30.0, None), ("fire", N, 60.0, None)],
            [Verdict(Action.RUN), Verdict(Action.DEFER, at=60.0), Verdict(Action.RUN)],
            id="new-port-limit-60s",
        ),
        pytest.param(
            [("press", R, 0.0, None), ("press", R, 5.0, None)],
            [Verdict(Action.RUN), Verdict(Action.RUN)],
            id="after-the-limit-at-once-again",
        ),
        pytest.param(
            [("press", R, 0.0, None), ("press", N, 0.5, None)],
            [Verdict(Action.RUN), Verdict(Action.RUN)],
            id="limits-are-per-command",
        ),
        pytest.param(
            [("press", R, 0.0, 60.0), ("press", R, 1.0, 60.0), ("press", R, 61.0, None)],
            [Verdict(Action.RETRY, at=60.0), Verdict(Action.MERGED), Verdict(Action.RUN)],
            id="refresh-during-a-backoff-is-left-to-the-retry",
        ),
        pytest.param(
            [("press", N, 0.0, 60.0), ("fire", N, 60.0, 120.0), ("fire", N, 120.0, None)],
            [Verdict(Action.DEFER, at=60.0), Verdict(Action.DEFER, at=120.0), Verdict(Action.RUN)],
            id="new-port-waits-for-every-backoff",
        ),
        pytest.param(
            [("press", N, 0.0, 10.0), ("press", N, 5.0, None), ("fire", N, 10.0, None)],
            [Verdict(Action.DEFER, at=10.0), Verdict(Action.MERGED), Verdict(Action.RUN, merged=1)],
            id="a-press-during-a-deferred-one-is-merged",
        ),
    ],
)
def test_gate(
    steps: list[tuple[str, Command, float, float | None]], expected: list[Verdict]
) -> None:
    """Each row: the verdicts for a sequence of presses and deferred runs (fire)."""
    assert expected == _play(steps)


def test_ten_thousand_presses_make_one_run_and_one_deferred_run() -> None:
    """A flood inside one limit: one RUN, one DEFER, then MERGED; the deferred run counts them."""
    gate = CommandGate()
    verdicts = [gate.press(R, i / 10_000, hold_until=None).action for i in range(10_000)]
    last = gate.fire(R, 5.0, hold_until=None)
    assert [Action.RUN, Action.DEFER] + [Action.MERGED] * 9_998 == verdicts
    assert Verdict(Action.RUN, merged=9_998) == last
