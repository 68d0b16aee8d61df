"""The garbage collector's decisions, as pure functions of an object and its owners."""

from __future__ import annotations

from typing import Any

import pytest

from kumo.model.registry import by_kind
from kumo.platform.controllers.garbagecollector import (
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    DeleteDependent,
    Keep,
    OwnerCheck,
    OwnerPlan,
    OwnerState,
    RemoveOwnerRefs,
    blocks_owner,
    is_dependent_of,
    item_key,
    owner_location,
    owner_state,
    parse_item_key,
    plan_dependent,
    plan_owner,
    unblocked,
    without_refs,
)

PRESENT, WAITING, ABSENT, UNRESOLVABLE = (
    OwnerState.PRESENT,
    OwnerState.WAITING,
    OwnerState.ABSENT,
    OwnerState.UNRESOLVABLE,
)


def ref(
    uid: str,
    kind: str = "ReplicaSet",
    api_version: str = "apps/v1",
    name: str = "",
    block: bool | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "name": name or f"owner-{uid}",
        "uid": uid,
    }
    if block is not None:
        out["blockOwnerDeletion"] = block
    return out


def obj(
    uid: str = "dep",
    namespace: str | None = "default",
    refs: list[dict[str, Any]] | None = None,
    finalizers: list[str] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"obj-{uid}", "uid": uid}
    if namespace:
        meta["namespace"] = namespace
    if refs:
        meta["ownerReferences"] = refs
    if finalizers:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta}


def checks(*states: OwnerState) -> list[OwnerCheck]:
    return [OwnerCheck(f"o{i}", state) for i, state in enumerate(states)]


# ---- plan_dependent -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "has_dependents", "expected"),
    [
        # one owner
        ((PRESENT,), False, Keep()),
        ((UNRESOLVABLE,), False, Keep()),
        ((ABSENT,), False, DeleteDependent("Background")),
        ((WAITING,), False, DeleteDependent("Background")),
        ((WAITING,), True, DeleteDependent("Foreground")),
        ((ABSENT,), True, DeleteDependent("Background")),
        # several owners: any existing owner keeps the object; refs to gone owners are dropped
        ((PRESENT, PRESENT), False, Keep()),
        ((PRESENT, ABSENT), False, RemoveOwnerRefs(("o1",))),
        ((ABSENT, PRESENT, WAITING), False, RemoveOwnerRefs(("o0", "o2"))),
        ((UNRESOLVABLE, ABSENT), False, RemoveOwnerRefs(("o1",))),
        ((ABSENT, ABSENT), False, DeleteDependent("Background")),
        ((ABSENT, WAITING), True, DeleteDependent("Foreground")),
        ((ABSENT, WAITING), False, DeleteDependent("Background")),
    ],
)
def test_plan_dependent(
    states: tuple[OwnerState, ...], has_dependents: bool, expected: object
) -> None:
    refs = [ref(f"o{i}") for i in range(len(states))]
    assert (
        plan_dependent(obj(refs=refs), checks(*states), has_dependents=has_dependents) == expected
    )


def test_an_object_without_owners_is_kept() -> None:
    assert plan_dependent(obj(), [], has_dependents=True) == Keep()


def test_an_object_already_being_deleted_is_left_to_its_deletion() -> None:
    dependent = obj(refs=[ref("o0")], deleting=True)
    assert plan_dependent(dependent, checks(ABSENT), has_dependents=False) == Keep()


@pytest.mark.parametrize(
    ("held", "policy"),
    [
        ([ORPHAN_FINALIZER], "Orphan"),
        ([FOREGROUND_FINALIZER], "Foreground"),
        (["example.com/x"], "Background"),
    ],
)
def test_a_collected_object_keeps_the_policy_its_finalizers_ask_for(
    held: list[str], policy: str
) -> None:
    dependent = obj(refs=[ref("o0")], finalizers=held)
    assert plan_dependent(dependent, checks(ABSENT), has_dependents=True) == DeleteDependent(policy)


def test_foreground_cycles_are_broken_by_unblocking_first() -> None:
    dependent = obj(refs=[ref("o0", block=True)])
    plan = plan_dependent(
        dependent, checks(WAITING), has_dependents=True, dependents_deleting_dependents=True
    )
    assert plan == DeleteDependent("Foreground", unblock=True)


# ---- owner identity ---------------------------------------------------------------------


def test_owner_identity_is_the_uid() -> None:
    reference = ref("uid-1", name="web")
    same = {"metadata": {"name": "web", "uid": "uid-1"}}
    impostor = {"metadata": {"name": "web", "uid": "uid-2"}}
    assert owner_state(reference, same) is PRESENT
    assert owner_state(reference, impostor) is ABSENT, (
        "a new object with the same name is not the owner"
    )
    assert owner_state(reference, None) is ABSENT


