"""``kumo gateway``: run the HTTP gateway alone against the API server of the current context."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from kumo.cli.component import component_client
from kumo.platform.gateway import DEFAULT_METRICS_PORT, DEFAULT_PORT, Gateway, GatewayOptions


async def _run(options: GatewayOptions, context: str | None) -> None:
    async with component_client(context, "kumo-gateway") as (client, stop):
        gateway = Gateway(client, options)
        try:
            await gateway.start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen: {exc}") from exc
        urls = ", ".join(f"http://{address}:{gateway.port}" for address in options.addresses)
        metrics = (
            f"; metrics on http://{options.metrics_address}:{gateway.metrics_port}/metrics"
            if gateway.metrics_port is not None
            else ""
        )
        click.echo(f"kumo gateway: serving {urls}{metrics}", err=True)
        try:
            await stop.wait()
        finally:
            await gateway.stop()


def _event_loop() -> Any:
    """uvloop when it is installed: the proxy spends much of its time in the event loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


@click.command("gateway")
@click.option(
    "--address",
    "addresses",
    multiple=True,
    default=("127.0.0.1",),
    show_default=True,
    help="Address to listen on; repeat to listen on several (e.g. the Podman bridge's gateway).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_METRICS_PORT,
    show_default=True,
    help="Port of /metrics, /healthz and /readyz.",
)
@click.option("--no-metrics", is_flag=True, help="Do not serve metrics and health checks.")
@click.option(
    "--domain",
    "domains",
    multiple=True,
    default=("localhost",),
    show_default=True,
    help="Host suffix: <service>.<namespace>.<domain> routes to that Service. Repeatable.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds to wait for an upstream's response headers (Services may override it with "
    "the kumo.dev/request-timeout annotation).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
)
@click.option(
    "--cold-start-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds a request to a Function with no ready pod is held.",
)
@click.pass_context
def gateway(
    ctx: click.Context,
    addresses: tuple[str, ...],
    port: int,
    metrics_address: str,
    metrics_port: int,
    no_metrics: bool,
    domains: tuple[str, ...],
    request_timeout: float,
    connect_timeout: float,
    cold_start_timeout: float,
) -> None:
    """Run the HTTP gateway alone: it routes http://<service>.<namespace>.localhost:PORT/ and
    /s/<namespace>/<service>/... to the Service's ready endpoints, as the API server of the
    current context lists them. Stops on SIGINT / SIGTERM."""
    options = GatewayOptions(
        addresses=addresses,
        port=port,
        metrics_address=metrics_address,
        metrics_port=None if no_metrics else metrics_port,
        domains=domains,
        request_timeout=request_timeout,
        connect_timeout=connect_timeout,
        cold_start_timeout=cold_start_timeout,
    )
    context = (ctx.obj or {}).get("context")
    with asyncio.Runner(loop_factory=_event_loop()) as runner:
        runner.run(_run(options, context))


def register(group: click.Group) -> None:
    group.add_command(gateway)


if __name__ == "__main__":  # ``python -m kumo.cli.gateway_commands`` before it is registered
    sys.exit(gateway())
