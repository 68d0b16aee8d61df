"""The pods/log and pods/exec subresources: the API server checks the request, finds the
pod's node and calls that node's agent, then streams the answer back.

- ``GET /api/v1/namespaces/{ns}/pods/{name}/log`` (authorized as ``get pods/log``) with
  Kubernetes' PodLogOptions parameters (``container``, ``follow``, ``previous``,
  ``tailLines``, ``sinceSeconds`` / ``sinceTime``, ``timestamps``, ``limitBytes``):
  the container's output as a chunked ``text/plain`` stream.
- ``GET /api/v1/namespaces/{ns}/pods/{name}/exec`` upgraded to a WebSocket (authorized as
  ``create pods/exec``) with ``command`` (repeated), ``container``, ``stdin``,
  ``stdout``, ``stderr``, ``tty``, speaking Kubernetes' ``v5.channel.k8s.io`` (or
  ``v4.channel.k8s.io``) channel protocol, relayed message by message to the agent (see
  ``kumo.node.server`` for the channels). A plain HTTP request to pods/exec gets 400
  "Upgrade request required", as in Kubernetes.

Errors are ``kind: Status`` bodies — for exec, as the HTTP answer to the WebSocket
handshake: 404 for a missing pod, 400 for a container that is not in the pod, for a pod
that has no node yet, and for an agent-side "not running / not started yet"; 503 when
the node's agent cannot be reached.

The API server authenticates to agents with a client certificate from the cluster CA,
``<data-dir>/pki/apiserver-kubelet-client.crt`` (common name ``CLIENT_CERT_NAME``, made
on first use); agents accept nothing else. Like Kubernetes by default, it does not
verify the agent's serving certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from kumo.auth import pki
from kumo.auth.authorizer import Attributes
from kumo.model.core import Node, Pod
from kumo.model.registry import for_model
from kumo.platform.api.errors import ApiError, bad_request, invalid, method_not_allowed, not_found
from kumo.platform.api.resources import Call, storage_key

__all__ = [
    "CHANNEL_PROTOCOLS",
    "CLIENT_CERT_NAME",
    "DEFAULT_CONTAINER_ANNOTATION",
    "NodeProxy",
    "choose_container",
    "exec_params",
    "exec_websocket",
    "install",
    "log_params",
    "node_endpoint",
    "serve_http",
]

log = logging.getLogger(__name__)

POD = for_model(Pod)
NODE = for_model(Node)

#: The common name (and file name in ``<data-dir>/pki``) of the API server's client
#: certificate towards node agents; ``kumo.node.server`` accepts only this name.
CLIENT_CERT_NAME = "apiserver-kubelet-client"
#: The WebSocket subprotocols of exec, preferred first.
CHANNEL_PROTOCOLS: tuple[str, ...] = ("v5.channel.k8s.io", "v4.channel.k8s.io")
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
_ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")
_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


# --------------------------------------------------------------------------- credentials


class NodeProxy:
    """The API server's credentials and connection settings towards node agents."""

    def __init__(self, pki_dir: Path, *, connect_timeout: float = 10.0) -> None:
        self.pki_dir = pki_dir
        self.connect_timeout = connect_timeout
        self._context: ssl.SSLContext | None = None
        self._lock = asyncio.Lock()

    async def ssl_context(self) -> ssl.SSLContext:
        """TLS for calls to agents: presents the kubelet-client certificate (issued from
        the cluster CA on first use); does not verify the agent's certificate."""
        async with self._lock:
            if self._context is None:
                self._context = await asyncio.to_thread(self._build_context)
            return self._context

    def _build_context(self) -> ssl.SSLContext:
        cert, key = pki.issue_certificate(self.pki_dir, CLIENT_CERT_NAME, [], client=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(cert, key)
        return context


def install(app: Starlette, pki_dir: Path) -> NodeProxy:
    """Give the app the credentials pods/log and pods/exec need (called by ``ApiServer``)."""
    proxy = NodeProxy(pki_dir)
    app.state.node_proxy = proxy
    return proxy


def _proxy_of(app: Any) -> NodeProxy:
    proxy = getattr(app.state, "node_proxy", None)
    if not isinstance(proxy, NodeProxy):
        raise unavailable("this API server has no credentials for node agents")
    return proxy


# --------------------------------------------------------------------------- pure checks


def choose_container(pod: Mapping[str, Any], requested: str | None) -> str:
    """The container a log / exec request is about: ``requested`` if the pod has it, else
    the pod's default (annotation ``kubectl.kubernetes.io/default-container``, or its only
    container). Raises 400 like Kubernetes."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = str(meta.get("name", ""))
    containers = [str(c.get("name")) for c in spec.get("containers") or []]
    init_containers = [str(c.get("name")) for c in spec.get("initContainers") or []]
    if requested:
        if requested not in containers and requested not in init_containers:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    default = (meta.get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if default and default in containers:
        return str(default)
    if len(containers) == 1:
        return containers[0]
    message = (
        f"a container name must be specified for pod {name}, "
        f"choose one of: [{' '.join(containers)}]"
    )
    if init_containers:
        message += f" or one of the init containers: [{' '.join(init_containers)}]"
    raise bad_request(message)


def node_endpoint(node: Mapping[str, Any]) -> tuple[str, int]:
    """The address and port of a node's agent (``status.addresses``, preferring
    InternalIP; ``status.daemonEndpoints.kubeletEndpoint.Port``). 503 when missing."""
    name = str((node.get("metadata") or {}).get("name", ""))
    status = node.get("status") or {}
    addresses = {
        str(a.get("type")): str(a.get("address"))
        for a in reversed(status.get("addresses") or [])
        if isinstance(a, dict) and a.get("address")
    }
    address = next((addresses[kind] for kind in _ADDRESS_PREFERENCE if kind in addresses), None)
    endpoint = (status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    port = endpoint.get("Port")
    if not address:
        raise unavailable(f'node "{name}" has no address: its agent has not registered it')
    if not isinstance(port, int) or not 0 < port < 65536:
        raise unavailable(f'node "{name}" does not publish the port of its agent')
    return address, port


def _bool(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request(f"{name}: must be true or false, got {value[:40]!r}")


def _int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name, "")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name}: must be an integer, got {raw[:40]!r}") from None


def log_params(params: Mapping[str, str], pod_name: str) -> dict[str, str]:
    """Kubernetes' PodLogOptions from a query string, checked (400 for what does not
    parse, 422 for values out of range) and normalized for the agent."""
    out = {
        name: "true"
        for name in ("follow", "previous", "timestamps")
        if _bool(params, name)  # evaluated for every name: a bad value is a 400
    }
    problems: list[tuple[str, str]] = []
    minimums = {"tailLines": 0, "sinceSeconds": 1, "limitBytes": 1}
    for name, minimum in minimums.items():
        value = _int(params, name)
        if value is None:
            continue
        if value < minimum:
            problems.append(
                (name, f"Invalid value: {value}: must be greater than or equal to {minimum}")
            )
        out[name] = str(value)
    since_time = params.get("sinceTime", "")
    if since_time:
        try:
            parsed = datetime.datetime.fromisoformat(since_time.strip())
        except ValueError:
            raise bad_request(f"sinceTime: not an RFC 3339 time: {since_time[:40]!r}") from None
        if parsed.tzinfo is None:
            raise bad_request(f"sinceTime: needs a time zone (e.g. Z): {since_time[:40]!r}")
        out["sinceTime"] = parsed.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
        if "sinceSeconds" in out:
            problems.append(("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    if problems:
        raise invalid("PodLogOptions", "", pod_name, problems)
    return out


@dataclass(frozen=True, slots=True)
class ExecRequest:
    command: tuple[str, ...]
    container: str | None
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def query(self, container: str, pod_uid: str) -> str:
        pairs: list[tuple[str, str]] = [("command", part) for part in self.command]
        for name in ("stdin", "stdout", "stderr", "tty"):
            pairs.append((name, "true" if getattr(self, name) else "false"))
        pairs.append(("podUID", pod_uid))
        return urlencode(pairs)


def exec_params(params: Sequence[tuple[str, str]]) -> ExecRequest:
    """An exec request from its query parameters (``command`` repeated); 400 when there
    is no command or no stream at all."""
    single = dict(params)
    command = tuple(value for key, value in params if key == "command")
    if not command:
        raise bad_request("you must specify at least one command for the container")
    request = ExecRequest(
        command=command,
        container=single.get("container") or None,
        stdin=_bool(single, "stdin"),
        stdout=_bool(single, "stdout"),
        stderr=_bool(single, "stderr"),
        tty=_bool(single, "tty"),
    )
    if not (request.stdin or request.stdout or request.stderr):
        raise bad_request("you must specify at least one of stdin, stdout, stderr")
    return request


def _from_agent(code: int, body: bytes, node: str) -> ApiError:
    """An agent's error answer as the API server's own."""
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        status = None
    if not isinstance(status, dict):
        text = body.decode(errors="replace").strip()[:300]
        status = {"message": text or f"HTTP {code}", "reason": ""}
    message = str(status.get("message") or f"HTTP {code}")
    if code in (401, 403):
        return unavailable(f'the agent of node "{node}" refused the API server: {message}')
    if 400 <= code < 500:
        return ApiError(code, str(status.get("reason") or "BadRequest"), message)
    return ApiError(
        500 if code < 500 else code, str(status.get("reason") or "InternalError"), message
    )


# --------------------------------------------------------------------------- lookups


@dataclass(frozen=True, slots=True)
class _Located:
    namespace: str
    name: str
    pod: dict[str, Any]
    uid: str
    container: str
    node: str
    url: str  # https://address:port


def _locate(state: Any, namespace: str, name: str, requested: str | None) -> _Located:
    entry = state.store.get_entry(storage_key(POD, namespace, name))
    if entry is None:
        raise not_found(POD, name)
    pod: dict[str, Any] = entry.obj
    container = choose_container(pod, requested)
    node_name = str((pod.get("spec") or {}).get("nodeName") or "")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    node_entry = state.store.get_entry(storage_key(NODE, "", node_name))
    if node_entry is None:
        raise not_found(NODE, node_name)
    address, port = node_endpoint(node_entry.obj)
    host = f"[{address}]" if ":" in address else address
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    return _Located(namespace, name, pod, uid, container, node_name, f"https://{host}:{port}")


def _agent_path(kind: str, namespace: str, name: str, container: str) -> str:
    return "/".join(["", kind, *(quote(part, safe="") for part in (namespace, name, container))])


# --------------------------------------------------------------------------- pods/log


async def serve_http(call: Call) -> Response:
    """pods/log and plain-HTTP pods/exec requests (the resource route has already
    authenticated and authorized them)."""
    sub = call.target.subresource
    method = call.request.method
    if sub == "exec":
        raise bad_request("Upgrade request required")
    if method not in ("GET", "HEAD"):
        raise method_not_allowed(method, "pods/log")
    return await _logs(call)


async def _logs(call: Call) -> Response:
    request = call.request
    proxy = _proxy_of(request.app)
    state = request.app.state.kumo
    target = call.target
    params = dict(request.query_params)
    query = log_params(params, target.name)
    located = _locate(state, target.namespace, target.name, params.get("container") or None)
    query["podUID"] = located.uid
    context = await proxy.ssl_context()
    client = httpx.AsyncClient(
        verify=context,
        trust_env=False,
        timeout=httpx.Timeout(proxy.connect_timeout, read=None),
    )
    url = located.url + _agent_path(
        "containerLogs", target.namespace, target.name, located.container
    )
    try:
        upstream = await client.send(client.build_request("GET", url, params=query), stream=True)
        if upstream.status_code != 200:
            try:
                body = await upstream.aread()
            finally:
                await upstream.aclose()
            raise _from_agent(upstream.status_code, body, located.node)
    except httpx.HTTPError as err:
        await client.aclose()
        raise unavailable(
            f'cannot reach the agent of node "{located.node}" at {located.url}: {err}'
        ) from None
    except ApiError:
        await client.aclose()
        raise

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as err:
            log.info("log stream from node %s ended early: %s", located.node, err)
        finally:
            await upstream.aclose()
            await client.aclose()

    return StreamingResponse(relay(), media_type="text/plain; charset=utf-8")


# --------------------------------------------------------------------------- pods/exec


def _subprotocol(offered: Sequence[str]) -> str:
    for protocol in CHANNEL_PROTOCOLS:
        if protocol in offered:
            return protocol
    raise bad_request(
        "exec needs a channel subprotocol (Sec-WebSocket-Protocol): "
        + " or ".join(CHANNEL_PROTOCOLS)
    )


async def _open_upstream(
    proxy: NodeProxy, located: _Located, request: ExecRequest, protocol: str
) -> ClientConnection:
    path = _agent_path("exec", located.namespace, located.name, located.container)
    url = (
        "wss"
        + located.url[len("https") :]
        + path
        + "?"
        + request.query(located.container, located.uid)
    )
    try:
        return await connect(
            url,
            ssl=await proxy.ssl_context(),
            subprotocols=[Subprotocol(protocol)],
            open_timeout=proxy.connect_timeout,
            compression=None,
            max_size=None,
            proxy=None,
            user_agent_header="kumo-apiserver",
        )
    except InvalidStatus as err:
        raise _from_agent(
            err.response.status_code, bytes(err.response.body or b""), located.node
        ) from None
    except (OSError, TimeoutError, InvalidHandshake) as err:
        raise unavailable(
            f'cannot reach the agent of node "{located.node}" at {located.url}: {err}'
        ) from None


async def exec_websocket(websocket: WebSocket) -> None:
    """The WebSocket route of pods/exec."""
    state = websocket.app.state.kumo
    namespace = str(websocket.path_params["namespace"])
    name = str(websocket.path_params["name"])
    code = 101
    try:
        try:
            user = await state.authenticate(websocket)
            await state.authorize(
                Attributes(
                    user=user,
                    verb="create",
                    resource="pods",
                    subresource="exec",
                    namespace=namespace,
                    name=name,
                ),
                POD,
            )
            proxy = _proxy_of(websocket.app)
            request = exec_params(websocket.query_params.multi_items())
            protocol = _subprotocol(websocket.scope.get("subprotocols") or [])
            located = _locate(state, namespace, name, request.container)
            upstream = await _open_upstream(proxy, located, request, protocol)
        except ApiError as exc:
            code = exc.code
            await websocket.send_denial_response(exc.response())
            return
        except Exception:
            log.exception("pods/exec: unexpected error opening %s/%s", namespace, name)
            code = 500
            failure = ApiError(500, "InternalError", "Internal error occurred: see the log")
            await websocket.send_denial_response(failure.response())
            return
        try:
            await websocket.accept(subprotocol=protocol)
            await _relay(websocket, upstream)
        finally:
            await upstream.close()
    finally:
        state.metrics.requests.labels("create", "pods/exec", str(code)).inc()


async def _relay(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Messages both ways until one side closes; the agent's close ends the client's."""

    async def from_agent() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                await websocket.send_bytes(
                    message if isinstance(message, bytes) else message.encode()
                )

    async def from_client() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = str(message.get("text") or "").encode()
            try:
                await upstream.send(data)
            except ConnectionClosed:
                return

    agent = asyncio.create_task(from_agent(), name="exec-from-agent")
    client = asyncio.create_task(from_client(), name="exec-from-client")
    done: set[asyncio.Task[None]] = set()
    try:
        done, _ = await asyncio.wait({agent, client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (agent, client):
            task.cancel()
        for task in (agent, client):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if agent in done:  # the agent sent the status and closed: so does the client's socket
        with contextlib.suppress(Exception):
            await websocket.close(1000)
