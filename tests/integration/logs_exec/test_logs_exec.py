"""``kumo logs`` and ``kumo exec`` end to end: the real CLI, the real API server
(pods/log, pods/exec), the node's HTTPS server and real Podman containers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import signal
import ssl
import struct
import termios
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kumo.auth import pki
from kumo.node.runtime.podman import PodmanRuntime
from kumo.node.server import NodeServer
from tests.conftest import free_port, unique_name
from tests.integration.logs_exec.conftest import Cluster, RunningPod, kumo_command
from tests.integration.node.conftest import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHANNELS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]


async def logged(runtime: PodmanRuntime, container_id: str) -> str:
    return "".join([line.text + "\n" async for line in runtime.logs(container_id)])


async def until_logged(
    runtime: PodmanRuntime, container_id: str, text: str, within: float = 15.0
) -> None:
    async def check() -> bool:
        return text in await logged(runtime, container_id)

    await eventually(check, within, f"{text!r} in the container's log")


async def read_line(stream: asyncio.StreamReader, within: float = 15.0) -> str:
    async with asyncio.timeout(within):
        line = await stream.readline()
    assert line, "the stream ended"
    return line.decode().rstrip("\n")


def http(cluster: Cluster, token: str | None = None) -> httpx.AsyncClient:
    server = cluster.server
    headers = {"Authorization": f"Bearer {token or server.token}"} if token != "" else {}
    return httpx.AsyncClient(
        base_url=server.url, verify=server.ssl_context(), headers=headers, timeout=30.0
    )


def exec_url(cluster: Cluster, pod: str, *command: str, **flags: str) -> str:
    pairs = [("command", part) for part in command]
    pairs += list({"stdout": "true", "stderr": "true", **flags}.items())
    query = urlencode(pairs)
    host = cluster.server.url.removeprefix("https://")
    return f"wss://{host}/api/v1/namespaces/{cluster.namespace}/pods/{pod}/exec?{query}"


# --------------------------------------------------------------------------- logs


async def test_logs_whole_tail_and_timestamps(cluster: Cluster) -> None:
    pod = await cluster.run_pod(
        {"app": "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; sleep 300"}
    )
    await until_logged(cluster.runtime, pod.containers["app"][0], "oops")
    ns = cluster.namespace

    whole, tail, stamped = await asyncio.gather(
        cluster.kumo("logs", pod.name, "-n", ns),
        cluster.kumo("logs", f"pod/{pod.name}", "-n", ns, "--tail", "2"),
        cluster.kumo("logs", pod.name, "-n", ns, "--tail", "1", "--timestamps"),
    )
    assert whole.code == 0, whole.stderr
    assert whole.stdout.splitlines() == ["line1", "line2", "line3", "line4", "line5", "oops"]
    assert tail.code == 0, tail.stderr
    assert tail.stdout.splitlines() == ["line5", "oops"]
    assert stamped.code == 0, stamped.stderr
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9})Z oops\n", stamped.stdout)
    assert match, stamped.stdout
    when = datetime.datetime.fromisoformat(match.group(1)[:26]).replace(tzinfo=datetime.UTC)
    assert abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) < 120


async def test_logs_since_duration_and_time(cluster: Cluster) -> None:
    pod = await cluster.run_pod({"app": "echo early; sleep 6; echo late; sleep 300"})
    container = pod.containers["app"][0]
    await until_logged(cluster.runtime, container, "late", within=20)

    # "late" is younger than 4 s unless starting the CLI takes longer than that.
    recent = await cluster.kumo("logs", pod.name, "-n", cluster.namespace, "--since", "4s")
    assert recent.code == 0, recent.stderr
    assert recent.stdout.splitlines() == ["late"]

    async with http(cluster) as client:
        path = f"/api/v1/namespaces/{cluster.namespace}/pods/{pod.name}/log"
        stamped = (await client.get(path, params={"timestamps": "true"})).text.splitlines()
        assert [line.split(" ", 1)[1] for line in stamped] == ["early", "late"]
        late_at = datetime.datetime.fromisoformat(stamped[1].split(" ", 1)[0])
        since_time = (late_at - datetime.timedelta(seconds=1)).isoformat()
        response = await client.get(path, params={"sinceTime": since_time})
        assert response.status_code == 200, response.text
        assert response.text == "late\n"


async def test_logs_follow_streams_new_lines_until_hangup(
    cluster: Cluster, node_server: NodeServer
) -> None:
    pod = await cluster.run_pod(
        {"app": "i=0; while [ $i -lt 1000 ]; do echo tick$i; i=$((i+1)); sleep 0.2; done"}
    )
    container = pod.containers["app"][0]
    await until_logged(cluster.runtime, container, "tick0")
    follower = await cluster.spawn("logs", "-f", pod.name, "-n", cluster.namespace)
    assert follower.stdout is not None
    try:
        assert await read_line(follower.stdout) == "tick0"
        written = len((await logged(cluster.runtime, container)).splitlines())
        # Lines the container writes only now reach the running `kumo logs -f`.
        seen = 0
        while seen <= written + 3:
            line = await read_line(follower.stdout)
            assert line == f"tick{seen + 1}", line
            seen += 1
        assert follower.returncode is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            follower.terminate()
        await follower.wait()

    # The client hung up: the API server drops its stream and the node server its own.
    async def node_idle() -> bool:
        return node_server.open_connections == 0

    await eventually(node_idle, 10, "the node server to close the log stream")


async def test_logs_follow_ends_when_the_container_exits(cluster: Cluster) -> None:
    pod = await cluster.run_pod({"app": "echo a; sleep 4; echo b; echo c"})
    follower = await cluster.spawn("logs", "-f", pod.name, "-n", cluster.namespace)
    assert follower.stdout is not None
    try:
        assert await read_line(follower.stdout) == "a"
        async with asyncio.timeout(20):
            rest = await follower.stdout.read()
            assert await follower.wait() == 0
        assert rest == b"b\nc\n"
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()


async def test_logs_previous_attempt(cluster: Cluster) -> None:
    pod = await cluster.run_pod({"app": "echo first run; exit 1"})
    ns = cluster.namespace
    async with asyncio.timeout(20):
        assert await cluster.runtime.wait_container(pod.containers["app"][0]) == 1

    only_one = await cluster.kumo("logs", pod.name, "-n", ns, "--previous")
    assert only_one.code == 1
    assert (
        f'Error from server (BadRequest): previous terminated container "app" in pod '
        f'"{pod.name}" not found' in only_one.stderr
    )

    restarted = await cluster.start_attempt(pod, "app", "echo second run; sleep 300")
    await until_logged(cluster.runtime, restarted, "second run")
    current, previous = await asyncio.gather(
        cluster.kumo("logs", pod.name, "-n", ns), cluster.kumo("logs", pod.name, "-n", ns, "-p")
    )
    assert current.code == 0, current.stderr
    assert current.stdout == "second run\n"
    assert previous.code == 0, previous.stderr
    assert previous.stdout == "first run\n"


async def test_logs_of_one_container_of_several(cluster: Cluster) -> None:
    pod = await cluster.run_pod(
        {"web": "echo from-web; sleep 300", "sidecar": "echo from-sidecar; sleep 300"}
    )
    await until_logged(cluster.runtime, pod.containers["sidecar"][0], "from-sidecar")
    await until_logged(cluster.runtime, pod.containers["web"][0], "from-web")
    ns = cluster.namespace

    sidecar, web, unnamed, wrong = await asyncio.gather(
        cluster.kumo("logs", pod.name, "-n", ns, "-c", "sidecar"),
        cluster.kumo("logs", pod.name, "-n", ns, "--container", "web"),
        cluster.kumo("logs", pod.name, "-n", ns),
        cluster.kumo("logs", pod.name, "-n", ns, "-c", "nope"),
    )
    assert (sidecar.code, sidecar.stdout) == (0, "from-sidecar\n"), sidecar.stderr
    assert (web.code, web.stdout) == (0, "from-web\n"), web.stderr
    assert unnamed.code == 1
    assert (
        f"Error from server (BadRequest): a container name must be specified for pod "
        f"{pod.name}, choose one of: [web sidecar]" in unnamed.stderr
    )
    assert wrong.code == 1
    assert f"container nope is not valid for pod {pod.name}" in wrong.stderr


async def test_logs_bad_requests(cluster: Cluster) -> None:
    unbound = await cluster.create_pod({"app": "true"}, node=None)
    name = unbound["metadata"]["name"]
    running = await cluster.run_pod({"app": "echo hi; sleep 300"})
    base = f"/api/v1/namespaces/{cluster.namespace}/pods"
    async with http(cluster) as client:
        response = await client.get(f"{base}/{name}/log")
        assert response.status_code == 400
        assert response.json()["message"] == f"pod {name} does not have a host assigned"
        response = await client.get(f"{base}/missing/log")
        assert response.status_code == 404
        assert response.json()["message"] == 'pods "missing" not found'
        response = await client.get(f"{base}/{running.name}/log", params={"tailLines": "-1"})
        assert response.status_code == 422
        assert response.json()["reason"] == "Invalid"
        assert "tailLines" in response.json()["message"]
        response = await client.get(f"{base}/{running.name}/log", params={"tailLines": "x"})
        assert response.status_code == 400
        response = await client.get(
            f"{base}/{running.name}/log",
            params={"sinceSeconds": "5", "sinceTime": "2024-01-01T00:00:00Z"},
        )
        assert response.status_code == 422
        response = await client.get(f"{base}/{running.name}/log", params={"limitBytes": "0"})
        assert response.status_code == 422
        await until_logged(cluster.runtime, running.containers["app"][0], "hi")
        response = await client.get(f"{base}/{running.name}/log", params={"limitBytes": "1"})
        assert (response.status_code, response.text) == (200, "h")
        response = await client.post(f"{base}/{running.name}/log", json={})
        assert response.status_code == 405


# --------------------------------------------------------------------------- exec


async def test_exec_output_and_exit_codes(cluster: Cluster) -> None:
    pod = await cluster.run_pod({"app": "sleep 300"})
    ns = cluster.namespace
    result, hostname, missing = await asyncio.gather(
        cluster.kumo(
            "exec", pod.name, "-n", ns, "--", "sh", "-c", "echo out; echo err >&2; exit 3"
        ),
        cluster.kumo("exec", pod.name, "-n", ns, "-c", "app", "--", "hostname"),
        cluster.kumo("exec", pod.name, "-n", ns, "--", "no-such-command"),
    )
    assert (result.code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert (hostname.code, hostname.stdout) == (0, pod.name + "\n"), hostname.stderr
    assert missing.code in (126, 127), missing


async def test_exec_passes_stdin(cluster: Cluster) -> None:
    pod = await cluster.run_pod({"app": "sleep 300"})
    ns = cluster.namespace
    big = os.urandom(300_000)
    upper, counted, ignored = await asyncio.gather(
        cluster.kumo(
            "exec", "-i", pod.name, "-n", ns, "--", "tr", "a-z", "A-Z", stdin=b"hello\nworld\n"
        ),
        cluster.kumo(
            "exec", "-i", pod.name, "-n", ns, "--", "sh", "-c", "wc -c; exit 5", stdin=big
        ),
        # Without -i the command sees no input at all.
        cluster.kumo("exec", pod.name, "-n", ns, "--", "wc", "-c", stdin=b"x" * 10),
    )
    assert (upper.code, upper.stdout) == (0, "HELLO\nWORLD\n"), upper.stderr
    assert (counted.code, counted.stdout.strip()) == (5, str(len(big))), counted.stderr
    assert (ignored.code, ignored.stdout.strip()) == (0, "0"), ignored.stderr


class Terminal:
    """The controlling side of a pseudo-terminal the CLI runs on."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.buffer = b""

    async def expect(self, pattern: str, within: float = 15.0) -> re.Match[bytes]:
        try:
            async with asyncio.timeout(within):
                return await self._expect(re.compile(pattern.encode()))
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} in {self.buffer!r}") from None

    async def _expect(self, regex: re.Pattern[bytes]) -> re.Match[bytes]:
        loop = asyncio.get_running_loop()
        if True:
            while True:
                match = regex.search(self.buffer)
                if match:
                    self.buffer = self.buffer[match.end() :]
                    return match
                readable = asyncio.Event()
                loop.add_reader(self.master, readable.set)
                try:
                    await readable.wait()
                finally:
                    loop.remove_reader(self.master)
                try:
                    self.buffer += os.read(self.master, 65536)
                except OSError:  # the other side is gone
                    raise AssertionError(f"no {regex.pattern!r} in {self.buffer!r}") from None

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def resize(self, rows: int, columns: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


async def test_exec_interactive_terminal(cluster: Cluster, node_server: NodeServer) -> None:
    pod = await cluster.run_pod({"app": "sleep 300"})
    master, slave = os.openpty()
    terminal = Terminal(master)
    terminal.resize(40, 100)
    process = await asyncio.create_subprocess_exec(
        *kumo_command("exec", "-it", pod.name, "-n", cluster.namespace, "--", "sh"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cluster.env(),
        start_new_session=True,
    )
    os.close(slave)
    try:
        # Type only once the shell prompts: its line editor discards earlier input.
        await terminal.expect(r"/ # ")
        terminal.send("test -t 0 && echo TTY-$((6*7))\n")
        await terminal.expect(r"TTY-42")
        terminal.send("stty size\n")
        await terminal.expect(r"\n40 100\r?\n")
        terminal.resize(30, 120)
        process.send_signal(signal.SIGWINCH)
        # The new size travels CLI -> API server -> node -> Podman; ask until it is there.
        sizes = []
        for _ in range(20):
            terminal.send("stty size\n")
            match = await terminal.expect(r"\n(\d+) (\d+)\r?\n")
            sizes.append((int(match.group(1)), int(match.group(2))))
            if sizes[-1] == (30, 120):
                break
            await asyncio.sleep(0.2)
        assert sizes[-1] == (30, 120), sizes
        terminal.send("exit 7\n")
        async with asyncio.timeout(20):
            assert await process.wait() == 7
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)

    async def node_idle() -> bool:
        return node_server.open_connections == 0

    await eventually(node_idle, 10, "the node server to end the exec session")


async def test_exec_over_the_websocket_api(cluster: Cluster) -> None:
    """The channel protocol as any client sees it: stdin, close of stdin (v5), exit
    status on channel 3."""
    pod = await cluster.run_pod({"app": "sleep 300"})
    url = exec_url(cluster, pod.name, "sh", "-c", "cat; exit 4", stdin="true")
    headers = {"Authorization": f"Bearer {cluster.server.token}"}
    async with connect(
        url,
        additional_headers=headers,
        subprotocols=CHANNELS,  # type: ignore[arg-type]
        ssl=cluster.server.ssl_context(),
        proxy=None,
    ) as websocket:
        assert websocket.subprotocol == "v5.channel.k8s.io"
        await websocket.send(b"\x00ping-pong")
        await websocket.send(b"\xff\x00")  # v5: close stdin
        received: dict[int, bytes] = {}
        async for message in websocket:
            assert isinstance(message, bytes)
            received[message[0]] = received.get(message[0], b"") + message[1:]
    assert received[1] == b"ping-pong"
    status = json.loads(received[3])
    assert status["status"] == "Failure"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "4"}]


