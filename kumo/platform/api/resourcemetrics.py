"""The resource metrics API, ``metrics.k8s.io/v1beta1``, as metrics-server serves it:

- ``GET /apis/metrics.k8s.io/v1beta1/nodes[/{name}]``: NodeMetrics(List);
- ``GET /apis/metrics.k8s.io/v1beta1[/namespaces/{ns}]/pods[/{name}]``: PodMetrics(List).

Lists take ``labelSelector`` (and ``fieldSelector`` on metadata.name / metadata.namespace).
RBAC is the usual ``get`` / ``list`` on ``nodes`` and ``pods`` in group ``metrics.k8s.io``.

There is no scraper: each request reads the Summary of the nodes concerned from their
agents (``GET /stats/summary``, see ``kumo.node.stats``) with the API server's kubelet
client certificate, concurrently, with a short timeout. An agent that does not answer, a
pod its agent has not sampled twice yet: left out of a list, 404 for a get ("metrics not
available"), like metrics-server. ``usage`` is ``cpu`` in nanocores (``"12345n"``) and
``memory`` (working set) in ``Ki``; ``window`` is the agent's sampling interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kumo.auth.authorizer import Attributes
from kumo.model.core import Node, Pod
from kumo.model.meta import now_rfc3339
from kumo.model.registry import for_model
from kumo.model.selectors import (
    FieldSelector,
    Selector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from kumo.platform.api import discovery
from kumo.platform.api.app import ApiState
from kumo.platform.api.errors import ApiError, bad_request, method_not_allowed, path_not_found
from kumo.platform.api.nodeproxy import NodeProxy, node_endpoint
from kumo.platform.api.resources import storage_key, storage_prefix

__all__ = ["GROUP", "VERSION", "install", "node_metrics", "pod_metrics", "serve"]

log = logging.getLogger(__name__)

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
POD = for_model(Pod)
NODE = for_model(Node)
#: How long one agent may take to answer its Summary.
SUMMARY_TIMEOUT = 5.0

Obj = dict[str, Any]


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.kumo
    return state


def _json(obj: Any) -> Response:
    return Response(orjson.dumps(obj), media_type="application/json")


def _metrics_not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{resource}.{GROUP} "{name}" not found',
        details={"name": name, "group": GROUP, "kind": resource},
    )


# ---- shaping (pure) ----------------------------------------------------------------------


def _cpu(nanocores: Any) -> str:
    return f"{int(nanocores or 0)}n"


def _memory(byte_count: Any) -> str:
    return f"{int(byte_count or 0) // 1024}Ki"


def _window(entry: Mapping[str, Any]) -> str:
    return str(entry.get("window") or "0s")


def node_metrics(node: Mapping[str, Any], summary: Mapping[str, Any]) -> Obj | None:
    """A NodeMetrics from a Node and its agent's Summary; None without a CPU rate yet."""
    stats = summary.get("node") or {}
    cpu = stats.get("cpu") or {}
    if "usageNanoCores" not in cpu:
        return None
    meta = node.get("metadata") or {}
    return {
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": meta.get("name", ""),
            "creationTimestamp": now_rfc3339(),
            "labels": dict(meta.get("labels") or {}),
        },
        "timestamp": cpu.get("time") or now_rfc3339(),
        "window": _window(stats),
        "usage": {
            "cpu": _cpu(cpu["usageNanoCores"]),
            "memory": _memory((stats.get("memory") or {}).get("workingSetBytes")),
        },
    }


def pod_metrics(pod: Mapping[str, Any], stats: Mapping[str, Any]) -> Obj:
    """A PodMetrics from a Pod and its entry in its node's Summary."""
    meta = pod.get("metadata") or {}
    containers = []
    for container in stats.get("containers") or []:
        containers.append(
            {
                "name": container.get("name", ""),
                "usage": {
                    "cpu": _cpu((container.get("cpu") or {}).get("usageNanoCores")),
                    "memory": _memory((container.get("memory") or {}).get("workingSetBytes")),
                },
            }
        )
    containers.sort(key=lambda c: str(c["name"]))
    return {
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "creationTimestamp": now_rfc3339(),
            "labels": dict(meta.get("labels") or {}),
        },
        "timestamp": (stats.get("cpu") or {}).get("time") or now_rfc3339(),
        "window": _window(stats),
        "containers": containers,
    }


