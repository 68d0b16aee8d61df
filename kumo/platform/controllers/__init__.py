"""Controllers: a work queue, shared informers, a runner, and one module per controller.

``run_controllers(client, stop)`` is what ``kumo up`` and ``kumo controllers`` call: it runs
the named controllers (all of ``CONTROLLERS`` by default) over one client and shared
informers until ``stop`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from kumo.client import AsyncClient
from kumo.platform.controllers.cronjob import CronJobController
from kumo.platform.controllers.deployment import DeploymentController
from kumo.platform.controllers.disruption import DisruptionController
from kumo.platform.controllers.endpoints import EndpointsController
from kumo.platform.controllers.garbagecollector import GarbageCollector
from kumo.platform.controllers.horizontal import HorizontalPodAutoscalerController
from kumo.platform.controllers.informer import EventHandler, InformerFactory, SharedInformer
from kumo.platform.controllers.job import JobController
from kumo.platform.controllers.namespace import NamespaceController
from kumo.platform.controllers.nodelifecycle import NodeLifecycleController
from kumo.platform.controllers.replicaset import ReplicaSetController
from kumo.platform.controllers.resourcequota import ResourceQuotaController
from kumo.platform.controllers.rootcacertpublisher import RootCACertPublisher
from kumo.platform.controllers.runner import (
    Controller,
    ControllerFactory,
    ControllerManager,
    Result,
    write_status,
)
from kumo.platform.controllers.serviceaccount import ServiceAccountController
from kumo.platform.controllers.workqueue import ExponentialBackoff, QueueShutDown, WorkQueue

# name -> factory
CONTROLLERS: dict[str, ControllerFactory] = {
    GarbageCollector.name: GarbageCollector,
    NamespaceController.name: NamespaceController,
    ServiceAccountController.name: ServiceAccountController,
    RootCACertPublisher.name: RootCACertPublisher,
    ReplicaSetController.name: ReplicaSetController,
    DeploymentController.name: DeploymentController,
    JobController.name: JobController,
    CronJobController.name: CronJobController,
    EndpointsController.name: EndpointsController,
    NodeLifecycleController.name: NodeLifecycleController,
    ResourceQuotaController.name: ResourceQuotaController,
    HorizontalPodAutoscalerController.name: HorizontalPodAutoscalerController,
    DisruptionController.name: DisruptionController,
}


def select(names: Iterable[str] | None = None) -> list[ControllerFactory]:
    """Factories for ``names`` (all when None); an unknown name raises ``ValueError``."""
    if names is None:
        return list(CONTROLLERS.values())
    chosen = []
    for name in names:
        factory = CONTROLLERS.get(name)
        if factory is None:
            known = ", ".join(sorted(CONTROLLERS))
            raise ValueError(f"unknown controller {name!r}; known controllers: {known}")
        chosen.append(factory)
    return chosen


def build_manager(
    client: AsyncClient, names: Iterable[str] | None = None, **informer_options: object
) -> ControllerManager:
    return ControllerManager(client, select(names), **informer_options)


async def run_controllers(
    client: AsyncClient, stop: asyncio.Event, names: Iterable[str] | None = None
) -> None:
    """Run the controllers until ``stop`` is set."""
    await build_manager(client, names).run(stop)


__all__ = [
    "CONTROLLERS",
    "Controller",
    "ControllerFactory",
    "ControllerManager",
    "CronJobController",
    "DeploymentController",
    "DisruptionController",
    "EndpointsController",
    "EventHandler",
    "ExponentialBackoff",
    "GarbageCollector",
    "HorizontalPodAutoscalerController",
    "InformerFactory",
    "JobController",
    "NamespaceController",
    "NodeLifecycleController",
    "QueueShutDown",
    "ReplicaSetController",
    "ResourceQuotaController",
    "Result",
    "RootCACertPublisher",
    "ServiceAccountController",
    "SharedInformer",
    "WorkQueue",
    "build_manager",
    "run_controllers",
    "select",
    "write_status",
]
