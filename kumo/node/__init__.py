"""The node agent (the kubelet role): runs the pods bound to a node on a container
runtime (Podman), probes and restarts them, reports their status, registers the
Node and renews its Lease. See ``kumo.node.agent``.

``run_agent(client, stop_event, **options)`` is the entry point ``kumo agent`` and
``kumo up`` use; it is imported lazily so that ``kumo.node.runtime`` stays cheap to
import on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    from kumo.client import AsyncClient
    from kumo.node.agent import Agent, AgentService
    from kumo.node.runtime import ContainerRuntime

__all__ = ["Agent", "run_agent"]


def __getattr__(name: str) -> object:
    if name == "Agent":
        from kumo.node.agent import Agent

        return Agent
    raise AttributeError(name)


async def run_agent(
    client: AsyncClient,
    stop_event: asyncio.Event,
    *,
    runtime: ContainerRuntime | None = None,
    services: Sequence[AgentService] = (),
    **options: object,
) -> None:
    """Run a node agent until ``stop_event`` is set (see ``kumo.node.agent.run_agent``:
    ``options`` are ``kumo.node.config.AgentOptions`` fields such as ``node_name``,
    ``address``, ``data_dir``, ``kubelet_port``, ``port_range``)."""
    from kumo.node.agent import run_agent as run

    await run(client, stop_event, runtime=runtime, services=services, **options)