def _list(kind: str, items: list[Obj]) -> Obj:
    return {"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items}


# ---- reading summaries ------------------------------------------------------------------


async def _summaries(request: Request, nodes: Iterable[Obj]) -> dict[str, Obj]:
    """Each reachable node's Summary by node name, read concurrently."""
    proxy: NodeProxy | None = getattr(request.app.state, "node_proxy", None)
    if proxy is None:
        raise ApiError(503, "ServiceUnavailable", "this API server cannot reach node agents")
    context = await proxy.ssl_context()
    targets: dict[str, str] = {}
    for node in nodes:
        name = str((node.get("metadata") or {}).get("name", ""))
        try:
            address, port = node_endpoint(node)
        except ApiError:
            continue
        host = f"[{address}]" if ":" in address else address
        targets[name] = f"https://{host}:{port}/stats/summary"
    if not targets:
        return {}
    async with httpx.AsyncClient(
        verify=context, trust_env=False, timeout=SUMMARY_TIMEOUT
    ) as client:

        async def fetch(name: str, url: str) -> tuple[str, Obj | None]:
            try:
                response = await client.get(url)
                if response.status_code != 200:
                    log.info("node %s answered its summary with %d", name, response.status_code)
                    return name, None
                body = orjson.loads(response.content)
                return name, body if isinstance(body, dict) else None
            except (httpx.HTTPError, orjson.JSONDecodeError) as err:
                log.info("reading the summary of node %s failed: %s", name, err)
                return name, None

        answers = await asyncio.gather(*(fetch(n, u) for n, u in targets.items()))
    return {name: body for name, body in answers if body is not None}


def _selectors(request: Request) -> tuple[Selector, FieldSelector]:
    try:
        labels = parse_label_selector(request.query_params.get("labelSelector") or None)
    except SelectorError as exc:
        raise bad_request(f"labelSelector: {exc}") from exc
    try:
        fields = parse_field_selector(request.query_params.get("fieldSelector") or None)
    except SelectorError as exc:
        raise bad_request(f"fieldSelector: {exc}") from exc
    for name in fields.fields:
        if name not in ("metadata.name", "metadata.namespace"):
            raise bad_request(
                f'"{name}" is not a known field selector: only "metadata.name, metadata.namespace"'
            )
    return labels, fields


# ---- handlers ---------------------------------------------------------------------------


async def _discovery(request: Request) -> Response:
    state = _state(request)
    user = await state.authenticate(request)
    await state.authorize(Attributes(user=user, verb="get", path=request.url.path))
    return _json(discovery.api_resource_list(GROUP, VERSION))


async def _nodes(request: Request, name: str) -> Response:
    store = _state(request).store
    if name:
        entry = store.get_entry(storage_key(NODE, "", name))
        if entry is None:
            raise _metrics_not_found("nodemetrics", name)
        summaries = await _summaries(request, [entry.obj])
        found = node_metrics(entry.obj, summaries.get(name) or {})
        if found is None:
            raise _metrics_not_found("nodemetrics", name)
        return _json(found)
    labels, fields = _selectors(request)
    listed = await store.list(
        storage_prefix(NODE, ""),
        predicate=lambda obj: (
            labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj)
        ),
    )
    chosen = [entry.obj for entry in listed.items]
    summaries = await _summaries(request, chosen)
    items = []
    for node in chosen:
        node_name = str((node.get("metadata") or {}).get("name", ""))
        metrics = node_metrics(node, summaries.get(node_name) or {})
        if metrics is not None:
            items.append(metrics)
    return _json(_list("NodeMetricsList", items))


def _pod_stats_by_uid(summaries: Mapping[str, Obj]) -> dict[str, Obj]:
    out: dict[str, Obj] = {}
    for summary in summaries.values():
        for stats in summary.get("pods") or []:
            uid = str((stats.get("podRef") or {}).get("uid") or "")
            if uid:
                out[uid] = stats
    return out


