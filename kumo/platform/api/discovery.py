"""Discovery documents: /api, /apis, /api/v1, /apis/{group}/{version}, /version."""

from __future__ import annotations

import platform
import sys
from typing import Any

import kumo
from kumo.model.registry import RESOURCES, ResourceInfo, groups

_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "binding": ["create"],
    "eviction": ["create"],
    "log": ["get"],
    "exec": ["create", "get"],
}
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _virtual(name: str, kind: str, namespaced: bool, verbs: list[str]) -> dict[str, Any]:
    singular = "" if "/" in name else name[:-1]
    return {
        "name": name,
        "singularName": singular,
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
    }


# Served without storage: reviews, token requests, user tokens (kumo.platform.api.reviews),
# resource metrics (kumo.platform.api.resourcemetrics).
VIRTUAL: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("", "v1"): [
        {
            **_virtual("serviceaccounts/token", "TokenRequest", True, ["create"]),
            "group": "authentication.k8s.io",
            "version": "v1",
        }
    ],
    ("authentication.k8s.io", "v1"): [
        _virtual("selfsubjectreviews", "SelfSubjectReview", False, ["create"]),
        _virtual("tokenreviews", "TokenReview", False, ["create"]),
    ],
    ("authorization.k8s.io", "v1"): [
        _virtual("localsubjectaccessreviews", "LocalSubjectAccessReview", True, ["create"]),
        _virtual("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ["create"]),
        _virtual("subjectaccessreviews", "SubjectAccessReview", False, ["create"]),
    ],
    ("kumo.dev", "v1"): [
        _virtual("usertokens", "UserToken", False, ["create", "delete", "get", "list"]),
    ],
    # kumo.platform.api.resourcemetrics: read from the node agents on each request.
    ("metrics.k8s.io", "v1beta1"): [
        _virtual("nodes", "NodeMetrics", False, ["get", "list"]),
        _virtual("pods", "PodMetrics", True, ["get", "list"]),
    ],
}


def api_versions() -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": groups().get("", []),
        "serverAddressByClientCIDRs": [],
    }


def api_group_list() -> dict[str, Any]:
    out = []
    served = groups()
    for group, version in VIRTUAL:
        served.setdefault(group, [version])
    for group, versions in served.items():
        if not group:
            continue
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        out.append({"name": group, "versions": listed, "preferredVersion": listed[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


def _entry(info: ResourceInfo) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": _VERBS,
    }
    if info.short_names:
        main["shortNames"] = list(info.short_names)
    if info.categories:
        main["categories"] = list(info.categories)
    out = [main]
    for sub in info.subresources:
        kind = {"scale": "Scale", "binding": "Binding", "eviction": "Eviction"}.get(sub, info.kind)
        group = {"scale": "autoscaling"}.get(sub)
        entry: dict[str, Any] = {
            "name": f"{info.plural}/{sub}",
            "singularName": "",
            "namespaced": info.namespaced,
            "kind": kind,
            "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"]),
        }
        if group:
            entry["group"] = group
            entry["version"] = "v1"
        out.append(entry)
    return out


def api_resource_list(group: str, version: str) -> dict[str, Any]:
    resources = []
    for info in RESOURCES:
        if info.group == group and info.version == version:
            resources.extend(_entry(info))
    resources.extend(VIRTUAL.get((group, version), []))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def version_info() -> dict[str, Any]:
    return {
        "major": "1",
        "minor": "30",
        "gitVersion": f"v{kumo.__version__}",
        "kumoVersion": kumo.__version__,
        "goVersion": "",
        "pythonVersion": sys.version.split()[0],
        "compiler": "cpython",
        "platform": f"{platform.system().lower()}/{platform.machine()}",
    }
