"""Pure Deployment logic (Kubernetes' deployment/util and kubectl's rollout helpers): template
hashes, revisions, rolling-update arithmetic, proportional scaling, status and conditions,
the ``rollout status`` message, and the choice of a rollback target.

Objects are raw API dicts. Nothing here does I/O.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kumo.model.common import scaled_value
from kumo.platform.controllers.controller_utils import (
    Obj,
    annotations_of,
    find_condition,
    int_value,
    meta,
    name_of,
    new_condition,
    parse_time,
    remove_condition,
    set_condition,
    sorted_by_creation,
    spec,
    status,
    uid_of,
)

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# Annotations that describe one object and are never copied between Deployment and RS.
ANNOTATIONS_TO_SKIP = frozenset(
    {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}
)
MAX_REVISION_HISTORY_CHARS = 2000
NO_DEADLINE = 2**31 - 1

# Progressing / Available condition reasons (Kubernetes' names).
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_CREATED = "NewReplicaSetCreated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MINIMUM_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_UNAVAILABLE = "MinimumReplicasUnavailable"

# ---- hashing and templates -----------------------------------------------------------------

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """Kubernetes' rand.SafeEncodeString: no vowels, no look-alike characters."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def fnv1a_32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of a template: FNV-1a over its canonical JSON (plus the
    collision count, as Kubernetes mixes it in), encoded like Kubernetes' ComputeHash."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        canonical += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4)
    return safe_encode(str(fnv1a_32(canonical)))


def _without_hash(template: Obj | None) -> Obj:
    out = copy.deepcopy(template or {})
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
        if not labels:
            out["metadata"].pop("labels")
    if isinstance(out.get("metadata"), dict) and not out["metadata"]:
        out.pop("metadata")
    return out


def equal_ignore_hash(first: Obj | None, second: Obj | None) -> bool:
    """Two pod templates are the same revision if they differ only in pod-template-hash."""
    return _without_hash(first) == _without_hash(second)


def template_with_hash(template: Obj, hash_value: str) -> Obj:
    out = copy.deepcopy(template)
    out.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = hash_value
    return out


def selector_with_hash(selector: Obj | None, hash_value: str) -> Obj:
    out = copy.deepcopy(selector or {})
    out.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = hash_value
    return out


# ---- revisions -------------------------------------------------------------------------------


def revision(obj: Obj) -> int:
    return int_value(annotations_of(obj).get(REVISION))


def max_revision(sets: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in sets), default=0)


