"""Python clients for the kumo API: ``AsyncClient`` (asyncio) and ``Client`` (blocking).

Both speak raw dicts (``*_raw``; any kind, used by the CLI) and typed pydantic models (used
by components). Errors arrive as ``ApiException`` carrying the server's ``Status``;
``Warning`` headers go to ``on_warning``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
import orjson

from kumo.client.config import ClientConfig, load
from kumo.model.base import Resource, to_wire
from kumo.model.patch import three_way_merge_patch
from kumo.model.registry import ResourceInfo, by_kind, for_model

R = TypeVar("R", bound=Resource)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiException(Exception):
    def __init__(self, code: int, status: dict[str, Any]) -> None:
        self.code = code
        self.status = status
        self.reason = str(status.get("reason", ""))
        self.message = str(status.get("message", "")) or f"HTTP {code}"
        super().__init__(f"{self.message} ({code} {self.reason})" if self.reason else self.message)

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409 and self.reason == "Conflict"

    @property
    def already_exists(self) -> bool:
        return self.code == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        return self.code == 410


@dataclass(slots=True)
class WatchEvent(Generic[R]):
    type: str
    object: R


@dataclass(slots=True)
class RawEvent:
    type: str
    object: dict[str, Any]


@dataclass(slots=True)
class ObjectList(Generic[R]):
    items: list[R]
    resource_version: str
    continue_token: str | None = None


@dataclass(slots=True)
class ApplyResult:
    object: dict[str, Any]
    action: str  # created | configured | unchanged
    warnings: list[str] = field(default_factory=list)


def info_of(obj: dict[str, Any]) -> ResourceInfo:
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    info = by_kind(api_version, kind)
    if info is None:
        raise ApiException(
            404,
            {
                "reason": "NotFound",
                "message": f'no matches for kind "{kind}" in version "{api_version}";'
                " see `kumo api-resources` for the kinds kumo serves",
            },
        )
    return info


def _path(
    info: ResourceInfo, namespace: str | None, name: str | None = None, sub: str | None = None
) -> str:
    return info.path(namespace if info.namespaced else None, name, sub)


def _params(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _warnings(response: httpx.Response) -> list[str]:
    out = []
    for header in response.headers.get_list("warning"):
        text = header
        if header.startswith("299 - "):
            text = header[6:]
            if text.startswith('"') and text.endswith('"'):
                text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out.append(text)
    return out


def _watch_lines(chunk: bytes, pieces: list[bytes]) -> list[bytes]:
    """The complete lines in ``chunk`` (a piece of a newline-delimited watch stream), the
    start of the first one taken from ``pieces``, which keeps what is left of the last."""
    if pieces:
        pieces.append(chunk)
        chunk = b"".join(pieces)
        pieces.clear()
    lines = chunk.split(b"\n")
    rest = lines.pop()
    if rest:
        pieces.append(rest)
    return lines


def _watch_event(line: bytes) -> RawEvent | None:
    """One line of a watch stream as an event (None for a blank line); an ERROR event raises
    ``ApiException``."""
    if not line.strip():
        return None
    event = orjson.loads(line)
    if not isinstance(event, dict):
        raise json.JSONDecodeError("a watch event must be a JSON object", line.decode(), 0)
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise ApiException(int(status.get("code") or 500), status)
    return RawEvent(str(event.get("type")), event.get("object") or {})


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = {"message": response.text[:500] or response.reason_phrase}
    if not isinstance(body, dict):
        body = {"message": str(body)[:500]}
    raise ApiException(response.status_code, body)


def apply_plan(manifest: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object to create (live is None) or the merge patch to send; None when unchanged."""
    desired = json.loads(json.dumps(manifest))
    annotations = desired.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(LAST_APPLIED, None)
    if not annotations:
        desired["metadata"].pop("annotations")
    serialized = json.dumps(desired, sort_keys=True, separators=(",", ":"))
    with_annotation: dict[str, Any] = json.loads(serialized)
    with_annotation["metadata"].setdefault("annotations", {})[LAST_APPLIED] = serialized
    if live is None:
        return with_annotation
    previous_text = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        previous = json.loads(previous_text) if previous_text else {}
    except json.JSONDecodeError:
        previous = {}
    patch: dict[str, Any] = three_way_merge_patch(previous, with_annotation, live)
    effective = json.loads(json.dumps(patch))
    meta = effective.get("metadata")
    if isinstance(meta, dict):
        notes = meta.get("annotations")
        if isinstance(notes, dict):
            notes.pop(LAST_APPLIED, None)
            if not notes:
                meta.pop("annotations")
        if not meta:
            effective.pop("metadata")
    if not effective:
        return None
    return patch


