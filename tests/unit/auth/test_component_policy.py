"""kumo's components as least-privilege users, as pure logic: the bootstrap ClusterRoles and
bindings for system:kube-scheduler, system:kube-controller-manager, system:kumo:gateway and
system:nodes; the NodeRestriction admission plugin; the escalation check's exception for
garbage-collector updates (the integration tests in tests/integration/auth run these through
the server)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kumo.auth import bootstrap_policy
from kumo.auth.authorizer import Attributes
from kumo.auth.rbac import allows
from kumo.auth.user import (
    AUTHENTICATED,
    MASTERS,
    NODES,
    UserInfo,
    component_identity,
    node_identity,
)
from kumo.model.coordination import Lease
from kumo.model.core import Node, Pod
from kumo.model.registry import for_model
from kumo.platform.api.access import only_gc_fields_changed
from kumo.platform.api.errors import ApiError
from kumo.platform.api.noderestriction import NodeRestriction, check_token_request
from tests.unit.auth.policy_source import bootstrap_source

SOURCE = bootstrap_source()


def _user(component: str, node: str | None = None) -> UserInfo:
    name, groups = component_identity(component, node)
    return UserInfo(name, groups=(*groups, AUTHENTICATED))


SCHEDULER = _user("scheduler")
CONTROLLERS = _user("controllers")
GATEWAY = _user("gateway")
NODE = _user("node", "n1")


def _can(
    who: UserInfo,
    verb: str,
    resource: str,
    namespace: str = "team",
    *,
    group: str = "",
    name: str = "x",
) -> bool:
    base, _, sub = resource.partition("/")
    attributes = Attributes(
        user=who,
        verb=verb,
        api_group=group,
        resource=base,
        subresource=sub,
        namespace=namespace,
        name="" if verb in ("list", "watch", "create", "deletecollection") else name,
    )
    return allows(SOURCE, attributes).allowed


def test_the_identities() -> None:
    assert component_identity("scheduler") == ("system:kube-scheduler", [])
    assert component_identity("controllers") == ("system:kube-controller-manager", [])
    assert component_identity("gateway") == ("system:kumo:gateway", [])
    assert component_identity("node", "n1") == ("system:node:n1", [NODES])
    assert component_identity("agent", "n1") == ("system:node:n1", [NODES])
    with pytest.raises(ValueError):
        component_identity("node")
    with pytest.raises(ValueError):
        component_identity("etcd")
    assert node_identity(NODE) == (True, "n1")
    assert node_identity(UserInfo("system:node:n1")) == (False, "")  # the group is required
    assert node_identity(UserInfo("rogue", groups=(NODES,))) == (True, "")


@pytest.mark.parametrize("who", [SCHEDULER, CONTROLLERS, GATEWAY, NODE])
def test_no_component_is_a_master_or_may_write_rbac(who: UserInfo) -> None:
    assert MASTERS not in who.groups
    rbac = "rbac.authorization.k8s.io"
    for resource in ("clusterroles", "clusterrolebindings", "roles", "rolebindings"):
        assert not _can(who, "create", resource, group=rbac)
        for verb in ("escalate", "bind"):
            assert not _can(who, verb, resource, group=rbac)
    assert not _can(who, "impersonate", "users", "")
    assert not _can(who, "impersonate", "groups", "")
    assert not _can(who, "create", "pods/exec")
    assert not _can(who, "create", "usertokens", "", group="kumo.dev")
    for role in bootstrap_policy.cluster_roles():
        if role.name.startswith(("system:kube-", "system:node", "system:kumo:")):
            for rule in role.rules or []:
                assert not {"escalate", "bind", "impersonate", "*"} & set(rule.verbs), role.name


def test_the_scheduler_reads_pods_and_nodes_binds_and_reports() -> None:
    for resource in ("pods", "nodes", "namespaces"):
        for verb in ("get", "list", "watch"):
            assert _can(SCHEDULER, verb, resource)
    assert _can(SCHEDULER, "create", "pods/binding")
    assert _can(SCHEDULER, "patch", "pods/status")
    assert _can(SCHEDULER, "create", "events")
    assert _can(SCHEDULER, "patch", "events")
    # leader election: creates any Lease, but reads and renews only its own
    lease = "coordination.k8s.io"
    assert _can(SCHEDULER, "create", "leases", "kube-system", group=lease)
    assert _can(SCHEDULER, "update", "leases", "kube-system", group=lease, name="kumo-scheduler")
    assert not _can(SCHEDULER, "update", "leases", "kube-node-lease", group=lease, name="n1")
    assert not _can(SCHEDULER, "get", "secrets")
    assert not _can(SCHEDULER, "list", "secrets")
    assert not _can(SCHEDULER, "create", "pods")
    assert not _can(SCHEDULER, "delete", "pods")
    assert not _can(SCHEDULER, "update", "pods")
    assert not _can(SCHEDULER, "patch", "nodes")


def test_the_controller_manager_has_what_its_controllers_call() -> None:
    for verb, resource, group in [
        ("create", "replicasets", "apps"),
        ("update", "replicasets", "apps"),
        ("delete", "replicasets", "apps"),
        ("patch", "deployments", "apps"),
        ("update", "deployments/status", "apps"),
        ("update", "replicasets/status", "apps"),
        ("create", "pods", ""),
        ("delete", "pods", ""),
        ("patch", "pods", ""),
        ("update", "pods/status", ""),
        ("update", "jobs/status", "batch"),
        ("create", "endpoints", ""),
        ("update", "endpoints", ""),
        ("create", "serviceaccounts", ""),
        ("create", "configmaps", ""),
        ("update", "configmaps", ""),
        ("update", "resourcequotas/status", ""),
        ("create", "events", ""),
        ("patch", "events", ""),
        # the garbage collector, the namespace controller: everything, but never create
        ("list", "secrets", ""),
        ("delete", "secrets", ""),
        ("patch", "functions", "kumo.dev"),
        ("delete", "rolebindings", "rbac.authorization.k8s.io"),
        # the horizontal pod autoscaler: any scale subresource, pod usage, its own status
        ("get", "deployments/scale", "apps"),
        ("update", "replicasets/scale", "apps"),
        ("list", "pods", "metrics.k8s.io"),
        ("watch", "horizontalpodautoscalers", "autoscaling"),
        ("update", "horizontalpodautoscalers/status", "autoscaling"),
        # the cronjob controller
        ("watch", "cronjobs", "batch"),
        ("update", "cronjobs/status", "batch"),
        ("create", "jobs", "batch"),
        # the disruption controller
        ("watch", "poddisruptionbudgets", "policy"),
        ("update", "poddisruptionbudgets/status", "policy"),
    ]:
        assert _can(CONTROLLERS, verb, resource, group=group), (verb, resource)
    assert _can(CONTROLLERS, "update", "namespaces/finalize", "ns", name="ns")
    assert _can(CONTROLLERS, "update", "nodes/status", "")
    assert _can(CONTROLLERS, "patch", "nodes", "")
    assert not _can(CONTROLLERS, "create", "secrets")
    assert not _can(CONTROLLERS, "create", "serviceaccounts/token")
    assert not _can(CONTROLLERS, "create", "nodes", "")
    assert not _can(CONTROLLERS, "deletecollection", "pods")


def test_the_gateway_reads_routes_activates_functions_and_reviews_scrapers() -> None:
    for resource in ("services", "endpoints"):
        assert _can(GATEWAY, "list", resource, "")
        assert _can(GATEWAY, "watch", resource, "")
    assert _can(GATEWAY, "patch", "functions", group="kumo.dev")
    assert _can(GATEWAY, "create", "tokenreviews", "", group="authentication.k8s.io")
    assert _can(GATEWAY, "create", "subjectaccessreviews", "", group="authorization.k8s.io")
    assert not _can(GATEWAY, "get", "secrets")
    assert not _can(GATEWAY, "list", "pods")
    assert not _can(GATEWAY, "patch", "services")
    assert not _can(GATEWAY, "update", "functions", group="kumo.dev")
    assert not _can(GATEWAY, "delete", "functions", group="kumo.dev")


def test_a_node_has_what_the_agent_calls() -> None:
    assert _can(NODE, "create", "nodes", "")
    assert _can(NODE, "get", "nodes", "", name="n1")
    assert _can(NODE, "patch", "nodes", "", name="n1")
    assert _can(NODE, "patch", "nodes/status", "", name="n1")
    lease = "coordination.k8s.io"
    assert _can(NODE, "create", "leases", "kube-node-lease", group=lease)
    assert _can(NODE, "update", "leases", "kube-node-lease", group=lease, name="n1")
    for verb in ("get", "list", "watch"):
        assert _can(NODE, verb, "pods", "")
        assert _can(NODE, verb, "services", "")
        assert _can(NODE, verb, "endpoints", "")
    assert _can(NODE, "update", "pods/status")
    assert _can(NODE, "delete", "pods")
    assert _can(NODE, "create", "events")
    # not granted by RBAC: secrets, configmaps and tokens are the Node authorizer's (only
    # those the node's pods use; tests/unit/auth/test_node_authorizer.py); writing pods
    # themselves, evictions, other kinds
    assert not _can(NODE, "get", "secrets")
    assert not _can(NODE, "get", "configmaps")
    assert not _can(NODE, "create", "serviceaccounts/token")
    assert not _can(NODE, "list", "secrets")
    assert not _can(NODE, "create", "pods")
    assert not _can(NODE, "update", "pods")
    assert not _can(NODE, "create", "pods/eviction")
    assert not _can(NODE, "delete", "nodes", "", name="n1")
    assert not _can(NODE, "create", "deployments", group="apps")
    assert not _can(NODE, "create", "serviceaccounts")


# ---- NodeRestriction ------------------------------------------------------------------------

PLUGIN = NodeRestriction()
NODES_INFO = for_model(Node)
PODS = for_model(Pod)
LEASES = for_model(Lease)


def _node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}


def _pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "team", "resourceVersion": "7"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending"},
    }


def _lease(namespace: str, name: str) -> dict[str, Any]:
    return {"kind": "Lease", "metadata": {"name": name, "namespace": namespace}}


async def _refused(
    operation: str,
    info: Any,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    who: UserInfo = NODE,
) -> str:
    with pytest.raises(ApiError) as refused:
        await PLUGIN.admit(operation, info, obj, old, who)
    assert refused.value.code == 403
    assert refused.value.reason == "Forbidden"
    return refused.value.message


async def test_a_node_writes_only_its_own_node() -> None:
    mine, other = _node("n1"), _node("n2")
    assert await PLUGIN.admit("CREATE", NODES_INFO, mine, None, NODE) is None
    relabelled = _node("n1", {"team": "a"})
    assert await PLUGIN.admit("UPDATE", NODES_INFO, relabelled, mine, NODE) is None
    assert await PLUGIN.admit("DELETE", NODES_INFO, mine, mine, NODE) is None
    for operation, old in (("CREATE", None), ("UPDATE", other), ("DELETE", other)):
        message = await _refused(operation, NODES_INFO, other, old)
        assert message == 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    steer = _node("n1", {"node-restriction.kubernetes.io/pci": "yes"})
    assert "node-restriction.kubernetes.io/pci" in await _refused("UPDATE", NODES_INFO, steer, mine)
    assert "node-restriction.kubernetes.io/pci" in await _refused("CREATE", NODES_INFO, steer, None)
    owned = copy.deepcopy(mine)
    owned["metadata"]["ownerReferences"] = [{"kind": "X", "name": "y", "uid": "u"}]
    assert "ownerReferences" in await _refused("UPDATE", NODES_INFO, owned, mine)
    # an administrator, or anyone not in system:nodes, is not restricted
    admin = UserInfo("admin", groups=(MASTERS,))
    assert await PLUGIN.admit("UPDATE", NODES_INFO, steer, other, admin) is None
    impostor = UserInfo("system:node:n2")  # the name without the group is not a node
    assert await PLUGIN.admit("UPDATE", NODES_INFO, other, other, impostor) is None


async def test_a_node_updates_only_the_status_of_its_own_pods() -> None:
    old = _pod("p", "n1")
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Running"}
    assert await PLUGIN.admit("UPDATE", PODS, new, old, NODE) is None
    assert await PLUGIN.admit("DELETE", PODS, old, old, NODE) is None
    theirs = _pod("q", "n2")
    theirs_new = copy.deepcopy(theirs)
    theirs_new["status"] = {"phase": "Failed"}
    assert (
        await _refused("UPDATE", PODS, theirs_new, theirs)
        == 'pods "q" is forbidden: node "n1" can only update pod status for pods with'
        " spec.nodeName set to itself"
    )
    assert "can only delete pods with spec.nodeName set to itself" in await _refused(
        "DELETE", PODS, theirs, theirs
    )
    unbound = _pod("u", "")
    assert "spec.nodeName" in await _refused("DELETE", PODS, unbound, unbound)
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"] = {"steal": "traffic"}
    assert "only update the status" in await _refused("UPDATE", PODS, relabelled, old)
    moved = copy.deepcopy(old)
    moved["spec"]["nodeName"] = "n2"
    assert "spec.nodeName" in await _refused("UPDATE", PODS, moved, old)
    assert "not allowed to create pods" in await _refused("CREATE", PODS, _pod("m", "n1"), None)


async def test_a_node_writes_only_its_own_lease() -> None:
    assert await PLUGIN.admit("CREATE", LEASES, _lease("kube-node-lease", "n1"), None, NODE) is None
    other = _lease("kube-node-lease", "n2")
    assert "same name" in await _refused("UPDATE", LEASES, other, other)
    elsewhere = _lease("kube-system", "n1")
    assert "kube-node-lease namespace" in await _refused("CREATE", LEASES, elsewhere, None)


async def test_a_node_of_unknown_name_writes_nothing_of_these() -> None:
    rogue = UserInfo("rogue", groups=(NODES, AUTHENTICATED))
    mine = _node("rogue")
    message = await _refused("CREATE", NODES_INFO, mine, None, rogue)
    assert 'could not determine the node of user "rogue"' in message
    await _refused("DELETE", PODS, _pod("p", "rogue"), _pod("p", "rogue"), rogue)
    await _refused("CREATE", LEASES, _lease("kube-node-lease", "rogue"), None, rogue)


def test_a_node_gets_tokens_only_for_pods_on_it() -> None:
    check_token_request(NODE, "default", _pod("p", "n1"))
    for pod in (_pod("q", "n2"), None):
        with pytest.raises(ApiError) as refused:
            check_token_request(NODE, "default", pod)
        assert refused.value.code == 403
        assert 'node "n1"' in refused.value.message
    check_token_request(UserInfo("alice"), "default", None)  # not a node: RBAC decides


def test_only_gc_fields_changed() -> None:
    old = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b", "resourceVersion": "3"},
        "subjects": [{"kind": "User", "name": "a"}],
    }
    gc = copy.deepcopy(old)
    gc["metadata"]["ownerReferences"] = [{"kind": "X", "name": "y", "uid": "u"}]
    gc["metadata"]["finalizers"] = ["f"]
    gc["metadata"]["resourceVersion"] = "4"
    assert only_gc_fields_changed(gc, old)
    more = copy.deepcopy(old)
    more["subjects"].append({"kind": "User", "name": "me"})
    assert not only_gc_fields_changed(more, old)
    labelled = copy.deepcopy(old)
    labelled["metadata"]["labels"] = {"aggregate": "true"}
    assert not only_gc_fields_changed(labelled, old)