async def test_exec_bad_requests(cluster: Cluster) -> None:
    ns = cluster.namespace
    finished = await cluster.run_pod({"app": "exit 0"})
    async with asyncio.timeout(20):
        await cluster.runtime.wait_container(finished.containers["app"][0])
    unbound = (await cluster.create_pod({"app": "true"}, node=None))["metadata"]["name"]

    gone, no_host, stopped, wrong = await asyncio.gather(
        cluster.kumo("exec", "nope", "-n", ns, "--", "true"),
        cluster.kumo("exec", unbound, "-n", ns, "--", "true"),
        cluster.kumo("exec", finished.name, "-n", ns, "--", "true"),
        cluster.kumo("exec", finished.name, "-n", ns, "-c", "web", "--", "true"),
    )
    assert gone.code == 1
    assert 'Error from server (NotFound): pods "nope" not found' in gone.stderr
    assert no_host.code == 1
    assert f"pod {unbound} does not have a host assigned" in no_host.stderr
    assert stopped.code == 1
    assert "Error from server (BadRequest)" in stopped.stderr
    assert "is not running" in stopped.stderr
    assert wrong.code == 1
    assert f"container web is not valid for pod {finished.name}" in wrong.stderr

    async with http(cluster) as client:
        path = f"/api/v1/namespaces/{ns}/pods/{finished.name}/exec"
        response = await client.post(path, params={"command": "true", "stdout": "true"})
        assert response.status_code == 400
        assert response.json()["message"] == "Upgrade request required"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            exec_url(cluster, finished.name, "true"),
            additional_headers={"Authorization": f"Bearer {cluster.server.token}"},
            ssl=cluster.server.ssl_context(),
            proxy=None,
        ):
            pass
    assert refused.value.response.status_code == 400  # no channel subprotocol offered
    assert b"subprotocol" in (refused.value.response.body or b"")


