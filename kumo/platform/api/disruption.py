"""PodDisruptionBudgets at the eviction subresource (``POST pods/{name}/eviction``), as
Kubernetes' eviction REST handler enforces them.

What callers (``ResourceAPI.evict``) may rely on, before the pod is deleted:
- a pod that is finished, Pending or already being deleted is evicted whatever the budgets;
- a pod matched by no budget is evicted; by more than one: 409, the eviction API does not
  support that (Kubernetes answers 500 there);
- a budget whose status the disruption controller has not caught up with (``observedGeneration``
  behind ``generation``), or with no disruption left, answers 429 TooManyRequests
  ``Cannot evict pod as it would violate the pod's disruption budget.`` with a
  ``DisruptionBudget`` cause saying why: clients (``kumo drain``) retry later;
- a pod that is not Ready is evicted without using the budget when the budget is healthy
  anyway (or says ``unhealthyPodEvictionPolicy: AlwaysAllow``);
- otherwise the eviction takes one disruption: ``disruptionsAllowed`` goes down by one and
  the pod is recorded in ``disruptedPods`` (a compare-and-swap on the budget, retried on
  conflict) so that racing evictions cannot both spend the last one. The disruption
  controller forgets the record once the pod is gone (or after two minutes).
"""

from __future__ import annotations

import copy
from typing import Any

from kumo.model.base import LabelSelector
from kumo.model.policy import PodDisruptionBudget
from kumo.model.registry import for_model
from kumo.model.selectors import SelectorError, from_label_selector
from kumo.platform.api.errors import ApiError, conflict
from kumo.platform.store import Conflict
from kumo.platform.store.sqlite import SQLiteStore

Obj = dict[str, Any]
PDB = for_model(PodDisruptionBudget)
MAX_DISRUPTED_PODS = 2000
REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def _too_many(cause: str) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        REFUSED,
        details={"causes": [{"reason": "DisruptionBudget", "message": cause}]},
    )


def _ready(pod: Obj) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def ignores_budgets(pod: Obj) -> bool:
    """Finished, Pending and terminating pods are not protected by any budget."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(
        (pod.get("metadata") or {}).get("deletionTimestamp")
    )


def matching_budgets(pod: Obj, budgets: list[Obj]) -> list[Obj]:
    """The budgets whose selector matches the pod (a budget without a selector matches
    nothing; an empty selector matches every pod of the namespace, as in policy/v1)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    found = []
    for budget in budgets:
        raw = (budget.get("spec") or {}).get("selector")
        if raw is None:
            continue
        try:
            selector = from_label_selector(LabelSelector.model_validate(raw))
        except (ValueError, SelectorError):
            continue
        if selector.matches(labels):
            found.append(budget)
    return found


def spend(budget: Obj, pod: Obj, now: str) -> Obj | None:
    """The budget after evicting ``pod``: None when the pod may go without spending a
    disruption, else the budget with one disruption spent. Raises the 429 (or 403) that
    refuses the eviction. Pure: the caller stores the result."""
    meta = budget.get("metadata") or {}
    name = str(meta.get("name"))
    status = budget.get("status") or {}
    spec = budget.get("spec") or {}
    if not _ready(pod):
        if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
            return None
        desired = int(status.get("desiredHealthy") or 0)
        if int(status.get("currentHealthy") or 0) >= desired > 0:
            return None
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 1):
        raise _too_many(f"The disruption budget {name} is still being processed by the server.")
    allowed = int(status.get("disruptionsAllowed") or 0)
    disrupted = dict(status.get("disruptedPods") or {})
    if allowed < 0:
        raise ApiError(403, "Forbidden", f"pdb {name}: disruptions allowed is negative")
    if len(disrupted) > MAX_DISRUPTED_PODS:
        raise ApiError(
            403,
            "Forbidden",
            f"pdb {name}: DisruptedPods map too big - too many evictions not confirmed by "
            f"the disruption controller",
        )
    if allowed == 0:
        raise _too_many(
            f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} healthy "
            f"pods and has {status.get('currentHealthy', 0)} currently"
        )
    spent = copy.deepcopy(budget)
    new_status = spent.setdefault("status", {})
    new_status["disruptionsAllowed"] = allowed - 1
    disrupted[str((pod.get("metadata") or {}).get("name"))] = now
    new_status["disruptedPods"] = disrupted
    if allowed - 1 == 0:
        conditions = [
            c for c in new_status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"
        ]
        conditions.append(
            {
                "type": "DisruptionAllowed",
                "status": "False",
                "reason": "InsufficientPods",
                "message": "",
                "observedGeneration": meta.get("generation"),
                "lastTransitionTime": now,
            }
        )
        new_status["conditions"] = conditions
    return spent


async def admit_eviction(store: SQLiteStore, pod: Obj, now: str) -> None:
    """Apply the rules of the module docstring to evicting ``pod`` (as stored); returns when
    the pod may be deleted."""
    if ignores_budgets(pod):
        return
    namespace = str((pod.get("metadata") or {}).get("namespace"))
    prefix = f"registry/{PDB.group}/{PDB.plural}/{namespace}/"
    for _ in range(10):
        entries = (await store.list(prefix)).items
        budgets = matching_budgets(pod, [e.obj for e in entries])
        if not budgets:
            return
        if len(budgets) > 1:
            names = ", ".join(sorted(str(b["metadata"]["name"]) for b in budgets))
            raise ApiError(
                409,
                "Conflict",
                f"This pod has more than one PodDisruptionBudget ({names}), which the eviction "
                f"subresource does not support.",
            )
        budget = budgets[0]
        spent = spend(budget, pod, now)
        if spent is None:
            return
        key = next(e.key for e in entries if e.obj is budget)
        revision = next(e.revision for e in entries if e.obj is budget)
        try:
            await store.update(key, spent, revision)
        except Conflict:
            continue  # another eviction (or the controller) wrote the budget: decide again
        return
    raise conflict(PDB, str(budgets[0]["metadata"]["name"]), "too many concurrent evictions")
