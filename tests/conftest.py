"""Shared fixtures: a real kumo API server (subprocess, HTTPS, bearer token) and clients.

Fixtures other tests may rely on:

- ``api_server`` (session): one ``kumo apiserver`` for the whole run, on a temp data dir and a
  free port. It is shared, so tests must not kill or restart it; they isolate themselves with
  the ``namespace`` fixture instead. Attributes: ``.url``, ``.token``, ``.ca_file``,
  ``.data_dir``, ``.kubeconfig_path`` (a kubeconfig-style file; point ``KUMOCONFIG`` at it for
  CLI tests), ``.client_config()`` (a ``kumo.client.ClientConfig``), ``.http()`` (a raw
  ``httpx.Client`` with the token and the CA), ``.log_path`` (the server's stderr/stdout).
- ``api_server_factory`` (function): ``start(*extra_args)`` launches a private server (same
  attributes) that the test may ``kill()`` (SIGKILL), ``restart()`` (same data dir, port and
  token) or ``stop()``; every server it started is stopped at the end of the test. Use it
  for durability tests and for server flags such as ``--compaction-interval`` or
  ``--bookmark-interval``.
- ``client`` / ``async_client`` (function): ``kumo.client.Client`` / ``AsyncClient`` for
  ``api_server``, with the context namespace set to the ``namespace`` fixture's namespace when
  the test uses both.
- ``namespace`` (function): a freshly created, uniquely named Namespace on ``api_server``.

Helpers: ``kind_info(api_version, kind)`` (a ``ResourceInfo``), ``unique_name(prefix)``,
``free_port()``, ``ApiServerProcess`` for a module-scoped server with its own flags, and
``component_config(admin_config, component, node_name=None)``: a client config that acts as
a kumo component's own least-privilege identity (system:kube-scheduler,
system:kube-controller-manager, system:kumo:gateway, system:node:<name>), as
``kumo admin token create --component`` mints it.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kumo.auth.user import component_identity
from kumo.client import AsyncClient, Client, ClientConfig, KubeConfig
from kumo.model.registry import ResourceInfo, by_kind

REPO = Path(__file__).resolve().parent.parent
KUMO = REPO / ".venv" / "bin" / "kumo"
START_TIMEOUT = 30.0


def kind_info(api_version: str, kind: str) -> ResourceInfo:
    """The served kind (``kind_info("v1", "ConfigMap")``); a typo fails loudly."""
    info = by_kind(api_version, kind)
    if info is None:
        raise LookupError(f"kumo does not serve {api_version} {kind}")
    return info


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_component_tokens: dict[tuple[str, bytes | None, str | None, str, str | None], str] = {}


def component_config(
    admin: ClientConfig, component: str, node_name: str | None = None
) -> ClientConfig:
    """``admin``'s config, but acting as kumo ``component`` (scheduler, controllers, gateway
    or node): a user token for that identity, minted once per server with ``admin``."""
    key = (admin.server, admin.ca_data, admin.token, component, node_name)
    token = _component_tokens.get(key)
    if token is None:
        user, groups = component_identity(component, node_name)
        spec = {"user": user, "groups": groups, "description": f"test {component}"}
        with Client(admin) as client:
            response = client.request(
                "POST",
                "/apis/kumo.dev/v1/usertokens",
                body={"apiVersion": "kumo.dev/v1", "kind": "UserToken", "spec": spec},
            )
        token = _component_tokens[key] = str(response.json()["status"]["token"])
    return ClientConfig(
        server=admin.server,
        token=token,
        ca_data=admin.ca_data,
        namespace=admin.namespace,
        context=admin.context,
        user=component,
    )


def _kumo_command() -> list[str]:
    if KUMO.exists():
        return [str(KUMO)]
    return [sys.executable, "-c", "from kumo.cli.main import main; main()"]


class ApiServerProcess:
    """``kumo apiserver`` running as a child process on ``data_dir``.

    The admin token comes from ``--token-file`` on the first start and is kept across
    restarts (tokens live in the store, so the first one stays valid).
    """

    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.token = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._token_file = data_dir.parent / f"{data_dir.name}.token"
        self._kubeconfig = data_dir.parent / f"{data_dir.name}.kubeconfig"

    # ---- addresses and credentials ----------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    def client_config(self, namespace: str = "default") -> ClientConfig:
        return ClientConfig(
            server=self.url,
            token=self.token,
            ca_data=self.ca_file.read_bytes(),
            namespace=namespace,
            context="test",
            user="test-admin",
        )

    @property
    def kubeconfig_path(self) -> Path:
        """A client config file for this server (context ``test``, namespace ``default``)."""
        if not self._kubeconfig.exists():
            config = KubeConfig.load(self._kubeconfig)
            config.set_cluster("test", self.url, self.ca_file.read_bytes())
            config.set_user("test-admin", self.token)
            config.set_context("test", "test", "test-admin", "default")
            config.use_context("test")
            config.save()
        return self._kubeconfig

    def http(self, *, token: str | None = None, authenticated: bool = True) -> httpx.Client:
        """A raw HTTP client for requests the typed client cannot make (bad input, auth)."""
        headers = {}
        if authenticated:
            headers["Authorization"] = f"Bearer {token or self.token}"
        return httpx.Client(
            base_url=self.url, verify=self.ssl_context(), headers=headers, timeout=30.0
        )

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._token_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env["KUMO_HOME"] = str(self.data_dir.parent / "kumo-home")
        env.pop("KUMOCONFIG", None)
        command = [
            *_kumo_command(),
            "apiserver",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--token-file",
            str(self._token_file),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        self._wait_ready()
        if not self.token:
            self.token = self._token_file.read_text().strip()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"kumo apiserver exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.ca_file.exists() and self._token_file.exists():
                try:
                    response = httpx.get(
                        f"{self.url}/healthz", verify=self.ssl_context(), timeout=2.0
                    )
                except (httpx.TransportError, OSError):
                    pass
                else:
                    if response.status_code == 200:
                        return
            time.sleep(0.05)
        raise RuntimeError(f"kumo apiserver not healthy in {START_TIMEOUT}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or power loss of the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    server = ApiServerProcess(tmp_path_factory.mktemp("apiserver") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class ApiServerFactory:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._servers: list[ApiServerProcess] = []

    def start(self, *extra_args: str) -> ApiServerProcess:
        server = ApiServerProcess(self._root / f"server{len(self._servers)}", extra_args)
        self._servers.append(server)
        server.start()
        return server

    def stop_all(self) -> None:
        for server in self._servers:
            server.stop()


@pytest.fixture
def api_server_factory(tmp_path: Path) -> Iterator[ApiServerFactory]:
    factory = ApiServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


def component_kubeconfig(
    admin: ClientConfig, component: str, path: Path, node_name: str | None = None
) -> Path:
    """A client config file at ``path`` acting as kumo ``component`` (see
    ``component_config``), for a component run as its own process (``KUMOCONFIG``)."""
    config = component_config(admin, component, node_name)
    kubeconfig = KubeConfig.load(path)
    kubeconfig.set_cluster("test", config.server, config.ca_data or b"")
    kubeconfig.set_user(component, config.token or "")
    kubeconfig.set_context("test", "test", component, config.namespace)
    kubeconfig.use_context("test")
    kubeconfig.save()
    return path


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def namespace(api_server: ApiServerProcess, request: pytest.FixtureRequest) -> str:
    """A new Namespace named after the test, created through the API."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = unique_name(base or "t")
    with Client(api_server.client_config()) as admin:
        admin.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _namespace_for(request: pytest.FixtureRequest) -> str:
    if "namespace" in request.fixturenames:
        value: str = request.getfixturevalue("namespace")
        return value
    return "default"


@pytest.fixture
def client(api_server: ApiServerProcess, request: pytest.FixtureRequest) -> Iterator[Client]:
    with Client(api_server.client_config(_namespace_for(request))) as blocking:
        yield blocking


@pytest.fixture
async def async_client(
    api_server: ApiServerProcess, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_server.client_config(_namespace_for(request))) as asynchronous:
        yield asynchronous


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "schemathesis: a bounded property-based API run")
