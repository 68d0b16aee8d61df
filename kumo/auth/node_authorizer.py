"""The Node authorizer (Kubernetes' ``--authorization-mode=Node``): a node reads only what
the pods bound to it use.

For a user in group ``system:nodes`` (``kumo.auth.user.node_identity``), ``decide`` answers
these requests itself, allow or deny, and RBAC is not asked (``governs``): any on core
``secrets``, ``configmaps`` and ``persistentvolumeclaims``; get of a ``serviceaccount`` and
anything on its ``token`` subresource. It allows only

- ``secrets``, ``configmaps``: get, and list/watch of one name (fieldSelector
  ``metadata.name``), in a namespace;
- ``persistentvolumeclaims``: get;
- ``serviceaccounts``: get, and create of the ``token`` subresource;

and only when a pod whose ``spec.nodeName`` is the node, in the object's namespace,
refers to the object: volumes (``secret``, ``configMap``, ``persistentVolumeClaim``,
``projected`` sources), ``env[].valueFrom`` (``secretKeyRef``, ``configMapKeyRef``) and
``envFrom`` (``secretRef``, ``configMapRef``) of containers, init and ephemeral containers,
``imagePullSecrets`` and ``serviceAccountName``. The rest of what it governs, and all of it
for a node of unknown name, is denied. Denials carry Kubernetes' reason, e.g. ``no relationship
found between node 'n1' and this object``.

Anyone not in ``system:nodes``, and a node's requests on any other resource: no opinion
(None), RBAC decides. The pods come from a ``PodsOnNode`` lookup that the API server keeps
indexed by node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from kumo.auth.authorizer import Attributes, Decision
from kumo.auth.user import node_identity

# The pods (wire-format objects) whose spec.nodeName is the given node.
PodsOnNode = Callable[[str], Iterable[Mapping[str, Any]]]

SECRETS = "secrets"
CONFIG_MAPS = "configmaps"
CLAIMS = "persistentvolumeclaims"
SERVICE_ACCOUNTS = "serviceaccounts"
GOVERNED = frozenset({SECRETS, CONFIG_MAPS, CLAIMS, SERVICE_ACCOUNTS})
READ_VERBS = frozenset({"get", "list", "watch"})


def _dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _field(obj: Any, name: str) -> Mapping[str, Any]:
    value = obj.get(name) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _named(obj: Mapping[str, Any], key: str = "name") -> str:
    return str(obj.get(key) or "")


def _volume_references(volume: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    yield SECRETS, _named(_field(volume, "secret"), "secretName")
    yield CONFIG_MAPS, _named(_field(volume, "configMap"))
    yield CLAIMS, _named(_field(volume, "persistentVolumeClaim"), "claimName")
    for source in _dicts(_field(volume, "projected").get("sources")):
        yield SECRETS, _named(_field(source, "secret"))
        yield CONFIG_MAPS, _named(_field(source, "configMap"))


def _container_references(container: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for env in _dicts(container.get("env")):
        value_from = _field(env, "valueFrom")
        yield SECRETS, _named(_field(value_from, "secretKeyRef"))
        yield CONFIG_MAPS, _named(_field(value_from, "configMapKeyRef"))
    for source in _dicts(container.get("envFrom")):
        yield SECRETS, _named(_field(source, "secretRef"))
        yield CONFIG_MAPS, _named(_field(source, "configMapRef"))


def pod_references(pod: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(resource, name) of every object ``pod`` refers to (possibly with repeats)."""
    return (ref for ref in _references(_field(pod, "spec")) if ref[1])


def _references(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    account = _named(spec, "serviceAccountName") or _named(spec, "serviceAccount")
    yield SERVICE_ACCOUNTS, account or "default"
    for ref in _dicts(spec.get("imagePullSecrets")):
        yield SECRETS, _named(ref)
    for volume in _dicts(spec.get("volumes")):
        yield from _volume_references(volume)
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in _dicts(spec.get(group)):
            yield from _container_references(container)


def related(pods: Iterable[Mapping[str, Any]], resource: str, namespace: str, name: str) -> bool:
    """Whether one of ``pods`` (in ``namespace``) refers to ``resource`` ``name``."""
    wanted = (resource, name)
    for pod in pods:
        if _named(_field(pod, "metadata"), "namespace") != namespace:
            continue
        if any(reference == wanted for reference in pod_references(pod)):
            return True
    return False


def governs(attributes: Attributes) -> bool:
    """Whether the request is one the Node authorizer decides for a node: anything on
    secrets, configmaps and persistentvolumeclaims; get of a serviceaccount and its token
    subresource. (Other requests on serviceaccounts, e.g. impersonate, are RBAC's.)"""
    if attributes.api_group or not attributes.is_resource_request:
        return False
    if attributes.resource == SERVICE_ACCOUNTS:
        sub = attributes.subresource
        return sub == "token" or (attributes.verb == "get" and not sub)
    return attributes.resource in GOVERNED


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


class NodeAuthorizer:
    """Decides the governed requests of nodes; ``decide`` is None where RBAC decides."""

    def __init__(self, pods_on_node: PodsOnNode) -> None:
        self.pods_on_node = pods_on_node

    def decide(self, attributes: Attributes) -> Decision | None:
        if not governs(attributes):
            return None
        is_node, node = node_identity(attributes.user)
        if not is_node:
            return None
        if not node:
            return _deny(f'unknown node for user "{attributes.user.name}"')
        refusal = self._shape_refusal(attributes)
        if refusal is not None:
            return _deny(refusal)
        pods = self.pods_on_node(node)
        if related(pods, attributes.resource, attributes.namespace, attributes.name):
            return Decision(True, f"node '{node}' runs a pod that uses this object")
        return _deny(f"no relationship found between node '{node}' and this object")

    @staticmethod
    def _shape_refusal(attributes: Attributes) -> str | None:
        """Why a request of this verb and shape is never allowed (Kubernetes' wording)."""
        verb, resource, sub = attributes.verb, attributes.resource, attributes.subresource
        if resource in (SECRETS, CONFIG_MAPS):
            if verb not in READ_VERBS:
                return "can only read resources of this type"
            if sub:
                return "cannot read subresource"
        elif resource == CLAIMS:
            if verb != "get":
                return "can only get individual resources of this type"
            if sub:
                return "cannot get subresource"
        elif sub and verb != "create":  # serviceaccounts/token
            return "can only create tokens for individual service accounts"
        if not attributes.namespace:
            return "can only read namespaced object of this type"
        if not attributes.name:
            return "No Object name found"
        return None


__all__ = ["GOVERNED", "NodeAuthorizer", "PodsOnNode", "governs", "pod_references", "related"]
