"""RBAC objects served to the authorizer from the store's in-memory state.

Parsed objects are cached and rebuilt only when an RBAC object changed, so authorizing a
request costs a few dict lookups and rule matches, not a parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kumo.model.rbac import ClusterRole, ClusterRoleBinding, Role, RoleBinding
from kumo.platform.store.sqlite import SQLiteStore

_PREFIX = "registry/rbac.authorization.k8s.io/"


@dataclass(slots=True)
class _Snapshot:
    revision: int = -1
    cluster_roles: dict[str, ClusterRole] = field(default_factory=dict)
    roles: dict[tuple[str, str], Role] = field(default_factory=dict)
    cluster_role_bindings: list[ClusterRoleBinding] = field(default_factory=list)
    role_bindings: dict[str, list[RoleBinding]] = field(default_factory=dict)


class StoreRuleSource:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._snapshot = _Snapshot()

    def _current(self) -> _Snapshot:
        revision = self._store.prefix_revision(_PREFIX)
        if revision == self._snapshot.revision:
            return self._snapshot
        snapshot = _Snapshot(revision=revision)
        for entry in self._store.entries(_PREFIX):
            resource = entry.key[len(_PREFIX) :].split("/", 1)[0]
            if resource == "clusterroles":
                role = ClusterRole.model_validate(entry.obj)
                snapshot.cluster_roles[role.name] = role
            elif resource == "roles":
                namespaced = Role.model_validate(entry.obj)
                snapshot.roles[(namespaced.namespace, namespaced.name)] = namespaced
            elif resource == "clusterrolebindings":
                snapshot.cluster_role_bindings.append(ClusterRoleBinding.model_validate(entry.obj))
            elif resource == "rolebindings":
                binding = RoleBinding.model_validate(entry.obj)
                snapshot.role_bindings.setdefault(binding.namespace, []).append(binding)
        self._snapshot = snapshot
        return snapshot

    def cluster_role(self, name: str) -> ClusterRole | None:
        return self._current().cluster_roles.get(name)

    def cluster_roles(self) -> Sequence[ClusterRole]:
        return list(self._current().cluster_roles.values())

    def role(self, namespace: str, name: str) -> Role | None:
        return self._current().roles.get((namespace, name))

    def cluster_role_bindings(self) -> Sequence[ClusterRoleBinding]:
        return self._current().cluster_role_bindings

    def role_bindings(self, namespace: str) -> Sequence[RoleBinding]:
        return self._current().role_bindings.get(namespace, [])
