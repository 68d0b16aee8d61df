"""Pure Deployment logic: fenceposts, hashing, revisions, rollout steps, proportional scaling,
status conditions, kubectl's rollout status and rollback."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kumo.platform.controllers import deployment_util as util
from kumo.platform.controllers.controller_utils import find_condition, format_time

Obj = dict[str, Any]
NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def deployment(
    replicas: int = 3,
    surge: int | str = "25%",
    unavailable: int | str = "25%",
    *,
    strategy: str = "RollingUpdate",
    generation: int = 1,
    status: Obj | None = None,
    deadline: int | None = 600,
    annotations: dict[str, str] | None = None,
) -> Obj:
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": "web:1"}]},
        },
        "strategy": {"type": strategy},
        "revisionHistoryLimit": 10,
    }
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "d-uid",
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": status or {},
    }


def rs(
    name: str,
    replicas: int,
    *,
    available: int | None = None,
    ready: int | None = None,
    current: int | None = None,
    created: int = 0,
    revision: int | None = None,
    annotations: dict[str, str] | None = None,
    template: Obj | None = None,
) -> Obj:
    notes = dict(annotations or {})
    if revision is not None:
        notes[util.REVISION] = str(revision)
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": format_time(NOW + datetime.timedelta(seconds=created)),
            "annotations": notes,
        },
        "spec": {
            "replicas": replicas,
            "template": template or deployment()["spec"]["template"],
        },
        "status": {
            "replicas": replicas if current is None else current,
            "readyReplicas": replicas if ready is None else ready,
            "availableReplicas": replicas if available is None else available,
            "observedGeneration": 1,
        },
    }


# ---- fenceposts: surge rounds up, unavailable rounds down ---------------------------------


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        ("25%", "25%", 10, (3, 2)),
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 1, (1, 0)),
        ("25%", "25%", 3, (1, 0)),
        ("50%", "50%", 3, (2, 1)),
        ("10%", "10%", 5, (1, 0)),
        (1, 0, 3, (1, 0)),
        (2, "10%", 5, (2, 0)),
        (0, "25%", 3, (0, 1)),  # both 0 after rounding: one may be unavailable
        ("0%", "0%", 10, (0, 1)),
        ("100%", "100%", 7, (7, 7)),
    ],
)
def test_resolve_fenceposts(
    surge: int | str, unavailable: int | str, desired: int, expected: tuple[int, int]
) -> None:
    assert util.resolve_fenceposts(surge, unavailable, desired) == expected


def test_max_surge_and_unavailable_of_a_deployment() -> None:
    assert util.max_surge(deployment(10)) == 3
    assert util.max_unavailable(deployment(10)) == 2
    assert util.max_unavailable(deployment(3, 1, 5)) == 3  # capped at replicas
    assert util.max_unavailable(deployment(0)) == 0
    recreate = deployment(3, strategy="Recreate")
    assert util.max_surge(recreate) == 0
    assert util.max_unavailable(recreate) == 0


# ---- hashing and templates ------------------------------------------------------------------


def test_fnv1a_and_safe_encoding() -> None:
    assert util.fnv1a_32(b"") == 0x811C9DC5
    assert util.fnv1a_32(b"a") == 0xE40C292C
    assert util.fnv1a_32(b"foobar") == 0xBF9CF968
    encoded = util.safe_encode("1234567890")
    assert len(encoded) == 10
    assert set(encoded) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_template_hash_is_stable_and_sensitive() -> None:
    template = deployment()["spec"]["template"]
    reordered = {"spec": template["spec"], "metadata": template["metadata"]}
    first = util.template_hash(template)
    assert first == util.template_hash(reordered)
    assert first == util.template_hash(template, None)
    assert util.template_hash(template, 1) != first
    assert util.template_hash(template, 1) != util.template_hash(template, 2)
    changed = {**template, "spec": {"containers": [{"name": "main", "image": "web:2"}]}}
    assert util.template_hash(changed) != first
    assert set(first) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_equal_ignore_hash() -> None:
    template = deployment()["spec"]["template"]
    labelled = util.template_with_hash(template, "abc")
    assert labelled["metadata"]["labels"] == {"app": "web", util.POD_TEMPLATE_HASH: "abc"}
    assert template["metadata"]["labels"] == {"app": "web"}, "the input is not changed"
    assert util.equal_ignore_hash(labelled, template)
    other = util.template_with_hash({**template, "spec": {"containers": []}}, "abc")
    assert not util.equal_ignore_hash(other, template)
    assert util.selector_with_hash({"matchLabels": {"app": "web"}}, "abc") == {
        "matchLabels": {"app": "web", util.POD_TEMPLATE_HASH: "abc"}
    }


def test_find_new_replica_set_takes_the_oldest_with_the_template() -> None:
    d = deployment()
    other_template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    sets = [
        rs("b", 1, created=5),
        rs("a", 1, created=1),
        rs("c", 1, created=0, template=other_template),
    ]
    found = util.find_new_replica_set(d, sets)
    assert found is not None and found["metadata"]["name"] == "a"
    assert util.find_new_replica_set(d, [sets[2]]) is None


# ---- revisions ------------------------------------------------------------------------------


def test_new_replica_set_annotations() -> None:
    d = deployment(4, annotations={"team": "a", util.REVISION: "7", util.LAST_APPLIED: "{}"})
    fresh = rs("new", 0)
    notes, changed = util.new_replica_set_annotations(d, fresh, 3, exists=False)
    assert changed
    assert notes == {
        "team": "a",
        util.REVISION: "3",
        util.DESIRED_REPLICAS: "4",
        util.MAX_REPLICAS: "5",
    }
    # A ReplicaSet brought back (a rollback) gets the new revision and remembers the old.
    old = rs("old", 0, revision=1, annotations={"team": "a"})
    notes, changed = util.new_replica_set_annotations(d, old, 4, exists=True)
    assert changed
    assert notes[util.REVISION] == "4"
    assert notes[util.REVISION_HISTORY] == "1"
    again = rs("old", 0, annotations=notes)
    notes, changed = util.new_replica_set_annotations(d, again, 6, exists=True)
    assert notes[util.REVISION_HISTORY] == "1,4"
    # Nothing to do when the revision is current.
    current = rs("cur", 3, annotations={"team": "a", util.REVISION: "6"})
    assert util.new_replica_set_annotations(d, current, 6, exists=True) == (
        current["metadata"]["annotations"],
        False,
    )


def test_max_revision() -> None:
    assert util.max_revision([rs("a", 0, revision=2), rs("b", 0, revision=5), rs("c", 0)]) == 5
    assert util.max_revision([]) == 0


# ---- rolling update steps -------------------------------------------------------------------


def test_new_replica_set_grows_within_max_surge() -> None:
    d = deployment(3, 1, 0)
    old, new = rs("old", 3), rs("new", 0)
    assert util.new_rs_new_replicas(d, [old, new], new) == 1
    assert util.new_rs_new_replicas(d, [rs("old", 3), rs("new", 1)], rs("new", 1)) == 1
    assert util.new_rs_new_replicas(d, [rs("old", 2), rs("new", 1)], rs("new", 1)) == 2
    wide = deployment(10, "50%", 0)
    assert util.new_rs_new_replicas(wide, [rs("old", 10), rs("new", 0)], rs("new", 0)) == 5
    assert util.new_rs_new_replicas(deployment(3, strategy="Recreate"), [new], new) == 3


def test_old_replica_sets_shrink_only_while_enough_are_available() -> None:
    d = deployment(3, 1, 0)
    old, new = rs("old", 3, created=0), rs("new", 1, available=0, created=9)
    # The new pod is not available yet: nothing may go.
    assert util.max_scaled_down(d, [old, new], new) == 0
    ready_new = rs("new", 1, available=1, created=9)
    assert util.max_scaled_down(d, [old, ready_new], ready_new) == 1
    steps = util.old_sets_scale_down(d, [old, ready_new], [old])
    assert [(s.rs["metadata"]["name"], s.replicas) for s in steps] == [("old", 2)]


def test_a_just_scaled_down_set_counts_only_what_its_spec_allows() -> None:
    d = deployment(3, 1, 0)
    # "old" was scaled from 3 to 2; its status still says 3 available.
    stale_old = rs("old", 2, available=3, created=0)
    new = rs("new", 2, available=1, created=9)
    assert util.available_for_scale_down([stale_old, new]) == 3
    assert util.old_sets_scale_down(d, [stale_old, new], [stale_old]) == []
    steps, cleaned = util.old_sets_cleanup_unhealthy([stale_old], 1)
    assert (steps, cleaned) == ([], 0)


def test_unhealthy_old_pods_go_first() -> None:
    old = rs("old", 3, available=1, created=0)
    older = rs("older", 2, available=2, created=-5)
    steps, cleaned = util.old_sets_cleanup_unhealthy([old, older], 5)
    assert [(s.rs["metadata"]["name"], s.replicas) for s in steps] == [("old", 1)]
    assert cleaned == 2
    steps, cleaned = util.old_sets_cleanup_unhealthy([old], 1)
    assert [(s.rs["metadata"]["name"], s.replicas) for s in steps] == [("old", 2)]


def test_scale_down_goes_oldest_first() -> None:
    d = deployment(4, 0, 2)
    a, b = rs("a", 2, created=0), rs("b", 2, created=5)
    new = rs("new", 2, available=2, created=9)
    steps = util.old_sets_scale_down(d, [a, b, new], [b, a])
    assert [(s.rs["metadata"]["name"], s.replicas) for s in steps] == [("a", 0), ("b", 0)]
    d3 = deployment(4, 0, 1)
    steps = util.old_sets_scale_down(d3, [a, b, rs("new", 0, created=9)], [b, a])
    assert [(s.rs["metadata"]["name"], s.replicas) for s in steps] == [("a", 1)]


# ---- proportional scaling -------------------------------------------------------------------


def test_proportional_scaling_mid_rollout() -> None:
    notes = {util.DESIRED_REPLICAS: "10", util.MAX_REPLICAS: "13"}
    d = deployment(20, 3, 2, status={"replicas": 10})
    old = rs("old", 5, created=0, annotations=notes)
    new = rs("new", 5, created=9, annotations=notes)
    steps = {s.rs["metadata"]["name"]: s.replicas for s in util.proportional_sizes(d, new, [old])}
    # 13 to add: 4 each by proportion (5 * 23 / 13 = 8.8 -> 9), the leftover 5 to the
    # largest, newer one.
    assert steps == {"new": 14, "old": 9}
    assert sum(steps.values()) == 23
    smaller = deployment(5, 3, 2, status={"replicas": 10})
    steps = {
        s.rs["metadata"]["name"]: s.replicas for s in util.proportional_sizes(smaller, new, [old])
    }
    # 2 to remove: the older of two equal sets goes first and its share (5 * 8 / 13 = 3.1
    # -> 3, so 2) covers it.
    assert steps == {"old": 3, "new": 5}


def test_find_active_or_latest_and_saturation() -> None:
    new, old = rs("new", 0, created=9), rs("old", 3, created=0)
    found = util.find_active_or_latest(new, [old])
    assert found is not None and found["metadata"]["name"] == "old"
    assert util.find_active_or_latest(rs("new", 1, created=9), [old]) is None
    found = util.find_active_or_latest(new, [rs("old", 0, created=0)])
    assert found is not None and found["metadata"]["name"] == "new"
    d = deployment(3)
    saturated = rs("new", 3, annotations={util.DESIRED_REPLICAS: "3"})
    assert util.is_saturated(d, saturated)
    assert not util.is_saturated(
        d, rs("new", 3, available=2, annotations={util.DESIRED_REPLICAS: "3"})
    )


# ---- history cleanup ------------------------------------------------------------------------


def test_sets_to_clean_up_keeps_the_limit_and_skips_non_empty() -> None:
    sets = [rs(f"r{i}", 0, revision=i) for i in range(1, 6)]
    doomed = util.sets_to_clean_up(sets, 2)
    assert [s["metadata"]["name"] for s in doomed] == ["r1", "r2", "r3"]
    busy = [rs("r1", 1, revision=1), *sets[1:]]
    assert [s["metadata"]["name"] for s in util.sets_to_clean_up(busy, 2)] == ["r2", "r3"]
    assert util.sets_to_clean_up(sets, None) == []
    assert util.sets_to_clean_up(sets, 10) == []


# ---- status and conditions ------------------------------------------------------------------


def test_calculate_status_counts_and_availability() -> None:
    d = deployment(3, 1, 0, generation=4)
    old = rs("old", 1, available=1, ready=1)
    new = rs("new", 3, available=2, ready=3)
    status = util.calculate_status([old, new], new, d, NOW)
    assert status["observedGeneration"] == 4
    assert status["replicas"] == 4
    assert status["updatedReplicas"] == 3
    assert status["readyReplicas"] == 4
    assert status["availableReplicas"] == 3
    assert status["unavailableReplicas"] == 1
    available = find_condition(status["conditions"], "Available")
    assert available is not None and available["status"] == "True"
    short = util.calculate_status([rs("new", 3, available=2)], None, d, NOW)
    available = find_condition(short["conditions"], "Available")
    assert available is not None and available["reason"] == util.MINIMUM_UNAVAILABLE


def test_rollout_status_progress_and_completion() -> None:
    earlier = format_time(NOW - datetime.timedelta(seconds=30))
    progressing = {
        "type": "Progressing",
        "status": "True",
        "reason": util.NEW_RS_CREATED,
        "message": "Created",
        "lastTransitionTime": earlier,
        "lastUpdateTime": earlier,
    }
    d = deployment(
        3, 1, 0, status={"replicas": 3, "updatedReplicas": 1, "conditions": [progressing]}
    )
    new = rs("web-abc", 2, available=1)
    old = rs("old", 2)
    status = util.rollout_status([old, new], new, d, NOW)
    condition = find_condition(status["conditions"], "Progressing")
    assert condition is not None
    assert condition["reason"] == util.RS_UPDATED
    assert condition["message"] == 'ReplicaSet "web-abc" is progressing.'
    assert condition["lastTransitionTime"] == earlier
    assert condition["lastUpdateTime"] == format_time(NOW)
    done = util.rollout_status(
        [rs("old", 0, current=0), rs("web-abc", 3)], rs("web-abc", 3), d, NOW
    )
    condition = find_condition(done["conditions"], "Progressing")
    assert condition is not None
    assert condition["reason"] == util.NEW_RS_AVAILABLE
    assert condition["message"] == 'ReplicaSet "web-abc" has successfully progressed.'


def test_rollout_status_times_out_without_progress() -> None:
    stamp = format_time(NOW - datetime.timedelta(seconds=11))
    progressing = {
        "type": "Progressing",
        "status": "True",
        "reason": util.RS_UPDATED,
        "lastTransitionTime": stamp,
        "lastUpdateTime": stamp,
    }
    status = {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 0, "conditions": [progressing]}
    d = deployment(3, deadline=10, status=status)
    new = rs("web-abc", 3, available=0, ready=0)
    assert util.deployment_timed_out(d, status, NOW)
    result = util.rollout_status([new], new, d, NOW)
    condition = find_condition(result["conditions"], "Progressing")
    assert condition is not None and condition["status"] == "False"
    assert condition["reason"] == util.TIMED_OUT
    assert condition["message"] == 'ReplicaSet "web-abc" has timed out progressing.'
    not_yet = deployment(3, deadline=20, status=status)
    assert not util.deployment_timed_out(not_yet, status, NOW)
    assert util.stuck_recheck_after(not_yet, status, NOW) == pytest.approx(10.0)
    no_deadline = deployment(3, deadline=None, status=status)
    result = util.rollout_status([new], new, no_deadline, NOW)
    assert find_condition(result["conditions"], "Progressing") is None


# ---- kubectl: rollout status and rollback ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "generation", "message", "done"),
    [
        (
            {"observedGeneration": 1},
            2,
            "Waiting for deployment spec update to be observed...",
            False,
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3},
            2,
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
            False,
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4, "availableReplicas": 3},
            2,
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
            False,
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 1},
            2,
            'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...',
            False,
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3},
            2,
            'deployment "web" successfully rolled out',
            True,
        ),
    ],
)
def test_rollout_state_messages(status: Obj, generation: int, message: str, done: bool) -> None:
    state = util.rollout_state(deployment(3, generation=generation, status=status))
    assert (state.message, state.done, state.failed) == (message, done, False)


def test_rollout_state_reports_a_missed_deadline() -> None:
    status = {
        "observedGeneration": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": util.TIMED_OUT}],
    }
    state = util.rollout_state(deployment(3, status=status))
    assert state.failed and not state.done
    assert state.message == 'deployment "web" exceeded its progress deadline'


def test_rollback_target_and_patch() -> None:
    v1 = {
        "metadata": {"labels": {"app": "web", util.POD_TEMPLATE_HASH: "h1"}},
        "spec": {"containers": [{"name": "main", "image": "web:1"}]},
    }
    v2 = {
        "metadata": {"labels": {"app": "web", util.POD_TEMPLATE_HASH: "h2"}},
        "spec": {"containers": [{"name": "main", "image": "web:2"}]},
    }
    sets = [
        rs("r1", 0, revision=1, template=v1, annotations={"note": "one"}),
        rs("r2", 3, revision=2, template=v2),
    ]
    d = deployment(annotations={util.REVISION: "2", "note": "two", util.LAST_APPLIED: "{}"})
    d["spec"]["template"] = {"metadata": {"labels": {"app": "web"}}, "spec": v2["spec"]}
    assert util.rollback_target(sets, 0)["metadata"]["name"] == "r1"
    assert util.rollback_target(sets, 2)["metadata"]["name"] == "r2"
    with pytest.raises(util.RollbackError, match="unable to find specified revision 5"):
        util.rollback_target(sets, 5)
    with pytest.raises(util.RollbackError, match="no rollout history"):
        util.rollback_target(sets[1:], 0)
    patch = util.rollback_patch(d, sets[0])
    assert patch == [
        {
            "op": "replace",
            "path": "/spec/template",
            "value": {"metadata": {"labels": {"app": "web"}}, "spec": v1["spec"]},
        },
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {util.REVISION: "2", util.LAST_APPLIED: "{}", "note": "one"},
        },
    ]
    assert util.rollback_patch(d, sets[1]) is None, "already at that template"
    assert [number for number, _ in util.history(list(reversed(sets)))] == [1, 2]
