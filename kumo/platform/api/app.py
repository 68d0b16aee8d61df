"""The API server as a Starlette app.

Every route but /healthz, /livez and /readyz needs a bearer token; every request is then
authorized; every error is a ``kind: Status`` body; nothing leaks a traceback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from kumo.auth.authorizer import Attributes, Authorizer
from kumo.auth.user import UserInfo
from kumo.platform.api import (
    admission,
    audit,
    discovery,
    impersonation,
    nodeproxy,
    openapi,
    paths,
)
from kumo.platform.api.authn import Authenticators
from kumo.platform.api.errors import (
    ApiError,
    forbidden,
    internal,
    method_not_allowed,
    path_not_found,
    unauthorized,
)
from kumo.platform.api.resources import Call, ResourceAPI, Settings, read_body
from kumo.platform.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "apiserver_request_total",
            "API requests by verb, resource and HTTP code",
            ["verb", "resource", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "apiserver_request_duration_seconds",
            "API request latency (watches excluded)",
            ["verb", "resource"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.inflight = Gauge(
            "apiserver_current_inflight_requests", "Requests being served", registry=self.registry
        )
        self.watches = Gauge(
            "apiserver_registered_watchers", "Open watch streams", registry=self.registry
        )
        # (verb, resource, code) -> the labelled counter and histogram (``labels`` costs a
        # lock and a few allocations per call; there are few combinations)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        """Count one request and its latency."""
        children = self._children.get((verb, resource, code))
        if children is None:
            children = (
                self.requests.labels(verb, resource, str(code)),
                self.latency.labels(verb, resource),
            )
            self._children[(verb, resource, code)] = children
        children[0].inc()
        children[1].observe(seconds)


class _StoreCollector(Collector):
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def collect(self) -> Any:
        yield GaugeMetricFamily(
            "kumo_store_revision", "Latest committed revision", value=self._store.revision
        )
        yield GaugeMetricFamily(
            "kumo_store_compacted_revision",
            "Oldest revision kept",
            value=self._store.compacted_revision,
        )
        objects = GaugeMetricFamily(
            "kumo_store_objects", "Stored objects by resource", labels=["resource"]
        )
        from kumo.model.registry import RESOURCES
        from kumo.platform.api.resources import storage_prefix

        for info in RESOURCES:
            objects.add_metric([info.group_resource], self._store.count(storage_prefix(info, "")))
        yield objects
        yield GaugeMetricFamily(
            "kumo_store_write_batches", "Group-commit transactions", value=self._store.batches
        )
        yield GaugeMetricFamily(
            "kumo_store_batched_writes",
            "Writes committed in batches",
            value=self._store.batched_writes,
        )


@dataclass(slots=True)
class ApiState:
    store: SQLiteStore
    authenticators: Authenticators
    authorizer: Authorizer
    resources: ResourceAPI
    metrics: Metrics = field(default_factory=Metrics)
    ready: bool = True

    async def authenticate(self, request: HTTPConnection) -> UserInfo:
        """The user the request acts as: the token's, or the one it impersonates (checked
        against the ``impersonate`` verb)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized(
                "Unauthorized: send 'Authorization: Bearer <token>' (see ~/.kumo/config)"
            )
        user = await self.authenticators.authenticate(token.strip())
        if user is None:
            raise unauthorized("Unauthorized: the token is unknown, expired or revoked")
        audit.note_user(user)
        if impersonation.requested(request.headers):
            acting = await impersonation.impersonate(user, request.headers, self.check)
            audit.note_user(acting, impersonator=user)
            return acting
        return user

    async def authorize(self, attributes: Attributes, info: Any = None) -> None:
        audit.note_attributes(attributes)
        await self.check(attributes, info)

    async def check(self, attributes: Attributes, info: Any = None) -> None:
        """403 unless ``attributes`` are allowed (without recording them as the request's)."""
        decision = await self.authorizer.authorize(attributes)
        if not decision.allowed:
            subject = attributes.resource or attributes.path
            if attributes.resource and attributes.api_group:
                subject = f"{attributes.resource}.{attributes.api_group}"
            name = f' "{attributes.name}"' if attributes.name else ""
            why = f": {decision.reason}" if decision.reason else ""
            raise forbidden(
                f"{subject}{name} is forbidden: {attributes.describe()}{why}",
                info,
                attributes.name or None,
            )


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.kumo
    return state


