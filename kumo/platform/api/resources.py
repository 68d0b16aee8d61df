"""The REST verbs on stored resources: get, list, watch, create, update, patch, delete,
deletecollection, and the status, scale, binding, eviction and finalize subresources."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from kumo.auth.user import UserInfo
from kumo.model.base import Resource, to_wire
from kumo.model.meta import Binding, Scale, now_rfc3339
from kumo.model.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from kumo.model.registry import ResourceInfo, by_kind
from kumo.model.selectors import (
    FieldSelector,
    Selector,
    SelectorError,
    from_label_selector,
    parse_field_selector,
    parse_label_selector,
)
from kumo.platform.api import admission, disruption
from kumo.platform.api.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    gone,
    invalid,
    method_not_allowed,
    not_found,
    too_large,
)
from kumo.platform.api.paths import Target
from kumo.platform.api.serviceips import DEFAULT_SERVICE_CIDR, ServiceIPs
from kumo.platform.store import (
    AlreadyExists,
    Change,
    Conflict,
    Entry,
    Gone,
    NotFound,
    Progress,
    StoreError,
    WatchOverflow,
)
from kumo.platform.store.sqlite import SQLiteStore, decode_continue, encode_continue

PATCH_TYPES = (
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
)
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
NAMESPACE_FINALIZER = "kubernetes"
# The annotation on the BOOKMARK that ends a watch's initial events (sendInitialEvents).
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(slots=True)
class Settings:
    max_body_bytes: int = 3 * 1024 * 1024
    watch_timeout_seconds: int = 1800
    bookmark_interval_seconds: float = 30.0
    max_list_limit: int = 100_000
    default_namespaces: tuple[str, ...] = (
        "default",
        "kube-system",
        "kube-node-lease",
        "kumo-system",
    )
    # Cluster IPs of Services come from here (kumo.platform.api.serviceips).
    service_cidr: str = DEFAULT_SERVICE_CIDR


def storage_key(info: ResourceInfo, namespace: str, name: str) -> str:
    group = info.group or "core"
    if info.namespaced:
        return f"registry/{group}/{info.plural}/{namespace}/{name}"
    return f"registry/{group}/{info.plural}/{name}"


def storage_prefix(info: ResourceInfo, namespace: str) -> str:
    group = info.group or "core"
    if info.namespaced and namespace:
        return f"registry/{group}/{info.plural}/{namespace}/"
    return f"registry/{group}/{info.plural}/"


def _rv(obj: dict[str, Any]) -> int:
    return int(obj.get("metadata", {}).get("resourceVersion") or 0)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.setdefault("metadata", {})
    return meta


MAX_WARNINGS = 20
MAX_WARNING_CHARS = 512


def _json(obj: Any, status: int = 200, warnings: builtins.list[str] | None = None) -> Response:
    response = Response(orjson.dumps(obj), status_code=status, media_type="application/json")
    shown = list(warnings or [])
    if len(shown) > MAX_WARNINGS:
        hidden = len(shown) - MAX_WARNINGS + 1
        shown = [*shown[: MAX_WARNINGS - 1], f"and {hidden} more warnings"]
    for warning in shown:
        response.headers.append("Warning", f'299 - "{_quote(warning)}"')
    return response


def _quote(text: str) -> str:
    """A warning as an HTTP quoted-string: printable ASCII only, anything else escaped."""
    if len(text) > MAX_WARNING_CHARS:
        text = text[: MAX_WARNING_CHARS - 3] + "..."
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return "".join(
        c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in escaped
    )


_BINDING_DONE = orjson.dumps(
    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
)
_EVENT_HEADS = {
    kind: b'{"type":"' + kind.encode() + b'","object":' for kind in ("ADDED", "MODIFIED", "DELETED")
}


def _raw(data: bytes, status: int = 200) -> Response:
    return Response(data, status_code=status, media_type="application/json")


@dataclass(slots=True)
class Call:
    """One request against a resource."""

    request: Request
    target: Target
    user: UserInfo
    body: bytes = b""
    warnings: builtins.list[str] = field(default_factory=list)

    @property
    def info(self) -> ResourceInfo:
        assert self.target.info is not None
        return self.target.info

    def param(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def flag(self, name: str) -> bool:
        return self.param(name).lower() in ("1", "true", "yes")

    @property
    def dry_run(self) -> bool:
        return self.param("dryRun") == "All"

    def int_param(self, name: str, default: int | None = None) -> int | None:
        value = self.param(name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError as exc:
            raise bad_request(f"{name}: must be an integer, got {value[:40]!r}") from exc
        if not -_INT64 <= number <= _INT64:
            raise bad_request(f"{name}: must fit in a 64-bit integer")
        return number


class KeyLocks:
    """One asyncio lock per storage key, alive while someone holds or waits for it.

    Writes to one object from this process take turns, so read-modify-write requests
    (patch, scale, delete, unconditional replace) do not race each other into conflicts;
    compare-and-swap in the store still guards against other writers.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class ResourceAPI:
    def __init__(
        self,
        store: SQLiteStore,
        settings: Settings,
        plugins: builtins.list[admission.AdmissionPlugin] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.plugins = plugins or []
        self._stopping = asyncio.Event()
        self.key_locks = KeyLocks()
        # Writes an admission plugin wants serialized (quota in a namespace) take turns here.
        self.admission_locks = KeyLocks()
        self.service_ips = ServiceIPs(settings.service_cidr, store)

    def stop_watches(self) -> None:
        self._stopping.set()

    def serialized(self, call: Call) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the object's key while a write to one named object runs."""
        return self.key_locks.hold(self._key(call))

    # ---- helpers ------------------------------------------------------------------------

    def _key(self, call: Call, name: str | None = None) -> str:
        return storage_key(call.info, call.target.namespace, name or call.target.name)

    async def _load(self, call: Call) -> dict[str, Any]:
        obj = await self.store.get(self._key(call))
        if obj is None:
            raise not_found(call.info, call.target.name)
        return obj

    async def _admit(
        self, operation: str, call: Call, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        for plugin in self.plugins:
            warnings = await plugin.admit(operation, call.info, obj, old, call.user)
            if warnings:
                call.warnings.extend(warnings)

    @contextlib.asynccontextmanager
    async def _admission_turn(
        self,
        operation: str,
        call: Call,
        namespace: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
    ) -> AsyncIterator[None]:
        """Hold the plugins' lock keys (``admission.lock_keys``) for one write."""
        keys = await admission.lock_keys(
            self.plugins, operation, call.info, namespace=namespace, obj=obj, old=old
        )
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self.admission_locks.hold(key))
            yield

    def _decode(self, call: Call, raw: Any) -> admission.Decoded:
        decoded = admission.decode_object(
            call.info, raw, call.param("fieldValidation", "Warn"), call.target.name
        )
        call.warnings.extend(decoded.warnings)
        return decoded

    async def _require_namespace(self, call: Call, *, creating: bool) -> None:
        info = call.info
        if not info.namespaced or not call.target.namespace:
            return
        ns = self.store.get_entry(f"registry/core/namespaces/{call.target.namespace}")
        if ns is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{call.target.namespace}" not found',
                details={"name": call.target.namespace, "kind": "namespaces"},
            )
        terminating = ns.obj.get("metadata", {}).get("deletionTimestamp")
        if creating and terminating and info.kind != "Event":
            raise forbidden(
                f'{info.kind.lower()} "{call.target.name or ""}" is forbidden: unable to create new content'
                f" in namespace {call.target.namespace} because it is being terminated"
            )

    # ---- get / list / watch -----------------------------------------------------------------

    async def get(self, call: Call) -> Response:
        entry = self.store.get_entry(self._key(call))
        if entry is None:
            raise not_found(call.info, call.target.name)
        if call.target.subresource == "scale":
            return _json(self._scale_of(call.info, orjson.loads(entry.data)))
        return _raw(entry.data)

    def _selectors(self, call: Call) -> tuple[Selector, FieldSelector]:
        try:
            labels = parse_label_selector(call.param("labelSelector") or None)
        except SelectorError as exc:
            raise bad_request(f"labelSelector: {exc}") from exc
        try:
            fields = parse_field_selector(call.param("fieldSelector") or None)
        except SelectorError as exc:
            raise bad_request(f"fieldSelector: {exc}") from exc
        allowed = {"metadata.name", "metadata.namespace", *call.info.model.selectable_fields}
        for name in fields.fields:
            if name not in allowed:
                raise bad_request(
                    f'"{name}" is not a known field selector: only "{", ".join(sorted(allowed))}"'
                )
        return labels, fields

    @staticmethod
    def _predicate(
        labels: Selector, fields: FieldSelector
    ) -> Callable[[dict[str, Any]], bool] | None:
        if labels.empty and not fields.requirements:
            return None

        def match(obj: dict[str, Any]) -> bool:
            return labels.matches(obj.get("metadata", {}).get("labels")) and fields.matches(obj)

        return match

    async def list(self, call: Call) -> Response:
        if call.flag("watch"):
            return await self.watch(call)
        if "sendInitialEvents" in call.request.query_params:
            raise _invalid_list_options(
                [("sendInitialEvents", "Forbidden: sendInitialEvents is forbidden for list")]
            )
        labels, fields = self._selectors(call)
        limit = call.int_param("limit", 0) or 0
        if limit < 0:
            raise bad_request("limit: must be greater than or equal to 0")
        limit = min(limit, self.settings.max_list_limit)
        start_after: str | None = None
        revision: int | None = None
        token = call.param("continue")
        if token:
            try:
                revision, start_after = decode_continue(token)
            except ValueError as exc:
                raise bad_request("continue key is not valid: " + str(exc)) from exc
            if not start_after.startswith(storage_prefix(call.info, call.target.namespace)):
                raise bad_request("continue key is not valid: it belongs to another list")
        else:
            requested = call.int_param("resourceVersion", None)
            match = call.param("resourceVersionMatch")
            if match not in ("", "NotOlderThan", "Exact"):
                raise bad_request(f'resourceVersionMatch: Unsupported value: "{match}"')
            if requested is not None and requested > self.store.revision:
                raise ApiError(
                    504,
                    "Timeout",
                    f"Too large resource version: {requested}, current resource version: {self.store.revision}",
                )
            if match == "Exact":
                if requested is None:
                    raise bad_request("resourceVersionMatch=Exact needs a resourceVersion")
                revision = requested
        try:
            result = await self.store.list(
                storage_prefix(call.info, call.target.namespace),
                limit=limit,
                start_after=start_after,
                revision=revision,
                predicate=self._predicate(labels, fields),
            )
        except Gone as exc:
            raise gone(
                "The provided continue parameter is too old to display a consistent list result."
                " Start a new list without the continue parameter."
                if token
                else f"too old resource version: {revision} ({exc.compacted})"
            ) from exc
        meta: dict[str, Any] = {"resourceVersion": str(result.revision)}
        if result.continue_key is not None:
            meta["continue"] = encode_continue(result.revision, result.continue_key)
            if result.remaining is not None:
                meta["remainingItemCount"] = result.remaining
        head = orjson.dumps(
            {"kind": f"{call.info.kind}List", "apiVersion": call.info.api_version, "metadata": meta}
        )
        body = head[:-1] + b',"items":[' + b",".join(e.data for e in result.items) + b"]}"
        return _raw(body)

    async def watch(self, call: Call) -> Response:
        labels, fields = self._selectors(call)
        predicate = self._predicate(labels, fields)
        requested = call.param("resourceVersion")
        timeout = call.int_param("timeoutSeconds", None)
        if timeout is None or timeout <= 0:
            timeout = self.settings.watch_timeout_seconds
        bookmarks = call.flag("allowWatchBookmarks")
        send_initial = _watch_list_option(call)
        prefix = storage_prefix(call.info, call.target.namespace)
        info = call.info
        if call.target.name:  # watch of a single object: fieldSelector metadata.name
            name = call.target.name
            inner = predicate

            def predicate(obj: dict[str, Any]) -> bool:
                return obj.get("metadata", {}).get("name") == name and (inner is None or inner(obj))

            prefix = storage_key(info, call.target.namespace, name)
        initial: builtins.list[Entry] = []
        since = 0
        fresh = requested in ("", "0")  # no resourceVersion: start from the current state
        if not fresh:
            try:
                since = int(requested)
            except ValueError as exc:
                raise bad_request(f"resourceVersion: invalid value {requested!r}") from exc
            if since > self.store.revision:
                raise ApiError(
                    504,
                    "Timeout",
                    f"Too large resource version: {since}, current resource version: {self.store.revision}",
                )
        if send_initial or (send_initial is None and fresh):
            # The current state first (with sendInitialEvents and resourceVersionMatch
            # NotOlderThan, any state at least as new as the requested revision will do).
            snapshot = await self.store.list(prefix, predicate=predicate)
            initial = snapshot.items
            since = snapshot.revision
        elif fresh:
            since = self.store.revision  # sendInitialEvents=false: changes from now on
        elif since < self.store.compacted_revision:
            raise gone(f"too old resource version: {since} ({self.store.compacted_revision})")
        stream = self._watch_stream(
            info,
            prefix=prefix,
            since=since,
            initial=initial,
            predicate=predicate,
            limit_seconds=timeout,
            bookmarks=bookmarks,
            initial_events_end=bool(send_initial) and bookmarks,
        )
        return StreamingResponse(
            stream, media_type="application/json", headers={"Transfer-Encoding": "chunked"}
        )

    async def _watch_stream(
        self,
        info: ResourceInfo,
        *,
        prefix: str,
        since: int,
        initial: builtins.list[Entry],
        predicate: Callable[[dict[str, Any]], bool] | None,
        limit_seconds: float,
        bookmarks: bool,
        initial_events_end: bool = False,
    ) -> AsyncIterator[bytes]:
        # The events ready at one wakeup go out as one chunk (one write to the connection).
        for start in range(0, len(initial), 1000):
            yield b"".join(
                b'{"type":"ADDED","object":' + entry.data + b"}\n"
                for entry in initial[start : start + 1000]
            )
        if initial_events_end:
            # WatchList: the initial state is complete as of this revision.
            yield self._bookmark(info, since, {INITIAL_EVENTS_END: "true"})
        interval = self.settings.bookmark_interval_seconds if bookmarks else None
        changes = self.store.watch_batches(prefix, since, interval)
        try:
            async with asyncio.timeout(limit_seconds):
                async for batch in changes:
                    if self._stopping.is_set():
                        return
                    if isinstance(batch, Progress):
                        yield self._bookmark(info, batch.revision)
                        continue
                    lines = []
                    for change in batch:
                        event = self._event_type(change, predicate)
                        if event is not None:
                            lines.append(_EVENT_HEADS[event] + change.data + b"}\n")
                    if lines:
                        yield b"".join(lines)
        except TimeoutError:
            return
        except Gone as exc:
            yield self._error_event(
                410, "Expired", f"too old resource version: {since} ({exc.compacted})"
            )
        except WatchOverflow as exc:
            yield self._error_event(410, "Expired", str(exc))
        finally:
            await changes.aclose()  # type: ignore[attr-defined]

    @staticmethod
    def _bookmark(
        info: ResourceInfo, revision: int, annotations: dict[str, str] | None = None
    ) -> bytes:
        metadata: dict[str, Any] = {"resourceVersion": str(revision)}
        if annotations:
            metadata["annotations"] = annotations
        obj = {"kind": info.kind, "apiVersion": info.api_version, "metadata": metadata}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    @staticmethod
    def _error_event(code: int, reason: str, message: str) -> bytes:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        return orjson.dumps({"type": "ERROR", "object": status}) + b"\n"

    @staticmethod
    def _event_type(
        change: Change, predicate: Callable[[dict[str, Any]], bool] | None
    ) -> str | None:
        if predicate is None:
            return change.type
        now = predicate(change.obj)
        if change.type == "MODIFIED":
            before = change.prev is not None and predicate(change.prev)
            if now and before:
                return "MODIFIED"
            if now:
                return "ADDED"
            if before:
                return "DELETED"
            return None
        return change.type if now else None

    # ---- create ----------------------------------------------------------------------------

    async def create(self, call: Call, raw: Any) -> Response:
        given = (raw.get("metadata") or {}) if isinstance(raw, dict) else {}
        in_body = given.get("namespace") if isinstance(given, dict) else None
        namespace = call.target.namespace or (in_body if isinstance(in_body, str) else "")
        async with self._admission_turn("CREATE", call, namespace, None, None):
            return await self._create(call, raw)

    async def _create(self, call: Call, raw: Any) -> Response:
        info = call.info
        decoded = self._decode(call, raw)
        model = decoded.model
        if info.namespaced:
            given = model.metadata.namespace
            if given and call.target.namespace and given != call.target.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if not call.target.namespace and not given:
                raise bad_request(
                    f"{info.kind} objects are namespaced: create them under /namespaces/{{namespace}}/"
                )
            namespace = call.target.namespace or given or ""
        else:
            namespace = ""
        admission.prepare_create(info, model, namespace)
        obj = admission.admit_new(info, model)
        name = model.metadata.name or ""
        call.target = Target(call.target.group, call.target.version, info, namespace, name)
        await self._require_namespace(call, creating=True)
        if info.kind == "Namespace":
            spec = obj.setdefault("spec", {})
            if not spec.get("finalizers"):
                spec["finalizers"] = [NAMESPACE_FINALIZER]
        await self._admit("CREATE", call, obj, None)
        async with self.service_ips.assigning(info, obj):
            if call.dry_run:
                if self.store.get_entry(self._key(call, name)) is not None:
                    raise already_exists(info, name)
                return _json(obj, 201, call.warnings)
            try:
                stored = await self.store.create(storage_key(info, namespace, name), obj)
            except AlreadyExists as exc:
                raise already_exists(info, name) from exc
        return _json(stored, 201, call.warnings)

    # ---- update (PUT) --------------------------------------------------------------------------

    async def update(self, call: Call, raw: Any) -> Response:
        sub = call.target.subresource
        if sub == "scale":
            return await self._update_scale(call, raw)
        if sub in ("status", "finalize", ""):
            decoded = self._decode(call, raw)
            return await self._replace(call, decoded.model, sub)
        raise method_not_allowed("PUT", f"{call.info.plural}/{sub}")

    async def _replace(self, call: Call, model: Resource, sub: str) -> Response:
        info = call.info
        meta = model.metadata
        if meta.name and meta.name != call.target.name:
            raise bad_request(
                f"the name of the object ({meta.name}) does not match the name on the URL ({call.target.name})"
            )
        if info.namespaced and meta.namespace and meta.namespace != call.target.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta.name = call.target.name
        if info.namespaced:
            meta.namespace = call.target.namespace
        precondition = (
            int(meta.resource_version)
            if meta.resource_version and meta.resource_version.isdigit()
            else None
        )
        if meta.resource_version and precondition is None:
            raise bad_request(
                f"metadata.resourceVersion: Invalid value: {meta.resource_version!r}: must be an integer"
            )
        key = self._key(call)
        old = await self._load(call)
        if precondition is not None and precondition != _rv(old):
            raise conflict(info, call.target.name)
        model.apply_defaults()
        new = to_wire(model)
        new = self._merge_system_fields(info, new, old, sub)
        new_model = info.model.model_validate(new)
        if sub == "" or sub == "finalize":
            problems = admission.validate_metadata(info, new_model)
            problems += new_model.validate_semantics()
        else:
            problems = []
        if type(new_model).validate_update is not Resource.validate_update:
            problems += new_model.validate_update(info.model.model_validate(old))
        if problems:
            raise invalid(info.kind, info.group, call.target.name, problems)
        return await self._commit_update(call, key, new, old, precondition or _rv(old))

    def _merge_system_fields(
        self, info: ResourceInfo, new: dict[str, Any], old: dict[str, Any], sub: str
    ) -> dict[str, Any]:
        old_meta = old.get("metadata", {})
        if sub == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            return merged
        if sub == "finalize":
            merged = copy.deepcopy(old)
            merged.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get(
                "finalizers"
            ) or []
            return merged
        new_meta = _meta(new)
        for system in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if system in old_meta:
                new_meta[system] = old_meta[system]
            else:
                new_meta.pop(system, None)
        if "status" in info.subresources and info.kind != "Node":
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if info.model.has_spec and admission.spec_part(new) != admission.spec_part(old):
            new_meta["generation"] = int(old_meta.get("generation") or 1) + 1
        if info.kind == "Namespace":
            new["spec"] = old.get("spec", {})
        if info.kind == "Service":
            _keep_allocated_cluster_ips(new, old)
        return new

    async def _commit_update(
        self, call: Call, key: str, new: dict[str, Any], old: dict[str, Any], expected: int
    ) -> Response:
        namespace = call.target.namespace
        async with self._admission_turn("UPDATE", call, namespace, new, old):
            return await self._write_update(call, key, new, old, expected)

    async def _write_update(
        self, call: Call, key: str, new: dict[str, Any], old: dict[str, Any], expected: int
    ) -> Response:
        info = call.info
        old_meta = old.get("metadata", {})
        new_meta = _meta(new)
        new_meta["resourceVersion"] = old_meta.get("resourceVersion")
        if old_meta.get("deletionTimestamp"):
            added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(
                    info.kind,
                    info.group,
                    call.target.name,
                    [
                        (
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being deleted",
                        )
                    ],
                )
        await self._admit("UPDATE", call, new, old)
        if new == old:
            return _json(old, 200, call.warnings)
        if call.dry_run:
            return _json(new, 200, call.warnings)
        if self._ready_to_vanish(info, new):
            try:
                gone_obj = await self.store.delete(key, expected)
            except Conflict as exc:
                raise conflict(info, call.target.name) from exc
            except NotFound as exc:
                raise not_found(info, call.target.name) from exc
            return _json(gone_obj, 200, call.warnings)
        try:
            async with self.service_ips.assigning(info, new, old):
                stored = await self.store.update(key, new, expected)
        except Conflict as exc:
            raise conflict(info, call.target.name) from exc
        except NotFound as exc:
            raise not_found(info, call.target.name) from exc
        return _json(stored, 200, call.warnings)

    @staticmethod
    def _ready_to_vanish(info: ResourceInfo, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        if info.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers"):
            return False
        # A pod on a node is finished by its agent, which deletes it with gracePeriodSeconds=0.
        return not (info.kind == "Pod" and meta.get("deletionGracePeriodSeconds"))

    # ---- patch --------------------------------------------------------------------------------

    async def patch(self, call: Call) -> Response:
        content_type = call.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in PATCH_TYPES:
            from kumo.platform.api.errors import unsupported_media_type

            raise unsupported_media_type(content_type, list(PATCH_TYPES))
        patch = admission.decode_body(call.body, "application/json")
        if content_type != "application/json-patch+json" and not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        info = call.info
        sub = call.target.subresource
        for _ in range(20):
            old = await self._load(call)
            if sub == "scale":
                current: dict[str, Any] = self._scale_of(info, old)
            else:
                current = copy.deepcopy(old)
            try:
                if content_type == "application/json-patch+json":
                    patched = json_patch(current, patch)
                elif content_type == "application/strategic-merge-patch+json":
                    patched = strategic_merge_patch(current, patch)
                else:
                    patched = merge_patch(current, patch)
            except PatchError as exc:
                raise ApiError(422, "Invalid", f"the patch could not be applied: {exc}") from exc
            if not isinstance(patched, dict):
                raise bad_request("the patch must leave a JSON object")
            if sub == "scale":
                return await self._update_scale(call, patched)
            patched_meta = (
                patched.get("metadata") if isinstance(patched.get("metadata"), dict) else {}
            )
            wanted_rv = (patched_meta or {}).get("resourceVersion")
            if (
                isinstance(patch, dict)
                and isinstance(patch.get("metadata"), dict)
                and "resourceVersion" in patch["metadata"]
            ):
                precondition = str(wanted_rv)
            else:
                precondition = None
                if isinstance(patched_meta, dict):
                    patched_meta["resourceVersion"] = old.get("metadata", {}).get("resourceVersion")
            decoded = self._decode(call, patched)
            try:
                return await self._replace(call, decoded.model, sub)
            except ApiError as exc:
                if exc.reason == "Conflict" and precondition is None:
                    continue  # someone wrote in between; patch the newer object
                raise
        raise conflict(info, call.target.name, "too many concurrent writers; try again")

    # ---- scale -----------------------------------------------------------------------------------

    @staticmethod
    def _scale_of(info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata", {})
        spec = obj.get("spec", {})
        status = obj.get("status") or {}
        selector = ""
        if spec.get("selector") is not None:
            from kumo.model.base import LabelSelector

            try:
                selector = str(from_label_selector(LabelSelector.model_validate(spec["selector"])))
            except (ValidationError, SelectorError):
                selector = ""
        scale = Scale(
            metadata={  # type: ignore[arg-type]
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            spec={"replicas": spec.get("replicas", 0)},  # type: ignore[arg-type]
            status={"replicas": status.get("replicas", 0), "selector": selector},  # type: ignore[arg-type]
        )
        return to_wire(scale)

    async def _update_scale(self, call: Call, raw: Any) -> Response:
        if not isinstance(raw, dict):
            raise bad_request("the body must be a Scale object")
        try:
            scale = Scale.model_validate(raw)
        except ValidationError as exc:
            raise invalid(
                "Scale", "autoscaling", call.target.name, admission.validation_causes(exc)
            ) from exc
        replicas = scale.spec.replicas
        if replicas is None or replicas < 0:
            raise invalid(
                "Scale",
                "autoscaling",
                call.target.name,
                [
                    (
                        "spec.replicas",
                        f"Invalid value: {replicas}: must be greater than or equal to 0",
                    )
                ],
            )
        info = call.info
        key = self._key(call)
        precondition = scale.metadata.resource_version
        for _ in range(20):
            old = await self._load(call)
            if precondition and precondition != old["metadata"].get("resourceVersion"):
                raise conflict(info, call.target.name)
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = replicas
            if new != old:
                _meta(new)["generation"] = int(old["metadata"].get("generation") or 1) + 1
            try:
                response = await self._commit_update(call, key, new, old, _rv(old))
            except ApiError as exc:
                if exc.reason == "Conflict" and not precondition:
                    continue
                raise
            stored = orjson.loads(bytes(response.body))
            return _json(self._scale_of(info, stored))
        raise conflict(info, call.target.name, "too many concurrent writers; try again")

    # ---- binding / eviction -------------------------------------------------------------------------

    async def bind(self, call: Call, raw: Any) -> Response:
        """Kubernetes' BindingREST: set ``spec.nodeName`` and PodScheduled=True in one write.
        404 for a missing pod; 409 for a pod already bound or being deleted, and when the
        Binding's ``metadata.uid`` / ``metadata.resourceVersion`` (preconditions) are not the
        pod's; the Binding's annotations are copied onto the pod."""
        try:
            binding = Binding.model_validate(raw)
        except ValidationError as exc:
            raise invalid(
                "Binding", "", call.target.name, admission.validation_causes(exc)
            ) from exc
        node = binding.target.name
        if not node:
            raise invalid("Binding", "", call.target.name, [("target.name", "Required value")])
        name = call.target.name
        if binding.metadata.name and binding.metadata.name != name:
            raise bad_request("name in URL does not match name in Binding object")
        uid = binding.metadata.uid
        version = binding.metadata.resource_version
        info = call.info
        key = self._key(call)
        for _ in range(20):
            entry = self.store.get_entry(key)
            if entry is None:
                raise not_found(info, name)
            # The stored object is shared and read-only: the new pod copies only what the
            # binding changes (spec, status, and metadata for annotations).
            old = entry.obj
            meta = old.get("metadata") or {}
            if uid and uid != meta.get("uid"):
                raise conflict(
                    info,
                    name,
                    f"Precondition failed: UID in precondition: {uid},"
                    f" UID in object meta: {meta.get('uid')}",
                )
            if version and version != meta.get("resourceVersion"):
                raise conflict(
                    info,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {version},"
                    f" ResourceVersion in object meta: {meta.get('resourceVersion')}",
                )
            spec = old.get("spec") or {}
            current = spec.get("nodeName")
            if current:
                raise conflict(info, name, f'pod {name} is already assigned to node "{current}"')
            if meta.get("deletionTimestamp"):
                raise conflict(info, name, "pod is being deleted, cannot be assigned to a host")
            status = old.get("status") or {}
            conditions = [
                c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"
            ]
            conditions.append(
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}
            )
            pod = {
                **old,
                "spec": {**spec, "nodeName": node},
                "status": {**status, "conditions": conditions},
            }
            if binding.metadata.annotations:
                pod["metadata"] = {
                    **meta,
                    "annotations": {
                        **(meta.get("annotations") or {}),
                        **binding.metadata.annotations,
                    },
                }
            expected = _rv(old)
            try:
                await self.store.update(key, pod, expected)
            except Conflict:
                continue  # a concurrent write: check again on the new version
            except NotFound as exc:
                raise not_found(info, name) from exc
            return _raw(_BINDING_DONE, 201)
        raise conflict(info, call.target.name, "too many concurrent writers; try again")

    # ---- delete ---------------------------------------------------------------------------------

    def _delete_options(self, call: Call) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if call.body.strip():
            raw = admission.decode_body(
                call.body, call.request.headers.get("content-type", "application/json")
            )
            if not isinstance(raw, dict):
                raise bad_request("DeleteOptions must be a JSON object")
            options.update(raw)
        grace = call.int_param("gracePeriodSeconds", None)
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        policy = call.param("propagationPolicy")
        if policy:
            options["propagationPolicy"] = policy
        if call.param("orphanDependents"):
            options["orphanDependents"] = call.flag("orphanDependents")
        return _checked_delete_options(options)

    async def delete(self, call: Call) -> Response:
        options = self._delete_options(call)
        return await self._delete_one(call, call.target.name, options)

    async def _delete_one(self, call: Call, name: str, options: dict[str, Any]) -> Response:
        info = call.info
        key = self._key(call, name)
        preconditions = options.get("preconditions") or {}
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        # Kubernetes answers 202 Accepted only to the legacy orphanDependents=false, and only
        # when the object stays (finalizers, graceful deletion); 200 otherwise.
        kept = 202 if options.get("orphanDependents") is False else 200
        for _ in range(20):
            old = await self.store.get(key)
            if old is None:
                raise not_found(info, name)
            meta = old.get("metadata", {})
            if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
                raise conflict(
                    info,
                    name,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {meta.get('uid')}",
                )
            if preconditions.get("resourceVersion") and str(
                preconditions["resourceVersion"]
            ) != meta.get("resourceVersion"):
                raise conflict(
                    info,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, ResourceVersion in object meta: {meta.get('resourceVersion')}",
                )
            await self._admit("DELETE", call, old, old)
            new = copy.deepcopy(old)
            new_meta = _meta(new)
            now = datetime.datetime.now(datetime.UTC)
            graceful, pending = _before_delete(
                info, old, new_meta, options.get("gracePeriodSeconds"), now
            )
            if pending:
                # A graceful deletion is under way and this request does not shorten it:
                # nothing changes, not even the finalizers (as in Kubernetes).
                return _json(old, kept)
            finalizers = _gc_finalizers(list(new_meta.get("finalizers") or []), policy)
            if finalizers:
                new_meta["finalizers"] = finalizers
            else:
                new_meta.pop("finalizers", None)
            namespace_pending = info.kind == "Namespace" and bool(
                (old.get("spec") or {}).get("finalizers")
            )
            if finalizers or namespace_pending or (graceful and _grace_left(new_meta)):
                if not graceful:
                    _mark_deleting(info, new_meta, now)
                if info.kind == "Namespace":
                    new.setdefault("status", {})["phase"] = "Terminating"
                if new == old:
                    return _json(old, kept)
                if call.dry_run:
                    return _json(new, 200)
                try:
                    stored = await self.store.update(key, new, _rv(old))
                except Conflict:
                    continue
                except NotFound as exc:
                    raise not_found(info, name) from exc
                return _json(stored, kept)
            if call.dry_run:
                return _json(old, 200)
            try:
                deleted = await self.store.delete(key, _rv(old))
            except Conflict:
                continue
            except NotFound as exc:
                raise not_found(info, name) from exc
            return _json(deleted, 200)
        raise conflict(info, name, "too many concurrent writers; try again")

    async def delete_collection(self, call: Call) -> Response:
        labels, fields = self._selectors(call)
        options = self._delete_options(call)
        result = await self.store.list(
            storage_prefix(call.info, call.target.namespace),
            predicate=self._predicate(labels, fields),
        )
        deleted: builtins.list[dict[str, Any]] = []
        for entry in result.items:
            obj_meta = entry.obj.get("metadata", {})
            sub_call = Call(
                call.request,
                Target(
                    call.target.group,
                    call.target.version,
                    call.info,
                    obj_meta.get("namespace", ""),
                    obj_meta.get("name", ""),
                ),
                call.user,
                b"",
            )
            try:
                response = await self._delete_one(sub_call, obj_meta.get("name", ""), options)
            except ApiError as exc:
                if exc.code == 404:
                    continue
                raise
            deleted.append(orjson.loads(bytes(response.body)))
        return _json(
            {
                "kind": f"{call.info.kind}List",
                "apiVersion": call.info.api_version,
                "metadata": {"resourceVersion": str(self.store.revision)},
                "items": deleted,
            }
        )

    # ---- eviction ----------------------------------------------------------------------------

    async def evict(self, call: Call, raw: Any) -> Response:
        if not isinstance(raw, dict):
            raise bad_request("the body must be an Eviction object")
        options = raw.get("deleteOptions") or {}
        if not isinstance(options, dict):
            raise bad_request("deleteOptions must be a JSON object")
        checked = _checked_delete_options(dict(options))
        pod = await self.store.get(self._key(call))
        if pod is None:
            raise not_found(call.info, call.target.name)
        await disruption.admit_eviction(self.store, pod, now_rfc3339())
        await self._delete_one(call, call.target.name, checked)
        return _json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            201,
        )


def _invalid_list_options(causes: builtins.list[tuple[str, str]]) -> ApiError:
    return invalid("ListOptions", "meta.k8s.io", "", causes)


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _watch_list_option(call: Call) -> bool | None:
    """``sendInitialEvents`` of a watch (None when not given), checked like Kubernetes'
    ListOptions validation: it requires ``resourceVersionMatch=NotOlderThan``, and a watch
    takes ``resourceVersionMatch`` only together with it (422 Invalid otherwise)."""
    query = call.request.query_params
    send: bool | None = None
    if "sendInitialEvents" in query:
        raw = query["sendInitialEvents"]
        if raw not in _TRUE + _FALSE:
            raise bad_request(f"sendInitialEvents: invalid boolean {raw[:40]!r}")
        send = raw in _TRUE
    match = query.get("resourceVersionMatch", "")
    causes: builtins.list[tuple[str, str]] = []
    if send is not None and match != "NotOlderThan":
        causes.append(
            (
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )
        )
    if match:
        if send is None:
            causes.append(
                (
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden for watch"
                    " unless sendInitialEvents is provided",
                )
            )
        if match != "NotOlderThan":
            causes.append(
                (
                    "resourceVersionMatch",
                    f'Unsupported value: "{match[:40]}": supported values: "NotOlderThan"',
                )
            )
        if query.get("continue"):
            causes.append(
                (
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden when continue is provided",
                )
            )
    if causes:
        raise _invalid_list_options(causes)
    return send


_INT64 = 2**63 - 1
_MAX_GRACE_SECONDS = 10 * 365 * 24 * 3600  # a deadline past this is "never" anyway
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _gc_finalizers(finalizers: builtins.list[str], policy: str | None) -> builtins.list[str]:
    """The finalizers after a DELETE with this propagation policy (Kubernetes'
    deletionFinalizersForGarbageCollection): a policy replaces whichever of ``orphan`` and
    ``foregroundDeletion`` the object holds (Background: neither), other finalizers stay; no
    policy keeps what the object holds (the default for every kind kumo serves is
    Background, which adds nothing)."""
    if policy is None:
        return finalizers
    kept = [f for f in finalizers if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if policy == "Orphan":
        kept.append(ORPHAN_FINALIZER)
    elif policy == "Foreground":
        kept.append(FOREGROUND_FINALIZER)
    if sorted(kept) == sorted(finalizers):
        return finalizers  # the same set: leave the order alone
    return kept


def _pod_grace_period(pod: dict[str, Any], requested: int | None) -> int:
    """Kubernetes' podStrategy.CheckGracefulDelete: the request's grace period, else the pod's
    terminationGracePeriodSeconds (30 by default); 0 for a pod not bound to a node or
    already finished; a negative period counts as 1 s."""
    spec = pod.get("spec") or {}
    if requested is not None:
        period = requested
    else:
        default = spec.get("terminationGracePeriodSeconds")
        period = 30 if default is None else int(default)
    phase = (pod.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        period = 0
    return 1 if period < 0 else period


def _deadline(start: datetime.datetime, seconds: int) -> str:
    return (start + datetime.timedelta(seconds=min(seconds, _MAX_GRACE_SECONDS))).strftime(
        _TIME_FORMAT
    )


def _before_delete(
    info: ResourceInfo,
    obj: dict[str, Any],
    meta: dict[str, Any],
    requested: int | None,
    now: datetime.datetime,
) -> tuple[bool, bool]:
    """Kubernetes' rest.BeforeDelete for the kind with graceful deletion (Pod); sets
    ``deletionTimestamp`` / ``deletionGracePeriodSeconds`` in ``meta``.

    Returns (graceful, pending): graceful when ``meta`` now carries this request's grace
    period; pending when a graceful deletion is under way that this request does not
    shorten (a second DELETE may shorten the grace period, never lengthen it)."""
    if info.kind != "Pod":
        return False, False
    if requested is not None and requested < 0:
        requested = 1
    current = meta.get("deletionGracePeriodSeconds")
    if meta.get("deletionTimestamp"):
        if not current:
            return False, False  # no grace left: delete now, or wait for finalizers only
        if requested is None or requested >= current:
            return False, True
        try:
            deadline = datetime.datetime.strptime(meta["deletionTimestamp"], _TIME_FORMAT)
            started = deadline.replace(tzinfo=datetime.UTC) - datetime.timedelta(
                seconds=min(int(current), _MAX_GRACE_SECONDS)
            )
        except (TypeError, ValueError):
            started = now
        meta["deletionTimestamp"] = _deadline(started, requested)
        meta["deletionGracePeriodSeconds"] = requested
        return True, False
    period = _pod_grace_period(obj, requested)
    meta["deletionTimestamp"] = _deadline(now, period)
    meta["deletionGracePeriodSeconds"] = period
    return True, False


def _grace_left(meta: dict[str, Any]) -> bool:
    return bool(meta.get("deletionGracePeriodSeconds"))


def _mark_deleting(info: ResourceInfo, meta: dict[str, Any], now: datetime.datetime) -> None:
    """An object that stays for its finalizers: deleted as of now, no grace period left
    (Kubernetes' markAsDeleting; a Namespace only gets its deletionTimestamp)."""
    stamp = now.strftime(_TIME_FORMAT)
    if not meta.get("deletionTimestamp") or meta["deletionTimestamp"] > stamp:
        meta["deletionTimestamp"] = stamp
    if info.kind != "Namespace":
        meta["deletionGracePeriodSeconds"] = 0


def _checked_delete_options(options: dict[str, Any]) -> dict[str, Any]:
    """DeleteOptions with the types Kubernetes requires; 400 naming the field otherwise."""
    if options.get("propagationPolicy") not in (None, "Orphan", "Background", "Foreground"):
        raise bad_request(
            f'propagationPolicy: Unsupported value: "{options["propagationPolicy"]}": supported values: "Foreground", "Background", "Orphan"'
        )
    if options.get("propagationPolicy") is not None and options.get("orphanDependents") is not None:
        raise invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            [
                (
                    "propagationPolicy",
                    f'Invalid value: "{options["propagationPolicy"]}":'
                    " orphanDependents and deletionPropagation cannot be both set",
                )
            ],
        )
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (
        not isinstance(grace, int) or isinstance(grace, bool) or not -_INT64 <= grace <= _INT64
    ):
        raise bad_request("gracePeriodSeconds: must be an integer")
    orphan = options.get("orphanDependents")
    if orphan is not None and not isinstance(orphan, bool):
        raise bad_request("orphanDependents: must be a boolean")
    preconditions = options.get("preconditions")
    if preconditions is not None:
        if not isinstance(preconditions, dict):
            raise bad_request("preconditions: must be an object")
        for name in ("uid", "resourceVersion"):
            value = preconditions.get(name)
            if value is not None and not isinstance(value, str):
                raise bad_request(f"preconditions.{name}: must be a string")
    return options


def _keep_allocated_cluster_ips(new: dict[str, Any], old: dict[str, Any]) -> None:
    """A replaced Service that leaves out its cluster IP keeps the one it has (Kubernetes
    does the same), unless it becomes an ExternalName service."""
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if "ExternalName" in (new_spec.get("type"), old_spec.get("type")):
        return
    for field_name in ("clusterIP", "clusterIPs"):
        if not new_spec.get(field_name) and old_spec.get(field_name):
            new_spec[field_name] = copy.deepcopy(old_spec[field_name])
    new["spec"] = new_spec


def read_limit(request: Request, limit: int) -> int | None:
    length = request.headers.get("content-length")
    if length is None:
        return None
    try:
        value = int(length)
    except ValueError as exc:
        raise bad_request("Content-Length is not a number") from exc
    if value > limit:
        raise too_large(limit)
    return value


async def read_body(request: Request, limit: int) -> bytes:
    read_limit(request, limit)
    chunks: builtins.list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def info_for_object(obj: dict[str, Any]) -> ResourceInfo | None:
    return by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))


__all__ = [
    "Call",
    "ResourceAPI",
    "Settings",
    "StoreError",
    "read_body",
    "storage_key",
    "storage_prefix",
]
