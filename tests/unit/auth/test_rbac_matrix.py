"""Each default role x verb x resource x own / other namespace, against an oracle of what
Kubernetes' bootstrap policy allows (written out here independently of kumo's policy)."""

from __future__ import annotations

import itertools

import pytest

from kumo.auth import bootstrap_policy
from kumo.auth.authorizer import Attributes
from kumo.auth.rbac import allows
from kumo.auth.user import UserInfo
from kumo.model.rbac import ClusterRoleBinding, RoleBinding
from tests.unit.auth.policy_source import Source

R = frozenset({"get", "list", "watch"})
W = frozenset({"create", "update", "patch", "delete", "deletecollection"})
RW = R | W

# What Kubernetes' default roles grant on the resources kumo serves (or reserves).
VIEW: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): R,
    ("", "pods/log"): R,
    ("", "pods/status"): R,
    ("", "services"): R,
    ("", "services/status"): R,
    ("", "endpoints"): R,
    ("", "configmaps"): R,
    ("", "serviceaccounts"): R,
    ("", "events"): R,
    ("", "namespaces"): R,
    ("apps", "deployments"): R,
    ("apps", "deployments/scale"): R,
    ("apps", "deployments/status"): R,
    ("apps", "replicasets"): R,
    ("apps", "replicasets/scale"): R,
    ("batch", "jobs"): R,
    ("batch", "jobs/status"): R,
    ("autoscaling", "horizontalpodautoscalers"): R,
    ("kumo.dev", "functions"): R,
    ("kumo.dev", "functions/status"): R,
}
EDIT: dict[tuple[str, str], frozenset[str]] = {
    **VIEW,
    ("", "pods"): RW,
    ("", "pods/exec"): RW,
    ("", "pods/eviction"): frozenset({"create"}),
    ("", "services"): RW,
    ("", "configmaps"): RW,
    ("", "secrets"): RW,
    ("", "serviceaccounts"): RW | {"impersonate"},
    ("", "events"): RW,
    ("apps", "deployments"): RW,
    ("apps", "deployments/scale"): RW,
    ("apps", "replicasets"): RW,
    ("apps", "replicasets/scale"): RW,
    ("batch", "jobs"): RW,
    ("autoscaling", "horizontalpodautoscalers"): RW,
    ("kumo.dev", "functions"): RW,
}
ADMIN: dict[tuple[str, str], frozenset[str]] = {
    **EDIT,
    ("rbac.authorization.k8s.io", "roles"): RW,
    ("rbac.authorization.k8s.io", "rolebindings"): RW,
}
ORACLE = {"view": VIEW, "edit": EDIT, "admin": ADMIN}

NAMESPACED = [
    ("", "pods"),
    ("", "pods/log"),
    ("", "pods/exec"),
    ("", "pods/status"),
    ("", "pods/eviction"),
    ("", "pods/binding"),
    ("", "services"),
    ("", "services/status"),
    ("", "endpoints"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "serviceaccounts"),
    ("", "events"),
    ("apps", "deployments"),
    ("apps", "deployments/scale"),
    ("apps", "deployments/status"),
    ("apps", "replicasets"),
    ("apps", "replicasets/scale"),
    ("batch", "jobs"),
    ("batch", "jobs/status"),
    ("coordination.k8s.io", "leases"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("kumo.dev", "functions"),
    ("kumo.dev", "functions/status"),
]
CLUSTER = [
    ("", "nodes"),
    ("", "namespaces"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
]
VERBS = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "escalate",
    "bind",
    "impersonate",
]


USER = UserInfo("alice", groups=("team", "system:authenticated"))


def _source(role: str, scope: str) -> Source:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}
    subject = [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]
    source = Source()
    if scope == "namespace":
        source.rbs.append(
            RoleBinding.model_validate(
                {
                    "metadata": {"name": "b", "namespace": "team-a"},
                    "roleRef": ref,
                    "subjects": subject,
                }
            )
        )
    else:
        source.crbs.append(
            ClusterRoleBinding.model_validate(
                {"metadata": {"name": "b"}, "roleRef": ref, "subjects": subject}
            )
        )
    return source


