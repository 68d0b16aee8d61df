"""The node agent's HTTPS server (the kubelet's port): container logs and exec, for the
API server only.

Endpoints (kubelet-shaped paths, one request per connection, errors as Kubernetes
``kind: Status`` JSON bodies):

- ``GET /containerLogs/{namespace}/{pod}/{container}`` with ``follow``, ``previous``,
  ``tailLines``, ``sinceSeconds`` / ``sinceTime`` (RFC 3339), ``timestamps``,
  ``limitBytes`` and ``podUID``: the container's output (stdout and stderr interleaved,
  one line per line) as a chunked ``text/plain`` stream. ``previous`` reads the attempt
  before the latest one (the container before its last restart); ``follow`` keeps
  streaming until the container exits or the caller hangs up.
- ``GET /exec/{namespace}/{pod}/{container}?command=...&command=...`` upgraded to a
  WebSocket speaking Kubernetes' channel protocol (``CHANNEL_PROTOCOLS``): every binary
  message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 the final status
  (a ``Status`` JSON carrying the exit code, see ``exit_status``), 4 terminal resize
  (``{"Width": w, "Height": h}``) and, with v5, 255 followed by a channel number to close
  that channel (``[255, 0]``: end of stdin). Parameters ``stdin``, ``stdout``,
  ``stderr``, ``tty``, ``podUID``. After the status the server closes the WebSocket.
- ``POST /run/{namespace}/{pod}/{container}?command=...[&timeout=SECONDS]``: a
  non-interactive exec; the request body is the process's stdin. Answers
  ``{"exitCode": N, "stdout": base64, "stderr": base64, "truncated": bool}``.
- ``GET /stats/summary``: the node's and its pods' resource usage in the shape of the
  kubelet's Summary API (see ``kumo.node.stats``), when the server has a collector.
- ``GET /healthz``: ``ok``.

Authentication is mutual TLS: the server asks every client for a certificate and
verifies it against the cluster CA (a certificate from any other CA fails the TLS
handshake); a request without a certificate gets 401, one whose certificate's common
name is not in ``allowed_clients`` (by default only the API server's kubelet client,
``APISERVER_CLIENT_NAME``) gets 403. The serving certificate is self-signed unless one
is given: like Kubernetes by default, the API server does not verify it.

Containers are found through the runtime's labels (pod namespace, name and uid,
container name, attempt; see ``kumo.node.lookup``), so the server needs nothing but the
runtime.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from kumo.node.lookup import ContainerLookupError, find_container
from kumo.node.runtime import (
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
    ContainerSummary,
    ExecSession,
    ExecTimeout,
    LogLine,
    LogStream,
    NotFound,
)
from kumo.node.stats import StatsCollector

__all__ = [
    "APISERVER_CLIENT_NAME",
    "CHANNEL_PROTOCOLS",
    "CLOSE",
    "ERROR",
    "RESIZE",
    "STDERR",
    "STDIN",
    "STDOUT",
    "LogOptions",
    "LogOptionsError",
    "NodeServer",
    "agent_service",
    "exit_code_of",
    "exit_status",
    "format_log_line",
    "serve_node_api",
]

log = logging.getLogger(__name__)

#: The common name of the client certificate the API server uses towards node agents
#: (``<data-dir>/pki/apiserver-kubelet-client.crt``).
APISERVER_CLIENT_NAME = "apiserver-kubelet-client"

# Kubernetes' streaming channels.
STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE = 255  # v5 only: [255, channel] closes that channel

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: The WebSocket subprotocols exec speaks, preferred first.
CHANNEL_PROTOCOLS: tuple[str, ...] = (V5, V4)

_HEAD_TIMEOUT = 10.0
_HEAD_LIMIT = 64 * 1024
_MAX_RUN_STDIN = 8 * 1024 * 1024
_MAX_RUN_OUTPUT = 4 * 1024 * 1024
_CLOSE_TIMEOUT = 2.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    500: "Internal Server Error",
    504: "Gateway Timeout",
}
_STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "Timeout",
    411: "BadRequest",
    413: "RequestEntityTooLarge",
    500: "InternalError",
    504: "Timeout",
}


# --------------------------------------------------------------------------- protocol helpers


def status_body(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    """A Kubernetes ``Status`` failure body."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _STATUS_REASONS.get(code, "InternalError"),
        "code": code,
    }


