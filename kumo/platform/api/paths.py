"""Kubernetes-style request paths -> what is being asked for.

/api/v1/pods                                   all namespaces
/api/v1/namespaces/{ns}/pods[/{name}[/{sub}]]
/api/v1/nodes[/{name}[/{sub}]]                 cluster-scoped
/api/v1/namespaces/{name}[/{sub}]              the Namespace object itself
/apis/{group}/{version}/...                    the same shapes for named groups
"""

from __future__ import annotations

from dataclasses import dataclass

from kumo.model.registry import ResourceInfo, by_path, serves


@dataclass(frozen=True, slots=True)
class Target:
    group: str
    version: str
    info: ResourceInfo | None  # None: the group/version discovery document
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    @property
    def is_collection(self) -> bool:
        return self.info is not None and not self.name


class PathError(Exception):
    pass


def parse(path: str) -> Target:
    """Raise ``PathError`` for anything that is not a served resource path."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise PathError(path)
    if parts[0] == "api":
        if len(parts) < 2:
            raise PathError(path)
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) < 3:
            raise PathError(path)
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise PathError(path)
    if not serves(group, version):
        raise PathError(path)
    if not rest:
        return Target(group, version, None)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = by_path(group, version, rest[2])
        if candidate is not None and candidate.namespaced:
            namespace, rest = rest[1], rest[2:]
    info = by_path(group, version, rest[0])
    if info is None:
        raise PathError(path)
    if namespace and not info.namespaced:
        raise PathError(path)
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        raise PathError(path)
    if (
        subresource
        and subresource not in info.subresources
        and not (info.plural == "namespaces" and subresource == "finalize")
    ):
        raise PathError(path)
    return Target(group, version, info, namespace, name, subresource)
