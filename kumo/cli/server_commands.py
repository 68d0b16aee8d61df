"""Commands that run kumo's components: ``kumo up`` and ``kumo apiserver``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from kumo.auth.user import AUTHENTICATED, UserInfo, component_identity, node_identity
from kumo.cli.auth_commands import access_flags, access_options
from kumo.cli.controller_commands import apply_lifecycle_options, lifecycle_options
from kumo.client import AsyncClient, ClientConfig
from kumo.client.config import KubeConfig, default_path, home
from kumo.node import run_agent
from kumo.node.config import default_node_name
from kumo.node.server import agent_service
from kumo.platform.api.server import ApiServer, ServerOptions
from kumo.platform.controllers import run_controllers
from kumo.platform.gateway import DEFAULT_METRICS_PORT, DEFAULT_PORT, run_gateway
from kumo.platform.scheduler import run_scheduler


def _data_dir(value: str | None) -> Path:
    return Path(value) if value else home() / "data"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


async def _ensure_client_config(server: ApiServer, context: str) -> Path:
    """Point the client config at this server; mint an admin token when it has no working one."""
    config = KubeConfig.load(default_path())
    token = None
    existing = config.context(context)
    if existing is not None:
        with contextlib.suppress(Exception):
            resolved = config.resolve(context)
            if resolved.token and await server.authenticates(resolved.token):
                token = resolved.token
    if token is None:
        token = await server.issue_admin_token()
    config.set_cluster(context, server.url, server.ca_file.read_bytes())
    config.set_user(f"{context}-admin", token)
    namespace = str((existing or {}).get("namespace") or "default")
    config.set_context(context, context, f"{context}-admin", namespace)
    if not config.current_context:
        config.data["current-context"] = context
    config.save()
    return config.path


async def _token_user(server: ApiServer, token: str) -> UserInfo | None:
    assert server.tokens is not None
    return await server.tokens.authenticate(token) if token else None


def _acts_as(current: UserInfo | None, user: str, groups: list[str]) -> bool:
    return (
        current is not None
        and current.name == user
        and set(current.groups) - {AUTHENTICATED} == set(groups)
    )


def _issued_for(current: UserInfo, component: str) -> bool:
    """Whether a cached token is one ``kumo up`` issued for ``component`` (under the name of
    older kumos, system:kumo:<component>, or as the component: a node of another name), so
    replacing it may revoke it. Anything else someone put there is only replaced."""
    if current.name == f"system:kumo:{component}":
        return True
    if component == "agent":
        return node_identity(current)[0]
    return current.name == component_identity(component)[0]


async def component_client(
    server: ApiServer, component: str, node_name: str | None = None
) -> AsyncClient:
    """A client for an in-process component. It still goes through HTTPS and a token, like a
    component on another machine would; the token is kept in the data dir and reused.

    Each component acts as its own least-privilege user (``component_identity``: the
    scheduler as system:kube-scheduler, the controllers as system:kube-controller-manager,
    the gateway as system:kumo:gateway, the agent as system:node:<node_name> in
    system:nodes), never as system:masters. A cached token of another identity is replaced,
    and revoked when ``kumo up`` had issued it (a system:masters token of an older kumo,
    another node's)."""
    user, groups = component_identity(component, node_name)
    path = server.options.data_dir / "credentials" / f"{component}.token"
    token = path.read_text().strip() if path.exists() else ""
    current = await _token_user(server, token)
    if not _acts_as(current, user, groups):
        if current is not None and current.uid and _issued_for(current, component):
            assert server.tokens is not None
            await server.tokens.revoke(current.uid)
        token = await server.issue_token(user, groups, description=f"kumo up: {component}")
        _write_private(path, token)
    config = ClientConfig(server=server.url, token=token, ca_data=server.ca_file.read_bytes())
    return AsyncClient(config, user_agent=f"kumo-{component}")


@dataclass(frozen=True, slots=True)
class Components:
    """What ``kumo up`` runs next to the API server."""

    agent: bool = True
    node_name: str | None = None
    kubelet_port: int = 10250
    gateway_port: int = DEFAULT_PORT
    gateway_metrics_port: int = DEFAULT_METRICS_PORT
    # Seconds between the agent's lease renewals; a quarter of the node monitor grace period,
    # as Kubernetes' kubelet renews every 10 s against a 40 s grace period.
    lease_renew_interval: float | None = None
    # Seconds between the agent's usage samples (kumo top); None keeps the agent's default.
    stats_interval: float | None = None

    @property
    def agent_node_name(self) -> str:
        return self.node_name or default_node_name()


Runner = Callable[[AsyncClient, asyncio.Event], Coroutine[Any, Any, None]]


def _component_runners(server: ApiServer, components: Components) -> dict[str, Runner]:
    """Each component by name, as a coroutine taking its own client and the stop event."""
    data_dir = server.options.data_dir

    async def gateway(client: AsyncClient, stop: asyncio.Event) -> None:
        await run_gateway(
            client,
            stop,
            port=components.gateway_port,
            metrics_port=components.gateway_metrics_port,
        )

    async def agent(client: AsyncClient, stop: asyncio.Event) -> None:
        node_server = agent_service(
            "127.0.0.1", components.kubelet_port, ca_data=server.ca_file.read_bytes()
        )
        options: dict[str, Any] = {
            "address": "127.0.0.1",
            "kubelet_port": components.kubelet_port,
            "data_dir": data_dir / "agent",
        }
        options["node_name"] = components.agent_node_name
        if components.lease_renew_interval is not None:
            options["lease_renew_interval"] = components.lease_renew_interval
        if components.stats_interval is not None:
            options["stats_interval"] = components.stats_interval
        await run_agent(client, stop, services=[node_server], **options)

    runners: dict[str, Runner] = {
        "controllers": run_controllers,
        "scheduler": run_scheduler,
        "gateway": gateway,
    }
    if components.agent:
        runners["agent"] = agent
    return runners


async def _serve(
    options: ServerOptions,
    context: str | None,
    token_file: Path | None,
    quiet: bool,
    components: Components | None,
) -> None:
    server = ApiServer(options)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    clients: list[AsyncClient] = []
    try:
        if token_file is not None:
            _write_private(token_file, await server.issue_admin_token())
        if components is not None:
            for name, run in _component_runners(server, components).items():
                component = await component_client(
                    server, name, node_name=components.agent_node_name
                )
                clients.append(component)
                tasks.append(asyncio.create_task(run(component, stop), name=name))
        if context:
            path = await _ensure_client_config(server, context)
            if not quiet:
                click.echo(f"kumo is ready: API server at {server.url}")
                click.echo(f"client config written to {path} (context {context!r})")
                if components is not None:
                    click.echo(
                        f"gateway: http://<service>.<namespace>.localhost:{components.gateway_port}/"
                    )
                click.echo("try: kumo get nodes")
        tasks.append(asyncio.create_task(server.wait(), name="apiserver"))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in done:
            if task is not stopper:
                task.result()  # a component that stopped on its own: surface its error
    finally:
        stop.set()
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in clients:
            await client.close()
        await server.stop()


def _common(func: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--data-dir", default=None, help="Where state lives (default ~/.kumo/data)."),
        click.option(
            "--address", default="127.0.0.1", show_default=True, help="Address to listen on."
        ),
        click.option(
            "--port", default=7443, show_default=True, type=int, help="HTTPS port of the API."
        ),
        click.option(
            "--advertise-address",
            "advertise",
            multiple=True,
            help="Extra host names/IPs for the certificate.",
        ),
        click.option(
            "--compaction-interval",
            default=300.0,
            show_default=True,
            type=float,
            help="Seconds between store compactions.",
        ),
        click.option(
            "--bookmark-interval",
            default=30.0,
            show_default=True,
            type=float,
            help="Seconds between watch bookmarks.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _options(
    data_dir: str | None,
    address: str,
    port: int,
    advertise: tuple[str, ...],
    compaction_interval: float,
    bookmark_interval: float,
) -> ServerOptions:
    options = ServerOptions(
        data_dir=_data_dir(data_dir),
        host=address,
        port=port,
        advertise=list(advertise) or ([socket.gethostname()]),
        compaction_interval=compaction_interval,
    )
    options.settings.bookmark_interval_seconds = bookmark_interval
    return options


@click.command("apiserver")
@_common
@access_flags
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a fresh admin token here (mode 0600).",
)
@click.option(
    "--write-config/--no-write-config", default=False, help="Also write the client config."
)
def apiserver(
    data_dir: str | None,
    address: str,
    port: int,
    advertise: tuple[str, ...],
    compaction_interval: float,
    bookmark_interval: float,
    token_file: Path | None,
    write_config: bool,
    **access: Any,
) -> None:
    """Run the API server alone."""
    options = _options(data_dir, address, port, advertise, compaction_interval, bookmark_interval)
    options.access = access_options(access)
    asyncio.run(
        _serve(
            options,
            "kumo" if write_config else None,
            token_file,
            quiet=not write_config,
            components=None,
        )
    )


@click.command("up")
@_common
@access_flags
@click.option(
    "--context-name",
    default="kumo",
    show_default=True,
    help="Name of the context written to the client config.",
)
@click.option(
    "--agent/--no-agent",
    "with_agent",
    default=True,
    show_default=True,
    help="Run a node agent for this machine.",
)
@click.option("--node-name", default=None, help="This machine's Node name (default: host name).")
@click.option(
    "--kubelet-port",
    type=int,
    default=10250,
    show_default=True,
    help="Port of the agent's logs/exec server.",
)
@click.option(
    "--gateway-port", type=int, default=DEFAULT_PORT, show_default=True, help="Gateway HTTP port."
)
@click.option(
    "--gateway-metrics-port",
    type=int,
    default=DEFAULT_METRICS_PORT,
    show_default=True,
    help="Port of the gateway's /metrics and health checks.",
)
@click.option(
    "--stats-interval",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Seconds between the agent's samples of node and container usage (kumo top; default 10).",
)
@lifecycle_options
def up(
    data_dir: str | None,
    address: str,
    port: int,
    advertise: tuple[str, ...],
    compaction_interval: float,
    bookmark_interval: float,
    context_name: str,
    with_agent: bool,
    node_name: str | None,
    kubelet_port: int,
    gateway_port: int,
    gateway_metrics_port: int,
    stats_interval: float | None,
    node_monitor_grace_period: float | None,
    pod_eviction_timeout: float | None,
    hpa_sync_period: float | None,
    **access: Any,
) -> None:
    """Start kumo on this machine: the API server, controllers, scheduler, gateway and a
    node agent. Each of them also runs alone (kumo apiserver|controllers|scheduler|gateway|
    agent) and talks to the others only through the API."""
    apply_lifecycle_options(node_monitor_grace_period, pod_eviction_timeout, hpa_sync_period)
    options = _options(data_dir, address, port, advertise, compaction_interval, bookmark_interval)
    options.access = access_options(access)
    components = Components(
        agent=with_agent,
        node_name=node_name,
        kubelet_port=kubelet_port,
        gateway_port=gateway_port,
        gateway_metrics_port=gateway_metrics_port,
        stats_interval=stats_interval,
        lease_renew_interval=(
            min(10.0, node_monitor_grace_period / 4) if node_monitor_grace_period else None
        ),
    )
    asyncio.run(_serve(options, context_name, None, quiet=False, components=components))


def register(group: click.Group) -> None:
    group.add_command(apiserver)
    group.add_command(up)
