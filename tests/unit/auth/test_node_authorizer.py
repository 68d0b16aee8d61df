"""The Node authorizer as pure logic: which pod references let a node read an object, which
requests it denies outright, and where it leaves the decision to RBAC (the integration test
in tests/integration/auth/test_node_authorizer.py runs it through the server)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from kumo.auth.authorizer import Attributes
from kumo.auth.node_authorizer import NodeAuthorizer, pod_references, related
from kumo.auth.user import AUTHENTICATED, NODES, UserInfo
from kumo.model.rbac import ClusterRoleBinding
from kumo.platform.api.access import ClusterAuthorizer
from tests.unit.auth.policy_source import bootstrap_source

N1 = UserInfo("system:node:n1", groups=(NODES, AUTHENTICATED))
ROGUE = UserInfo("rogue", groups=(NODES, AUTHENTICATED))  # a node of unknown name
ALICE = UserInfo("alice", groups=(AUTHENTICATED,))


def _pod(name: str, node: str, spec: dict[str, Any], namespace: str = "team") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "default",
            "containers": [{"name": "c", "image": "busybox"}],
            **spec,
        },
    }


def _env(**value_from: Any) -> dict[str, Any]:
    return {"containers": [{"name": "c", "image": "busybox", "env": [{"name": "X", **value_from}]}]}


# (how the pod refers to it, pod spec fragment, resource, name)
REFERENCES: list[tuple[str, dict[str, Any], str, str]] = [
    ("secret volume", {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]}, "secrets", "s"),
    (
        "configMap volume",
        {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]},
        "configmaps",
        "cm",
    ),
    (
        "projected secret",
        {"volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "s"}}]}}]},
        "secrets",
        "s",
    ),
    (
        "projected configMap",
        {"volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "cm"}}]}}]},
        "configmaps",
        "cm",
    ),
    (
        "persistentVolumeClaim volume",
        {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
        "persistentvolumeclaims",
        "data",
    ),
    (
        "env secretKeyRef",
        _env(valueFrom={"secretKeyRef": {"name": "s", "key": "k"}}),
        "secrets",
        "s",
    ),
    (
        "env configMapKeyRef",
        _env(valueFrom={"configMapKeyRef": {"name": "cm", "key": "k"}}),
        "configmaps",
        "cm",
    ),
    (
        "envFrom secretRef",
        {"containers": [{"name": "c", "image": "b", "envFrom": [{"secretRef": {"name": "s"}}]}]},
        "secrets",
        "s",
    ),
    (
        "envFrom configMapRef",
        {
            "containers": [
                {"name": "c", "image": "b", "envFrom": [{"configMapRef": {"name": "cm"}}]}
            ]
        },
        "configmaps",
        "cm",
    ),
    (
        "initContainer env",
        {
            "initContainers": [
                {
                    "name": "i",
                    "image": "b",
                    "env": [
                        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                    ],
                }
            ]
        },
        "secrets",
        "s",
    ),
    (
        "initContainer envFrom",
        {
            "initContainers": [
                {"name": "i", "image": "b", "envFrom": [{"configMapRef": {"name": "cm"}}]}
            ]
        },
        "configmaps",
        "cm",
    ),
    ("imagePullSecrets", {"imagePullSecrets": [{"name": "pull"}]}, "secrets", "pull"),
    ("serviceAccountName", {"serviceAccountName": "app"}, "serviceaccounts", "app"),
]


@dataclass
class Pods:
    """The lookup the API server hands the authorizer: pods by spec.nodeName."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def on(self, node: str) -> list[Mapping[str, Any]]:
        self.asked.append(node)
        return [p for p in self.pods if p["spec"].get("nodeName") == node]


def _attrs(
    user: UserInfo,
    verb: str,
    resource: str,
    name: str,
    *,
    namespace: str = "team",
    subresource: str = "",
    group: str = "",
) -> Attributes:
    return Attributes(
        user=user,
        verb=verb,
        api_group=group,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )


