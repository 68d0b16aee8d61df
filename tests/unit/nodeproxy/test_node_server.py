"""The node server's HTTP, WebSocket and TLS handling, over real TLS on 127.0.0.1 with an
in-memory runtime (the real-Podman path is in tests/integration/logs_exec)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kumo.auth import pki
from kumo.node.runtime import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    ExecResult,
    LogStream,
    SandboxConfig,
)
from kumo.node.runtime.fake import FakeRuntime
from kumo.node.server import APISERVER_CLIENT_NAME, NodeServer, exit_code_of


@dataclass
class Setup:
    runtime: FakeRuntime
    server: NodeServer
    pki_dir: Path
    app: str  # container id of pod web's container "app", attempt 1
    previous: str  # attempt 0, exited

    def context(self, name: str | None = APISERVER_CLIENT_NAME) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if name is not None:
            cert, key = pki.issue_certificate(self.pki_dir, name, [], client=True)
            context.load_cert_chain(cert, key)
        return context

    def url(self, path: str, scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.server.port}{path}"

    async def get(
        self, path: str, name: str | None = APISERVER_CLIENT_NAME, **params: str
    ) -> httpx.Response:
        async with httpx.AsyncClient(verify=self.context(name), timeout=10) as client:
            return await client.get(self.url(path), params=params)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    pki.ensure_ca(tmp_path)
    runtime = FakeRuntime("n1")
    sandbox = await runtime.run_sandbox(SandboxConfig("team", "web", "uid-1"))
    previous = await runtime.create_container(
        sandbox.id, ContainerConfig(name="app", image="busybox", attempt=0)
    )
    await runtime.start_container(previous)
    await runtime.write_log(previous, "before the restart")
    await runtime.exit_container(previous, 1)
    app = await runtime.create_container(
        sandbox.id, ContainerConfig(name="app", image="busybox", attempt=1)
    )
    await runtime.start_container(app)
    for i in range(5):
        await runtime.write_log(app, f"line{i}")
    await runtime.write_log(app, "warning", LogStream.STDERR)
    server = NodeServer(runtime, "n1", host="127.0.0.1", port=0, ca_file=tmp_path / "ca.crt")
    async with server:
        yield Setup(runtime, server, tmp_path, app, previous)


# --------------------------------------------------------------------------- who may call


async def test_no_certificate_is_unauthorized(setup: Setup) -> None:
    response = await setup.get("/containerLogs/team/web/app", name=None)
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"


async def test_another_name_from_the_cluster_ca_is_forbidden(setup: Setup) -> None:
    response = await setup.get("/containerLogs/team/web/app", name="system-node-n2")
    assert response.status_code == 403
    assert response.json()["message"] == (
        'Forbidden: client "system-node-n2" may not use the node API'
    )
    assert "line" not in response.text


async def test_a_certificate_of_another_ca_fails_the_handshake(
    setup: Setup, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    cert, key = pki.issue_certificate(other, APISERVER_CLIENT_NAME, [], client=True)
    context = setup.context(None)
    context.load_cert_chain(cert, key)
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(setup.url("/containerLogs/team/web/app"))


async def test_health_and_unknown_paths(setup: Setup) -> None:
    assert (await setup.get("/healthz")).text == "ok"
    assert (await setup.get("/healthz", name=None)).status_code == 401
    missing = await setup.get("/containerLogs/team/web")
    assert (missing.status_code, missing.json()["reason"]) == (404, "NotFound")
    async with httpx.AsyncClient(verify=setup.context(), timeout=10) as client:
        wrong = await client.post(setup.url("/containerLogs/team/web/app"))
    assert wrong.status_code == 405


async def test_a_huge_request_head_is_refused(setup: Setup) -> None:
    async with httpx.AsyncClient(verify=setup.context(), timeout=10) as client:
        response = await client.get(
            setup.url("/containerLogs/team/web/app"), headers={"X-Filler": "a" * 70_000}
        )
    assert response.status_code == 400
    assert response.json()["message"] == "request head too large"


# --------------------------------------------------------------------------- logs


async def test_logs_whole_tail_limit_and_previous(setup: Setup) -> None:
    whole = await setup.get("/containerLogs/team/web/app")
    assert whole.status_code == 200
    assert whole.headers["content-type"].startswith("text/plain")
    assert whole.text == "line0\nline1\nline2\nline3\nline4\nwarning\n"
    assert (
        await setup.get("/containerLogs/team/web/app", tailLines="2")
    ).text == "line4\nwarning\n"
    assert (await setup.get("/containerLogs/team/web/app", tailLines="0")).text == ""
    assert (await setup.get("/containerLogs/team/web/app", limitBytes="8")).text == "line0\nli"
    previous = await setup.get("/containerLogs/team/web/app", previous="true")
    assert previous.text == "before the restart\n"
    stamped = await setup.get("/containerLogs/team/web/app", tailLines="1", timestamps="1")
    assert stamped.text.endswith("Z warning\n")


async def test_logs_of_the_right_pod_uid(setup: Setup) -> None:
    other = await setup.get("/containerLogs/team/web/app", podUID="uid-2")
    assert other.status_code == 404
    assert other.json()["message"] == 'pod "web" has no containers on this node'
    same = await setup.get("/containerLogs/team/web/app", podUID="uid-1", tailLines="1")
    assert same.text == "warning\n"


async def test_log_errors(setup: Setup) -> None:
    for params, words in (
        ({"tailLines": "-3"}, "tailLines"),
        ({"sinceSeconds": "x"}, "sinceSeconds"),
        ({"follow": "sometimes"}, "follow"),
    ):
        response = await setup.get("/containerLogs/team/web/app", **params)
        assert response.status_code == 400
        assert words in response.json()["message"]
    wrong = await setup.get("/containerLogs/team/web/db")
    assert wrong.status_code == 400
    assert wrong.json()["message"] == 'container "db" in pod "web" is not available'


async def test_follow_streams_until_the_container_exits(setup: Setup) -> None:
    async with (
        httpx.AsyncClient(verify=setup.context(), timeout=10) as client,
        client.stream(
            "GET",
            setup.url("/containerLogs/team/web/app"),
            params={"follow": "true", "tailLines": "1"},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == "warning"
        await setup.runtime.write_log(setup.app, "fresh")
        assert await anext(lines) == "fresh"
        await setup.runtime.exit_container(setup.app, 0)
        with pytest.raises(StopAsyncIteration):
            await anext(lines)


async def test_a_caller_hanging_up_ends_the_stream(setup: Setup) -> None:
    async with (
        httpx.AsyncClient(verify=setup.context(), timeout=10) as client,
        client.stream(
            "GET", setup.url("/containerLogs/team/web/app"), params={"follow": "true"}
        ) as response,
    ):
        assert response.status_code == 200
        assert setup.server.open_connections == 1
    for _ in range(100):
        if setup.server.open_connections == 0:
            break
        await asyncio.sleep(0.02)
    assert setup.server.open_connections == 0


# --------------------------------------------------------------------------- exec


def exec_path(*command: str, **flags: str) -> str:
    pairs = [("command", part) for part in command] + list(flags.items())
    return "/exec/team/web/app?" + urlencode(pairs)


async def test_exec_over_the_channel_protocol(setup: Setup) -> None:
    def handler(status: ContainerStatus, command: tuple[str, ...], stdin: bytes) -> ExecResult:
        assert command == ("tr", "a-z", "A-Z")
        return ExecResult(exit_code=2, stdout=stdin.upper(), stderr=b"done\n")

    setup.runtime.exec_handler = handler
    async with connect(
        setup.url(exec_path("tr", "a-z", "A-Z", stdin="true", stdout="true", stderr="true"), "wss"),
        ssl=setup.context(),
        subprotocols=["v5.channel.k8s.io"],  # type: ignore[list-item]
        proxy=None,
    ) as websocket:
        await websocket.send(b"\x00hello ")
        await websocket.send(b"\x00world")
        await websocket.send(b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode())
        await websocket.send(b"\xff\x00")
        channels: dict[int, bytes] = {}
        async for message in websocket:
            assert isinstance(message, bytes)
            channels[message[0]] = channels.get(message[0], b"") + message[1:]
    assert channels[1] == b"HELLO WORLD"
    assert channels[2] == b"done\n"
    assert exit_code_of(json.loads(channels[3])) == 2


async def test_exec_without_stdin_and_only_stdout(setup: Setup) -> None:
    setup.runtime.exec_handler = lambda status, command, stdin: ExecResult(0, b"out", b"err")
    async with connect(
        setup.url(exec_path("true", stdout="true"), "wss"),
        ssl=setup.context(),
        subprotocols=["v4.channel.k8s.io"],  # type: ignore[list-item]
        proxy=None,
    ) as websocket:
        assert websocket.subprotocol == "v4.channel.k8s.io"
        messages = [message async for message in websocket]
    assert messages[0] == b"\x01out"
    assert json.loads(messages[-1][1:]) == {"metadata": {}, "status": "Success"}
    assert len(messages) == 2  # stderr was not asked for


@pytest.mark.parametrize(
    ("path", "subprotocols", "code", "words"),
    [
        (exec_path("true", stdout="true"), None, 400, "missing subprotocol"),
        (exec_path(stdout="true"), ["v5.channel.k8s.io"], 400, "at least one command"),
        (exec_path("true"), ["v5.channel.k8s.io"], 400, "at least one of stdin"),
        (
            "/exec/team/web/db?command=true&stdout=true",
            ["v5.channel.k8s.io"],
            400,
            "is not available",
        ),
    ],
)
async def test_exec_refusals(
    setup: Setup, path: str, subprotocols: list[str] | None, code: int, words: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            setup.url(path, "wss"),
            ssl=setup.context(),
            subprotocols=subprotocols,  # type: ignore[arg-type]
            proxy=None,
        ):
            pass
    assert refused.value.response.status_code == code
    assert words in (refused.value.response.body or b"").decode()


async def test_exec_in_a_stopped_container_is_refused(setup: Setup) -> None:
    await setup.runtime.exit_container(setup.app, 0)
    assert (await setup.runtime.container_status(setup.app)).state == ContainerState.EXITED
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            setup.url(exec_path("true", stdout="true"), "wss"),
            ssl=setup.context(),
            subprotocols=["v5.channel.k8s.io"],  # type: ignore[list-item]
            proxy=None,
        ):
            pass
    assert refused.value.response.status_code == 400
    assert b"is not running" in (refused.value.response.body or b"")


async def test_exec_needs_a_websocket(setup: Setup) -> None:
    response = await setup.get(exec_path("true", stdout="true"))
    assert response.status_code == 400
    assert "Upgrade request required" in response.json()["message"]


async def test_run_non_interactive(setup: Setup) -> None:
    seen: list[bytes] = []

    def handler(status: ContainerStatus, command: tuple[str, ...], stdin: bytes) -> ExecResult:
        seen.append(stdin)
        return ExecResult(exit_code=3, stdout=b"\x00binary\xff", stderr=b"oops")

    setup.runtime.exec_handler = handler
    async with httpx.AsyncClient(verify=setup.context(), timeout=10) as client:
        response = await client.post(
            setup.url("/run/team/web/app"),
            params=[("command", "sh"), ("command", "-c"), ("command", "cat")],
            content=b"input bytes",
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["exitCode"] == 3
        assert base64.b64decode(body["stdout"]) == b"\x00binary\xff"
        assert base64.b64decode(body["stderr"]) == b"oops"
        assert body["truncated"] is False
        assert seen == [b"input bytes"]
        no_command = await client.post(setup.url("/run/team/web/app"))
        assert no_command.status_code == 400
        bad_timeout = await client.post(
            setup.url("/run/team/web/app"), params={"command": "ls", "timeout": "-1"}
        )
        assert bad_timeout.status_code == 400