def _apply_target(manifest: dict[str, Any], namespace: str) -> tuple[ResourceInfo, str, str | None]:
    info = info_of(manifest)
    meta = manifest.get("metadata") or {}
    name = meta.get("name")
    if not name or not isinstance(name, str):
        raise ApiException(
            422,
            {
                "reason": "Invalid",
                "message": f"{info.kind}: metadata.name: Required value (apply needs a name)",
            },
        )
    ns = (meta.get("namespace") or namespace) if info.namespaced else None
    return info, name, ns


def _http_options(config: ClientConfig, user_agent: str, timeout: float) -> dict[str, Any]:
    """The httpx client settings ``AsyncClient`` and ``Client`` share."""
    return {
        "base_url": config.server,
        "headers": [
            ("User-Agent", user_agent),
            ("Accept", "application/json"),
            *config.auth_headers(),
        ],
        "verify": config.ssl_context(),
        "timeout": httpx.Timeout(timeout, connect=10.0),
    }


def _encode_body(body: Any, content_type: str) -> tuple[bytes | None, dict[str, str] | None]:
    """A request body as JSON bytes, with its Content-Type header (neither for no body)."""
    if body is None:
        return None, None
    return json.dumps(body).encode(), {"Content-Type": content_type}


class AsyncClient:
    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        timeout: float = 30.0,
        on_warning: Callable[[str], None] | None = None,
        user_agent: str = "kumo-client",
    ) -> None:
        self.config = config or load()
        self._http = httpx.AsyncClient(
            **_http_options(self.config, user_agent, timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        )
        self.on_warning = on_warning
        self.last_warnings: list[str] = []

    @property
    def namespace(self) -> str:
        return self.config.namespace

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        content, headers = _encode_body(body, content_type)
        response = await self._http.request(
            method, path, params=params, content=content, headers=headers
        )
        self.last_warnings = _warnings(response)
        if self.on_warning:
            for warning in self.last_warnings:
                self.on_warning(warning)
        _raise_for(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.request(method, path, **kwargs)
        data: dict[str, Any] = response.json()
        return data

    # ---- raw -----------------------------------------------------------------------------

    async def get_raw(
        self, info: ResourceInfo, name: str, namespace: str | None = None, sub: str | None = None
    ) -> dict[str, Any]:
        return await self._json("GET", _path(info, namespace or self.namespace, name, sub))

    async def list_raw(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        ns = None if all_namespaces else (namespace or self.namespace)
        params = _params(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            limit=limit,
            **{"continue": continue_token},
        )
        return await self._json("GET", _path(info, ns), params=params)

    async def list_all_raw(
        self, info: ResourceInfo, namespace: str | None = None, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], str]:
        """Every page of a list; (items, resourceVersion of the first page)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        version = ""
        while True:
            page = await self.list_raw(info, namespace, continue_token=token, **kwargs)
            items.extend(page.get("items") or [])
            version = version or str(page.get("metadata", {}).get("resourceVersion", ""))
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items, version

    async def create_raw(
        self,
        obj: dict[str, Any],
        namespace: str | None = None,
        *,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> dict[str, Any]:
        info = info_of(obj)
        ns = obj.get("metadata", {}).get("namespace") or namespace or self.namespace
        params = _params(dryRun="All" if dry_run else None, fieldValidation=field_validation)
        return await self._json("POST", _path(info, ns), body=obj, params=params)

    async def replace_raw(
        self, obj: dict[str, Any], namespace: str | None = None, sub: str | None = None
    ) -> dict[str, Any]:
        info = info_of(obj)
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") or namespace or self.namespace
        return await self._json("PUT", _path(info, ns, meta.get("name"), sub), body=obj)

    async def patch_raw(
        self,
        info: ResourceInfo,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = MERGE_PATCH,
        sub: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        params = _params(dryRun="All" if dry_run else None)
        return await self._json(
            "PATCH",
            _path(info, namespace or self.namespace, name, sub),
            body=patch,
            content_type=patch_type,
            params=params,
        )

    async def delete_raw(
        self,
        info: ResourceInfo,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str | None = None,
        grace_period: int | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        params = _params(propagationPolicy=propagation, gracePeriodSeconds=grace_period)
        body = (
            {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "preconditions": {"resourceVersion": resource_version},
            }
            if resource_version
            else None
        )
        return await self._json(
            "DELETE", _path(info, namespace or self.namespace, name), params=params, body=body
        )

    async def watch_raw(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        bookmarks: bool = False,
    ) -> AsyncIterator[RawEvent]:
        """Events until the server ends the stream; an ERROR event raises ``ApiException``."""
        ns = None if all_namespaces else (namespace or self.namespace)
        params = _params(
            watch=True,
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            timeoutSeconds=timeout_seconds,
            allowWatchBookmarks=bookmarks or None,
        )
        timeout = httpx.Timeout(None, connect=10.0)
        async with self._http.stream(
            "GET", _path(info, ns), params=params, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            # Bytes split on newlines and parsed with orjson: a busy watch (the scheduler's
            # pods) carries thousands of events a second.
            pieces: list[bytes] = []
            async for chunk in response.aiter_bytes():
                if b"\n" not in chunk:
                    pieces.append(chunk)
                    continue
                for line in _watch_lines(chunk, pieces):
                    event = _watch_event(line)
                    if event is not None:
                        yield event
            last = _watch_event(b"".join(pieces))
            if last is not None:
                yield last

    async def apply_raw(
        self, manifest: dict[str, Any], namespace: str | None = None, *, dry_run: bool = False
    ) -> ApplyResult:
        """kubectl apply: create, or three-way merge against the last applied configuration."""
        info, name, ns = _apply_target(manifest, namespace or self.namespace)
        try:
            live = await self.get_raw(info, name, ns)
        except ApiException as exc:
            if not exc.not_found:
                raise
            live = None
        plan = apply_plan(manifest, live)
        if live is None:
            assert plan is not None
            if info.namespaced:
                plan["metadata"]["namespace"] = ns
            created = await self.create_raw(plan, ns, dry_run=dry_run)
            return ApplyResult(created, "created", self.last_warnings)
        if plan is None:
            return ApplyResult(live, "unchanged")
        patched = await self.patch_raw(info, name, plan, ns, dry_run=dry_run)
        return ApplyResult(patched, "configured", self.last_warnings)

    # ---- typed -----------------------------------------------------------------------------

    async def get(self, model: type[R], name: str, namespace: str | None = None) -> R:
        return model.model_validate(await self.get_raw(for_model(model), name, namespace))

    async def list(
        self,
        model: type[R],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList[R]:
        info = for_model(model)
        items, version = await self.list_all_raw(
            info,
            namespace,
            all_namespaces=all_namespaces,
            label_selector=label_selector,
            field_selector=field_selector,
        )
        return ObjectList([model.model_validate(i) for i in items], version)

    async def create(self, obj: R, namespace: str | None = None) -> R:
        return type(obj).model_validate(await self.create_raw(to_wire(obj), namespace))

    async def replace(self, obj: R) -> R:
        return type(obj).model_validate(await self.replace_raw(to_wire(obj), obj.namespace or None))

    async def replace_status(self, obj: R) -> R:
        return type(obj).model_validate(
            await self.replace_raw(to_wire(obj), obj.namespace or None, "status")
        )

    async def patch(
        self,
        model: type[R],
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = MERGE_PATCH,
        sub: str | None = None,
    ) -> R:
        return model.model_validate(
            await self.patch_raw(
                for_model(model), name, patch, namespace, patch_type=patch_type, sub=sub
            )
        )

    async def delete(
        self,
        model: type[R],
        name: str,
        namespace: str | None = None,
        *,
        propagation: str | None = None,
        grace_period: int | None = None,
    ) -> dict[str, Any]:
        return await self.delete_raw(
            for_model(model), name, namespace, propagation=propagation, grace_period=grace_period
        )

    async def apply(self, obj: Resource) -> ApplyResult:
        return await self.apply_raw(to_wire(obj), obj.namespace or None)

    async def watch(
        self,
        model: type[R],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        bookmarks: bool = False,
    ) -> AsyncIterator[WatchEvent[R]]:
        async for event in self.watch_raw(
            for_model(model),
            namespace,
            all_namespaces=all_namespaces,
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
            timeout_seconds=timeout_seconds,
            bookmarks=bookmarks,
        ):
            if event.type == "BOOKMARK":
                yield WatchEvent(event.type, model.model_construct(**event.object))  # type: ignore[arg-type]
            else:
                yield WatchEvent(event.type, model.model_validate(event.object))


class Client:
    """The blocking client: the same calls as ``AsyncClient`` without ``await``."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        timeout: float = 30.0,
        on_warning: Callable[[str], None] | None = None,
        user_agent: str = "kumo-cli",
    ) -> None:
        self.config = config or load()
        self._http = httpx.Client(**_http_options(self.config, user_agent, timeout))
        self._timeout = timeout
        self.on_warning = on_warning

    @property
    def namespace(self) -> str:
        return self.config.namespace

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        content, headers = _encode_body(body, content_type)
        response = self._http.request(method, path, params=params, content=content, headers=headers)
        if self.on_warning:
            for warning in _warnings(response):
                self.on_warning(warning)
        _raise_for(response)
        return response

    def get_raw(
        self, info: ResourceInfo, name: str, namespace: str | None = None, sub: str | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = self.request(
            "GET", _path(info, namespace or self.namespace, name, sub)
        ).json()
        return data

    def list_raw(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        ns = None if all_namespaces else (namespace or self.namespace)
        params = _params(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            limit=limit,
            **{"continue": continue_token},
        )
        data: dict[str, Any] = self.request("GET", _path(info, ns), params=params).json()
        return data

    def list_all_raw(
        self, info: ResourceInfo, namespace: str | None = None, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        version = ""
        while True:
            page = self.list_raw(info, namespace, continue_token=token, limit=500, **kwargs)
            items.extend(page.get("items") or [])
            version = version or str(page.get("metadata", {}).get("resourceVersion", ""))
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items, version

    def create_raw(
        self, obj: dict[str, Any], namespace: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        info = info_of(obj)
        ns = obj.get("metadata", {}).get("namespace") or namespace or self.namespace
        data: dict[str, Any] = self.request(
            "POST", _path(info, ns), body=obj, params=_params(dryRun="All" if dry_run else None)
        ).json()
        return data

    def replace_raw(
        self, obj: dict[str, Any], namespace: str | None = None, sub: str | None = None
    ) -> dict[str, Any]:
        info = info_of(obj)
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") or namespace or self.namespace
        data: dict[str, Any] = self.request(
            "PUT", _path(info, ns, meta.get("name"), sub), body=obj
        ).json()
        return data

    def patch_raw(
        self,
        info: ResourceInfo,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = MERGE_PATCH,
        sub: str | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = self.request(
            "PATCH",
            _path(info, namespace or self.namespace, name, sub),
            body=patch,
            content_type=patch_type,
        ).json()
        return data

    def delete_raw(
        self,
        info: ResourceInfo,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str | None = None,
        grace_period: int | None = None,
    ) -> dict[str, Any]:
        params = _params(propagationPolicy=propagation, gracePeriodSeconds=grace_period)
        data: dict[str, Any] = self.request(
            "DELETE", _path(info, namespace or self.namespace, name), params=params
        ).json()
        return data

    def watch_raw(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> Iterator[RawEvent]:
        ns = None if all_namespaces else (namespace or self.namespace)
        params = _params(
            watch=True,
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            timeoutSeconds=timeout_seconds,
        )
        with self._http.stream(
            "GET", _path(info, ns), params=params, timeout=httpx.Timeout(None, connect=10.0)
        ) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            pieces: list[bytes] = []
            for chunk in response.iter_bytes():
                if b"\n" not in chunk:
                    pieces.append(chunk)
                    continue
                for line in _watch_lines(chunk, pieces):
                    event = _watch_event(line)
                    if event is not None:
                        yield event
            last = _watch_event(b"".join(pieces))
            if last is not None:
                yield last

    def apply_raw(
        self, manifest: dict[str, Any], namespace: str | None = None, *, dry_run: bool = False
    ) -> ApplyResult:
        info, name, ns = _apply_target(manifest, namespace or self.namespace)
        try:
            live: dict[str, Any] | None = self.get_raw(info, name, ns)
        except ApiException as exc:
            if not exc.not_found:
                raise
            live = None
        plan = apply_plan(manifest, live)
        if live is None:
            assert plan is not None
            if info.namespaced:
                plan["metadata"]["namespace"] = ns
            return ApplyResult(self.create_raw(plan, ns, dry_run=dry_run), "created")
        if plan is None:
            return ApplyResult(live, "unchanged")
        params = _params(dryRun="All" if dry_run else None)
        patched = self.request(
            "PATCH", _path(info, ns, name), body=plan, content_type=MERGE_PATCH, params=params
        ).json()
        return ApplyResult(patched, "configured")

    def get(self, model: type[R], name: str, namespace: str | None = None) -> R:
        return model.model_validate(self.get_raw(for_model(model), name, namespace))

    def list(
        self,
        model: type[R],
        namespace: str | None = None,
        *,
        all_namespaces: bool = False,
        label_selector: str | None = None,
    ) -> ObjectList[R]:
        items, version = self.list_all_raw(
            for_model(model),
            namespace,
            all_namespaces=all_namespaces,
            label_selector=label_selector,
        )
        return ObjectList([model.model_validate(i) for i in items], version)

    def create(self, obj: R, namespace: str | None = None) -> R:
        return type(obj).model_validate(self.create_raw(to_wire(obj), namespace))

    def delete(self, model: type[R], name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.delete_raw(for_model(model), name, namespace)