def _read(resource: str) -> tuple[str, str]:
    """The verb (and subresource) a node uses to read ``resource``."""
    return ("create", "token") if resource == "serviceaccounts" else ("get", "")


@pytest.mark.parametrize(
    ("how", "spec", "resource", "name"), REFERENCES, ids=[r[0] for r in REFERENCES]
)
def test_each_reference_lets_the_node_read_the_object(
    how: str, spec: dict[str, Any], resource: str, name: str
) -> None:
    pods = Pods([_pod("p", "n1", spec)])
    authorizer = NodeAuthorizer(pods.on)
    verb, sub = _read(resource)
    decision = authorizer.decide(_attrs(N1, verb, resource, name, subresource=sub))
    assert decision is not None and decision.allowed, how
    if resource == "serviceaccounts":
        assert authorizer.decide(_attrs(N1, "get", resource, name)) == decision
    # the same name elsewhere, or another object of the kind: no
    elsewhere = authorizer.decide(
        _attrs(N1, verb, resource, name, namespace="other", subresource=sub)
    )
    assert elsewhere is not None and not elsewhere.allowed
    other = authorizer.decide(_attrs(N1, verb, resource, "unrelated", subresource=sub))
    assert other is not None and not other.allowed
    assert other.reason == "no relationship found between node 'n1' and this object"
    assert pods.asked == ["n1"] * len(pods.asked)


def test_every_reference_is_found() -> None:
    everything: dict[str, Any] = {}
    for _, spec, _, _ in REFERENCES:
        for key, value in spec.items():
            if isinstance(value, list):
                everything[key] = [*everything.get(key, []), *value]
            else:
                everything[key] = value
    found = set(pod_references(_pod("p", "n1", everything)))
    assert {(resource, name) for _, _, resource, name in REFERENCES} <= found


@pytest.mark.parametrize(
    ("case", "pods", "attributes", "allowed", "reason"),
    [
        (
            "a pod on another node",
            [_pod("p", "n2", {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]})],
            _attrs(N1, "get", "secrets", "s"),
            False,
            "no relationship found between node 'n1' and this object",
        ),
        (
            "an unbound pod",
            [_pod("p", "", {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]})],
            _attrs(N1, "get", "secrets", "s"),
            False,
            "no relationship found between node 'n1' and this object",
        ),
        (
            "a token for another pod's account",
            [_pod("p", "n1", {"serviceAccountName": "app"})],
            _attrs(N1, "create", "serviceaccounts", "admin", subresource="token"),
            False,
            "no relationship found between node 'n1' and this object",
        ),
        (
            "a node of unknown name",
            [_pod("p", "n1", {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]})],
            _attrs(ROGUE, "get", "secrets", "s"),
            False,
            'unknown node for user "rogue"',
        ),
        (
            "list/watch of one name (fieldSelector metadata.name)",
            [_pod("p", "n1", {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]})],
            _attrs(N1, "watch", "configmaps", "cm"),
            True,
            "",
        ),
        (
            "a list of every secret in a namespace",
            [],
            _attrs(N1, "list", "secrets", ""),
            False,
            "No Object name found",
        ),
        (
            "a list of every secret in the cluster",
            [],
            _attrs(N1, "list", "secrets", "", namespace=""),
            False,
            "can only read namespaced object of this type",
        ),
        (
            "writing a secret its pod uses",
            [_pod("p", "n1", {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]})],
            _attrs(N1, "update", "secrets", "s"),
            False,
            "can only read resources of this type",
        ),
        (
            "listing a claim",
            [],
            _attrs(N1, "list", "persistentvolumeclaims", "data"),
            False,
            "can only get individual resources of this type",
        ),
        (
            "reading a token",
            [_pod("p", "n1", {"serviceAccountName": "app"})],
            _attrs(N1, "get", "serviceaccounts", "app", subresource="token"),
            False,
            "can only create tokens for individual service accounts",
        ),
    ],
)
def test_decisions(
    case: str, pods: list[dict[str, Any]], attributes: Attributes, allowed: bool, reason: str
) -> None:
    decision = NodeAuthorizer(Pods(pods).on).decide(attributes)
    assert decision is not None, case
    assert decision.allowed is allowed, case
    if reason:
        assert decision.reason == reason, case