def exit_status(exit_code: int, command: Sequence[str]) -> dict[str, Any]:
    """The status an exec ends with (channel 3), shaped as Kubernetes sends it."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            f"command terminated with non-zero exit code: error executing command "
            f"{list(command)}, exit code {exit_code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def exit_code_of(status: dict[str, Any]) -> int | None:
    """The exit code an exec's final status reports: 0 for Success, the ExitCode cause
    for NonZeroExitCode; None when the exec failed without one (the status's message
    says why)."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") != "NonZeroExitCode":
        return None
    for cause in (status.get("details") or {}).get("causes") or []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message", ""))
    return None


def format_log_line(line: LogLine, *, timestamps: bool) -> bytes:
    """One log line as the logs endpoint sends it (RFC 3339 timestamp with nanoseconds
    in UTC first when asked for)."""
    if not timestamps:
        return line.text.encode() + b"\n"
    stamp = line.timestamp.astimezone(datetime.UTC)
    text = f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond * 1000:09d}Z {line.text}\n"
    return text.encode()


class LogOptionsError(ValueError):
    """An invalid logs parameter; the message names it."""


_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


def _flag(query: dict[str, list[str]], name: str) -> bool:
    value = (query.get(name) or [""])[-1].lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise LogOptionsError(f"{name}: must be true or false, got {value[:40]!r}")


def _number(query: dict[str, list[str]], name: str, minimum: int) -> int | None:
    raw = (query.get(name) or [""])[-1]
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise LogOptionsError(f"{name}: must be an integer, got {raw[:40]!r}") from None
    if value < minimum:
        raise LogOptionsError(f"{name}: must be at least {minimum}, got {value}")
    return value


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time (``2024-05-01T10:00:00Z``, fractions and offsets allowed)."""
    try:
        value = datetime.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise LogOptionsError(f"sinceTime: not an RFC 3339 time: {text[:40]!r}") from None
    if value.tzinfo is None:
        raise LogOptionsError(f"sinceTime: needs a time zone (e.g. Z): {text[:40]!r}")
    return value


@dataclass(frozen=True, slots=True)
class LogOptions:
    """What a logs request asks for (Kubernetes' PodLogOptions minus the container)."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: datetime.datetime | None = None
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, query: dict[str, list[str]]) -> LogOptions:
        """Raises ``LogOptionsError`` for a malformed or contradictory parameter."""
        since_time_text = (query.get("sinceTime") or [""])[-1]
        options = cls(
            follow=_flag(query, "follow"),
            previous=_flag(query, "previous"),
            timestamps=_flag(query, "timestamps"),
            tail_lines=_number(query, "tailLines", 0),
            since_seconds=_number(query, "sinceSeconds", 1),
            since_time=parse_time(since_time_text) if since_time_text else None,
            limit_bytes=_number(query, "limitBytes", 1),
        )
        if options.since_seconds is not None and options.since_time is not None:
            raise LogOptionsError("at most one of sinceTime or sinceSeconds may be specified")
        return options

    def since(self, now: datetime.datetime | None = None) -> datetime.datetime | None:
        if self.since_time is not None:
            return self.since_time
        if self.since_seconds is not None:
            now = now or datetime.datetime.now(datetime.UTC)
            return now - datetime.timedelta(seconds=self.since_seconds)
        return None


# --------------------------------------------------------------------------- HTTP plumbing


class _HttpError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Target:
    """The container a request is about."""

    namespace: str
    pod: str
    container: str
    pod_uid: str | None


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    head: bytes

    @property
    def wants_websocket(self) -> bool:
        return self.headers.get("upgrade", "").lower() == "websocket"


def _parse_head(head: bytes) -> _Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400, "malformed request line")
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise _HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    split = urlsplit(target)
    query = parse_qs(split.query, keep_blank_values=True)
    return _Request(method, split.path, query, headers, head)


