"""``kumo controllers``: run the controller manager alone against an API server."""

from __future__ import annotations

import asyncio
import signal

import click

from kumo.client import AsyncClient, ConfigError
from kumo.client.config import load
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
    try:
        config = load(context=context)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncClient(config, user_agent="kumo-controllers") as client:
        await run_controllers(client, stop, names)


@click.command("controllers")
@click.option(
    "--controllers",
    "selected",
    default="*",
    show_default=True,
    help=f"Comma-separated controllers to run ({', '.join(sorted(CONTROLLERS))}); * for all.",
)
@click.pass_context
def controllers(ctx: click.Context, selected: str) -> None:
    """Run the controllers (garbage collector, namespaces, service accounts, ...) alone; they
    talk to the API server of the current context. Stops on SIGINT / SIGTERM."""
    names = _names(selected)
    context = (ctx.obj or {}).get("context")
    asyncio.run(_run(names, context))


def register(group: click.Group) -> None:
    group.add_command(controllers)