# --------------------------------------------------------------------------- who may


async def test_only_authorized_users_get_logs_and_exec(cluster: Cluster, tmp_path: Path) -> None:
    pod = await cluster.run_pod({"app": "echo secret; sleep 300"})
    await until_logged(cluster.runtime, pod.containers["app"][0], "secret")
    viewer = cluster.server.viewer_token
    path = f"/api/v1/namespaces/{cluster.namespace}/pods/{pod.name}/log"
    async with http(cluster, viewer) as client:
        response = await client.get(path)
    assert response.status_code == 403
    assert response.json()["reason"] == "Forbidden"
    assert 'User "jane" cannot get resource "pods/log"' in response.json()["message"]
    async with http(cluster, "") as anonymous:
        assert (await anonymous.get(path)).status_code == 401

    for token, code in ((viewer, 403), ("", 401), ("kumo-bogus.token", 401)):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                exec_url(cluster, pod.name, "cat", "/etc/hostname"),
                additional_headers=headers,
                subprotocols=CHANNELS,  # type: ignore[arg-type]
                ssl=cluster.server.ssl_context(),
                proxy=None,
            ):
                pass
        assert refused.value.response.status_code == code
        if code == 403:
            status = json.loads(refused.value.response.body or b"{}")
            assert 'User "jane" cannot create resource "pods/exec"' in status["message"]

    kubeconfig = cluster.server.kubeconfig_for(viewer, tmp_path / "viewer.kubeconfig")
    logs, execed = await asyncio.gather(
        cluster.kumo("logs", pod.name, "-n", cluster.namespace, kubeconfig=kubeconfig),
        cluster.kumo(
            "exec", pod.name, "-n", cluster.namespace, "--", "true", kubeconfig=kubeconfig
        ),
    )
    assert logs.code == 1
    assert "Error from server (Forbidden)" in logs.stderr
    assert "secret" not in logs.stdout
    assert execed.code == 1
    assert "Error from server (Forbidden)" in execed.stderr


