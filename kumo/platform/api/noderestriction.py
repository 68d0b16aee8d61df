"""NodeRestriction: a node agent may write only what belongs to its own node.

As Kubernetes' NodeRestriction admission plugin, for a user ``system:node:<name>`` in group
``system:nodes`` (RBAC's ``system:node`` role says *which kinds* a node may write; this says
*which objects*):

- Node: create, update, patch and delete only the Node ``<name>``; never change its
  ownerReferences, nor set labels under ``node-restriction.kubernetes.io/`` (that prefix is
  for administrators to steer workloads by, so a node must not claim it for itself);
- Lease (coordination.k8s.io): only ``kube-node-lease/<name>``;
- Pod: update (the status subresource: nothing but ``status`` may change) and delete only
  pods whose ``spec.nodeName`` is ``<name>``; never create one (kumo has no mirror pods);
- TokenRequest: a service-account token only when bound to a pod on ``<name>`` that runs as
  that service account (``check_token_request``, called by the TokenRequest endpoint).

A member of ``system:nodes`` whose user name does not say which node it is may write none of
these. Everything else is left to RBAC. Refusals are 403 Status answers naming the node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kumo.auth.user import UserInfo, node_identity
from kumo.model.registry import ResourceInfo
from kumo.platform.api.errors import ApiError, forbidden

NODE_LEASE_NAMESPACE = "kube-node-lease"
RESTRICTED_LABEL_PREFIX = "node-restriction.kubernetes.io/"
COORDINATION = "coordination.k8s.io"


def _meta(obj: dict[str, Any] | None) -> dict[str, Any]:
    meta = (obj or {}).get("metadata")
    return meta if isinstance(meta, dict) else {}


def _name(obj: dict[str, Any] | None) -> str:
    return str(_meta(obj).get("name") or "")


def _node_name_of_pod(pod: dict[str, Any] | None) -> str:
    spec = (pod or {}).get("spec")
    return str((spec or {}).get("nodeName") or "") if isinstance(spec, dict) else ""


def _refuse(info: ResourceInfo, name: str, why: str) -> ApiError:
    return forbidden(f'{info.group_resource} "{name}" is forbidden: {why}', info, name or None)


def _restricted_labels(keys: Iterable[str]) -> set[str]:
    return {key for key in keys if key.startswith(RESTRICTED_LABEL_PREFIX)}


def _changed_labels(new: dict[str, Any], old: dict[str, Any]) -> set[str]:
    return {key for key in set(new) | set(old) if new.get(key) != old.get(key)}


class NodeRestriction:
    """The admission plugin (``kumo.platform.api.admission.AdmissionPlugin``)."""

    async def admit(
        self,
        operation: str,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
    ) -> list[str] | None:
        is_node, node = node_identity(user)
        if not is_node:
            return None
        if info.group == "" and info.plural == "nodes":
            self._node(operation, info=info, obj=obj, old=old, user=user, node=node)
        elif info.group == "" and info.plural == "pods":
            self._pod(operation, info=info, obj=obj, old=old, user=user, node=node)
        elif info.group == COORDINATION and info.plural == "leases":
            self._lease(info, obj, user, node)
        return None

    @staticmethod
    def _unknown(info: ResourceInfo, name: str, user: UserInfo) -> ApiError:
        return _refuse(info, name, f'could not determine the node of user "{user.name}"')

    def _node(
        self,
        operation: str,
        *,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
        node: str,
    ) -> None:
        name = _name(obj) or _name(old)
        if not node:
            raise self._unknown(info, name, user)
        if name != node:
            raise _refuse(info, name, f'node "{node}" is not allowed to modify node "{name}"')
        if operation == "DELETE":
            return
        labels = _meta(obj).get("labels") or {}
        if operation == "CREATE":
            forbidden_labels = _restricted_labels(labels)
            if forbidden_labels:
                raise _refuse(
                    info,
                    name,
                    f'node "{node}" is not allowed to set the following labels: '
                    + ", ".join(sorted(forbidden_labels)),
                )
            return
        old_meta = _meta(old)
        if (_meta(obj).get("ownerReferences") or []) != (old_meta.get("ownerReferences") or []):
            raise _refuse(info, name, f'node "{node}" is not allowed to modify ownerReferences')
        changed = _changed_labels(labels, old_meta.get("labels") or {})
        forbidden_labels = _restricted_labels(changed)
        if forbidden_labels:
            raise _refuse(
                info,
                name,
                f'node "{node}" is not allowed to modify labels: '
                + ", ".join(sorted(forbidden_labels)),
            )

    def _pod(
        self,
        operation: str,
        *,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
        node: str,
    ) -> None:
        name = _name(obj) or _name(old)
        if not node:
            raise self._unknown(info, name, user)
        if operation == "CREATE":
            raise _refuse(info, name, f'node "{node}" is not allowed to create pods')
        bound_to = _node_name_of_pod(old if old is not None else obj)
        if operation == "DELETE":
            if bound_to != node:
                raise _refuse(
                    info,
                    name,
                    f'node "{node}" can only delete pods with spec.nodeName set to itself',
                )
            return
        # UPDATE: only the status of a pod bound to this node, and nothing else about it
        if bound_to != node or _node_name_of_pod(obj) != node:
            raise _refuse(
                info,
                name,
                f'node "{node}" can only update pod status for pods with spec.nodeName set to'
                " itself",
            )
        if _without_status(obj) != _without_status(old or {}):
            raise _refuse(info, name, f'node "{node}" can only update the status of pods')

    def _lease(self, info: ResourceInfo, obj: dict[str, Any], user: UserInfo, node: str) -> None:
        name = _name(obj)
        if not node:
            raise self._unknown(info, name, user)
        namespace = str(_meta(obj).get("namespace") or "")
        if namespace != NODE_LEASE_NAMESPACE:
            raise _refuse(
                info,
                name,
                f'node "{node}" can only access leases in the {NODE_LEASE_NAMESPACE} namespace',
            )
        if name != node:
            raise _refuse(
                info,
                name,
                f'node "{node}" can only access the node lease with the same name as itself',
            )


def _without_status(pod: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in pod.items() if k != "status"}
    meta = dict(_meta(pod))
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def check_token_request(user: UserInfo, account: str, pod: dict[str, Any] | None) -> None:
    """A node asks for a token of service account ``account``: it must be bound to a pod
    on that node (``pod`` is the bound Pod, None when the request names none)."""
    is_node, node = node_identity(user)
    if not is_node:
        return
    if not node:
        why = f'could not determine the node of user "{user.name}"'
    elif pod is None:
        why = f'node "{node}" may only request tokens bound to a pod'
    elif _node_name_of_pod(pod) != node:
        why = f'node "{node}" requested a token bound to a pod scheduled on a different node'
    else:
        return
    raise ApiError(
        403,
        "Forbidden",
        f'serviceaccounts "{account}" is forbidden: {why}',
        details={"name": account, "kind": "serviceaccounts"},
    )


__all__ = ["NODE_LEASE_NAMESPACE", "NodeRestriction", "check_token_request"]
