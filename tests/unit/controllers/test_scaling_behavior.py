"""HPA behavior: stabilization windows and scaling policies
(kumo.platform.controllers.scalingbehavior), table-driven."""

from __future__ import annotations

import pytest

from kumo.platform.controllers.scalingbehavior import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Policy,
    Rules,
    Timestamped,
    limit_rate,
    rules_from,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)

NOW = 1000.0
NO_WINDOW = Rules(0, "Max", (Policy("Percent", 100, 15),))


def test_rules_from_spec_fills_kubernetes_defaults() -> None:
    assert rules_from(None, DEFAULT_SCALE_UP) == DEFAULT_SCALE_UP
    assert rules_from({"stabilizationWindowSeconds": 60}, DEFAULT_SCALE_DOWN) == Rules(
        60, "Max", DEFAULT_SCALE_DOWN.policies
    )
    custom = {
        "selectPolicy": "Min",
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}],
    }
    assert rules_from(custom, DEFAULT_SCALE_UP) == Rules(0, "Min", (Policy("Pods", 2, 30),))


# (case, desired, current, history [(value, seconds ago)], up window, down window, expected)
STABILIZE_CASES = [
    ("no history", 5, 3, [], 0, 300, 5),
    ("dip held by the down window", 2, 5, [(5, 100)], 0, 300, 5),
    ("dip after the window passed", 2, 5, [(5, 400)], 0, 300, 2),
    ("highest recent recommendation wins", 2, 6, [(4, 10), (3, 20)], 0, 300, 4),
    ("spike held by an up window", 9, 3, [(3, 30)], 60, 0, 3),
    ("spike after the up window", 9, 3, [(3, 90)], 60, 0, 9),
    ("lowest of the up window, not below current", 9, 3, [(5, 10), (7, 20)], 60, 0, 5),
]


@pytest.mark.parametrize(
    ("case", "desired", "current", "history", "up_window", "down_window", "expected"),
    STABILIZE_CASES,
    ids=[c[0] for c in STABILIZE_CASES],
)
def test_stabilize(
    case: str,
    desired: int,
    current: int,
    history: list[tuple[int, float]],
    up_window: int,
    down_window: int,
    expected: int,
) -> None:
    entries = [Timestamped(value, NOW - ago) for value, ago in history]
    up = Rules(up_window, "Max", DEFAULT_SCALE_UP.policies)
    down = Rules(down_window, "Max", DEFAULT_SCALE_DOWN.policies)
    assert stabilize(desired, current, entries, up=up, down=down, now=NOW) == expected, case


# (case, current, up events [(added, seconds ago)], rules, expected limit)
UP_LIMIT_CASES = [
    ("defaults from 1: +4 pods beats +100%", 1, [], DEFAULT_SCALE_UP, 5),
    ("defaults from 10: +100% beats +4 pods", 10, [], DEFAULT_SCALE_UP, 20),
    ("Min picks the smaller change", 10, [], Rules(0, "Min", DEFAULT_SCALE_UP.policies), 14),
    ("Disabled forbids scaling up", 10, [], Rules(0, "Disabled", DEFAULT_SCALE_UP.policies), 10),
    (
        "events within the period count",
        6,
        [(3, 5)],
        Rules(0, "Max", (Policy("Pods", 4, 60),)),
        7,
    ),
    (
        "events older than the period do not",
        6,
        [(3, 90)],
        Rules(0, "Max", (Policy("Pods", 4, 60),)),
        10,
    ),
]


@pytest.mark.parametrize(
    ("case", "current", "events", "rules", "expected"),
    UP_LIMIT_CASES,
    ids=[c[0] for c in UP_LIMIT_CASES],
)
def test_scale_up_limit(
    case: str, current: int, events: list[tuple[int, float]], rules: Rules, expected: int
) -> None:
    ups = [Timestamped(v, NOW - ago) for v, ago in events]
    assert scale_up_limit(current, ups, [], rules, NOW) == expected, case


# (case, current, down events [(removed, seconds ago)], rules, expected limit)
DOWN_LIMIT_CASES = [
    ("default 100% allows zero", 8, [], DEFAULT_SCALE_DOWN, 0),
    ("10% of 8 truncates to 7", 8, [], Rules(0, "Max", (Policy("Percent", 10, 60),)), 7),
    (
        "Max picks the largest change",
        10,
        [],
        Rules(0, "Max", (Policy("Pods", 1, 60), Policy("Percent", 50, 60))),
        5,
    ),
    (
        "Min picks the smallest change",
        10,
        [],
        Rules(0, "Min", (Policy("Pods", 1, 60), Policy("Percent", 50, 60))),
        9,
    ),
    (
        "removals within the period count",
        8,
        [(2, 10)],
        Rules(0, "Max", (Policy("Pods", 3, 60),)),
        7,
    ),
]


@pytest.mark.parametrize(
    ("case", "current", "events", "rules", "expected"),
    DOWN_LIMIT_CASES,
    ids=[c[0] for c in DOWN_LIMIT_CASES],
)
def test_scale_down_limit(
    case: str, current: int, events: list[tuple[int, float]], rules: Rules, expected: int
) -> None:
    downs = [Timestamped(v, NOW - ago) for v, ago in events]
    assert scale_down_limit(current, [], downs, rules, NOW) == expected, case


# (case, desired, current, min, max, expected replicas, reason)
RATE_CASES = [
    ("within range", 4, 3, 1, 10, 4, ""),
    ("faster than the policies allow: +4 pods from 3", 12, 3, 1, 10, 7, "ScaleUpLimit"),
    ("max below the rate limit", 12, 8, 1, 10, 10, "TooManyReplicas"),
    ("below min", 0, 3, 2, 10, 2, "TooFewReplicas"),
    ("unchanged but above a lowered max", 12, 12, 1, 10, 10, "TooManyReplicas"),
    ("scale down within range", 2, 5, 1, 10, 2, ""),
]


@pytest.mark.parametrize(
    ("case", "desired", "current", "low", "high", "expected", "reason"),
    RATE_CASES,
    ids=[c[0] for c in RATE_CASES],
)
def test_limit_rate(
    case: str, desired: int, current: int, low: int, high: int, expected: int, reason: str
) -> None:
    limited = limit_rate(
        desired,
        current,
        min_replicas=low,
        max_replicas=high,
        up_events=[],
        down_events=[],
        up=DEFAULT_SCALE_UP,
        down=NO_WINDOW,
        now=NOW,
    )
    assert (limited.replicas, limited.reason) == (expected, reason), case
    assert bool(limited.message) == bool(reason)
