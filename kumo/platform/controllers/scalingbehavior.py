"""How fast an HPA may move: stabilization windows and scaling policies
(``spec.behavior``), as Kubernetes applies them. Pure: the controller keeps the history.

What callers may rely on:
- ``stabilize``: the recommendation actually used is the lowest of those made within the
  scale-up window (so a brief spike does not scale up when the window is long) and the
  highest of those made within the scale-down window (default 300 s: a brief dip does not
  scale down); it never moves past the current count in the direction the windows forbid;
- ``limit_rate``: one period's change is bounded by the policies (``Pods``: that many,
  ``Percent``: that share of the count at the start of the period), counting the scale
  events already made within each policy's period; ``selectPolicy`` ``Max`` picks the policy
  allowing the largest change, ``Min`` the smallest, ``Disabled`` forbids that direction;
- min/max replicas always bound the answer, and the reason of any bound is returned for the
  ScalingLimited condition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kumo.platform.controllers.controller_utils import Obj, int_value


@dataclass(frozen=True, slots=True)
class Timestamped:
    """A recommendation (replica count) or a scale event (replica change) at a time (s)."""

    value: int
    at: float


@dataclass(frozen=True, slots=True)
class Policy:
    type: str  # Pods | Percent
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class Rules:
    stabilization_window_seconds: int
    select_policy: str  # Max | Min | Disabled
    policies: tuple[Policy, ...]


# Kubernetes' defaults (when spec.behavior leaves a direction out).
DEFAULT_SCALE_UP = Rules(0, "Max", (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = Rules(300, "Max", (Policy("Percent", 100, 15),))


def rules_from(raw: Obj | None, default: Rules) -> Rules:
    """``spec.behavior.scaleUp`` / ``scaleDown`` (camelCase JSON) as ``Rules``."""
    if not isinstance(raw, dict):
        return default
    window = raw.get("stabilizationWindowSeconds")
    policies = raw.get("policies")
    return Rules(
        default.stabilization_window_seconds if window is None else int_value(window),
        str(raw.get("selectPolicy") or default.select_policy),
        default.policies
        if policies is None
        else tuple(
            Policy(str(p.get("type")), int_value(p.get("value")), int_value(p.get("periodSeconds")))
            for p in policies
            if isinstance(p, dict)
        ),
    )


def stabilize(
    desired: int,
    current: int,
    history: Sequence[Timestamped],
    *,
    up: Rules,
    down: Rules,
    now: float,
) -> int:
    """The stabilized recommendation; ``history`` holds earlier recommendations (the caller
    appends ``desired`` afterwards)."""
    up_recommendation = desired
    down_recommendation = desired
    up_cutoff = now - up.stabilization_window_seconds
    down_cutoff = now - down.stabilization_window_seconds
    for entry in history:
        if entry.at > up_cutoff:
            up_recommendation = min(up_recommendation, entry.value)
        if entry.at > down_cutoff:
            down_recommendation = max(down_recommendation, entry.value)
    recommendation = current
    recommendation = max(recommendation, up_recommendation)
    recommendation = min(recommendation, down_recommendation)
    return recommendation


def _period_start(
    current: int,
    up_events: Iterable[Timestamped],
    down_events: Iterable[Timestamped],
    policy: Policy,
    now: float,
) -> int:
    """The replica count at the start of ``policy``'s period: now, less what scale events
    within the period changed."""
    cutoff = now - policy.period_seconds
    added = sum(event.value for event in up_events if event.at > cutoff)
    removed = sum(event.value for event in down_events if event.at > cutoff)
    return current - added + removed


def scale_up_limit(
    current: int,
    up_events: Sequence[Timestamped],
    down_events: Sequence[Timestamped],
    rules: Rules,
    now: float,
) -> int:
    if rules.select_policy == "Disabled" or not rules.policies:
        return current
    limits = []
    for policy in rules.policies:
        start = _period_start(current, up_events, down_events, policy, now)
        if policy.type == "Pods":
            limits.append(start + policy.value)
        else:
            limits.append(math.ceil(start * (1 + policy.value / 100)))
    return min(limits) if rules.select_policy == "Min" else max(limits)


def scale_down_limit(
    current: int,
    up_events: Sequence[Timestamped],
    down_events: Sequence[Timestamped],
    rules: Rules,
    now: float,
) -> int:
    if rules.select_policy == "Disabled" or not rules.policies:
        return current
    limits = []
    for policy in rules.policies:
        start = _period_start(current, up_events, down_events, policy, now)
        if policy.type == "Pods":
            limits.append(start - policy.value)
        else:
            limits.append(int(start * (1 - policy.value / 100)))
    # Max: the policy allowing the largest change, i.e. the fewest replicas.
    return max(limits) if rules.select_policy == "Min" else min(limits)


_TOO_MANY = "the desired replica count is more than the maximum replica count"
_TOO_FEW = "the desired replica count is less than the minimum replica count"
_FASTER = "the desired replica count is increasing faster than the maximum scale rate"
_SLOWER = "the desired replica count is decreasing faster than the maximum scale rate"


@dataclass(frozen=True, slots=True)
class Limited:
    replicas: int
    reason: str  # "" when within range
    message: str


def limit_rate(
    desired: int,
    current: int,
    *,
    min_replicas: int,
    max_replicas: int,
    up_events: Sequence[Timestamped],
    down_events: Sequence[Timestamped],
    up: Rules,
    down: Rules,
    now: float,
) -> Limited:
    """``desired`` bounded by the scaling policies and by min/max replicas."""
    if desired > current:
        # Below ``current`` only while earlier scale-ups still count: then hold, never shrink.
        limit = max(scale_up_limit(current, up_events, down_events, up, now), current)
        if max_replicas > limit:
            allowed, reason, message = limit, "ScaleUpLimit", _FASTER
        else:
            allowed, reason, message = max_replicas, "TooManyReplicas", _TOO_MANY
        if desired > allowed:
            return Limited(allowed, reason, message)
        return Limited(desired, "", "")
    if desired < current:
        limit = min(scale_down_limit(current, up_events, down_events, down, now), current)
        if min_replicas < limit:
            allowed, reason, message = limit, "ScaleDownLimit", _SLOWER
        else:
            allowed, reason, message = min_replicas, "TooFewReplicas", _TOO_FEW
        if desired < allowed:
            return Limited(allowed, reason, message)
        return Limited(desired, "", "")
    if desired > max_replicas:
        return Limited(max_replicas, "TooManyReplicas", _TOO_MANY)
    if desired < min_replicas:
        return Limited(min_replicas, "TooFewReplicas", _TOO_FEW)
    return Limited(desired, "", "")