def _expected(role: str, scope: str, group: str, resource: str, verb: str, namespace: str) -> bool:
    if role == "cluster-admin":
        return scope == "cluster" or namespace == "team-a"
    if scope == "namespace" and namespace != "team-a":
        return False
    return verb in ORACLE[role].get((group, resource), frozenset())


CASES = [
    (role, scope, group, resource, verb, namespace)
    for role, scope in itertools.product(
        ["view", "edit", "admin", "cluster-admin"], ["namespace", "cluster"]
    )
    for (group, resource), namespace in [(r, ns) for r in NAMESPACED for ns in ("team-a", "team-b")]
    + [(r, "") for r in CLUSTER]
    for verb in VERBS
]


def test_matrix_is_large() -> None:
    assert len(CASES) > 2000


@pytest.mark.parametrize(
    ("role", "scope"),
    list(itertools.product(["view", "edit", "admin", "cluster-admin"], ["namespace", "cluster"])),
)
def test_default_role_matrix(role: str, scope: str) -> None:
    source = _source(role, scope)
    unexpected_allows = []
    unexpected_denies = []
    for case_role, case_scope, group, resource, verb, namespace in CASES:
        if (case_role, case_scope) != (role, scope):
            continue
        base, _, sub = resource.partition("/")
        attributes = Attributes(
            user=USER,
            verb=verb,
            api_group=group,
            resource=base,
            subresource=sub,
            namespace=namespace,
            name="x" if verb not in ("list", "watch", "create", "deletecollection") else "",
        )
        got = allows(source, attributes).allowed
        want = _expected(role, scope, group, resource, verb, namespace)
        if got and not want:
            unexpected_allows.append((verb, group, resource, namespace))
        if want and not got:
            unexpected_denies.append((verb, group, resource, namespace))
    assert unexpected_allows == []
    assert unexpected_denies == []


def test_namespace_object_by_its_own_name_follows_the_namespace_binding() -> None:
    # Kubernetes authorizes GET /api/v1/namespaces/team-a with namespace "team-a".
    source = _source("view", "namespace")
    get_own = Attributes(
        user=USER, verb="get", resource="namespaces", namespace="team-a", name="team-a"
    )
    get_other = Attributes(
        user=USER, verb="get", resource="namespaces", namespace="team-b", name="team-b"
    )
    assert allows(source, get_own).allowed
    assert not allows(source, get_other).allowed


def test_nobody_is_allowed_without_a_binding() -> None:
    source = Source()
    for verb, (group, resource) in itertools.product(VERBS, NAMESPACED + CLUSTER):
        base, _, sub = resource.partition("/")
        assert not allows(
            source,
            Attributes(
                user=USER,
                verb=verb,
                api_group=group,
                resource=base,
                subresource=sub,
                namespace="team-a",
            ),
        ).allowed


def test_discovery_is_open_to_every_authenticated_user_and_nothing_more() -> None:
    source = Source(crbs=bootstrap_policy.cluster_role_bindings())
    assert allows(source, Attributes(user=USER, verb="get", path="/api")).allowed
    assert allows(source, Attributes(user=USER, verb="get", path="/apis/apps/v1")).allowed
    assert allows(source, Attributes(user=USER, verb="get", path="/version")).allowed
    assert not allows(source, Attributes(user=USER, verb="get", path="/metrics")).allowed
    assert not allows(
        source, Attributes(user=USER, verb="get", resource="pods", namespace="default")
    ).allowed
    masters = UserInfo("root", groups=("system:masters",))
    assert allows(
        source, Attributes(user=masters, verb="delete", resource="nodes", name="n1")
    ).allowed
    assert allows(source, Attributes(user=masters, verb="get", path="/metrics")).allowed