def _selected_name(field_selector: str) -> str:
    """X of a field selector that requires metadata.name=X (or ==X), else ""."""
    for term in field_selector.split(","):
        key, op, value = term.partition("==")
        if not op:
            key, op, value = term.partition("=")
        if op and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return ""


def _verb(method: str, target: paths.Target, watch: bool) -> str:
    if method in ("GET", "HEAD"):
        if target.name:
            return "get"
        return "watch" if watch else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if target.name else "deletecollection"
    return method.lower()


async def _non_resource(request: Request, body: Any) -> Response:
    state = _state(request)
    user = await state.authenticate(request)
    await state.authorize(Attributes(user=user, verb="get", path=request.url.path))
    return Response(orjson.dumps(body), media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b"ok", media_type="text/plain")


async def readyz(request: Request) -> Response:
    if not _state(request).ready:
        return Response(b"not ready", status_code=503, media_type="text/plain")
    return Response(b"ok", media_type="text/plain")


async def version(request: Request) -> Response:
    return await _non_resource(request, discovery.version_info())


async def openapi_v3(request: Request) -> Response:
    return await _non_resource(request, openapi.document())


async def api_root(request: Request) -> Response:
    return await _non_resource(request, discovery.api_versions())


async def apis_root(request: Request) -> Response:
    return await _non_resource(request, discovery.api_group_list())


async def metrics(request: Request) -> Response:
    state = _state(request)
    user = await state.authenticate(request)
    await state.authorize(Attributes(user=user, verb="get", path="/metrics"))
    state.metrics.watches.set((await state.store.stats()).watchers)
    return Response(generate_latest(state.metrics.registry), media_type="text/plain; version=0.0.4")


async def resource(request: Request) -> Response:
    state = _state(request)
    started = time.perf_counter()
    method = request.method
    try:
        # ``request.url.path`` without building the whole URL: the path as Starlette escapes it
        target = paths.parse(
            request.scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
        )
    except paths.PathError as exc:
        await state.authenticate(request)
        raise path_not_found(request.url.path) from exc
    user = await state.authenticate(request)
    if target.info is None:
        if method != "GET":
            raise method_not_allowed(method, request.url.path)
        await state.authorize(Attributes(user=user, verb="get", path=request.url.path))
        return Response(
            orjson.dumps(discovery.api_resource_list(target.group, target.version)),
            media_type="application/json",
        )
    # (only a GET can be a watch: writes skip parsing the query string here)
    watch = method in ("GET", "HEAD") and request.query_params.get("watch", "").lower() in (
        "1",
        "true",
    )
    verb = _verb(method, target, watch)
    sub = target.subresource
    # As Kubernetes: binding and eviction are "create" on the subresource; a Namespace is
    # authorized inside itself; a list or watch of one name (fieldSelector metadata.name=X)
    # is one of that name, so resourceNames rules can allow it.
    namespace = target.namespace
    if target.info.plural == "namespaces" and not target.group and target.name:
        namespace = target.name
    name = target.name or (
        _selected_name(request.query_params.get("fieldSelector", ""))
        if verb in ("list", "watch")
        else ""
    )
    await state.authorize(
        Attributes(
            user=user,
            verb=verb,
            api_group=target.group,
            resource=target.info.plural,
            subresource=sub,
            namespace=namespace,
            name=name,
        ),
        target.info,
    )
    call = Call(request, target, user)
    api = state.resources
    code = 500
    try:
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            call.body = await read_body(request, api.settings.max_body_bytes)
        if method in _WRITES and target.name and sub in _STORED_SUBRESOURCES:
            async with api.serialized(call):
                response = await _dispatch(api, call, method)
        else:
            response = await _dispatch(api, call, method)
        code = response.status_code
        if verb == "create" and not target.name and call.target.name:
            audit.note_created(call.target.namespace, call.target.name)
        return response
    except ApiError as exc:
        code = exc.code
        raise
    finally:
        if verb != "watch":
            resource_name = target.info.plural + (f"/{sub}" if sub else "")
            state.metrics.observe(verb, resource_name, code, time.perf_counter() - started)


_WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Writes to these change the stored object and take turns per object; log and exec are
# proxied to a node and may run for long, so they hold no lock.
_STORED_SUBRESOURCES = ("", "status", "scale", "binding", "eviction", "finalize")


async def _dispatch(api: ResourceAPI, call: Call, method: str) -> Response:
    target = call.target
    sub = target.subresource
    if sub in ("log", "exec"):  # served by the pod's node agent
        return await nodeproxy.serve_http(call)
    content_type = call.request.headers.get("content-type", "application/json")
    if method in ("GET", "HEAD"):
        if not target.name:
            return await api.list(call)
        if sub in ("", "status", "scale"):
            return await api.get(call)
        raise method_not_allowed(method, f"{target.info.plural if target.info else ''}/{sub}")
    if method == "POST":
        raw = admission.decode_body(call.body, content_type)
        if not target.name:
            return await api.create(call, raw)
        if sub == "binding":
            return await api.bind(call, raw)
        if sub == "eviction":
            return await api.evict(call, raw)
        raise method_not_allowed(method, call.request.url.path)
    if method == "PUT":
        if not target.name:
            raise method_not_allowed(method, call.request.url.path)
        raw = admission.decode_body(call.body, content_type)
        return await api.update(call, raw)
    if method == "PATCH":
        if not target.name or sub not in ("", "status", "scale"):
            raise method_not_allowed(method, call.request.url.path)
        return await api.patch(call)
    if method == "DELETE":
        if sub:
            raise method_not_allowed(method, call.request.url.path)
        if not target.name:
            return await api.delete_collection(call)
        return await api.delete(call)
    raise method_not_allowed(method, call.request.url.path)


class ErrorMiddleware:
    """ApiError -> Status response; any other exception -> a 500 Status, logged, no traceback out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ApiError as exc:
            if not started:
                await exc.response()(scope, receive, send)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await internal("the server hit an unexpected error; it has been logged").response()(
                    scope, receive, send
                )


async def _not_found(request: Request, exc: Exception) -> Response:
    # Unknown paths and methods answer 401 to strangers too: nothing is open but health checks.
    await _state(request).authenticate(request)
    return path_not_found(request.url.path).response()


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    await _state(request).authenticate(request)
    return method_not_allowed(request.method, request.url.path).response()


def build_app(
    store: SQLiteStore,
    authenticators: Authenticators,
    authorizer: Authorizer,
    settings: Settings | None = None,
    plugins: list[admission.AdmissionPlugin] | None = None,
) -> Starlette:
    resources = ResourceAPI(store, settings or Settings(), plugins)
    state = ApiState(store, authenticators, authorizer, resources)
    state.metrics.registry.register(_StoreCollector(store))
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    routes = [  # the resource routes first: nearly every request is one
        Route("/api/{rest:path}", resource, methods=methods),
        Route("/apis/{rest:path}", resource, methods=methods),
        WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/exec", nodeproxy.exec_websocket),
        Route("/healthz", healthz),
        Route("/livez", healthz),
        Route("/readyz", readyz),
        Route("/version", version),
        Route("/metrics", metrics),
        Route("/openapi/v3", openapi_v3),
        Route("/api", api_root),
        Route("/apis", apis_root),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: _not_found, 405: _method_not_allowed},
    )
    app.state.kumo = state
    app.add_middleware(ErrorMiddleware)
    return app
