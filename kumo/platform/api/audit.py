"""The audit log: one JSON line per write request and per denial (401 and 403).

Each record says who (``user``, ``groups``, and ``impersonatedUser`` when someone acted as
another user), what (``verb``, ``apiGroup``, ``resource``, ``subresource``, ``namespace``,
``name``, or ``path`` for non-resource requests), the answer (``code``), and from where
(``sourceIP``, ``userAgent``, ``requestURI``), at ``time`` (RFC 3339, microseconds, UTC).
Request and response bodies are never recorded, so neither are Secret values.

``AuditMiddleware`` wraps the whole app. Handlers tell it what they learned through
``note_user`` / ``note_attributes`` (a context variable set per request). A record is
written before the response starts, so a client that saw an acknowledged write can rely on
its record being in the file (written with one ``write`` call, not buffered in the process;
it survives a crash of the server process). The file is rotated to ``<path>.1`` past
``max_bytes``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumo.auth.authorizer import Attributes
from kumo.auth.user import UserInfo
from kumo.platform.api import paths

log = logging.getLogger(__name__)

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_MAX_BYTES = 100 * 1024 * 1024


@dataclass(slots=True)
class AuditEvent:
    user: UserInfo | None = None
    impersonator: UserInfo | None = None  # the authenticated user, when impersonating
    attributes: Attributes | None = None


_current: contextvars.ContextVar[AuditEvent | None] = contextvars.ContextVar(
    "kumo_audit_event", default=None
)


def note_user(user: UserInfo, impersonator: UserInfo | None = None) -> None:
    event = _current.get()
    if event is not None:
        event.user = user
        event.impersonator = impersonator


def note_attributes(attributes: Attributes) -> None:
    """The request's own authorization (the first one noted wins; later checks, such as
    escalation or impersonation, do not replace it)."""
    event = _current.get()
    if event is not None and event.attributes is None:
        event.attributes = attributes


def note_created(namespace: str, name: str) -> None:
    """The name (and namespace) a create gave the new object, for the record."""
    event = _current.get()
    if event is not None and event.attributes is not None and name:
        event.attributes = dataclasses.replace(
            event.attributes, namespace=namespace or event.attributes.namespace, name=name
        )


@dataclass(slots=True)
class AuditLog:
    path: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    records: int = 0
    _fd: int = -1
    _size: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def write(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            if self._fd < 0:
                self.open()
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            try:
                os.write(self._fd, line)
            except OSError as exc:
                log.error("cannot write the audit log %s: %s", self.path, exc)
                return
            self._size += len(line)
            self.records += 1

    def _rotate(self) -> None:
        os.close(self._fd)
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self.open()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value).decode("latin-1")[:512]
    return ""


def _guess(scope: Scope, method: str) -> Attributes:
    """Attributes of a request no handler described (refused before authorization)."""
    anonymous = UserInfo("system:anonymous", groups=("system:unauthenticated",))
    path = str(scope.get("path", ""))
    verb = method.lower()
    try:
        target = paths.parse(path)
    except paths.PathError:
        return Attributes(user=anonymous, verb=verb, path=path)
    if target.info is None:
        return Attributes(user=anonymous, verb=verb, path=path)
    return Attributes(
        user=anonymous,
        verb=verb,
        api_group=target.group,
        resource=target.info.plural,
        subresource=target.subresource,
        namespace=target.namespace,
        name=target.name,
    )


def record_for(scope: Scope, event: AuditEvent, code: int) -> dict[str, Any] | None:
    """The audit record of a finished request, or None when it is not audited."""
    method = str(scope.get("method") or "GET")
    attributes = event.attributes
    if code in (401, 403):
        pass
    elif attributes is not None:
        if attributes.verb not in WRITE_VERBS:
            return None
    elif method not in WRITE_METHODS:
        return None
    if attributes is None:
        attributes = _guess(scope, method)
    user = event.user
    client = scope.get("client")
    query = scope.get("query_string") or b""
    uri = str(scope.get("path", "")) + ("?" + bytes(query).decode("latin-1") if query else "")
    record: dict[str, Any] = {
        "time": _now(),
        "user": user.name if user is not None else "system:anonymous",
        "groups": list(user.groups) if user is not None else ["system:unauthenticated"],
        "verb": attributes.verb,
        "apiGroup": attributes.api_group,
        "resource": attributes.resource,
        "subresource": attributes.subresource,
        "namespace": attributes.namespace,
        "name": attributes.name,
        "code": code,
        "sourceIP": client[0] if client else "",
        "userAgent": _header(scope, b"user-agent"),
        "requestURI": uri[:2048],
    }
    if not attributes.is_resource_request:
        record["path"] = attributes.path
    if event.impersonator is not None and user is not None:
        record["user"] = event.impersonator.name
        record["groups"] = list(event.impersonator.groups)
        record["impersonatedUser"] = {"username": user.name, "groups": list(user.groups)}
    return record


class AuditMiddleware:
    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        event = AuditEvent()
        token = _current.set(event)
        written = False

        def write(code: int) -> None:
            nonlocal written
            if written:
                return
            written = True
            try:
                record = record_for(scope, event, code)
                if record is not None:
                    self.log.write(record)
            except Exception:
                log.exception("audit: cannot record a request")

        async def audited_send(message: Message) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                write(int(message.get("status", 200)))
            elif kind == "websocket.accept":
                write(101)
            elif kind == "websocket.close" and not written:
                write(403)
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        finally:
            _current.reset(token)


def install(app: Any, audit_log: AuditLog) -> None:
    """Wrap ``app`` (a Starlette app that has not served yet) with the audit middleware."""
    app.add_middleware(AuditMiddleware, log=audit_log)