def find_new_replica_set(deployment: Obj, sets: Sequence[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash)."""
    template = spec(deployment).get("template")
    for rs in sorted_by_creation(sets):
        if equal_ignore_hash(spec(rs).get("template"), template):
            return rs
    return None


def new_replica_set_annotations(
    deployment: Obj, rs: Obj, new_revision: int, exists: bool
) -> tuple[dict[str, str], bool]:
    """Annotations for the new ReplicaSet (Kubernetes' SetNewReplicaSetAnnotations): the
    Deployment's own annotations, the new revision (a revision it had before is kept in
    revision-history, which is what a rollback to it leaves behind) and, for a ReplicaSet
    about to be created, the replica annotations. Returns (annotations, changed)."""
    notes = dict(annotations_of(rs))
    changed = False
    for key, value in annotations_of(deployment).items():
        if key in ANNOTATIONS_TO_SKIP or notes.get(key) == value:
            continue
        notes[key] = value
        changed = True
    old_text = notes.get(REVISION)
    old = int_value(old_text)
    if old < new_revision:
        notes[REVISION] = str(new_revision)
        changed = True
        if old_text:
            history = [h for h in notes.get(REVISION_HISTORY, "").split(",") if h]
            history.append(old_text)
            while history and len(",".join(history)) > MAX_REVISION_HISTORY_CHARS:
                history.pop(0)
            notes[REVISION_HISTORY] = ",".join(history)
    if not exists:
        desired = int_value(spec(deployment).get("replicas"), 1)
        wanted = {
            DESIRED_REPLICAS: str(desired),
            MAX_REPLICAS: str(desired + max_surge(deployment)),
        }
        if any(notes.get(k) != v for k, v in wanted.items()):
            notes.update(wanted)
            changed = True
    return notes, changed


def replicas_annotations(deployment: Obj) -> dict[str, str]:
    desired = int_value(spec(deployment).get("replicas"), 1)
    return {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(desired + max_surge(deployment))}


def replicas_annotations_need_update(rs: Obj, deployment: Obj) -> bool:
    notes = annotations_of(rs)
    return any(notes.get(k) != v for k, v in replicas_annotations(deployment).items())


def desired_replicas_annotation(rs: Obj) -> int | None:
    value = annotations_of(rs).get(DESIRED_REPLICAS)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def max_replicas_annotation(rs: Obj) -> int | None:
    value = annotations_of(rs).get(MAX_REPLICAS)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


# ---- rolling-update arithmetic ---------------------------------------------------------------


def replicas(obj: Obj) -> int:
    return int_value(spec(obj).get("replicas"), 1)


def resolve_fenceposts(
    max_surge_value: int | str | None, max_unavailable_value: int | str | None, desired: int
) -> tuple[int, int]:
    """(surge, unavailable) for ``desired`` replicas: percentages of surge round up, of
    unavailability round down; if both come out 0, unavailability is 1 (Kubernetes'
    ResolveFenceposts)."""
    surge = scaled_value(max_surge_value, desired, True)
    unavailable = scaled_value(max_unavailable_value, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling_update(deployment: Obj) -> bool:
    strategy = spec(deployment).get("strategy") or {}
    return str(strategy.get("type") or "RollingUpdate") == "RollingUpdate"


def _rolling(deployment: Obj) -> Obj:
    found: Obj = (spec(deployment).get("strategy") or {}).get("rollingUpdate") or {}
    return found


def max_surge(deployment: Obj) -> int:
    if not is_rolling_update(deployment):
        return 0
    rolling = _rolling(deployment)
    surge, _ = resolve_fenceposts(
        rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"), replicas(deployment)
    )
    return surge


def max_unavailable(deployment: Obj) -> int:
    desired = replicas(deployment)
    if not is_rolling_update(deployment) or desired == 0:
        return 0
    rolling = _rolling(deployment)
    _, unavailable = resolve_fenceposts(
        rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"), desired
    )
    return min(unavailable, desired)


def spec_replicas_sum(sets: Iterable[Obj | None]) -> int:
    return sum(replicas(rs) for rs in sets if rs is not None)


def status_sum(sets: Iterable[Obj | None], field: str) -> int:
    return sum(int_value(status(rs).get(field)) for rs in sets if rs is not None)


def available_for_scale_down(sets: Iterable[Obj | None]) -> int:
    """Available pods a scale-down may count on: for each ReplicaSet the smaller of what its
    status reports and what its spec still allows. A ReplicaSet just scaled down reports
    pods it is about to delete (the ready ones last), so its spec is the lower bound until
    its status catches up."""
    total = 0
    for rs in sets:
        if rs is None:
            continue
        reported = int_value(status(rs).get("availableReplicas"))
        total += min(reported, replicas(rs))
    return total


def active_sets(sets: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in sets if rs is not None and replicas(rs) > 0]


def new_rs_new_replicas(deployment: Obj, all_sets: Sequence[Obj | None], new_rs: Obj) -> int:
    """How big the new ReplicaSet may be now (Kubernetes' NewRSNewReplicas)."""
    desired = replicas(deployment)
    if not is_rolling_update(deployment):
        return desired
    current = spec_replicas_sum(all_sets)
    ceiling = desired + max_surge(deployment)
    if current >= ceiling:
        return replicas(new_rs)
    scale_up = min(ceiling - current, desired - replicas(new_rs))
    return replicas(new_rs) + scale_up


@dataclass(frozen=True, slots=True)
class ScaleStep:
    rs: Obj
    replicas: int


def old_sets_cleanup_unhealthy(
    old_sets: Sequence[Obj], max_cleanup: int
) -> tuple[list[ScaleStep], int]:
    """Scale old ReplicaSets down by their unavailable pods first, oldest first, at most
    ``max_cleanup`` in all (Kubernetes' cleanupUnhealthyReplicas)."""
    steps: list[ScaleStep] = []
    total = 0
    for rs in sorted_by_creation(old_sets):
        if total >= max_cleanup:
            break
        wanted = replicas(rs)
        available = int_value(status(rs).get("availableReplicas"))
        if wanted == 0 or wanted <= available:
            continue
        count = min(max_cleanup - total, wanted - available)
        steps.append(ScaleStep(rs, wanted - count))
        total += count
    return steps, total


def old_sets_scale_down(
    deployment: Obj, all_sets: Sequence[Obj | None], old_sets: Sequence[Obj]
) -> list[ScaleStep]:
    """Scale old ReplicaSets down, oldest first, as far as availability allows (Kubernetes'
    scaleDownOldReplicaSetsForRollingUpdate, with ``available_for_scale_down``)."""
    min_available = replicas(deployment) - max_unavailable(deployment)
    available = available_for_scale_down(all_sets)
    if available <= min_available:
        return []
    budget = available - min_available
    steps: list[ScaleStep] = []
    done = 0
    for rs in sorted_by_creation(old_sets):
        if done >= budget:
            break
        wanted = replicas(rs)
        if wanted == 0:
            continue
        count = min(wanted, budget - done)
        steps.append(ScaleStep(rs, wanted - count))
        done += count
    return steps


def max_scaled_down(deployment: Obj, all_sets: Sequence[Obj | None], new_rs: Obj | None) -> int:
    """How many old pods may go now (Kubernetes' reconcileOldReplicaSets budget)."""
    all_pods = spec_replicas_sum(all_sets)
    min_available = replicas(deployment) - max_unavailable(deployment)
    new_unavailable = 0
    if new_rs is not None:
        new_unavailable = max(
            replicas(new_rs) - int_value(status(new_rs).get("availableReplicas")), 0
        )
    return all_pods - min_available - new_unavailable


# ---- proportional scaling --------------------------------------------------------------------


def is_saturated(deployment: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = replicas(deployment)
    return (
        desired_replicas_annotation(rs) == desired
        and replicas(rs) == desired
        and int_value(status(rs).get("availableReplicas")) == desired
    )


def find_active_or_latest(new_rs: Obj | None, old_sets: Sequence[Obj]) -> Obj | None:
    if new_rs is None and not old_sets:
        return None
    olds = sorted_by_creation(old_sets, newest_first=True)
    active = active_sets([*olds, new_rs])
    if not active:
        return new_rs if new_rs is not None else olds[0]
    if len(active) == 1:
        return active[0]
    return None


def _round_half_away(value: float) -> int:
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def replica_set_fraction(rs: Obj, deployment: Obj) -> int:
    desired = replicas(deployment)
    if desired == 0:
        return -replicas(rs)
    total = desired + max_surge(deployment)
    annotated = max_replicas_annotation(rs)
    if annotated is None:
        annotated = int_value(status(deployment).get("replicas"))
    if annotated == 0:
        return 0
    return _round_half_away(replicas(rs) * total / annotated) - replicas(rs)


def proportion(rs: Obj, deployment: Obj, to_add: int, added: int) -> int:
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, deployment)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(
    deployment: Obj, new_rs: Obj | None, old_sets: Sequence[Obj]
) -> list[ScaleStep]:
    """New sizes for every active ReplicaSet when a rolling Deployment is resized mid-rollout
    (Kubernetes' proportional scaling): the change is shared in proportion to their sizes,
    the leftover goes to the largest."""
    sets = active_sets([*old_sets, new_rs])
    total = spec_replicas_sum(sets)
    desired = replicas(deployment)
    allowed = desired + max_surge(deployment) if desired > 0 else 0
    to_add = allowed - total
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)

    def created(rs: Obj) -> datetime.datetime:
        return parse_time(meta(rs).get("creationTimestamp")) or epoch

    if to_add > 0:  # bigger first; among equals the newer first
        sets.sort(key=lambda rs: (-replicas(rs), -created(rs).timestamp(), name_of(rs)))
    elif to_add < 0:  # bigger first; among equals the older first
        sets.sort(key=lambda rs: (-replicas(rs), created(rs).timestamp(), name_of(rs)))
    sizes: dict[str, int] = {}
    added = 0
    for rs in sets:
        if to_add != 0:
            share = proportion(rs, deployment, to_add, added)
            sizes[uid_of(rs)] = replicas(rs) + share
            added += share
        else:
            sizes[uid_of(rs)] = replicas(rs)
    steps = []
    for index, rs in enumerate(sets):
        size = sizes[uid_of(rs)]
        if index == 0 and to_add != 0:
            size = max(size + to_add - added, 0)
        steps.append(ScaleStep(rs, size))
    return steps


# ---- history cleanup -------------------------------------------------------------------------


def sets_to_clean_up(old_sets: Sequence[Obj], history_limit: int | None) -> list[Obj]:
    """Old, empty ReplicaSets beyond ``revisionHistoryLimit``, oldest revision first."""
    if history_limit is None:
        return []
    alive = [rs for rs in old_sets if not meta(rs).get("deletionTimestamp")]
    excess = len(alive) - history_limit
    if excess <= 0:
        return []
    by_revision = sorted(alive, key=lambda rs: (revision(rs), name_of(rs)))
    out = []
    for rs in by_revision[:excess]:
        observed = int_value(status(rs).get("observedGeneration"))
        if (
            int_value(status(rs).get("replicas")) != 0
            or replicas(rs) != 0
            or int_value(meta(rs).get("generation"), 1) > observed
        ):
            continue
        out.append(rs)
    return out


# ---- status and conditions -------------------------------------------------------------------


def has_progress_deadline(deployment: Obj) -> bool:
    deadline = spec(deployment).get("progressDeadlineSeconds")
    return deadline is not None and int_value(deadline) != NO_DEADLINE


def calculate_status(
    all_sets: Sequence[Obj | None], new_rs: Obj | None, deployment: Obj, now: datetime.datetime
) -> Obj:
    """Kubernetes' calculateStatus: counts from the ReplicaSets, the Available condition,
    the other conditions carried over."""
    available = status_sum(all_sets, "availableReplicas")
    total = spec_replicas_sum(all_sets)
    current = status(deployment)
    new: Obj = {
        "observedGeneration": int_value(meta(deployment).get("generation"), 1),
        "replicas": status_sum(all_sets, "replicas"),
        "updatedReplicas": status_sum([new_rs], "replicas"),
        "readyReplicas": status_sum(all_sets, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(total - available, 0),
    }
    if current.get("collisionCount") is not None:
        new["collisionCount"] = current["collisionCount"]
    conditions = [dict(c) for c in current.get("conditions") or [] if isinstance(c, dict)]
    if available >= replicas(deployment) - max_unavailable(deployment):
        condition = new_condition(
            "Available",
            "True",
            MINIMUM_AVAILABLE,
            "Deployment has minimum availability.",
            now,
            update=True,
        )
    else:
        condition = new_condition(
            "Available",
            "False",
            MINIMUM_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
            update=True,
        )
    new["conditions"] = set_condition(conditions, condition)
    return new


def deployment_complete(deployment: Obj, new_status: Obj) -> bool:
    desired = replicas(deployment)
    return (
        int_value(new_status.get("updatedReplicas")) == desired
        and int_value(new_status.get("replicas")) == desired
        and int_value(new_status.get("availableReplicas")) == desired
        and int_value(new_status.get("observedGeneration"))
        >= int_value(meta(deployment).get("generation"), 1)
    )


def deployment_progressing(deployment: Obj, new_status: Obj) -> bool:
    old = status(deployment)
    old_old = int_value(old.get("replicas")) - int_value(old.get("updatedReplicas"))
    new_old = int_value(new_status.get("replicas")) - int_value(new_status.get("updatedReplicas"))
    return (
        int_value(new_status.get("updatedReplicas")) > int_value(old.get("updatedReplicas"))
        or new_old < old_old
        or int_value(new_status.get("readyReplicas")) > int_value(old.get("readyReplicas"))
        or int_value(new_status.get("availableReplicas")) > int_value(old.get("availableReplicas"))
    )


def deployment_timed_out(deployment: Obj, new_status: Obj, now: datetime.datetime) -> bool:
    if not has_progress_deadline(deployment):
        return False
    condition = find_condition(new_status.get("conditions"), "Progressing")
    if condition is None:
        return False
    if condition.get("reason") == NEW_RS_AVAILABLE:
        return False
    if condition.get("reason") == TIMED_OUT:
        return True
    since = parse_time(condition.get("lastUpdateTime"))
    if since is None:
        return False
    deadline = int_value(spec(deployment).get("progressDeadlineSeconds"))
    return since + datetime.timedelta(seconds=deadline) < now


def rollout_status(
    all_sets: Sequence[Obj | None], new_rs: Obj | None, deployment: Obj, now: datetime.datetime
) -> Obj:
    """The status a rollout reports (Kubernetes' syncRolloutStatus without the write):
    calculate_status plus the Progressing condition and ReplicaFailure."""
    new = calculate_status(all_sets, new_rs, deployment, now)
    conditions: list[Obj] = new["conditions"]
    if not has_progress_deadline(deployment):
        conditions = remove_condition(conditions, "Progressing")
    current = find_condition(conditions, "Progressing")
    complete = (
        new["replicas"] == new["updatedReplicas"]
        and current is not None
        and current.get("reason") == NEW_RS_AVAILABLE
    )
    if has_progress_deadline(deployment) and not complete:
        subject = (
            f'ReplicaSet "{name_of(new_rs)}"'
            if new_rs is not None
            else f'Deployment "{name_of(deployment)}"'
        )
        new["conditions"] = conditions
        if deployment_complete(deployment, new):
            conditions = set_condition(
                conditions,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    f"{subject} has successfully progressed.",
                    now,
                    update=True,
                ),
            )
        elif deployment_progressing(deployment, new):
            condition = new_condition(
                "Progressing", "True", RS_UPDATED, f"{subject} is progressing.", now, update=True
            )
            if current is not None and current.get("status") == "True":
                condition["lastTransitionTime"] = current.get("lastTransitionTime")
            conditions = [*remove_condition(conditions, "Progressing"), condition]
        elif deployment_timed_out(deployment, new, now):
            conditions = set_condition(
                conditions,
                new_condition(
                    "Progressing",
                    "False",
                    TIMED_OUT,
                    f"{subject} has timed out progressing.",
                    now,
                    update=True,
                ),
            )
    failure = replica_failure(all_sets, new_rs)
    if failure is not None:
        conditions = set_condition(conditions, failure)
    else:
        conditions = remove_condition(conditions, "ReplicaFailure")
    new["conditions"] = conditions
    return new


def replica_failure(all_sets: Sequence[Obj | None], new_rs: Obj | None) -> Obj | None:
    """A ReplicaFailure condition of the new ReplicaSet first, else of any other."""
    ordered = [new_rs, *[rs for rs in all_sets if rs is not new_rs]]
    for rs in ordered:
        if rs is None:
            continue
        condition = find_condition(status(rs).get("conditions"), "ReplicaFailure")
        if condition is not None and condition.get("status") == "True":
            return dict(condition)
    return None


def stuck_recheck_after(deployment: Obj, new_status: Obj, now: datetime.datetime) -> float | None:
    """Seconds until a progressing rollout would pass its deadline (None: nothing to wait
    for), so the controller looks again exactly then (Kubernetes' requeueStuckDeployment)."""
    condition = find_condition(new_status.get("conditions"), "Progressing")
    if condition is None or not has_progress_deadline(deployment):
        return None
    if condition.get("reason") in (NEW_RS_AVAILABLE, TIMED_OUT):
        return None
    if deployment_complete(deployment, new_status):
        return None
    since = parse_time(condition.get("lastUpdateTime"))
    if since is None:
        return None
    deadline = int_value(spec(deployment).get("progressDeadlineSeconds"))
    after = (since + datetime.timedelta(seconds=deadline) - now).total_seconds()
    return max(after, 0.0) + 1.0


def same_status(first: Obj, second: Obj) -> bool:
    return json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


# ---- kubectl's side: rollout status and rollback ---------------------------------------------


@dataclass(frozen=True, slots=True)
class RolloutState:
    message: str
    done: bool
    failed: bool = False


def rollout_state(deployment: Obj) -> RolloutState:
    """kubectl's DeploymentStatusViewer: what ``rollout status`` prints, and whether the
    rollout finished (``done``) or failed its progress deadline (``failed``)."""
    name = name_of(deployment)
    current = status(deployment)
    generation = int_value(meta(deployment).get("generation"), 1)
    if generation > int_value(current.get("observedGeneration")):
        return RolloutState("Waiting for deployment spec update to be observed...", False)
    condition = find_condition(current.get("conditions"), "Progressing")
    if condition is not None and condition.get("reason") == TIMED_OUT:
        return RolloutState(f'deployment "{name}" exceeded its progress deadline', False, True)
    desired = replicas(deployment)
    updated = int_value(current.get("updatedReplicas"))
    total = int_value(current.get("replicas"))
    available = int_value(current.get("availableReplicas"))
    if updated < desired:
        return RolloutState(
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of {desired} '
            "new replicas have been updated...",
            False,
        )
    if total > updated:
        return RolloutState(
            f'Waiting for deployment "{name}" rollout to finish: {total - updated} old replicas '
            "are pending termination...",
            False,
        )
    if available < updated:
        return RolloutState(
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
            "updated replicas are available...",
            False,
        )
    return RolloutState(f'deployment "{name}" successfully rolled out', True)


class RollbackError(ValueError):
    """The rollback cannot be done; the message says why."""


def rollback_target(sets: Sequence[Obj], to_revision: int) -> Obj:
    """The ReplicaSet of revision ``to_revision``, or of the previous revision for 0
    (kubectl's rsForRevision)."""
    latest: tuple[int, Obj | None] = (-1, None)
    previous: tuple[int, Obj | None] = (-1, None)
    for rs in sets:
        number = revision(rs)
        if not annotations_of(rs).get(REVISION):
            continue
        if to_revision == 0:
            if latest[0] < number:
                previous, latest = latest, (number, rs)
            elif previous[0] < number:
                previous = (number, rs)
        elif number == to_revision:
            return rs
    if to_revision > 0:
        raise RollbackError(f"unable to find specified revision {to_revision} in history")
    if previous[1] is None:
        raise RollbackError("no rollout history found for deployment")
    return previous[1]


def rollback_patch(deployment: Obj, target: Obj) -> list[dict[str, Any]] | None:
    """The JSON patch kubectl sends to roll ``deployment`` back to ``target``'s template and
    annotations; None when the template already matches."""
    template = copy.deepcopy(spec(target).get("template") or {})
    if equal_ignore_hash(template, spec(deployment).get("template")):
        return None
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    notes = {k: v for k, v in annotations_of(deployment).items() if k in ANNOTATIONS_TO_SKIP}
    notes.update({k: v for k, v in annotations_of(target).items() if k not in ANNOTATIONS_TO_SKIP})
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": notes},
    ]


def history(sets: Sequence[Obj]) -> list[tuple[int, Obj]]:
    """(revision, ReplicaSet) pairs, oldest revision first."""
    return sorted(
        ((revision(rs), rs) for rs in sets if annotations_of(rs).get(REVISION)),
        key=lambda pair: pair[0],
    )


def timestamp_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
