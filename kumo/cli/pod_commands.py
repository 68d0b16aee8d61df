"""``kumo logs`` and ``kumo exec``: a container's output, and commands run in it, through
the API server (pods/log, pods/exec) and the agent of the pod's node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import click
import httpx

from kumo.cli.resource_commands import handles_errors, namespace_option
from kumo.client import ApiException, ClientConfig
from kumo.client.config import default_path, load
from kumo.model.core import Pod
from kumo.model.registry import for_model

POD = for_model(Pod)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """A Go-style duration (``30s``, ``5m``, ``1h30m``, ``1.5h``) in seconds."""
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(value):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h30m)")
    return total


def since_seconds(text: str) -> int:
    """``--since`` as the whole seconds the API takes (rounded up, as kubectl does)."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"--since must be a positive duration, got {text!r}")
    return max(1, math.ceil(seconds))


def pod_name(argument: str) -> str:
    """``web``, ``pod/web`` or ``pods/web``."""
    kind, sep, name = argument.partition("/")
    if not sep:
        return argument
    if kind.lower() not in ("pod", "pods", "po"):
        raise click.UsageError(f"kumo logs / exec work on pods, not {kind!r}")
    return name


def _config(ctx: click.Context) -> ClientConfig:
    obj = ctx.find_root().obj or {}
    config = load(default_path(), obj.get("context"))
    config.impersonate = obj.get("as") or None
    config.impersonate_groups = list(obj.get("as_groups") or [])
    return config


def _status_of(code: int, body: bytes) -> ApiException:
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        status = {"message": body.decode(errors="replace").strip()[:500] or f"HTTP {code}"}
    return ApiException(code, status)


# --------------------------------------------------------------------------- logs


def log_query(
    *,
    container: str | None,
    follow: bool,
    tail: int,
    since: str | None,
    since_time: str | None,
    previous: bool,
    timestamps: bool,
    limit_bytes: int | None,
) -> dict[str, str]:
    """The pods/log query of ``kumo logs``' options."""
    if since and since_time:
        raise click.UsageError("at most one of --since and --since-time may be given")
    query: dict[str, str] = {}
    if container:
        query["container"] = container
    for name, value in (("follow", follow), ("previous", previous), ("timestamps", timestamps)):
        if value:
            query[name] = "true"
    if tail >= 0:
        query["tailLines"] = str(tail)
    elif tail != -1:
        raise click.UsageError("--tail must be -1 (everything) or a line count")
    if since:
        try:
            query["sinceSeconds"] = str(since_seconds(since))
        except ValueError as err:
            raise click.UsageError(str(err)) from None
    if since_time:
        query["sinceTime"] = since_time
    if limit_bytes is not None:
        if limit_bytes < 1:
            raise click.UsageError("--limit-bytes must be positive")
        query["limitBytes"] = str(limit_bytes)
    return query


def _stream_logs(config: ClientConfig, path: str, query: dict[str, str]) -> Iterator[bytes]:
    headers = [("User-Agent", "kumo-cli"), *config.auth_headers()]
    with (
        httpx.Client(
            base_url=config.server,
            verify=config.ssl_context(),
            headers=headers,
            timeout=httpx.Timeout(30.0, read=None),
        ) as http,
        http.stream("GET", path, params=query) as response,
    ):
        if response.status_code >= 400:
            raise _status_of(response.status_code, response.read())
        yield from response.iter_raw()


@click.command("logs")
@click.argument("pod")
@click.option("-c", "--container", default=None, help="The container (default: the only one).")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output.")
@click.option(
    "--tail", type=int, default=-1, show_default=True, help="Lines from the end (-1: all)."
)
@click.option("--since", default=None, help="Only output newer than this, e.g. 10s, 5m, 1h.")
@click.option("--since-time", default=None, help="Only output after this RFC 3339 time.")
@click.option("-p", "--previous", is_flag=True, help="The container before its last restart.")
@click.option("--timestamps", is_flag=True, help="Start every line with its time.")
@click.option("--limit-bytes", type=int, default=None, help="Stop after this many bytes.")
@namespace_option
@click.pass_context
@handles_errors
def logs_command(
    ctx: click.Context,
    pod: str,
    container: str | None,
    follow: bool,
    tail: int,
    since: str | None,
    since_time: str | None,
    previous: bool,
    timestamps: bool,
    limit_bytes: int | None,
    namespace: str | None,
) -> None:
    """Print the output of a pod's container."""
    config = _config(ctx)
    query = log_query(
        container=container,
        follow=follow,
        tail=tail,
        since=since,
        since_time=since_time,
        previous=previous,
        timestamps=timestamps,
        limit_bytes=limit_bytes,
    )
    path = POD.path(namespace or config.namespace, pod_name(pod), "log")
    out = sys.stdout.buffer
    try:
        for chunk in _stream_logs(config, path, query):
            out.write(chunk)
            out.flush()
    except BrokenPipeError:  # `kumo logs POD | head`
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --------------------------------------------------------------------------- exec


def exec_url(
    config: ClientConfig,
    namespace: str,
    pod: str,
    command: tuple[str, ...],
    *,
    container: str | None,
    stdin: bool,
    tty: bool,
) -> str:
    """The WebSocket URL of a pods/exec request."""
    pairs: list[tuple[str, str]] = [("command", part) for part in command]
    if container:
        pairs.append(("container", container))
    pairs += [
        ("stdin", "true" if stdin else "false"),
        ("stdout", "true"),
        ("stderr", "false" if tty else "true"),
        ("tty", "true" if tty else "false"),
    ]
    base = config.server
    scheme = "wss" if base.startswith("https://") else "ws"
    host = base.split("://", 1)[1]
    return f"{scheme}://{host}{POD.path(namespace, pod, 'exec')}?{urlencode(pairs)}"