@pytest.mark.parametrize(
    "attributes",
    [
        _attrs(ALICE, "get", "secrets", "s"),  # not a node
        _attrs(UserInfo("system:node:n1"), "get", "secrets", "s"),  # the name, not the group
        _attrs(N1, "get", "pods", "p"),  # not a governed resource
        _attrs(N1, "list", "services", ""),
        _attrs(N1, "get", "secrets", "s", group="example.com"),  # another group's "secrets"
        Attributes(user=N1, verb="get", path="/healthz"),
        _attrs(ROGUE, "create", "nodes", "rogue", namespace=""),  # NodeRestriction's, not ours
        # serviceaccounts beyond get and token: RBAC's (system:node grants none of them)
        _attrs(N1, "impersonate", "serviceaccounts", "app"),
        _attrs(N1, "create", "serviceaccounts", ""),
        _attrs(N1, "delete", "serviceaccounts", "app"),
        _attrs(N1, "list", "serviceaccounts", ""),
    ],
)
def test_no_opinion_leaves_it_to_rbac(attributes: Attributes) -> None:
    pods = Pods([_pod("p", "n1", {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]})])
    assert NodeAuthorizer(pods.on).decide(attributes) is None
    assert pods.asked == []


def test_only_pods_in_the_objects_namespace_count() -> None:
    pod = _pod("p", "n1", {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]}, "a")
    assert related([pod], "secrets", "a", "s")
    assert not related([pod], "secrets", "b", "s")


def test_a_malformed_pod_refers_to_nothing_but_its_account() -> None:
    pod = {"metadata": {"namespace": "team"}, "spec": {"volumes": ["x", {"secret": None}]}}
    assert set(pod_references(pod)) == {("serviceaccounts", "default")}


# ---- in front of RBAC ------------------------------------------------------------------------


def _view_for_nodes() -> ClusterRoleBinding:
    return ClusterRoleBinding.model_validate(
        {
            "metadata": {"name": "nodes-edit"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "edit",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": NODES}],
        }
    )


async def test_the_cluster_authorizer_asks_the_node_authorizer_first() -> None:
    pods = Pods([_pod("p", "n1", {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]})])
    source = bootstrap_source()
    chain = ClusterAuthorizer(source, NodeAuthorizer(pods.on))
    assert (await chain.authorize(_attrs(N1, "get", "secrets", "s"))).allowed
    assert not (await chain.authorize(_attrs(N1, "get", "secrets", "other"))).allowed
    # RBAC's system:node role no longer lets a node read secrets on its own
    assert not (
        await ClusterAuthorizer(source).authorize(_attrs(N1, "get", "secrets", "s"))
    ).allowed
    # the rest is RBAC's: pods yes, deployments no
    assert (await chain.authorize(_attrs(N1, "list", "pods", ""))).allowed
    assert not (
        await chain.authorize(_attrs(N1, "create", "deployments", "d", group="apps"))
    ).allowed
    # a node's governed requests never fall through, even where a binding would allow them
    source.crbs.append(_view_for_nodes())
    assert (
        await ClusterAuthorizer(source).authorize(_attrs(N1, "get", "secrets", "other"))
    ).allowed
    denied = await chain.authorize(_attrs(N1, "get", "secrets", "other"))
    assert not denied.allowed
    assert denied.reason == "no relationship found between node 'n1' and this object"
    # non-nodes are RBAC's alone
    assert not (await chain.authorize(_attrs(ALICE, "get", "secrets", "s"))).allowed
    root = UserInfo("root", groups=("system:masters", NODES))
    assert (await chain.authorize(_attrs(root, "get", "secrets", "other"))).allowed
