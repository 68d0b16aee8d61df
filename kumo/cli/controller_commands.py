"""``kumo controllers``: run the controller manager alone against an API server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import click

from kumo.cli.component import component_client
from kumo.platform.controllers import CONTROLLERS, run_controllers


def _names(value: str) -> list[str] | None:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names or names == ["*"]:
        return None
    unknown = [n for n in names if n not in CONTROLLERS]
    if unknown:
        raise click.BadParameter(
            f"unknown controller(s) {', '.join(unknown)}; known: {', '.join(sorted(CONTROLLERS))}"
        )
    return names


async def _run(names: list[str] | None, context: str | None) -> None:
    async with component_client(context, "kumo-controllers") as (client, stop):
        await run_controllers(client, stop, names)


def lifecycle_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--node-monitor-grace-period``, ``--pod-eviction-timeout`` and
    ``--horizontal-pod-autoscaler-sync-period``; apply them with ``apply_lifecycle_options``."""
    func = click.option(
        "--horizontal-pod-autoscaler-sync-period",
        "hpa_sync_period",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Seconds between the autoscaler's looks at each HPA's metrics (default 15).",
    )(func)
    func = click.option(
        "--pod-eviction-timeout",
        type=click.FloatRange(min=0),
        default=None,
        help="Seconds a node stays NotReady before its pods are evicted (default 300).",
    )(func)
    return click.option(
        "--node-monitor-grace-period",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Seconds without a lease renewal before a node is NotReady (default 40).",
    )(func)


def apply_lifecycle_options(
    grace_period: float | None,
    eviction_timeout: float | None,
    hpa_sync_period: float | None = None,
) -> None:
    # The controllers read these when they are built (see nodelifecycle.py, horizontal.py).
    if hpa_sync_period is not None:
        os.environ["KUMO_HPA_SYNC_PERIOD"] = str(hpa_sync_period)
    if grace_period is not None:
        os.environ["KUMO_NODE_MONITOR_GRACE_PERIOD"] = str(grace_period)
    if eviction_timeout is not None:
        os.environ["KUMO_POD_EVICTION_TIMEOUT"] = str(eviction_timeout)


@click.command("controllers")
@click.option(
    "--controllers",
    "selected",
    default="*",
    show_default=True,
    help=f"Comma-separated controllers to run ({', '.join(sorted(CONTROLLERS))}); * for all.",
)
@lifecycle_options
@click.pass_context
def controllers(
    ctx: click.Context,
    selected: str,
    node_monitor_grace_period: float | None,
    pod_eviction_timeout: float | None,
    hpa_sync_period: float | None,
) -> None:
    """Run the controllers (garbage collector, namespaces, service accounts, ...) alone; they
    talk to the API server of the current context. Stops on SIGINT / SIGTERM."""
    apply_lifecycle_options(node_monitor_grace_period, pod_eviction_timeout, hpa_sync_period)
    names = _names(selected)
    context = (ctx.obj or {}).get("context")
    asyncio.run(_run(names, context))


def register(group: click.Group) -> None:
    group.add_command(controllers)