async def _nodes_of(request: Request, pods: Iterable[Obj]) -> list[Obj]:
    store = _state(request).store
    names = {str((p.get("spec") or {}).get("nodeName") or "") for p in pods} - {""}
    found = []
    for node_name in sorted(names):
        entry = store.get_entry(storage_key(NODE, "", node_name))
        if entry is not None:
            found.append(entry.obj)
    return found


async def _pods(request: Request, namespace: str, name: str) -> Response:
    store = _state(request).store
    if name:
        entry = store.get_entry(storage_key(POD, namespace, name))
        if entry is None:
            raise _metrics_not_found("podmetrics", name)
        summaries = await _summaries(request, await _nodes_of(request, [entry.obj]))
        uid = str((entry.obj.get("metadata") or {}).get("uid") or "")
        stats = _pod_stats_by_uid(summaries).get(uid)
        if stats is None:
            raise _metrics_not_found("podmetrics", name)
        return _json(pod_metrics(entry.obj, stats))
    labels, fields = _selectors(request)
    listed = await store.list(
        storage_prefix(POD, namespace),
        predicate=lambda obj: (
            labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj)
        ),
    )
    chosen = [entry.obj for entry in listed.items]
    by_uid = _pod_stats_by_uid(await _summaries(request, await _nodes_of(request, chosen)))
    items = []
    for pod in chosen:
        stats = by_uid.get(str((pod.get("metadata") or {}).get("uid") or ""))
        if stats is not None:
            items.append(pod_metrics(pod, stats))
    return _json(_list("PodMetricsList", items))


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _target(rest: str) -> tuple[str, str, str] | None:
    """(resource, namespace, name) of a path under the group version, as Kubernetes reads
    request paths; None for a path that names no resource."""
    parts = rest.strip("/").split("/") if rest.strip("/") else []
    namespace = ""
    if len(parts) >= 3 and parts[0] == "namespaces":
        namespace, parts = parts[1], parts[2:]
    if not 1 <= len(parts) <= 2 or not all(parts):
        return None
    return parts[0], namespace, parts[1] if len(parts) == 2 else ""


async def serve(request: Request) -> Response:
    """Every request under ``/apis/metrics.k8s.io/v1beta1/``: authenticated and authorized
    first (as Kubernetes does: a write nobody may make is a 403, not a 405), then served
    when it is a get or list of nodes or pods."""
    state = _state(request)
    user = await state.authenticate(request)
    rest = str(request.path_params.get("rest", ""))
    target = _target(rest)
    if target is None:
        raise path_not_found(request.url.path)
    resource, namespace, name = target
    method = request.method
    watch = request.query_params.get("watch", "").lower() in ("1", "true")
    if method in ("GET", "HEAD"):
        verb = "watch" if watch else "get" if name else "list"
    else:
        verb = _VERBS.get(method, method.lower())
        if verb == "delete" and not name:
            verb = "deletecollection"
    await state.authorize(
        Attributes(
            user=user,
            verb=verb,
            api_group=GROUP,
            resource=resource,
            namespace=namespace,
            name=name,
        )
    )
    if verb not in ("get", "list"):
        raise method_not_allowed(method if verb != "watch" else "watch", request.url.path)
    if resource == "nodes" and not namespace:
        return await _nodes(request, name)
    if resource == "pods" and (namespace or not name):
        return await _pods(request, namespace, name)
    raise path_not_found(request.url.path)


def install(app: Starlette) -> None:
    """Serve metrics.k8s.io ahead of the generic resource routes (needs ``nodeproxy``'s
    credentials on the app)."""
    base = f"/apis/{GROUP}/{VERSION}"
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route(base, _discovery, methods=["GET", "HEAD"]),
        Route(f"{base}/{{rest:path}}", serve, methods=methods),
    ]
    at = next(
        (
            i
            for i, r in enumerate(app.router.routes)
            if getattr(r, "path", None) == "/apis/{rest:path}"
        ),
        0,
    )
    for route in reversed(routes):
        app.router.routes.insert(at, route)