def test_an_owner_deleting_in_the_foreground_is_waiting() -> None:
    reference = ref("uid-1", name="web")
    foreground = {
        "metadata": {
            "name": "web",
            "uid": "uid-1",
            "deletionTimestamp": "2024-01-01T00:00:00Z",
            "finalizers": [FOREGROUND_FINALIZER],
        }
    }
    orphaning = {
        "metadata": {
            "name": "web",
            "uid": "uid-1",
            "deletionTimestamp": "2024-01-01T00:00:00Z",
            "finalizers": [ORPHAN_FINALIZER],
        }
    }
    assert owner_state(reference, foreground) is WAITING
    assert owner_state(reference, orphaning) is PRESENT


def test_owner_location() -> None:
    replica_set = by_kind("apps/v1", "ReplicaSet")
    node = by_kind("v1", "Node")
    assert replica_set is not None and node is not None
    # a namespaced owner is in the dependent's namespace
    assert owner_location(ref("u"), "team-a") == (replica_set, "team-a")
    # a cluster-scoped owner has no namespace
    assert owner_location(ref("u", kind="Node", api_version="v1"), "team-a") == (node, "")
    # another version of a served group still resolves
    assert owner_location(ref("u", api_version="apps/v1beta2"), "team-a") == (replica_set, "team-a")
    # unresolvable: a cluster-scoped dependent cannot have a namespaced owner ...
    assert owner_location(ref("u"), "") is None
    # ... nor can anything be owned by a kind kumo does not serve, or a ref without uid
    assert owner_location(ref("u", kind="Widget", api_version="example.com/v1"), "team-a") is None
    assert owner_location({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x"}, "a") is None


def test_dependents_are_in_the_owners_namespace_unless_the_owner_is_cluster_scoped() -> None:
    owner = {"metadata": {"name": "rs", "namespace": "a", "uid": "u1"}}
    here = obj(namespace="a", refs=[ref("u1")])
    elsewhere = obj(namespace="b", refs=[ref("u1")])
    unrelated = obj(namespace="a", refs=[ref("u2")])
    assert is_dependent_of(here, owner, owner_namespaced=True)
    assert not is_dependent_of(elsewhere, owner, owner_namespaced=True)
    assert not is_dependent_of(unrelated, owner, owner_namespaced=True)
    cluster_owner = {"metadata": {"name": "node-1", "uid": "u1"}}
    assert is_dependent_of(elsewhere, cluster_owner, owner_namespaced=False)


# ---- owners being deleted ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "deleting", "expected"),
    [
        ([ORPHAN_FINALIZER], True, OwnerPlan.ORPHAN),
        ([FOREGROUND_FINALIZER], True, OwnerPlan.FOREGROUND),
        ([ORPHAN_FINALIZER, FOREGROUND_FINALIZER], True, OwnerPlan.ORPHAN),
        (["example.com/other"], True, OwnerPlan.NONE),
        ([FOREGROUND_FINALIZER], False, OwnerPlan.NONE),
        ([], False, OwnerPlan.NONE),
    ],
)
def test_plan_owner(held: list[str], deleting: bool, expected: OwnerPlan) -> None:
    assert plan_owner(obj(finalizers=held, deleting=deleting)) is expected


def test_only_block_owner_deletion_true_blocks() -> None:
    assert blocks_owner(obj(refs=[ref("u1", block=True)]), "u1")
    assert not blocks_owner(obj(refs=[ref("u1", block=False)]), "u1")
    assert not blocks_owner(obj(refs=[ref("u1")]), "u1")
    assert not blocks_owner(obj(refs=[ref("u2", block=True)]), "u1")


def test_reference_edits() -> None:
    refs = [ref("a", block=True), ref("b"), ref("c", block=True)]
    assert [r["uid"] for r in without_refs(refs, ["a", "c"])] == ["b"]
    assert [r.get("blockOwnerDeletion") for r in unblocked(refs)] == [False, None, False]
    assert refs[0]["blockOwnerDeletion"] is True, "the input is not modified"


def test_item_keys_round_trip() -> None:
    deployment = by_kind("apps/v1", "Deployment")
    namespace = by_kind("v1", "Namespace")
    assert deployment is not None and namespace is not None
    assert parse_item_key(item_key(deployment, "team-a", "web")) == (deployment, "team-a", "web")
    assert parse_item_key(item_key(namespace, "", "team-a")) == (namespace, "", "team-a")
