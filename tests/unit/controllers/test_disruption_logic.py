"""PodDisruptionBudgets: the disruption controller's counting
(kumo.platform.controllers.disruption) and the eviction check
(kumo.platform.api.disruption), table-driven."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kumo.model.policy import PodDisruptionBudget
from kumo.platform.api.disruption import ignores_budgets, matching_budgets, spend
from kumo.platform.api.errors import ApiError
from kumo.platform.controllers.disruption import (
    Counts,
    budget_status,
    desired_counts,
    live_disruptions,
)

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


def stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str, *, ready: bool = True, phase: str = "Running", deleting: bool = False, **labels: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = stamp(NOW)
    return {
        "metadata": meta,
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def budget(
    *,
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 1,
    name: str = "web",
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}, **extra}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": "ns", "generation": generation},
        "spec": spec,
        "status": status or {},
    }


# ---- counting -------------------------------------------------------------------------------

FIVE = [pod(f"p{i}") for i in range(5)]
OWNED = {f"p{i}": ("Deployment/web", 5) for i in range(5)}

# (case, budget, pods, controller of each pod, expected, desired healthy, unmanaged)
COUNT_CASES = [
    ("minAvailable integer counts the pods", budget(min_available=3), FIVE, {}, 5, 3, ()),
    ("maxUnavailable against the controller", budget(max_unavailable=1), FIVE, OWNED, 5, 4, ()),
    ("percent rounds up", budget(min_available="50%"), FIVE, OWNED, 5, 3, ()),
    ("maxUnavailable percent rounds up", budget(max_unavailable="30%"), FIVE, OWNED, 5, 3, ()),
    (
        "controller wants more than exist",
        budget(max_unavailable=1),
        FIVE[:2],
        {"p0": ("Deployment/web", 4), "p1": ("Deployment/web", 4)},
        4,
        3,
        (),
    ),
    (
        "unmanaged pods are left out",
        budget(max_unavailable=1),
        FIVE[:3],
        {"p0": ("ReplicaSet/a", 2), "p1": ("ReplicaSet/a", 2), "p2": None},
        2,
        1,
        ("p2",),
    ),
    ("neither set", budget(), FIVE, OWNED, 0, 0, ()),
]


@pytest.mark.parametrize(
    ("case", "the_budget", "pods", "owners", "expected", "desired", "unmanaged"),
    COUNT_CASES,
    ids=[c[0] for c in COUNT_CASES],
)
def test_desired_counts(
    case: str,
    the_budget: dict[str, Any],
    pods: list[dict[str, Any]],
    owners: dict[str, tuple[str, int] | None],
    expected: int,
    desired: int,
    unmanaged: tuple[str, ...],
) -> None:
    assert desired_counts(the_budget, pods, owners) == Counts(expected, desired, unmanaged), case


def test_status_counts_ready_pods_less_recent_evictions() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", deleting=True), pod("e")]
    status = budget_status(budget(min_available=2), pods, Counts(5, 2), {"e": stamp(NOW)}, NOW)
    assert status["currentHealthy"] == 2  # a, b: c is not ready, d is going, e was evicted
    assert (status["desiredHealthy"], status["expectedPods"]) == (2, 5)
    assert status["disruptionsAllowed"] == 0
    assert status["disruptedPods"] == {"e": stamp(NOW)}
    assert status["observedGeneration"] == 1
    condition = status["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "DisruptionAllowed",
        "False",
        "InsufficientPods",
    )
    roomy = budget_status(budget(min_available=1), pods[:2], Counts(2, 1), {}, NOW)
    assert roomy["disruptionsAllowed"] == 1
    assert roomy["conditions"][0]["reason"] == "SufficientPods"
    assert budget_status(budget(), pods, Counts(0, 0), {}, NOW)["disruptionsAllowed"] == 0


def test_transition_time_holds_while_the_condition_does() -> None:
    earlier = stamp(NOW - datetime.timedelta(hours=1))
    old = budget(
        min_available=1,
        status={
            "conditions": [
                {"type": "DisruptionAllowed", "status": "True", "lastTransitionTime": earlier}
            ]
        },
    )
    same = budget_status(old, [pod("a"), pod("b")], Counts(2, 1), {}, NOW)
    assert same["conditions"][0]["lastTransitionTime"] == earlier
    flipped = budget_status(old, [pod("a")], Counts(1, 1), {}, NOW)
    assert flipped["conditions"][0]["lastTransitionTime"] == stamp(NOW)


def test_eviction_records_expire() -> None:
    recent, old = NOW - datetime.timedelta(seconds=30), NOW - datetime.timedelta(minutes=3)
    the_budget = budget(
        status={
            "disruptedPods": {
                "kept": stamp(recent),
                "too-old": stamp(old),
                "gone": stamp(recent),
                "going": stamp(recent),
            }
        }
    )
    pods = {"kept": pod("kept"), "too-old": pod("too-old"), "going": pod("going", deleting=True)}
    kept, expires = live_disruptions(the_budget, pods, NOW)
    assert kept == {"kept": stamp(recent)}
    assert expires == recent + datetime.timedelta(minutes=2)


# ---- the eviction check ---------------------------------------------------------------------


def test_budgets_do_not_protect_finished_pending_or_terminating_pods() -> None:
    assert ignores_budgets(pod("a", phase="Succeeded"))
    assert ignores_budgets(pod("a", phase="Pending"))
    assert ignores_budgets(pod("a", deleting=True))
    assert not ignores_budgets(pod("a"))


def test_matching_budgets() -> None:
    everything = budget(name="all", selector={})
    nothing = budget(name="none")
    del nothing["spec"]["selector"]
    other = budget(name="other", selector={"matchLabels": {"app": "db"}})
    found = matching_budgets(pod("a"), [budget(), everything, nothing, other])
    assert [b["metadata"]["name"] for b in found] == ["web", "all"]


HEALTHY = {
    "disruptionsAllowed": 1,
    "currentHealthy": 3,
    "desiredHealthy": 2,
    "observedGeneration": 1,
}


def test_spending_the_last_disruption() -> None:
    spent = spend(budget(min_available=2, status=dict(HEALTHY)), pod("a"), stamp(NOW))
    assert spent is not None
    assert spent["status"]["disruptionsAllowed"] == 0
    assert spent["status"]["disruptedPods"] == {"a": stamp(NOW)}
    assert spent["status"]["conditions"][-1]["reason"] == "InsufficientPods"


@pytest.mark.parametrize(
    ("status", "generation", "message"),
    [
        ({**HEALTHY, "disruptionsAllowed": 0}, 1, "needs 2 healthy pods and has 3 currently"),
        (HEALTHY, 2, "is still being processed by the server"),
    ],
    ids=["no disruption left", "status behind the spec"],
)
def test_refusals_are_429_with_a_disruption_budget_cause(
    status: dict[str, Any], generation: int, message: str
) -> None:
    with pytest.raises(ApiError) as raised:
        spend(budget(status=dict(status), generation=generation), pod("a"), stamp(NOW))
    error = raised.value
    assert (error.code, error.reason) == (429, "TooManyRequests")
    assert error.message == "Cannot evict pod as it would violate the pod's disruption budget."
    cause = error.body()["details"]["causes"][0]
    assert cause["reason"] == "DisruptionBudget" and message in cause["message"]


def test_unready_pods_go_without_spending_when_the_budget_is_healthy() -> None:
    unready = pod("a", ready=False)
    full = {**HEALTHY, "disruptionsAllowed": 0, "currentHealthy": 2}
    assert spend(budget(status=full), unready, stamp(NOW)) is None
    short = {**full, "currentHealthy": 1}
    with pytest.raises(ApiError):
        spend(budget(status=short), unready, stamp(NOW))
    always = budget(status=short, unhealthyPodEvictionPolicy="AlwaysAllow")
    assert spend(always, unready, stamp(NOW)) is None


@pytest.mark.parametrize(
    ("spec", "field", "problem"),
    [
        ({"minAvailable": 1, "maxUnavailable": 1}, "spec", "cannot be both set"),
        ({"minAvailable": -1}, "spec.minAvailable", "greater than or equal to 0"),
        ({"maxUnavailable": "120%"}, "spec.maxUnavailable", "not be greater than 100%"),
        ({"minAvailable": "half"}, "spec.minAvailable", "valid percent string"),
        ({"unhealthyPodEvictionPolicy": "Never"}, "spec.unhealthyPodEvictionPolicy", "Unsupported"),
    ],
)
def test_validation_names_the_field(spec: dict[str, Any], field: str, problem: str) -> None:
    model = PodDisruptionBudget.model_validate(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "x"},
            "spec": spec,
        }
    )
    problems = model.validate_semantics()
    assert any(path == field and problem in text for path, text in problems), problems
