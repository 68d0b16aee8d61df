"""``ContainerRuntime`` over Podman's API socket.

Request/response calls go through podman-py's API client (blocking ``requests``),
run in a private thread pool so that long calls (a stop with a 30 s grace
period) never starve the others. Streams that must be cancellable or
bidirectional — logs, events, wait, exec — use asyncio directly on the same
socket (httpx for chunked HTTP, a raw connection for exec's upgraded stream),
because podman-py's streams block a thread until the server closes them.

Without a socket URL the runtime starts ``podman system service`` itself, as a
child process it owns (stopped by ``close()``; it also receives SIGTERM if the
agent dies), with ``CONTAINERS_CONF`` pointing at kumo's containers.conf. With
``storage_root`` the service gets its own storage, run root and tmpdir, and
file locks under that tmpdir, so two agents on one machine share nothing but
the kernel and the default bridge network (whose IP allocations Podman keeps in
one machine-wide database, so they cannot collide).

The service also runs conmon through a small wrapper that starts it in the
container's bundle directory: conmon writes its OOM marker into its working
directory, and Podman 4.x looks for it in the bundle directory, so without the
wrapper ``OOMKilled`` is never reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import struct
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from podman import PodmanClient

from kumo.node.runtime import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    BindMount,
    Conflict,
    ContainerConfig,
    ContainerEvent,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerStartError,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    ContainerSummary,
    ExecResult,
    ExecSession,
    ExecTimeout,
    ImageInfo,
    ImageNotFound,
    ImagePullError,
    InvalidConfig,
    LogLine,
    LogStream,
    NotFound,
    PortMapping,
    RuntimeInfo,
    RuntimeUnavailable,
    SandboxConfig,
    SandboxState,
    SandboxStatus,
    SandboxSummary,
    TmpfsMount,
    VolumeInfo,
    VolumeMount,
    container_name,
    effective_capabilities,
    normalize_signal,
    sandbox_name,
    validate_container_config,
    validate_labels,
    validate_name,
    validate_sandbox_config,
)

__all__ = ["PodmanExecSession", "PodmanRuntime", "default_containers_conf"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_ZERO_TIME_PREFIX = "0001-01-01"
_SOCKET_PATH_MAX = 107
_RUN_ROOT_MAX = 50

_CONMON_WRAPPER = """#!/bin/sh
# Written by kumo. conmon creates its "oom" marker in its working directory while
# Podman 4.x reads it from the container's bundle directory (-b), so run conmon there.
prev=""
for arg in "$@"; do
  if [ "$prev" = "-b" ] || [ "$prev" = "--bundle" ]; then
    cd "$arg" 2>/dev/null || true
  fi
  prev="$arg"
done
exec {conmon} "$@"
"""


def default_containers_conf() -> Path:
    """The containers.conf kumo ships (package data next to this module)."""
    return Path(__file__).with_name("containers.conf")


# --------------------------------------------------------------------------- parsing helpers


def _parse_time(value: object) -> datetime | None:
    """Podman's RFC 3339 (nanosecond) strings and unix seconds → aware datetime;
    the zero time and negative epochs → None."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        if value <= 0:
            return None
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or value.startswith(_ZERO_TIME_PREFIX):
        return None
    text = value.strip()
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(UTC)


def _container_state(raw: str) -> ContainerState:
    raw = raw.lower()
    if raw in ("configured", "created", "initialized"):
        return ContainerState.CREATED
    if raw in ("running", "stopping"):
        return ContainerState.RUNNING
    if raw == "paused":
        return ContainerState.PAUSED
    if raw in ("exited", "stopped", "removing"):
        return ContainerState.EXITED
    return ContainerState.UNKNOWN


def _split_reference(reference: str) -> tuple[str, str]:
    """``registry:5000/repo/name:tag`` → (``registry:5000/repo/name``, ``tag``)."""
    if "@" in reference:
        raise InvalidConfig(f"cannot tag with a digest reference {reference!r}")
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]


def _matches(labels: Mapping[str, str], wanted: Mapping[str, str] | None) -> bool:
    return not wanted or all(labels.get(k) == v for k, v in wanted.items())


@dataclass(frozen=True, slots=True)
class _ApiReply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def message(self) -> str:
        try:
            data = json.loads(self.body)
        except ValueError:
            return self.body.decode(errors="replace").strip() or f"HTTP {self.status}"
        if isinstance(data, dict):
            return str(data.get("message") or data.get("cause") or data)
        return str(data)

    def cause(self) -> str:
        try:
            data = json.loads(self.body)
        except ValueError:
            return ""
        return str(data.get("cause", "")) if isinstance(data, dict) else ""


_MISSING_OBJECT_CAUSES = (
    "no such container",
    "no such pod",
    "no such volume",
    "no such exec session",
    "no such object",
)


def _error_for(reply: _ApiReply, what: str) -> ContainerRuntimeError:
    """Turn a Podman error reply into kumo's error hierarchy."""
    cause = reply.cause().lower()
    message = reply.message()
    text = f"{cause} {message}".lower()
    if "image not known" in text or "no such image" in text or "image not found" in text:
        return ImageNotFound(what, f"image {what!r} is not present on this node")
    if reply.status == 404 or any(missing in cause for missing in _MISSING_OBJECT_CAUSES):
        return NotFound(f"{what}: {message}")
    if (
        reply.status == 409
        or "already in use" in text
        or "already exists" in text
        or "state improper" in text
        or "is being used" in text
        or "in use by" in text
        or "is not running" in text
        or "address already in use" in text
    ):
        return Conflict(f"{what}: {message}")
    if reply.status == 400:
        return InvalidConfig(f"{what}: {message}")
    return ContainerRuntimeError(f"{what}: {message}")


# --------------------------------------------------------------------------- multiplexed stream frames