def _client_context(cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_node_server_accepts_only_the_api_servers_certificate(
    cluster: Cluster, node_server: NodeServer, tmp_path: Path
) -> None:
    pod = await cluster.run_pod({"app": "echo node-secret; sleep 300"})
    await until_logged(cluster.runtime, pod.containers["app"][0], "node-secret")
    url = (
        f"https://127.0.0.1:{node_server.port}/containerLogs/"
        f"{cluster.namespace}/{pod.name}/app?podUID={pod.uid}"
    )
    # Through the API server first: that issues its kubelet-client certificate.
    assert (await cluster.kumo("logs", pod.name, "-n", cluster.namespace)).stdout == (
        "node-secret\n"
    )
    cluster_pki = cluster.server.data_dir / "pki"

    async def get(context: ssl.SSLContext) -> httpx.Response:
        async with httpx.AsyncClient(verify=context, timeout=10.0) as client:
            return await client.get(url)

    # The API server's own credentials work.
    allowed = await get(
        _client_context(
            cluster_pki / "apiserver-kubelet-client.crt",
            cluster_pki / "apiserver-kubelet-client.key",
        )
    )
    assert (allowed.status_code, allowed.text) == (200, "node-secret\n")

    # Plain TLS, no client certificate.
    anonymous = await get(_client_context())
    assert anonymous.status_code == 401
    assert anonymous.json()["reason"] == "Unauthorized"
    assert "node-secret" not in anonymous.text

    # The right name, but signed by another CA: the TLS handshake fails.
    stranger_ca = tmp_path / "other-ca"
    cert, key = pki.issue_certificate(stranger_ca, "apiserver-kubelet-client", [], client=True)
    with pytest.raises(httpx.TransportError):
        await get(_client_context(cert, key))

    # Signed by the cluster CA, but not the API server's name.
    same_ca = tmp_path / "same-ca"
    same_ca.mkdir()
    for name in ("ca.crt", "ca.key"):
        shutil.copy(cluster_pki / name, same_ca / name)
    cert, key = pki.issue_certificate(same_ca, "kumo-scheduler", [], client=True)
    intruder = await get(_client_context(cert, key))
    assert intruder.status_code == 403
    assert intruder.json()["reason"] == "Forbidden"
    assert "node-secret" not in intruder.text

    # Exec is guarded the same way.
    exec_path = (
        f"wss://127.0.0.1:{node_server.port}/exec/{cluster.namespace}/{pod.name}/app"
        f"?command=true&stdout=true&podUID={pod.uid}"
    )
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            exec_path,
            subprotocols=CHANNELS,  # type: ignore[arg-type]
            ssl=_client_context(cert, key),
            proxy=None,
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_a_pod_with_the_same_name_on_the_node_is_not_confused(cluster: Cluster) -> None:
    """Containers of an older pod with the same name (another uid, being torn down)
    are never shown for the new one: the API server passes the pod's uid along."""
    from kumo.node.runtime import ContainerConfig, SandboxConfig

    old_sandbox = await cluster.runtime.run_sandbox(
        SandboxConfig(cluster.namespace, "same-name", "0ld-uid-0000")
    )
    old = await cluster.runtime.create_container(
        old_sandbox.id,
        ContainerConfig(name="app", image="busybox", command=("sh", "-c", "echo old; sleep 300")),
    )
    await cluster.runtime.start_container(old)
    await until_logged(cluster.runtime, old, "old")
    pod: RunningPod = await cluster.run_pod({"app": "echo new; sleep 300"}, name="same-name")
    await until_logged(cluster.runtime, pod.containers["app"][0], "new")
    result = await cluster.kumo("logs", "same-name", "-n", cluster.namespace)
    assert (result.code, result.stdout) == (0, "new\n"), result.stderr


async def test_a_node_whose_agent_cannot_be_reached(cluster: Cluster) -> None:
    silent = unique_name("silent-node")
    unpublished = unique_name("bare-node")
    for name, status in (
        (
            silent,
            {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": free_port()}},
            },
        ),
        (unpublished, {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}),
    ):
        await cluster.client.create_raw(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": status}
        )
    on_silent = (await cluster.create_pod({"app": "true"}, node=silent))["metadata"]["name"]
    on_bare = (await cluster.create_pod({"app": "true"}, node=unpublished))["metadata"]["name"]
    base = f"/api/v1/namespaces/{cluster.namespace}/pods"
    async with http(cluster) as client:
        response = await client.get(f"{base}/{on_silent}/log")
        assert response.status_code == 503
        assert response.json()["reason"] == "ServiceUnavailable"
        assert f'cannot reach the agent of node "{silent}"' in response.json()["message"]
        response = await client.get(f"{base}/{on_bare}/log")
        assert response.status_code == 503
        assert f'node "{unpublished}" does not publish the port' in response.json()["message"]
    result = await cluster.kumo("exec", on_silent, "-n", cluster.namespace, "--", "true")
    assert result.code == 1
    assert "Error from server (ServiceUnavailable): cannot reach the agent" in result.stderr
