"""Connections from inside a pod's network namespace.

httpGet and tcpSocket probes (and preStop httpGet hooks) connect to the pod the way
a process in the pod would: to ``127.0.0.1:<port>`` in the pod's own network
namespace. That needs no curl or nc in the image, and no traffic crosses the node's
bridge to the pod's address.

How: a Linux socket belongs to the network namespace it was created in, for its
whole life. A short-lived helper thread switches itself into the pod's namespace
with setns(2) (``/proc/<pid of a container process>/ns/net``; the agent runs as
root), creates the socket, switches back and exits. The event loop then connects
and talks over that socket like any other. Only the helper thread ever changes
namespace, and it never runs anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import socket
import ssl
import threading
from dataclasses import dataclass

__all__ = [
    "HttpResult",
    "NetnsError",
    "http_get",
    "open_connection",
    "socket_in_netns",
    "tcp_connect",
]

_CLONE_NEWNET = 0x40000000


class NetnsError(OSError):
    """The pod's network namespace cannot be entered (the process is gone, no
    privilege, not Linux)."""


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"setns: {os.strerror(err)}")


def _create_in(pid: int, family: int, kind: int) -> socket.socket:
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise NetnsError(err.errno or 0, f"network namespace of pid {pid}: {err.strerror}") from err
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                return socket.socket(family, kind)
            finally:
                # Back to the agent's namespace; this thread ends right after anyway.
                _setns(own)
        finally:
            os.close(own)
    finally:
        os.close(target)


async def socket_in_netns(
    pid: int, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A new, non-blocking socket in the network namespace of process ``pid``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[socket.socket] = loop.create_future()

    def work() -> None:
        try:
            sock = _create_in(pid, family, kind)
        except BaseException as err:  # handed to the waiting coroutine
            loop.call_soon_threadsafe(_settle, future, None, err)
        else:
            loop.call_soon_threadsafe(_settle, future, sock, None)

    threading.Thread(target=work, name=f"kumo-netns-{pid}", daemon=True).start()
    sock = await future
    sock.setblocking(False)
    return sock


def _settle(
    future: asyncio.Future[socket.socket],
    sock: socket.socket | None,
    error: BaseException | None,
) -> None:
    if future.cancelled():
        if sock is not None:
            sock.close()
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert sock is not None
        future.set_result(sock)


async def open_connection(
    pid: int | None,
    host: str,
    port: int,
    *,
    use_tls: bool = False,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host:port`` from the network namespace of ``pid`` (the agent's own
    namespace when ``pid`` is None). TLS, when asked for, does not verify the peer
    (Kubernetes' probes do not either)."""
    context: ssl.SSLContext | None = None
    if use_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if pid is None:
        return await asyncio.open_connection(host, port, ssl=context)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = await socket_in_netns(pid, family)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname=host if context else None
        )
    except BaseException:
        sock.close()
        raise


async def tcp_connect(pid: int | None, host: str, port: int) -> None:
    """Open and close a TCP connection; raises OSError when it is refused."""
    _, writer = await open_connection(pid, host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int
    body: bytes


_MAX_BODY = 10 * 1024


async def http_get(
    pid: int | None,
    host: str,
    port: int,
    path: str = "/",
    *,
    scheme: str = "HTTP",
    headers: dict[str, str] | None = None,
    host_header: str | None = None,
) -> HttpResult:
    """One ``GET`` (HTTP/1.1, ``Connection: close``); the status and up to 10 KiB of
    the body. Raises OSError on connection errors and ValueError on a reply that is
    not HTTP."""
    reader, writer = await open_connection(pid, host, port, use_tls=scheme.upper() == "HTTPS")
    try:
        wanted = {
            "Host": host_header or (f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"),
            "User-Agent": "kube-probe/kumo",
            "Accept": "*/*",
            "Connection": "close",
        }
        for name, value in (headers or {}).items():
            for existing in [k for k in wanted if k.lower() == name.lower()]:
                del wanted[existing]
            wanted[name] = value
        target = path if path.startswith("/") else "/" + path
        request = f"GET {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in wanted.items())
        writer.write(request.encode("latin-1") + b"\r\n")
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        limit = _MAX_BODY if length is None else min(length, _MAX_BODY)
        body = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while len(body) < limit:
                chunk = await reader.read(limit - len(body))
                if not chunk:
                    break
                body += chunk
        return HttpResult(status, body)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
