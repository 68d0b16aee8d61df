"""``kumo agent``: run a node agent that joins this machine to a kumo control plane."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from kumo.cli.component import stop_on_signals
from kumo.client import AsyncClient, ClientConfig
from kumo.client.config import ConfigError, load
from kumo.node import run_agent
from kumo.node.config import AgentOptions, OptionsError
from kumo.node.server import agent_service


def _client_config(
    server: str | None,
    token: str | None,
    token_file: Path | None,
    ca_file: Path | None,
    insecure: bool,
    context: str | None,
) -> ClientConfig:
    if token_file is not None:
        if token:
            raise click.UsageError("give --token or --token-file, not both")
        token = token_file.read_text().strip()
    if server is None:
        try:
            config = load(context=context)
        except ConfigError as err:
            raise click.UsageError(f"{err} (or pass --server and --token)") from err
        if token:
            config.token = token
        if ca_file is not None:
            config.ca_data = ca_file.read_bytes()
        config.insecure = config.insecure or insecure
        return config
    if not token:
        raise click.UsageError("--server needs --token (or --token-file)")
    return ClientConfig(
        server=server,
        token=token,
        ca_data=ca_file.read_bytes() if ca_file is not None else None,
        insecure=insecure,
        context="agent",
    )


async def _run(config: ClientConfig, options: dict[str, Any]) -> None:
    stop = stop_on_signals()
    if not config.ca_data:
        raise click.UsageError(
            "the agent needs the cluster CA (--ca-file, or a client config that has it): its "
            "logs/exec server accepts only the API server's client certificate"
        )
    node_server = agent_service(
        str(options.get("address") or "127.0.0.1"),
        int(options.get("kubelet_port") or 10250),
        ca_data=config.ca_data,
    )
    async with AsyncClient(config, user_agent="kumo-agent") as client:
        await run_agent(client, stop, services=[node_server], **options)


_PATH = click.Path(file_okay=False, path_type=Path)


@click.command("agent")
@click.option("--server", default=None, help="API server URL (default: from the client config).")
@click.option("--token", default=None, envvar="KUMO_AGENT_TOKEN", help="Bearer token.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Read the bearer token from this file.",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CA certificate of the API server.",
)
@click.option(
    "--insecure-skip-tls-verify", "insecure", is_flag=True, help="Do not verify the server."
)
@click.option("--name", "node_name", default=None, help="Node name (default: the host name).")
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="The node's address: published ports listen here; reported as InternalIP.",
)
@click.option("--node-labels", default=None, help="Extra node labels: key=value,key=value.")
@click.option(
    "--port-range",
    default="30000-32767",
    show_default=True,
    help="Host ports allocated to container ports without a hostPort.",
)
@click.option(
    "--kubelet-port",
    type=int,
    default=10250,
    show_default=True,
    help="Port of the agent's HTTPS server (logs / exec), advertised in the Node.",
)
@click.option("--data-dir", type=_PATH, default=None, help="Agent state (default ~/.kumo/agent).")
@click.option(
    "--podman-url", default=None, help="Existing Podman socket (default: start a private service)."
)
@click.option("--podman-root", type=_PATH, default=None, help="Podman storage root of its own.")
@click.option("--podman-runroot", type=_PATH, default=None, help="Podman run root of its own.")
@click.option("--podman-tmpdir", type=_PATH, default=None, help="Podman tmpdir of its own.")
@click.option(
    "--podman-image-store",
    type=_PATH,
    default=None,
    help="With --podman-root: also use the images of this storage, read-only "
    "(e.g. /var/lib/containers/storage, where kumo images bootstrap put them).",
)
@click.option(
    "--service-proxy/--no-service-proxy",
    default=True,
    show_default=True,
    help="Serve cluster IPs and the cluster DNS on this machine (one agent per machine "
    "does; another one waits and takes over).",
)
@click.option(
    "--service-cidr",
    default=None,
    help="The Services' cluster IP range, as the API server has it (default 10.96.0.0/16).",
)
@click.option(
    "--cluster-dns",
    default=None,
    help="The cluster DNS address pods use (default 10.96.0.10; '' = the node's resolvers).",
)
@click.option(
    "--cluster-domain", default=None, help="The cluster's DNS domain (default cluster.local)."
)
@click.option(
    "--reserved",
    default=None,
    help="Resources held back from pods, e.g. cpu=100m,memory=256Mi (the default).",
)
@click.option("--max-pods", type=int, default=None, help="Pods this node accepts (default 110).")
@click.option(
    "--lease-duration",
    "lease_duration_seconds",
    type=int,
    default=None,
    help="Lease duration (s, default 40).",
)
@click.option(
    "--lease-renew-interval",
    type=float,
    default=None,
    help="Seconds between lease renewals (default 10).",
)
@click.option(
    "--status-update-interval",
    type=float,
    default=None,
    help="Seconds between node status updates (default 10).",
)
@click.option(
    "--sync-period",
    type=float,
    default=None,
    help="Seconds between periodic pod syncs (default 10).",
)
@click.option(
    "--restart-backoff-initial",
    type=float,
    default=None,
    help="First crash-loop delay (s, default 10).",
)
@click.option(
    "--restart-backoff-max",
    type=float,
    default=None,
    help="Longest crash-loop delay (s, default 300).",
)
@click.option(
    "--restart-backoff-reset",
    type=float,
    default=None,
    help="Running this long resets the delay (s, default 600).",
)
@click.option(
    "--image-backoff-initial",
    type=float,
    default=None,
    help="First image pull retry delay (s, default 10).",
)
@click.option(
    "--image-backoff-max",
    type=float,
    default=None,
    help="Longest image pull retry delay (s, default 300).",
)
@click.option(
    "--orphan-grace-period",
    type=float,
    default=None,
    help="Unowned containers are removed after this long (s, default 60).",
)
@click.option(
    "--housekeeping-interval",
    type=float,
    default=None,
    help="Seconds between orphan scans (default 10).",
)
@click.option(
    "--stats-interval",
    type=float,
    default=None,
    help="Seconds between samples of node and container usage (kumo top; default 10).",
)
@click.option(
    "--config-refresh-interval",
    type=float,
    default=None,
    help="Seconds between ConfigMap/Secret volume refreshes (default 30).",
)
@click.pass_context
def agent(
    ctx: click.Context,
    /,
    server: str | None,
    token: str | None,
    token_file: Path | None,
    ca_file: Path | None,
    insecure: bool,
    **options: Any,
) -> None:
    """Run a node agent: register this machine as a Node and run the pods bound to it
    with Podman."""
    context = (ctx.obj or {}).get("context")
    config = _client_config(server, token, token_file, ca_file, insecure, context)
    try:
        AgentOptions.build(**dict(options))  # fail fast on bad flags, before connecting
    except OptionsError as err:
        raise click.UsageError(str(err)) from err
    asyncio.run(_run(config, options))


def register(group: click.Group) -> None:
    group.add_command(agent)