def _response_head(code: int, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(
    writer: asyncio.StreamWriter, code: int, body: bytes, content_type: str = "application/json"
) -> None:
    head = _response_head(
        code, [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    )
    writer.write(head + body)
    await writer.drain()


async def _send_status(writer: asyncio.StreamWriter, error: _HttpError) -> None:
    body = json.dumps(status_body(error.code, error.message, error.reason)).encode()
    await _send(writer, error.code, body)


def _peer_name(writer: asyncio.StreamWriter) -> str | None:
    """The common name of the verified client certificate; None without one."""
    cert = writer.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


async def _first_line(iterator: AsyncIterator[LogLine]) -> LogLine | None:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return None


# --------------------------------------------------------------------------- WebSocket


class _ChannelSocket:
    """A server-side WebSocket over an accepted connection (websockets' sans-I/O
    protocol on asyncio streams): send binary messages, receive whole messages."""

    def __init__(
        self, protocol: ServerProtocol, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._protocol = protocol
        self._reader = reader
        self._writer = writer
        self._fragments: list[bytes] = []
        self._pending: list[bytes] = []
        self._eof = False
        self._finished = False

    @property
    def v5(self) -> bool:
        return self._protocol.subprotocol == V5

    async def _flush(self) -> None:
        for data in self._protocol.data_to_send():
            if data:
                self._writer.write(data)
            else:  # the close handshake is over: the server closes the connection
                self._finished = True
        with contextlib.suppress(OSError):  # the peer is gone: reading will tell
            await self._writer.drain()

    async def send(self, channel: int, data: bytes) -> None:
        if self._protocol.state is not State.OPEN:
            return
        self._protocol.send_binary(bytes([channel]) + data)
        await self._flush()

    async def _read_once(self) -> None:
        """Read what the peer sent, feed it to the protocol, collect whole data messages."""
        try:
            chunk = await self._reader.read(65536)
        except (ConnectionError, ssl.SSLError, OSError):
            chunk = b""
        if chunk:
            self._protocol.receive_data(chunk)
        else:
            self._protocol.receive_eof()
            self._eof = True
        for event in self._protocol.events_received():
            if isinstance(event, Frame) and event.opcode in (
                Opcode.TEXT,
                Opcode.BINARY,
                Opcode.CONT,
            ):
                self._fragments.append(bytes(event.data))
                if event.fin:
                    self._pending.append(b"".join(self._fragments))
                    self._fragments.clear()
        await self._flush()

    async def receive(self) -> bytes | None:
        """The next data message; None once the connection is closing or gone."""
        while not self._pending:
            if self._protocol.state is not State.OPEN or self._eof:
                return None
            await self._read_once()
        return self._pending.pop(0)

    async def close(self, code: int = 1000) -> None:
        """Send a close frame and wait (briefly) for the peer's."""
        if self._protocol.state is State.OPEN:
            self._protocol.send_close(code)
            await self._flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                while not (self._finished or self._eof or self._protocol.state is State.CLOSED):
                    await self._read_once()


# --------------------------------------------------------------------------- the server


def _self_signed(hosts: Sequence[str]) -> tuple[bytes, bytes]:
    """A self-signed serving certificate and its key (PEM)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kumo-node-{hosts[0]}")])
    now = datetime.datetime.now(datetime.UTC)
    san: list[x509.GeneralName] = []
    for host in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            san.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_ssl_context(
    ca_data: bytes,
    *,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
) -> ssl.SSLContext:
    """TLS for the node server: asks for a client certificate and verifies it against
    ``ca_data`` (PEM); serves ``cert_file`` or a fresh self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_OPTIONAL  # no certificate: a 401 rather than a TLS error
    context.load_verify_locations(cadata=ca_data.decode())
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
        return context
    cert_pem, key_pem = _self_signed(list(hosts) or ["localhost"])
    with tempfile.TemporaryDirectory(prefix="kumo-node-tls-") as directory:
        cert_path, key_path = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        cert_path.write_bytes(cert_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


class NodeServer:
    """The node's HTTPS server. ``async with NodeServer(...) as server`` (or ``start`` /
    ``close``); ``server.port`` is the bound port (pass port 0 for any free one).
    Closing it ends every open log stream and exec session."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        node_name: str,
        *,
        host: str = "0.0.0.0",
        port: int = 10250,
        ca_file: Path | None = None,
        ca_data: bytes | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        allowed_clients: Sequence[str] = (APISERVER_CLIENT_NAME,),
        stats: StatsCollector | None = None,
    ) -> None:
        if ca_data is None:
            if ca_file is None:
                raise ValueError("the node server needs the cluster CA (ca_file or ca_data)")
            ca_data = ca_file.read_bytes()
        self.runtime = runtime
        self.node_name = node_name
        self.host = host
        self._port = port
        self._ca_data = ca_data
        self._cert_file = cert_file
        self._key_file = key_file
        self.allowed_clients = frozenset(allowed_clients)
        self.stats = stats
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def open_connections(self) -> int:
        """Requests being served right now (log streams and exec sessions included)."""
        return len(self._connections)

    async def start(self) -> None:
        hosts = ["localhost", "127.0.0.1"]
        if self.host not in ("0.0.0.0", "::", "", *hosts):
            hosts.insert(0, self.host)
        context = await asyncio.to_thread(
            server_ssl_context,
            self._ca_data,
            cert_file=self._cert_file,
            key_file=self._key_file,
            hosts=hosts,
        )
        self._server = await asyncio.start_server(
            self._accept,
            self.host,
            self._port,
            ssl=context,
            ssl_handshake_timeout=_HEAD_TIMEOUT,
            limit=_HEAD_LIMIT,
        )
        log.info("node server for %s listening on %s:%d", self.node_name, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> NodeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_until(self, stop: asyncio.Event | None = None) -> None:
        """Start, serve until ``stop`` is set (or the task is cancelled), then close."""
        await self.start()
        try:
            if stop is None:
                await asyncio.Future()
            else:
                await stop.wait()
        finally:
            await self.close()

    # ---- connections ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        except Exception:
            log.exception("node server: unexpected error serving a request")
        finally:
            self._connections.discard(task)
            writer.close()
            # Python 3.11's start_server reports a handler task that ends cancelled as an
            # unhandled error: end quietly, even when cancelled while closing.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await writer.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _send_status(writer, _HttpError(400, "request head too large"))
            return
        except (asyncio.IncompleteReadError, TimeoutError):
            return
        try:
            request = _parse_head(head)
            self._authenticate(writer)
            await self._route(request, reader, writer)
        except _HttpError as error:
            await _send_status(writer, error)

    def _authenticate(self, writer: asyncio.StreamWriter) -> None:
        name = _peer_name(writer)
        if name is None:
            raise _HttpError(
                401, "Unauthorized: this port accepts only the API server's client certificate"
            )
        if name not in self.allowed_clients:
            raise _HttpError(403, f'Forbidden: client "{name}" may not use the node API')

    async def _route(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if parts == ["healthz"]:
            await _send(writer, 200, b"ok", "text/plain")
            return
        if parts == ["stats", "summary"] and self.stats is not None:
            if request.method != "GET":
                raise _HttpError(405, f"{request.method} is not allowed on /stats/summary")
            await _send(writer, 200, json.dumps(self.stats.summary()).encode(), "application/json")
            return
        if len(parts) != 4 or not all(parts) or parts[0] not in ("containerLogs", "exec", "run"):
            raise _HttpError(404, f"the node server has no such resource ({request.path})")
        endpoint, namespace, pod, container = parts
        expected = "POST" if endpoint == "run" else "GET"
        if request.method != expected:
            raise _HttpError(405, f"{request.method} is not allowed on /{endpoint}")
        pod_uid = (request.query.get("podUID") or [""])[-1] or None
        target = _Target(namespace, pod, container, pod_uid)
        if endpoint == "containerLogs":
            await self._logs(request, reader, writer, target)
        elif endpoint == "exec":
            await self._exec(request, reader, writer, target)
        else:
            await self._run(request, reader, writer, target)

    async def _find(
        self, target: _Target, *, previous: bool = False, running: bool = False
    ) -> ContainerSummary:
        try:
            found = await find_container(
                self.runtime,
                target.namespace,
                target.pod,
                target.container,
                previous=previous,
                pod_uid=target.pod_uid,
            )
        except ContainerLookupError as err:
            code = 404 if "has no containers" in err.message else 400
            raise _HttpError(code, err.message) from None
        except ContainerRuntimeError as err:
            raise _HttpError(500, f"the container runtime failed: {err.reason}") from None
        if running and found.state != ContainerState.RUNNING:
            raise _HttpError(
                400,
                f'container "{target.container}" in pod "{target.pod}" is not running'
                f" (it is {found.state})",
            )
        return found

    # ---- logs -------------------------------------------------------------------------

    async def _logs(
        self,
        request: _Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: _Target,
    ) -> None:
        try:
            options = LogOptions.from_query(request.query)
        except LogOptionsError as err:
            raise _HttpError(400, str(err)) from None
        found = await self._find(target, previous=options.previous)
        lines = self.runtime.logs(
            found.id,
            tail=options.tail_lines,
            since=options.since(),
            follow=options.follow,
        )
        # Wait a moment for the first line before answering, so that a runtime error
        # (the container just vanished) is still reported as a Status.
        iterator = aiter(lines)
        first = asyncio.create_task(_first_line(iterator))
        try:
            await asyncio.wait({first}, timeout=0.5)
            error = first.exception() if first.done() else None
            if isinstance(error, NotFound):
                raise _HttpError(404, f'container "{target.container}" is gone: {error.reason}')
            if isinstance(error, ContainerRuntimeError):
                raise _HttpError(500, f"reading logs failed: {error.reason}")
            if error is not None:
                raise error
            head = _response_head(
                200,
                [("Content-Type", "text/plain; charset=utf-8"), ("Transfer-Encoding", "chunked")],
            )
            writer.write(head)
            await writer.drain()
            streamer = asyncio.create_task(
                self._stream_lines(writer, first, iterator, options), name="node-logs"
            )
            hangup = asyncio.create_task(reader.read(1), name="node-logs-hangup")
            try:
                await asyncio.wait({streamer, hangup}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (streamer, hangup):
                    task.cancel()
                for task in (streamer, hangup):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if streamer.done() and not streamer.cancelled() and streamer.exception() is None:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        finally:
            if not first.done():
                first.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await first
            close = getattr(iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    @staticmethod
    async def _stream_lines(
        writer: asyncio.StreamWriter,
        first: asyncio.Future[LogLine | None],
        iterator: AsyncIterator[LogLine],
        options: LogOptions,
    ) -> None:
        budget = options.limit_bytes

        async def lines() -> AsyncIterator[LogLine]:
            line = await first
            if line is None:
                return
            yield line
            async for line in iterator:
                yield line

        async for line in lines():
            data = format_log_line(line, timestamps=options.timestamps)
            if budget is not None:
                data = data[:budget]
                budget -= len(data)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            if budget is not None and budget <= 0:
                return

    # ---- exec -------------------------------------------------------------------------

    @staticmethod
    def _exec_params(request: _Request) -> tuple[list[str], bool, bool, bool, bool]:
        command = request.query.get("command") or []
        if not command:
            raise _HttpError(400, "you must specify at least one command for the container")
        try:
            flags = [_flag(request.query, name) for name in ("stdin", "stdout", "stderr", "tty")]
        except LogOptionsError as err:
            raise _HttpError(400, str(err)) from None
        stdin, stdout, stderr, tty = flags
        if not (stdin or stdout or stderr):
            raise _HttpError(400, "you must specify at least one of stdin, stdout, stderr")
        if tty and stderr:
            stderr = False  # a terminal merges stderr into stdout
        return command, stdin, stdout, stderr, tty

    async def _exec(
        self,
        request: _Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: _Target,
    ) -> None:
        if not request.wants_websocket:
            raise _HttpError(400, "Upgrade request required: exec is served over a WebSocket")
        command, stdin, stdout, stderr, tty = self._exec_params(request)
        protocol = ServerProtocol(
            subprotocols=[Subprotocol(p) for p in CHANNEL_PROTOCOLS], max_size=1 << 20
        )
        protocol.receive_data(request.head)
        events = protocol.events_received()
        if not events or not isinstance(events[0], WsRequest):
            raise _HttpError(400, "malformed WebSocket handshake")
        response = protocol.accept(events[0])
        if response.status_code != 101:
            body = response.body.decode(errors="replace").strip() if response.body else ""
            raise _HttpError(response.status_code, body or "WebSocket handshake failed")
        found = await self._find(target, running=True)
        try:
            session = await self.runtime.open_exec(found.id, command, tty=tty, stdin=stdin)
        except ContainerRuntimeError as err:
            raise _HttpError(
                400, f'cannot exec in container "{target.container}": {err.reason}'
            ) from None
        async with session:
            protocol.send_response(response)
            socket = _ChannelSocket(protocol, reader, writer)
            await socket._flush()
            await self._run_session(socket, session, command, stdout=stdout, stderr=stderr)

    @staticmethod
    async def _run_session(
        socket: _ChannelSocket,
        session: ExecSession,
        command: Sequence[str],
        *,
        stdout: bool,
        stderr: bool,
    ) -> None:
        async def forward_input() -> None:
            while True:
                message = await socket.receive()
                if message is None:
                    return
                if not message:
                    continue
                channel, data = message[0], message[1:]
                if channel == STDIN and data:
                    await session.write(data)
                elif channel == RESIZE:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        size = json.loads(data)
                        await session.resize(int(size["Height"]), int(size["Width"]))
                elif channel == CLOSE and socket.v5 and data[:1] == bytes([STDIN]):
                    await session.close_stdin()

        async def forward_output() -> int:
            async for stream, data in session.output():
                if stream == LogStream.STDERR:
                    if stderr:
                        await socket.send(STDERR, data)
                elif stdout:
                    await socket.send(STDOUT, data)
            return await session.wait()

        inputs = asyncio.create_task(forward_input(), name="node-exec-input")
        outputs = asyncio.create_task(forward_output(), name="node-exec-output")
        try:
            await asyncio.wait({inputs, outputs}, return_when=asyncio.FIRST_COMPLETED)
            if outputs.done():
                try:
                    status = exit_status(outputs.result(), command)
                except ContainerRuntimeError as err:
                    status = status_body(500, f"exec failed: {err.reason}")
                await socket.send(ERROR, json.dumps(status).encode())
            # else: the caller hung up; leaving the session closes the process's streams
        finally:
            inputs.cancel()
            outputs.cancel()
            for task in (inputs, outputs):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await socket.close()

    async def _run(
        self,
        request: _Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: _Target,
    ) -> None:
        command = request.query.get("command") or []
        if not command:
            raise _HttpError(400, "you must specify at least one command for the container")
        if "transfer-encoding" in request.headers:
            raise _HttpError(411, "send the stdin of /run with a Content-Length")
        try:
            length = int(request.headers.get("content-length", "0") or 0)
            timeout_text = (request.query.get("timeout") or [""])[-1]
            timeout = float(timeout_text) if timeout_text else None
        except ValueError:
            raise _HttpError(400, "Content-Length and timeout must be numbers") from None
        if length < 0 or length > _MAX_RUN_STDIN:
            raise _HttpError(413, f"stdin is limited to {_MAX_RUN_STDIN} bytes")
        if timeout is not None and timeout <= 0:
            raise _HttpError(400, "timeout must be positive")
        stdin = await reader.readexactly(length) if length else None
        found = await self._find(target, running=True)
        try:
            result = await self.runtime.exec(
                found.id, command, timeout=timeout, stdin=stdin, max_output=_MAX_RUN_OUTPUT
            )
        except ExecTimeout as err:
            raise _HttpError(504, err.reason) from None
        except ContainerRuntimeError as err:
            raise _HttpError(
                400, f'cannot exec in container "{target.container}": {err.reason}'
            ) from None
        body = {
            "exitCode": result.exit_code,
            "stdout": base64.b64encode(result.stdout).decode(),
            "stderr": base64.b64encode(result.stderr).decode(),
            "truncated": result.truncated,
        }
        await _send(writer, 200, json.dumps(body).encode())


# --------------------------------------------------------------------------- entry points


async def serve_node_api(
    runtime: ContainerRuntime,
    node_name: str,
    host: str,
    port: int,
    ca_file: Path | None = None,
    *,
    ca_data: bytes | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    stop: asyncio.Event | None = None,
    stats: StatsCollector | None = None,
) -> None:
    """Serve the node API on ``host:port`` until ``stop`` is set (or the task is
    cancelled). ``ca_file`` / ``ca_data``: the cluster CA the API server's client
    certificate must chain to (the agent's client config has it)."""
    server = NodeServer(
        runtime,
        node_name,
        host=host,
        port=port,
        ca_file=ca_file,
        ca_data=ca_data,
        cert_file=cert_file,
        key_file=key_file,
        stats=stats,
    )
    await server.serve_until(stop)


class _AgentLike(Protocol):
    @property
    def runtime(self) -> ContainerRuntime: ...

    @property
    def node_name(self) -> str: ...

    @property
    def stats(self) -> StatsCollector: ...


def agent_service(
    host: str,
    port: int,
    *,
    ca_file: Path | None = None,
    ca_data: bytes | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> Callable[[_AgentLike, asyncio.Event], Awaitable[None]]:
    """The node server as an agent service (``run_agent(..., services=[agent_service(
    "0.0.0.0", options.kubelet_port, ca_data=client.config.ca_data)])``): it serves the
    agent's runtime under the agent's node name until the agent stops."""
    if ca_file is None and ca_data is None:
        raise ValueError("the node server needs the cluster CA (ca_file or ca_data)")

    async def run(agent: _AgentLike, stop: asyncio.Event) -> None:
        await serve_node_api(
            agent.runtime,
            agent.node_name,
            host,
            port,
            ca_file,
            ca_data=ca_data,
            cert_file=cert_file,
            key_file=key_file,
            stop=stop,
            stats=agent.stats,
        )

    return run