class _StdinReader:
    """Reads the terminal / pipe on a daemon thread (a blocked read must never hold up
    the exit) and hands chunks to the event loop; b"" means end of input."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self._loop = loop
        threading.Thread(target=self._run, name="kumo-exec-stdin", daemon=True).start()

    def _put(self, data: bytes) -> None:
        asyncio.run_coroutine_threadsafe(self.queue.put(data), self._loop).result()

    def _run(self) -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            try:
                self._put(data)
            except RuntimeError:  # the loop has closed
                return
            if not data:
                return


def _terminal_size() -> tuple[int, int]:
    for fd in (sys.stdin.fileno(), sys.stdout.fileno()):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return size.columns, size.lines
    return 80, 24


async def _session(websocket: Any, *, send_stdin: bool, tty: bool) -> dict[str, Any] | None:
    """Relay stdin / stdout / stderr / resizes until the server closes; returns the final
    status (None if the connection ended without one)."""
    from websockets.exceptions import ConnectionClosed

    from kumo.node.server import CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT

    loop = asyncio.get_running_loop()
    status: dict[str, Any] | None = None
    v5 = websocket.subprotocol == "v5.channel.k8s.io"

    async def send_size() -> None:
        width, height = _terminal_size()
        with contextlib.suppress(ConnectionClosed):
            await websocket.send(
                bytes([RESIZE]) + json.dumps({"Width": width, "Height": height}).encode()
            )

    async def output() -> None:
        nonlocal status
        with contextlib.suppress(ConnectionClosed):
            async for message in websocket:
                data = message if isinstance(message, bytes) else message.encode()
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel == STDOUT:
                    sys.stdout.buffer.write(payload)
                    sys.stdout.buffer.flush()
                elif channel == STDERR:
                    sys.stderr.buffer.write(payload)
                    sys.stderr.buffer.flush()
                elif channel == ERROR:
                    with contextlib.suppress(ValueError):
                        status = json.loads(payload)

    async def forward_stdin() -> None:
        reader = _StdinReader(loop)
        with contextlib.suppress(ConnectionClosed):
            while True:
                chunk = await reader.queue.get()
                if not chunk:
                    if v5:
                        await websocket.send(bytes([CLOSE, STDIN]))
                    return
                await websocket.send(bytes([STDIN]) + chunk)

    tasks: list[asyncio.Task[None]] = []
    if tty:
        await send_size()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(
                signal.SIGWINCH, lambda: tasks.append(loop.create_task(send_size()))
            )
    if send_stdin:
        tasks.append(loop.create_task(forward_stdin()))
    try:
        await output()
    finally:
        if tty:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGWINCH)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return status


async def _run_exec(config: ClientConfig, url: str, *, send_stdin: bool, tty: bool) -> int:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus
    from websockets.typing import Subprotocol

    from kumo.node.server import CHANNEL_PROTOCOLS, exit_code_of

    headers = [("User-Agent", "kumo-cli"), *config.auth_headers()]
    context = config.ssl_context()
    try:
        async with connect(
            url,
            additional_headers=headers,
            subprotocols=[Subprotocol(p) for p in CHANNEL_PROTOCOLS],
            ssl=context if not isinstance(context, bool) else None,
            compression=None,
            max_size=None,
            proxy=None,
            open_timeout=30,
        ) as websocket:
            status = await _session(websocket, send_stdin=send_stdin, tty=tty)
    except InvalidStatus as err:
        raise _status_of(err.response.status_code, bytes(err.response.body or b"")) from None
    except (OSError, TimeoutError, InvalidHandshake) as err:
        raise click.ClickException(
            f"cannot reach the kumo API ({err}); is kumo running? Start it with `kumo up`."
        ) from None
    if status is None:
        click.echo(
            "error: the connection closed before the command's exit status arrived", err=True
        )
        return 1
    code = exit_code_of(status)
    if code is None:
        click.echo(f"error: {status.get('message') or 'the command failed'}", err=True)
        return 1
    return code


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    """The local terminal in raw mode (keys go to the remote tty as they are typed),
    restored afterwards."""
    if not enabled:
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@click.command("exec")
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-c", "--container", default=None, help="The container (default: the only one).")
@click.option("-i", "--stdin", "send_stdin", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Give the command a terminal.")
@namespace_option
@click.pass_context
@handles_errors
def exec_command(
    ctx: click.Context,
    pod: str,
    command: tuple[str, ...],
    container: str | None,
    send_stdin: bool,
    tty: bool,
    namespace: str | None,
) -> None:
    """Run a command in a pod's container: kumo exec POD [-c C] [-i] [-t] -- CMD [ARG...].

    The exit status is the command's."""
    config = _config(ctx)
    if tty and send_stdin and not sys.stdin.isatty():
        click.echo(
            "Unable to use a TTY - input is not a terminal or the right kind of file", err=True
        )
        tty = False
    url = exec_url(
        config,
        namespace or config.namespace,
        pod_name(pod),
        command,
        container=container,
        stdin=send_stdin,
        tty=tty,
    )
    with _raw_terminal(tty and send_stdin):
        code = asyncio.run(_run_exec(config, url, send_stdin=send_stdin, tty=tty))
    sys.exit(code)


def register(group: click.Group) -> None:
    group.add_command(logs_command)
    group.add_command(exec_command)
