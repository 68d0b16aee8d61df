"""What the commands that run one platform component alone (``kumo controllers``, ``kumo
scheduler``, ``kumo gateway``, ``kumo agent``) share: a stop event set on SIGINT / SIGTERM and
a client for the API server of the current context."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import click

from kumo.client import AsyncClient, ConfigError
from kumo.client.config import load


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets (handled by the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@contextlib.asynccontextmanager
async def component_client(
    context: str | None, user_agent: str
) -> AsyncIterator[tuple[AsyncClient, asyncio.Event]]:
    """A client for the API server of ``context`` (the current one when None) and the stop
    event of ``stop_on_signals``; a client config that cannot be loaded is a usage error."""
    try:
        config = load(context=context)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    stop = stop_on_signals()
    async with AsyncClient(config, user_agent=user_agent) as client:
        yield client, stop
