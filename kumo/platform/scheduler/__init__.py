"""The scheduler (Kubernetes' scheduling framework in Python): Filter / Score / Bind plugins,
a profile and registry, a queue with backoff and event-driven retries, a node cache with
assumed pods, asynchronous bounded binding, FailedScheduling events, optional Lease-based
leader election.

``run_scheduler(client, stop_event, **options)`` is what ``kumo up`` and ``kumo scheduler``
call; it returns once ``stop_event`` is set and in-flight bindings have finished.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kumo.client import AsyncClient
from kumo.platform.scheduler.apiwriter import ApiWriter
from kumo.platform.scheduler.framework import (
    BindPlugin,
    CycleState,
    FilterPlugin,
    Framework,
    Handle,
    Plugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
)
from kumo.platform.scheduler.leaderelection import LeaderElector
from kumo.platform.scheduler.profile import PluginSpec, Profile, default_profile
from kumo.platform.scheduler.registry import DEFAULT_REGISTRY, build_framework
from kumo.platform.scheduler.scheduler import Scheduler, SchedulerOptions, fit_error_message
from kumo.platform.scheduler.status import Code, Status


def build_options(**options: Any) -> SchedulerOptions:
    """``SchedulerOptions`` from keyword options: ``scheduler_name``,
    ``percentage_of_nodes_to_score``, ``profiles``, ``initial_backoff``, ``max_backoff``,
    ``max_unschedulable``, ``parallel_binds``, ``record_events``, ``seed``."""
    profiles = options.pop("profiles", None)
    name = options.pop("scheduler_name", None)
    percentage = int(options.pop("percentage_of_nodes_to_score", 0) or 0)
    if profiles is None:
        profiles = (
            default_profile(name or "default-scheduler", percentage_of_nodes_to_score=percentage),
        )
    known = set(SchedulerOptions.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown scheduler options: {', '.join(sorted(unknown))}")
    return SchedulerOptions(profiles=tuple(profiles), **options)


async def run_scheduler(client: AsyncClient, stop_event: asyncio.Event, **options: Any) -> None:
    """Run the scheduler against ``client``'s API server until ``stop_event`` is set.

    Extra options: ``leader_elect`` (bool, default False), ``lease_name``
    (default "kumo-scheduler"), ``connections`` (API writer connections, default 16), plus
    everything ``build_options`` takes.
    """
    leader_elect = bool(options.pop("leader_elect", False))
    lease_name = str(options.pop("lease_name", "kumo-scheduler"))
    connections = int(options.pop("connections", 16))
    scheduler_options = build_options(**options)
    writer = ApiWriter(client.config, connections=connections)
    try:
        if not leader_elect:
            await Scheduler(client, writer, scheduler_options).run(stop_event)
            return

        async def lead(stop_leading: asyncio.Event) -> None:
            # A fresh scheduler (fresh cache) each time leadership is won.
            await Scheduler(client, writer, scheduler_options).run(stop_leading)

        await LeaderElector(client, name=lease_name).run(stop_event, lead)
    finally:
        await writer.close()


__all__ = [
    "DEFAULT_REGISTRY",
    "ApiWriter",
    "BindPlugin",
    "Code",
    "CycleState",
    "FilterPlugin",
    "Framework",
    "Handle",
    "LeaderElector",
    "Plugin",
    "PluginSpec",
    "PreFilterPlugin",
    "PreScorePlugin",
    "Profile",
    "Scheduler",
    "SchedulerOptions",
    "ScorePlugin",
    "Status",
    "build_framework",
    "build_options",
    "default_profile",
    "fit_error_message",
    "run_scheduler",
]