class _FrameReader:
    """Podman's multiplexed stream: 8-byte header (stream id, 3 pad bytes,
    big-endian length) then the payload."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer.extend(data)
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= 8:
            stream_id = self._buffer[0]
            (length,) = struct.unpack(">I", self._buffer[4:8])
            if len(self._buffer) < 8 + length:
                break
            frames.append((stream_id, bytes(self._buffer[8 : 8 + length])))
            del self._buffer[: 8 + length]
        return frames


def _log_line(stream_id: int, payload: bytes) -> LogLine:
    text = payload.decode(errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    stamp, sep, rest = text.partition(" ")
    timestamp = _parse_time(stamp) if sep else None
    if timestamp is None:
        timestamp, rest = datetime.now(UTC), text
    return LogLine(timestamp, LogStream.STDERR if stream_id == 2 else LogStream.STDOUT, rest)


# --------------------------------------------------------------------------- exec session


class PodmanExecSession:
    """An upgraded exec connection (see ``ExecSession``)."""

    def __init__(
        self,
        runtime: PodmanRuntime,
        exec_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        container_id: str,
        created: datetime,
        tty: bool,
    ) -> None:
        self._runtime = runtime
        self.exec_id = exec_id
        self._container_id = container_id
        self._created = created
        self._reader = reader
        self._writer = writer
        self._tty = tty
        self._queue: asyncio.Queue[tuple[LogStream, bytes] | None] = asyncio.Queue(maxsize=256)
        self._pump = asyncio.create_task(self._read_output())
        self._consuming = False
        self._exit_code: int | None = None

    @property
    def tty(self) -> bool:
        return self._tty

    async def _read_output(self) -> None:
        frames = _FrameReader()
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                if self._tty:
                    await self._queue.put((LogStream.STDOUT, chunk))
                    continue
                for stream_id, payload in frames.feed(chunk):
                    stream = LogStream.STDERR if stream_id == 2 else LogStream.STDOUT
                    await self._queue.put((stream, payload))
        except (ConnectionError, OSError):
            pass
        finally:
            await self._queue.put(None)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close_stdin(self) -> None:
        if self._writer.can_write_eof():
            self._writer.write_eof()
        await self._writer.drain()

    async def output(self) -> AsyncIterator[tuple[LogStream, bytes]]:
        self._consuming = True
        while True:
            item = await self._queue.get()
            if item is None:
                await self._queue.put(None)  # later readers see the end too
                return
            yield item

    async def resize(self, height: int, width: int) -> None:
        if self._tty:
            await self._runtime._request(
                "POST",
                f"/exec/{self.exec_id}/resize",
                params={"h": height, "w": width},
                what="exec resize",
            )

    async def wait(self) -> int:
        if self._exit_code is None:
            if not self._consuming:
                async for _ in self.output():
                    pass
            await self._pump
            self._exit_code = await self._runtime._exec_exit_code(
                self.exec_id, self._container_id, self._created
            )
        return self._exit_code

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._pump
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def __aenter__(self) -> PodmanExecSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# --------------------------------------------------------------------------- the runtime


class PodmanRuntime:
    """``ContainerRuntime`` on Podman. Use ``async with PodmanRuntime(...)`` (or
    ``await start()`` / ``await close()``).

    ``socket_url``: an existing Podman API socket (``unix:///run/podman/podman.sock``
    or ``tcp://host:port``). Without it the runtime starts its own service with
    its socket in ``state_dir`` (a temporary directory by default, removed on
    close). ``storage_root`` / ``run_root`` / ``tmp_dir`` give that service its own
    Podman storage (``--root`` / ``--runroot`` / ``--tmpdir``); with only
    ``storage_root``, run root and tmpdir default to ``/run/kumo-podman/<hash of the
    storage root>/`` (Podman wants run roots under 50 characters).
    """

    def __init__(
        self,
        node_name: str,
        *,
        socket_url: str | None = None,
        state_dir: Path | None = None,
        storage_root: Path | None = None,
        run_root: Path | None = None,
        tmp_dir: Path | None = None,
        image_store: Path | None = None,
        containers_conf: Path | None = None,
        podman_binary: str = "podman",
        startup_timeout: float = 30.0,
        max_workers: int = 32,
    ) -> None:
        if not node_name or "=" in node_name or "," in node_name:
            raise InvalidConfig(f"invalid node name {node_name!r}")
        if socket_url is not None and (storage_root or run_root or tmp_dir):
            raise InvalidConfig(
                "storage_root/run_root/tmp_dir only apply to a service the runtime starts itself"
            )
        if image_store is not None and storage_root is None:
            raise InvalidConfig("image_store needs a storage_root of the runtime's own")
        self._node = node_name
        self._socket_url = socket_url
        self._state_dir = state_dir
        self._owns_state_dir = False
        self._storage_root = storage_root
        if storage_root is not None:
            # Podman refuses run roots longer than 50 characters; keep the defaults short
            # (and on /run, which a reboot clears, as Podman expects).
            key = hashlib.sha256(str(storage_root.resolve()).encode()).hexdigest()[:12]
            run_root = run_root or Path("/run/kumo-podman") / key / "runroot"
            tmp_dir = tmp_dir or Path("/run/kumo-podman") / key / "tmp"
        if run_root is not None and len(str(run_root)) > _RUN_ROOT_MAX:
            raise InvalidConfig(
                f"run_root {run_root} is longer than Podman allows ({_RUN_ROOT_MAX} characters)"
            )
        self._run_root = run_root
        self._tmp_dir = tmp_dir
        self._image_store = image_store
        self._containers_conf = containers_conf or default_containers_conf()
        self._podman = podman_binary
        self._startup_timeout = startup_timeout
        self._max_workers = max_workers
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="kumo-podman"
        )
        self._service: asyncio.subprocess.Process | None = None
        self._client: PodmanClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._api_prefix = "/v4.0.0/libpod"
        self._owned_containers: set[str] = set()
        self._owned_sandboxes: set[str] = set()
        self._cgroup_paths: dict[str, tuple[str, int | None]] = {}
        self._start_errors: dict[str, str] = {}

    # ----------------------------------------------------------------- lifecycle

    @property
    def node_name(self) -> str:
        return self._node

    @property
    def socket_url(self) -> str:
        if self._socket_url is None:
            raise RuntimeUnavailable("the runtime has not been started")
        return self._socket_url

    @property
    def run_root(self) -> Path | None:
        """The service's own run root (None: Podman's default)."""
        return self._run_root

    @property
    def tmp_dir(self) -> Path | None:
        """The service's own tmpdir (None: Podman's default)."""
        return self._tmp_dir

    @property
    def service_pid(self) -> int | None:
        """Pid of the Podman service this runtime started (None if it uses a given socket)."""
        return self._service.pid if self._service else None

    def podman_command(self) -> list[str]:
        """The ``podman`` command line (global flags included) that addresses the same
        storage as this runtime's service; use it with ``podman_env()``."""
        command = [self._podman]
        if self._storage_root is not None:
            command += ["--root", str(self._storage_root)]
        if self._run_root is not None:
            command += ["--runroot", str(self._run_root)]
        if self._tmp_dir is not None:
            command += ["--tmpdir", str(self._tmp_dir)]
        if self._image_store is not None:
            # Images of another storage (read-only): a node with storage of its own still
            # runs the base images this machine already has.
            command += ["--storage-opt", f"overlay.imagestore={self._image_store}"]
        return command

    def podman_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self._effective_conf_path())
        return env

    def _effective_conf_path(self) -> Path:
        if self._storage_root is None or self._state_dir is None:
            return self._containers_conf
        return self._state_dir / "containers.conf"

    async def __aenter__(self) -> PodmanRuntime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (starting the service first if needed) and check the API answers."""
        if self._client is not None:
            return
        if self._socket_url is None:
            await self._start_service()
        url = self.socket_url
        parts = urlsplit(url)
        if parts.scheme == "unix":
            transport = httpx.AsyncHTTPTransport(uds=parts.path)
            base = "http://podman"
        elif parts.scheme in ("tcp", "http"):
            transport = httpx.AsyncHTTPTransport()
            base = f"http://{parts.netloc}"
        else:
            raise InvalidConfig(f"unsupported Podman socket URL {url!r} (use unix:// or tcp://)")
        self._http = httpx.AsyncClient(
            transport=transport, base_url=base, timeout=httpx.Timeout(30.0)
        )
        try:
            version = await self._http.get("/version")
            version.raise_for_status()
            api_version = str(version.json()["Components"][0]["Details"]["APIVersion"])
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
            await self.close()
            raise RuntimeUnavailable(f"Podman API at {url} is not answering: {err}") from err
        self._api_prefix = f"/v{api_version}/libpod"
        self._client = PodmanClient(
            base_url=url, version=api_version, max_pool_size=self._max_workers
        )

    async def close(self) -> None:
        """Disconnect and stop the service this runtime started. Containers keep running."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._client is not None:
            client: Any = self._client
            client.close()
            self._client = None
        if self._service is not None:
            await self._stop_service(self._service)
            self._service = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_state_dir and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    async def _start_service(self) -> None:
        if shutil.which(self._podman) is None:
            raise RuntimeUnavailable(f"{self._podman!r} is not installed (apt-get install podman)")
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="kumo-podman-"))
            self._owns_state_dir = True
        state = self._state_dir
        state.mkdir(parents=True, exist_ok=True)
        socket_path = state / "podman.sock"
        if len(str(socket_path)) > _SOCKET_PATH_MAX:
            raise InvalidConfig(f"state_dir {state} is too long for a unix socket path")
        for directory in (self._storage_root, self._run_root, self._tmp_dir):
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True)
        if self._storage_root is not None:
            text = self._containers_conf.read_text()
            isolated = re.sub(r'(?m)^lock_type\s*=\s*"shm"', 'lock_type = "file"', text)
            if isolated == text and 'lock_type = "file"' not in text:
                isolated = text.replace("[engine]\n", '[engine]\nlock_type = "file"\n', 1)
            (state / "containers.conf").write_text(isolated)
        await self._stop_stale_service(state)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        command = [*self.podman_command()]
        conmon = self._write_conmon_wrapper(state)
        if conmon is not None:
            command += ["--conmon", str(conmon)]
        command += ["system", "service", "--time=0", f"unix://{socket_path}"]
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            # The service dies with the agent (even on SIGKILL); containers do not.
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        log_file = (state / "podman-service.log").open("ab")
        try:
            self._service = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=self.podman_env(),
                start_new_session=True,
            )
        finally:
            log_file.close()
        (state / "podman-service.pid").write_text(f"{self._service.pid}\n")
        self._socket_url = f"unix://{socket_path}"
        deadline = asyncio.get_running_loop().time() + self._startup_timeout
        while not socket_path.exists():
            if self._service.returncode is not None:
                tail = (state / "podman-service.log").read_text(errors="replace")[-2000:]
                raise RuntimeUnavailable(
                    f"podman system service exited ({self._service.returncode}): {tail}"
                )
            if asyncio.get_running_loop().time() > deadline:
                await self._stop_service(self._service)
                raise RuntimeUnavailable(
                    f"podman system service did not create {socket_path} in time"
                )
            await asyncio.sleep(0.05)

    def _write_conmon_wrapper(self, state: Path) -> Path | None:
        conmon = shutil.which("conmon") or next(
            (p for p in ("/usr/bin/conmon", "/usr/libexec/podman/conmon") if os.access(p, os.X_OK)),
            None,
        )
        if conmon is None:
            return None
        wrapper = state / "conmon"
        wrapper.write_text(_CONMON_WRAPPER.format(conmon=conmon))
        wrapper.chmod(0o755)
        return wrapper

    @staticmethod
    def _stale_service_pid(state: Path) -> int | None:
        """The pid of a service a previous run started on this state dir (e.g. before
        the agent was killed with SIGKILL), if that process still runs."""
        try:
            pid = int((state / "podman-service.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if f"unix://{state / 'podman.sock'}".encode() in cmdline else None

    async def _stop_stale_service(self, state: Path) -> None:
        pid = await asyncio.to_thread(self._stale_service_pid, state)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    @staticmethod
    async def _stop_service(process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # ----------------------------------------------------------------- transport

    def _api(self) -> Any:
        if self._client is None:
            raise RuntimeUnavailable("the runtime has not been started")
        return self._client.api

    async def _in_thread(self, func: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        http_timeout: float | None = 60.0,
        what: str,
        ok: Iterable[int] = (200, 201, 204, 304),
    ) -> _ApiReply:
        """One Podman API call through podman-py; errors become kumo errors."""
        api = self._api()
        payload = json.dumps(body) if body is not None else data
        request_headers = dict(headers or {})
        if body is not None:
            request_headers.setdefault("Content-Type", "application/json")

        def call() -> _ApiReply:
            kwargs: dict[str, Any] = {
                "params": params,
                "headers": request_headers,
                "timeout": http_timeout,
            }
            if method == "GET":
                response = api.get(path, **kwargs)
            elif method == "POST":
                response = api.post(path, data=payload, **kwargs)
            elif method == "DELETE":
                response = api.delete(path, **kwargs)
            else:  # pragma: no cover - programming error
                raise ValueError(method)
            return _ApiReply(response.status_code, response.content)

        try:
            reply = await self._in_thread(call)
        except Exception as err:
            if isinstance(err, ContainerRuntimeError):
                raise
            raise RuntimeUnavailable(f"Podman API call {method} {path} failed: {err}") from err
        if reply.status not in set(ok):
            raise _error_for(reply, what)
        return reply

    def _url(self, path: str) -> str:
        return f"{self._api_prefix}{path}"

    def _httpx(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeUnavailable("the runtime has not been started")
        return self._http

    async def _open_raw(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self.socket_url)
        try:
            if parts.scheme == "unix":
                return await asyncio.open_unix_connection(parts.path)
            return await asyncio.open_connection(parts.hostname, parts.port)
        except OSError as err:
            raise RuntimeUnavailable(
                f"cannot connect to Podman at {self.socket_url}: {err}"
            ) from err

    # ----------------------------------------------------------------- ownership

    async def _inspect_container(self, container_id: str) -> dict[str, Any]:
        reply = await self._request(
            "GET",
            f"/containers/{quote(container_id, safe='')}/json",
            what=f"container {container_id}",
        )
        data: dict[str, Any] = reply.json()
        labels = (data.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_NODE) != self._node or data.get("IsInfra"):
            raise NotFound(f"container {container_id} does not belong to node {self._node}")
        self._owned_containers.add(data["Id"])
        return data

    async def _owned_container(self, container_id: str) -> str:
        if container_id in self._owned_containers:
            return container_id
        return str((await self._inspect_container(container_id))["Id"])

    async def _inspect_pod(self, sandbox_id: str) -> dict[str, Any]:
        reply = await self._request(
            "GET", f"/pods/{quote(sandbox_id, safe='')}/json", what=f"sandbox {sandbox_id}"
        )
        data: dict[str, Any] = reply.json()
        if (data.get("Labels") or {}).get(LABEL_NODE) != self._node:
            raise NotFound(f"sandbox {sandbox_id} does not belong to node {self._node}")
        self._owned_sandboxes.add(data["Id"])
        return data

    # ----------------------------------------------------------------- info

    async def info(self) -> RuntimeInfo:
        data = (await self._request("GET", "/info", what="info")).json()
        version = data.get("version") or {}
        host = data.get("host") or {}
        store = data.get("store") or {}
        return RuntimeInfo(
            name="podman",
            version=str(version.get("Version", "")),
            api_version=str(version.get("APIVersion", "")),
            storage_root=str(store.get("graphRoot", "")),
            run_root=str(store.get("runRoot", "")),
            oci_runtime=str((host.get("ociRuntime") or {}).get("name", "")),
            cgroup_version=str(host.get("cgroupVersion", "")),
        )

    # ----------------------------------------------------------------- sandboxes

    async def run_sandbox(self, config: SandboxConfig) -> SandboxStatus:
        hostname = validate_sandbox_config(config)
        ports = []
        for port in config.ports:
            entry: dict[str, Any] = {
                "container_port": port.container_port,
                "host_port": port.host_port,
                "protocol": port.protocol,
            }
            if port.host_ip:
                entry["host_ip"] = port.host_ip
            ports.append(entry)
        labels = {
            **config.labels,
            LABEL_NODE: self._node,
            LABEL_POD_UID: config.uid,
            LABEL_POD_NAME: config.name,
            LABEL_POD_NAMESPACE: config.namespace,
        }
        spec: dict[str, Any] = {
            "name": sandbox_name(config.namespace, config.name, config.uid),
            "hostname": hostname,
            "labels": labels,
            "netns": {"nsmode": "bridge"},
            "portmappings": ports,
            "hostadd": [
                f"{name}:{alias.ip}" for alias in config.host_aliases for name in alias.hostnames
            ],
        }
        if config.dns is not None:
            spec["dns_server"] = list(config.dns.servers) or None
            spec["dns_search"] = list(config.dns.searches) or None
            spec["dns_option"] = list(config.dns.options) or None
        reply = await self._request(
            "POST", "/pods/create", body=spec, what=f"sandbox {spec['name']}"
        )
        pod_id = str(reply.json()["Id"])
        self._owned_sandboxes.add(pod_id)
        try:
            pod = await self._inspect_pod(pod_id)
            infra = pod.get("InfraContainerID")
            if not infra:
                raise ContainerRuntimeError(f"sandbox {spec['name']} has no infra container")
            try:
                await self._request(
                    "POST",
                    f"/containers/{infra}/start",
                    what=f"sandbox {spec['name']}",
                    http_timeout=120,
                )
            except ContainerRuntimeError as err:
                if "address already in use" in err.reason or "bind" in err.reason:
                    raise Conflict(
                        f"sandbox {spec['name']}: a published port is in use: {err.reason}"
                    ) from err
                raise
            return await self.sandbox_status(pod_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._request(
                    "DELETE", f"/pods/{pod_id}", params={"force": "true"}, what="sandbox cleanup"
                )
            self._owned_sandboxes.discard(pod_id)
            raise

    async def remove_sandbox(self, sandbox_id: str, *, grace_period: float = 0) -> None:
        try:
            pod = await self._inspect_pod(sandbox_id)
        except NotFound:
            return
        pod_id = str(pod["Id"])
        # Stop explicitly: a forced removal alone would wait out each container's
        # own stop timeout (10 s) instead of the grace period asked for.
        # (Podman ignores t=0, so no grace period means SIGKILL.)
        seconds = max(0, math.ceil(grace_period))
        with contextlib.suppress(NotFound, Conflict):
            if seconds:
                await self._request(
                    "POST",
                    f"/pods/{pod_id}/stop",
                    params={"t": seconds},
                    http_timeout=seconds + 60,
                    what=f"sandbox {sandbox_id}",
                )
            else:
                await self._request(
                    "POST",
                    f"/pods/{pod_id}/kill",
                    params={"signal": "SIGKILL"},
                    what=f"sandbox {sandbox_id}",
                )
        with contextlib.suppress(NotFound):
            await self._request(
                "DELETE",
                f"/pods/{pod_id}",
                params={"force": "true"},
                http_timeout=120,
                what=f"sandbox {sandbox_id}",
            )
        self._owned_sandboxes.discard(pod_id)
        for container in pod.get("Containers") or []:
            self._owned_containers.discard(container.get("Id", ""))

    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        pod = await self._inspect_pod(sandbox_id)
        infra_id = pod.get("InfraContainerID") or None
        ip: str | None = None
        infra_running = False
        if infra_id:
            try:
                reply = await self._request(
                    "GET", f"/containers/{infra_id}/json", what=f"sandbox {sandbox_id}"
                )
                infra = reply.json()
                infra_running = bool((infra.get("State") or {}).get("Running"))
                settings = infra.get("NetworkSettings") or {}
                ip = settings.get("IPAddress") or None
                if not ip:
                    for network in (settings.get("Networks") or {}).values():
                        if network.get("IPAddress"):
                            ip = network["IPAddress"]
                            break
            except NotFound:
                infra_running = False
        ports: list[PortMapping] = []
        bindings = (pod.get("InfraConfig") or {}).get("PortBindings") or {}
        for key, hosts in bindings.items():
            number, _, protocol = key.partition("/")
            for host in hosts or []:
                ports.append(
                    PortMapping(
                        container_port=int(number),
                        host_port=int(host.get("HostPort") or 0),
                        protocol="udp" if protocol == "udp" else "tcp",
                        host_ip=host.get("HostIp") or "",
                    )
                )
        return SandboxStatus(
            id=str(pod["Id"]),
            name=str(pod.get("Name", "")),
            labels=dict(pod.get("Labels") or {}),
            state=SandboxState.READY if infra_running else SandboxState.NOT_READY,
            created_at=_parse_time(pod.get("Created")),
            infra_container_id=infra_id,
            ip=ip if infra_running else None,
            hostname=str(pod.get("Hostname", "")),
            ports=tuple(sorted(ports, key=lambda p: (p.container_port, p.protocol, p.host_port))),
        )

    async def list_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[SandboxSummary]:
        filters = {"label": _label_filter({LABEL_NODE: self._node})}
        reply = await self._request(
            "GET", "/pods/json", params={"filters": json.dumps(filters)}, what="list sandboxes"
        )
        result = []
        for pod in reply.json() or []:
            pod_labels = dict(pod.get("Labels") or {})
            if pod_labels.get(LABEL_NODE) != self._node or not _matches(pod_labels, labels):
                continue
            infra_id = pod.get("InfraId") or None
            infra_state = next(
                (
                    c.get("Status", "")
                    for c in pod.get("Containers") or []
                    if c.get("Id") == infra_id
                ),
                "",
            )
            self._owned_sandboxes.add(pod["Id"])
            result.append(
                SandboxSummary(
                    id=str(pod["Id"]),
                    name=str(pod.get("Name", "")),
                    labels=pod_labels,
                    state=SandboxState.READY
                    if infra_state == "running"
                    else SandboxState.NOT_READY,
                    created_at=_parse_time(pod.get("Created")),
                    infra_container_id=infra_id,
                )
            )
        return result

    # ----------------------------------------------------------------- containers

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        validate_container_config(config)
        pod = await self._inspect_pod(sandbox_id)
        pod_labels = pod.get("Labels") or {}
        namespace = pod_labels.get(LABEL_POD_NAMESPACE, "")
        pod_name = pod_labels.get(LABEL_POD_NAME, "")
        pod_uid = pod_labels.get(LABEL_POD_UID, "")
        labels = {
            **config.labels,
            LABEL_NODE: self._node,
            LABEL_POD_UID: pod_uid,
            LABEL_POD_NAME: pod_name,
            LABEL_POD_NAMESPACE: namespace,
            LABEL_CONTAINER_NAME: config.name,
            LABEL_ATTEMPT: str(config.attempt),
        }
        spec = await self._container_spec(config)
        spec.update(
            name=container_name(namespace, pod_name, pod_uid, config.name, config.attempt),
            pod=str(pod["Id"]),
            labels=labels,
        )
        try:
            reply = await self._request(
                "POST", "/containers/create", body=spec, http_timeout=120, what=config.image
            )
        except ImageNotFound:
            raise ImageNotFound(config.image) from None
        except (Conflict, NotFound):
            raise
        except ContainerRuntimeError as err:
            raise InvalidConfig(f"container {config.name}: {err.reason}") from err
        container_id = str(reply.json()["Id"])
        self._owned_containers.add(container_id)
        return container_id

    async def _container_spec(self, config: ContainerConfig) -> dict[str, Any]:
        security = config.security
        spec: dict[str, Any] = {
            "image": config.image,
            "env": dict(config.env),
            "terminal": config.tty,
            "stdin": config.stdin,
            "privileged": security.privileged,
            "read_only_filesystem": security.read_only_rootfs,
            "no_new_privileges": security.no_new_privileges and not security.privileged,
        }
        if config.command is not None:
            spec["entrypoint"] = list(config.command)
            spec["command"] = list(config.args) if config.args is not None else []
        elif config.args is not None:
            spec["command"] = list(config.args)
        if config.working_dir:
            spec["work_dir"] = config.working_dir
        if config.stop_signal:
            spec["stop_signal"] = normalize_signal(config.stop_signal)
        if not security.privileged:
            caps = effective_capabilities(security.cap_add, security.cap_drop)
            spec["cap_drop"] = ["ALL"]
            spec["cap_add"] = sorted(caps)
        user = await self._user_spec(config)
        if user:
            spec["user"] = user
        if security.supplemental_groups:
            spec["groups"] = [str(g) for g in security.supplemental_groups]
        mounts: list[dict[str, Any]] = []
        volumes: list[dict[str, Any]] = []
        for mount in config.mounts:
            if isinstance(mount, BindMount):
                if not await asyncio.to_thread(os.path.exists, mount.host_path):
                    raise InvalidConfig(f"host path {mount.host_path!r} does not exist")
                mounts.append(
                    {
                        "type": "bind",
                        "source": mount.host_path,
                        "destination": mount.container_path,
                        "options": ["rbind", "ro" if mount.read_only else "rw"],
                    }
                )
            elif isinstance(mount, VolumeMount):
                volumes.append(
                    {
                        "Name": mount.volume,
                        "Dest": mount.container_path,
                        "Options": ["ro"] if mount.read_only else [],
                    }
                )
            elif isinstance(mount, TmpfsMount):
                options = ["rw", "nosuid", "nodev", f"mode={mount.mode:o}"]
                if mount.size_bytes:
                    options.append(f"size={mount.size_bytes}")
                mounts.append(
                    {
                        "type": "tmpfs",
                        "source": "tmpfs",
                        "destination": mount.container_path,
                        "options": options,
                    }
                )
        if mounts:
            spec["mounts"] = mounts
        if volumes:
            spec["volumes"] = volumes
        resources = config.resources
        limits: dict[str, Any] = {}
        memory: dict[str, Any] = {}
        if resources.memory_limit_bytes is not None:
            memory["limit"] = resources.memory_limit_bytes
        if resources.memory_reservation_bytes is not None:
            memory["reservation"] = resources.memory_reservation_bytes
        if memory:
            limits["memory"] = memory
        cpu: dict[str, Any] = {}
        if resources.cpu_quota_us is not None:
            cpu["quota"] = resources.cpu_quota_us
            cpu["period"] = resources.cpu_period_us
        if resources.cpu_shares is not None:
            cpu["shares"] = resources.cpu_shares
        if cpu:
            limits["cpu"] = cpu
        if resources.pids_limit is not None:
            limits["pids"] = {"limit": resources.pids_limit}
        if limits:
            spec["resource_limits"] = limits
        return spec

    async def _user_spec(self, config: ContainerConfig) -> str:
        security = config.security
        if security.run_as_user is None and security.run_as_group is None:
            return ""
        if security.run_as_user is not None:
            user = str(security.run_as_user)
        else:
            image_user = (await self.inspect_image(config.image)).user or "0"
            user = image_user.partition(":")[0] or "0"
        if security.run_as_group is not None:
            user += f":{security.run_as_group}"
        return user

    async def start_container(self, container_id: str) -> None:
        container_id = await self._owned_container(container_id)
        try:
            await self._request(
                "POST",
                f"/containers/{container_id}/start",
                http_timeout=120,
                what=f"container {container_id}",
            )
        except (NotFound, RuntimeUnavailable):
            raise
        except ContainerRuntimeError as err:
            # Podman keeps no record of a failed start (the container stays
            # "created" without an error), so remember it for container_status.
            self._start_errors[container_id] = err.reason
            raise ContainerStartError(err.reason) from err
        self._start_errors.pop(container_id, None)

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        container_id = await self._owned_container(container_id)
        seconds = max(0, math.ceil(grace_period))
        await self._request(
            "POST",
            f"/containers/{container_id}/stop",
            params={"timeout": seconds},
            http_timeout=seconds + 60,
            what=f"container {container_id}",
        )

    async def kill_container(self, container_id: str, signal: str | int = "SIGKILL") -> None:
        container_id = await self._owned_container(container_id)
        number = normalize_signal(signal)
        await self._request(
            "POST",
            f"/containers/{container_id}/kill",
            params={"signal": number},
            what=f"container {container_id}",
        )

    async def remove_container(self, container_id: str, *, force: bool = False) -> None:
        try:
            container_id = await self._owned_container(container_id)
        except NotFound:
            return
        params = {"force": "true" if force else "false", "v": "false", "timeout": 0}
        with contextlib.suppress(NotFound):
            await self._request(
                "DELETE",
                f"/containers/{container_id}",
                params=params,
                http_timeout=120,
                what=f"container {container_id}",
            )
        self._owned_containers.discard(container_id)
        self._cgroup_paths.pop(container_id, None)
        self._start_errors.pop(container_id, None)

    async def container_status(self, container_id: str) -> ContainerStatus:
        data = await self._inspect_container(container_id)
        state = data.get("State") or {}
        config = data.get("Config") or {}
        status = _container_state(str(state.get("Status", "")))
        exited = status == ContainerState.EXITED
        pid = state.get("Pid") or None
        return ContainerStatus(
            id=str(data["Id"]),
            name=str(data.get("Name", "")),
            sandbox_id=str(data.get("Pod") or ""),
            labels=dict(config.get("Labels") or {}),
            state=status,
            image=str(data.get("ImageName") or config.get("Image") or ""),
            image_id=str(data.get("Image") or ""),
            created_at=_parse_time(data.get("Created")),
            started_at=_parse_time(state.get("StartedAt")),
            finished_at=_parse_time(state.get("FinishedAt")) if exited else None,
            exit_code=int(state.get("ExitCode") or 0) if exited else None,
            oom_killed=bool(state.get("OOMKilled")),
            pid=int(pid) if pid and status == ContainerState.RUNNING else None,
            error=str(state.get("Error") or "") or self._start_errors.get(str(data["Id"]), ""),
        )

    async def list_containers(
        self, labels: Mapping[str, str] | None = None, *, sandbox_id: str | None = None
    ) -> list[ContainerSummary]:
        filters: dict[str, list[str]] = {"label": _label_filter({LABEL_NODE: self._node})}
        pod_id: str | None = None
        if sandbox_id is not None:
            try:
                pod_id = str((await self._inspect_pod(sandbox_id))["Id"])
            except NotFound:
                return []
            filters["pod"] = [pod_id]
        reply = await self._request(
            "GET",
            "/containers/json",
            params={"all": "true", "filters": json.dumps(filters)},
            what="list containers",
        )
        result = []
        for item in reply.json() or []:
            item_labels = dict(item.get("Labels") or {})
            if item.get("IsInfra") or item_labels.get(LABEL_NODE) != self._node:
                continue
            if pod_id is not None and item.get("Pod") != pod_id:
                continue
            if not _matches(item_labels, labels):
                continue
            status = _container_state(str(item.get("State", "")))
            exited = status == ContainerState.EXITED
            names = item.get("Names") or [""]
            self._owned_containers.add(item["Id"])
            result.append(
                ContainerSummary(
                    id=str(item["Id"]),
                    name=str(names[0]),
                    sandbox_id=str(item.get("Pod") or ""),
                    labels=item_labels,
                    state=status,
                    image=str(item.get("Image", "")),
                    image_id=str(item.get("ImageID", "")),
                    created_at=_parse_time(item.get("Created")),
                    started_at=_parse_time(item.get("StartedAt")),
                    finished_at=_parse_time(item.get("ExitedAt")) if exited else None,
                    exit_code=int(item.get("ExitCode") or 0) if exited else None,
                )
            )
        return result

    async def wait_container(self, container_id: str) -> int:
        container_id = await self._owned_container(container_id)
        params = httpx.QueryParams(
            [("condition", "exited"), ("condition", "stopped"), ("interval", "100ms")]
        )

        async def wait() -> int:
            while True:
                try:
                    response = await self._httpx().post(
                        self._url(f"/containers/{container_id}/wait"), params=params, timeout=None
                    )
                except httpx.HTTPError as err:
                    raise RuntimeUnavailable(
                        f"waiting for container {container_id}: {err}"
                    ) from err
                if response.status_code >= 400:
                    raise _error_for(
                        _ApiReply(response.status_code, response.content),
                        f"container {container_id}",
                    )
                status = await self.container_status(container_id)
                if status.state == ContainerState.EXITED:
                    return status.exit_code or 0
                await asyncio.sleep(0.05)

        return await wait()

    # ----------------------------------------------------------------- logs

    async def logs(
        self,
        container_id: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
    ) -> AsyncIterator[LogLine]:
        container_id = await self._owned_container(container_id)
        params: dict[str, str] = {"stdout": "true", "stderr": "true", "timestamps": "true"}
        if follow:
            params["follow"] = "true"
        if tail is not None:
            if tail < 0:
                raise InvalidConfig("tail must not be negative")
            if tail == 0:
                if not follow:
                    return
                since = datetime.now(UTC)
            else:
                params["tail"] = str(tail)
        if since is not None:
            params["since"] = f"{since.timestamp():.9f}"
        frames = _FrameReader()
        try:
            async with self._httpx().stream(
                "GET", self._url(f"/containers/{container_id}/logs"), params=params, timeout=None
            ) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise _error_for(
                        _ApiReply(response.status_code, body), f"container {container_id}"
                    )
                async for chunk in response.aiter_bytes():
                    for stream_id, payload in frames.feed(chunk):
                        yield _log_line(stream_id, payload)
        except httpx.HTTPError as err:
            raise RuntimeUnavailable(f"reading logs of {container_id}: {err}") from err

    # ----------------------------------------------------------------- exec

    async def _create_exec(
        self,
        container_id: str,
        command: Sequence[str],
        *,
        tty: bool,
        stdin: bool,
        env: Mapping[str, str] | None,
        user: str | None,
        working_dir: str | None,
    ) -> tuple[str, str]:
        """Create an exec session; returns (exec id, full container id)."""
        if not command:
            raise InvalidConfig("exec needs a command")
        container_id = await self._owned_container(container_id)
        body: dict[str, Any] = {
            "Cmd": list(command),
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": tty,
        }
        if env:
            body["Env"] = [f"{k}={v}" for k, v in env.items()]
        if user:
            body["User"] = user
        if working_dir:
            body["WorkingDir"] = working_dir
        reply = await self._request(
            "POST", f"/containers/{container_id}/exec", body=body, what=f"container {container_id}"
        )
        return str(reply.json()["Id"]), container_id

    async def _start_exec(
        self, exec_id: str, *, tty: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._open_raw()
        body = json.dumps({"Detach": False, "Tty": tty}).encode()
        request = (
            f"POST {self._url(f'/exec/{exec_id}/start')} HTTP/1.1\r\n"
            "Host: podman\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: Upgrade\r\n"
            "Upgrade: tcp\r\n\r\n"
        ).encode()
        writer.write(request + body)
        await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode(errors="replace").partition(":")
            headers[key.strip().lower()] = value.strip()
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status not in (101, 200):
            length = int(headers.get("content-length", "0") or 0)
            payload = await reader.readexactly(length) if length else await reader.read(65536)
            writer.close()
            raise _error_for(_ApiReply(status, payload), f"exec {exec_id[:12]}")
        return reader, writer

    async def _exec_exit_code(self, exec_id: str, container_id: str, since: datetime) -> int:
        """The exit code of a finished exec session. kumo's containers.conf has Podman
        drop finished sessions after ``exit_command_delay`` (2 s) instead of 5 minutes
        (lingering sessions keep a conmon each and slow down pod removal), so if the
        session is already gone the code comes from its ``exec_died`` event."""
        try:
            for _ in range(100):
                reply = await self._request(
                    "GET", f"/exec/{exec_id}/json", what=f"exec {exec_id[:12]}"
                )
                data = reply.json()
                if not data.get("Running"):
                    code = data.get("ExitCode")
                    return int(code) if code is not None else -1
                await asyncio.sleep(0.02)
        except NotFound:
            return await self._exec_exit_code_from_events(exec_id, container_id, since)
        raise ContainerRuntimeError(f"exec {exec_id[:12]} still running after its output ended")

    async def _exec_exit_code_from_events(
        self, exec_id: str, container_id: str, since: datetime
    ) -> int:
        filters = {"type": ["container"], "event": ["exec_died"], "container": [container_id]}
        params = {
            "stream": "false",
            "since": f"{since.timestamp() - 1:.9f}",
            "filters": json.dumps(filters),
        }
        reply = await self._request("GET", "/events", params=params, what=f"exec {exec_id[:12]}")
        codes = []
        for line in reply.body.splitlines():
            with contextlib.suppress(ValueError, TypeError):
                event = json.loads(line)
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                codes.append(int(attributes["containerExitCode"]))
        if len(codes) != 1:
            # Other execs in the same container ended meanwhile: no way to tell which is ours.
            raise ContainerRuntimeError(f"the exit code of exec {exec_id[:12]} was lost")
        return codes[0]

    async def _kill_exec(self, exec_id: str) -> None:
        """Podman has no API to kill an exec session; signal its host process."""
        with contextlib.suppress(Exception):
            data = (await self._request("GET", f"/exec/{exec_id}/json", what="exec")).json()
            pid = int(data.get("Pid") or 0)
            if pid > 1 and data.get("Running"):
                os.kill(pid, signal.SIGKILL)

    async def exec(
        self,
        container_id: str,
        command: Sequence[str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - on expiry the process is killed
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
        stdin: bytes | None = None,
        max_output: int = 1 << 20,
    ) -> ExecResult:
        created = datetime.now(UTC)
        exec_id, full_id = await self._create_exec(
            container_id,
            command,
            tty=False,
            stdin=stdin is not None,
            env=env,
            user=user,
            working_dir=working_dir,
        )
        out = bytearray()
        err = bytearray()
        truncated = False

        async def run() -> int:
            nonlocal truncated
            reader, writer = await self._start_exec(exec_id, tty=False)
            try:
                if stdin is not None:
                    writer.write(stdin)
                    await writer.drain()
                    if writer.can_write_eof():
                        writer.write_eof()
                frames = _FrameReader()
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    for stream_id, payload in frames.feed(chunk):
                        target = err if stream_id == 2 else out
                        room = max_output - len(target)
                        if len(payload) > room:
                            truncated = True
                        target.extend(payload[: max(room, 0)])
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            return await self._exec_exit_code(exec_id, full_id, created)

        try:
            code = await asyncio.wait_for(run(), timeout)
        except TimeoutError:
            await self._kill_exec(exec_id)
            raise ExecTimeout(
                f"command {list(command)!r} did not finish within {timeout}s"
            ) from None
        return ExecResult(exit_code=code, stdout=bytes(out), stderr=bytes(err), truncated=truncated)

    async def open_exec(
        self,
        container_id: str,
        command: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = True,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
    ) -> PodmanExecSession:
        created = datetime.now(UTC)
        exec_id, full_id = await self._create_exec(
            container_id, command, tty=tty, stdin=stdin, env=env, user=user, working_dir=working_dir
        )
        reader, writer = await self._start_exec(exec_id, tty=tty)
        return PodmanExecSession(
            self, exec_id, reader, writer, container_id=full_id, created=created, tty=tty
        )

    # ----------------------------------------------------------------- stats and events

    async def _cgroup_of(self, container_id: str) -> tuple[str, int | None]:
        cached = self._cgroup_paths.get(container_id)
        if cached is None:
            data = await self._inspect_container(container_id)
            limit = int((data.get("HostConfig") or {}).get("Memory") or 0)
            cached = (str((data.get("State") or {}).get("CgroupPath") or ""), limit or None)
            self._cgroup_paths[container_id] = cached
        return cached

    @staticmethod
    def _inactive_file_bytes(cgroup_path: str) -> int | None:
        """Page cache the kernel can drop, read from the container's memory cgroup
        (v1 and v2 layouts) when it is visible from here."""
        if not cgroup_path:
            return None
        candidates = (
            (
                Path("/sys/fs/cgroup/memory") / cgroup_path.lstrip("/") / "memory.stat",
                "total_inactive_file",
            ),
            (Path("/sys/fs/cgroup") / cgroup_path.lstrip("/") / "memory.stat", "inactive_file"),
        )
        for path, key in candidates:
            try:
                for line in path.read_text().splitlines():
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
            except (OSError, ValueError):
                continue
        return None

    async def container_stats(
        self, container_ids: Sequence[str] | None = None
    ) -> list[ContainerStats]:
        running = {c.id for c in await self.list_containers() if c.state == ContainerState.RUNNING}
        if container_ids is None:
            wanted = sorted(running)
        else:
            wanted = []
            for container_id in container_ids:
                with contextlib.suppress(NotFound):
                    full = await self._owned_container(container_id)
                    if full in running:
                        wanted.append(full)
        if not wanted:
            return []
        params = [("containers", c) for c in wanted] + [("stream", "false")]
        try:
            reply = await self._request("GET", "/containers/stats", params=params, what="stats")
        except (Conflict, NotFound):
            # One of them stopped in between: ask one by one.
            results: list[ContainerStats] = []
            for container_id in wanted:
                with contextlib.suppress(Conflict, NotFound, ContainerRuntimeError):
                    results.extend(await self.container_stats([container_id]))
            return results
        now = datetime.now(UTC)
        results = []
        for item in (reply.json() or {}).get("Stats") or []:
            container_id = str(item.get("ContainerID", ""))
            cgroup, limit = await self._cgroup_of(container_id)
            usage = int(item.get("MemUsage") or 0)
            inactive = await asyncio.to_thread(self._inactive_file_bytes, cgroup)
            working_set = max(0, usage - inactive) if inactive is not None else usage
            results.append(
                ContainerStats(
                    container_id=container_id,
                    timestamp=now,
                    cpu_usage_ns=int(item.get("CPUNano") or 0),
                    memory_usage_bytes=usage,
                    memory_working_set_bytes=working_set,
                    memory_limit_bytes=limit,
                    pids=int(item.get("PIDs") or 0),
                )
            )
        return results

    async def events(self, *, since: datetime | None = None) -> AsyncIterator[ContainerEvent]:
        filters = {"type": ["container"], "label": _label_filter({LABEL_NODE: self._node})}
        params = {"stream": "true", "filters": json.dumps(filters)}
        if since is not None:
            params["since"] = f"{since.timestamp():.9f}"
        hidden = {"name", "image", "podId", "containerExitCode"}
        try:
            async with self._httpx().stream(
                "GET", self._url("/events"), params=params, timeout=None
            ) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise _error_for(_ApiReply(response.status_code, body), "events")
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    actor = event.get("Actor") or {}
                    attributes = actor.get("Attributes") or {}
                    action = str(event.get("Action") or event.get("status") or "")
                    nanos = event.get("timeNano")
                    when = (
                        datetime.fromtimestamp(nanos / 1e9, UTC)
                        if isinstance(nanos, int)
                        else _parse_time(event.get("time")) or datetime.now(UTC)
                    )
                    raw_code = str(attributes.get("containerExitCode", ""))
                    exit_code = int(raw_code) if action == "died" and raw_code.isdigit() else None
                    yield ContainerEvent(
                        container_id=str(actor.get("ID") or event.get("id") or ""),
                        name=str(attributes.get("name", "")),
                        action=action,
                        time=when,
                        labels={k: v for k, v in attributes.items() if k not in hidden},
                        exit_code=exit_code,
                    )
        except httpx.HTTPError as err:
            raise RuntimeUnavailable(f"reading events: {err}") from err

    # ----------------------------------------------------------------- images

    @staticmethod
    def _image_info(data: Mapping[str, Any], *, inspected: bool) -> ImageInfo:
        config = data.get("Config") or {}
        labels = (config.get("Labels") if inspected else data.get("Labels")) or {}
        return ImageInfo(
            id=str(data.get("Id", "")).removeprefix("sha256:"),
            repo_tags=tuple(data.get("RepoTags") or ()),
            size_bytes=int(data.get("Size") or 0),
            created_at=_parse_time(data.get("Created")),
            user=str(config.get("User") or "") if inspected else None,
            labels=dict(labels),
        )

    async def image_exists(self, image: str) -> bool:
        reply = await self._request(
            "GET", f"/images/{quote(image, safe='')}/exists", what=image, ok=(200, 204, 404)
        )
        return reply.status != 404

    async def inspect_image(self, image: str) -> ImageInfo:
        try:
            reply = await self._request("GET", f"/images/{quote(image, safe='')}/json", what=image)
        except NotFound:
            raise ImageNotFound(image) from None
        return self._image_info(reply.json(), inspected=True)

    async def list_images(self) -> list[ImageInfo]:
        reply = await self._request("GET", "/images/json", what="list images")
        return [self._image_info(item, inspected=False) for item in reply.json() or []]

    async def pull_image(self, image: str) -> ImageInfo:
        if not image or any(c.isspace() for c in image):
            raise ImagePullError(image, "invalid image reference")
        try:
            reply = await self._request(
                "POST",
                "/images/pull",
                params={"reference": image, "quiet": "true"},
                http_timeout=1800,
                what=image,
                ok=range(100, 600),
            )
        except RuntimeUnavailable:
            raise
        except ContainerRuntimeError as err:
            raise ImagePullError(image, err.reason) from err
        error = ""
        pulled: list[str] = []
        for line in reply.body.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                if item.get("error"):
                    error = str(item["error"])
                if item.get("images"):
                    pulled = list(item["images"])
                elif item.get("id"):
                    pulled = [str(item["id"])]
        if reply.status >= 400 and not error:
            error = reply.message()
        if error or not pulled:
            raise ImagePullError(image, error or "the registry returned no image")
        return await self.inspect_image(pulled[0])

    async def import_image(
        self,
        tarball: Path,
        reference: str,
        *,
        changes: Sequence[str] = (),
        message: str = "",
    ) -> ImageInfo:
        params: list[tuple[str, str]] = [("reference", reference)]
        params += [("changes", change) for change in changes]
        if message:
            params.append(("message", message))
        with tarball.open("rb") as stream:
            reply = await self._request(
                "POST",
                "/images/import",
                params=params,
                data=stream,
                headers={"Content-Type": "application/x-tar"},
                http_timeout=1800,
                what=reference,
            )
        image_id = str((reply.json() or {}).get("Id", "")) or reference
        return await self.inspect_image(image_id)

    async def tag_image(self, image: str, reference: str) -> None:
        repo, tag = _split_reference(reference)
        try:
            await self._request(
                "POST",
                f"/images/{quote(image, safe='')}/tag",
                params={"repo": repo, "tag": tag},
                what=image,
            )
        except NotFound:
            raise ImageNotFound(image) from None

    async def remove_image(self, image: str, *, force: bool = False) -> None:
        try:
            await self._request(
                "DELETE",
                f"/images/{quote(image, safe='')}",
                params={"force": "true" if force else "false"},
                what=image,
            )
        except NotFound:
            return

    # ----------------------------------------------------------------- volumes

    @staticmethod
    def _volume_info(data: Mapping[str, Any]) -> VolumeInfo:
        return VolumeInfo(
            name=str(data.get("Name", "")),
            mountpoint=str(data.get("Mountpoint", "")),
            labels=dict(data.get("Labels") or {}),
            created_at=_parse_time(data.get("CreatedAt")),
        )

    async def _inspect_volume(self, name: str) -> VolumeInfo | None:
        try:
            reply = await self._request(
                "GET", f"/volumes/{quote(name, safe='')}/json", what=f"volume {name}"
            )
        except NotFound:
            return None
        return self._volume_info(reply.json())

    async def create_volume(self, name: str, labels: Mapping[str, str] | None = None) -> VolumeInfo:
        validate_name(name, "volume name")
        validate_labels(labels or {})
        existing = await self._inspect_volume(name)
        if existing is None:
            body = {"Name": name, "Label": {**(labels or {}), LABEL_NODE: self._node}}
            with contextlib.suppress(Conflict):  # created concurrently: checked below
                await self._request("POST", "/volumes/create", body=body, what=f"volume {name}")
            existing = await self._inspect_volume(name)
        if existing is None:
            raise ContainerRuntimeError(f"volume {name} vanished right after it was created")
        if existing.labels.get(LABEL_NODE) != self._node:
            raise Conflict(f"volume {name} belongs to another node")
        return existing

    async def remove_volume(self, name: str, *, force: bool = False) -> None:
        existing = await self._inspect_volume(name)
        if existing is None or existing.labels.get(LABEL_NODE) != self._node:
            return
        with contextlib.suppress(NotFound):
            await self._request(
                "DELETE",
                f"/volumes/{quote(name, safe='')}",
                params={"force": "true" if force else "false"},
                what=f"volume {name}",
            )

    async def list_volumes(self, labels: Mapping[str, str] | None = None) -> list[VolumeInfo]:
        filters = {"label": _label_filter({LABEL_NODE: self._node})}
        reply = await self._request(
            "GET", "/volumes/json", params={"filters": json.dumps(filters)}, what="list volumes"
        )
        volumes = [self._volume_info(item) for item in reply.json() or []]
        return [
            v
            for v in volumes
            if v.labels.get(LABEL_NODE) == self._node and _matches(v.labels, labels)
        ]


def _conforms(
    runtime: PodmanRuntime, session: PodmanExecSession
) -> tuple[ContainerRuntime, ExecSession]:
    """Lets mypy prove the Podman runtime implements the protocol."""
    return runtime, session
