"""A scheduling profile (KubeSchedulerProfile): the scheduler name it serves and its plugins,
in order, with their Score weights and args. A plugin takes part in every extension point it
implements; weight 0 turns its Score off."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kumo.platform.scheduler.podinfo import DEFAULT_SCHEDULER_NAME


@dataclass(frozen=True)
class PluginSpec:
    name: str
    weight: int = 1
    args: Mapping[str, Any] = field(default_factory=dict)


# Filter order as in Kubernetes (cheap, unresolvable checks first); weights as Kubernetes'
# defaults (TaintToleration 3, NodeAffinity 2, InterPodAffinity 2, topology spread 2, the
# resource scores and ImageLocality 1).
DEFAULT_PLUGINS: tuple[PluginSpec, ...] = (
    PluginSpec("NodeUnschedulable"),
    PluginSpec("NodeReady"),
    PluginSpec("TaintToleration", weight=3),
    PluginSpec("NodeAffinity", weight=2),
    PluginSpec("NodePorts"),
    PluginSpec("NodeResourcesFit", weight=1),
    PluginSpec("InterPodAffinity", weight=2),
    PluginSpec("NodeResourcesBalancedAllocation", weight=1),
    PluginSpec("ImageLocality", weight=1),
    PluginSpec("OwnerSpread", weight=2),
    PluginSpec("DefaultBinder"),
)


@dataclass(frozen=True)
class Profile:
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    plugins: tuple[PluginSpec, ...] = DEFAULT_PLUGINS
    # 0: adaptive (Kubernetes' default); 100: always examine every node.
    percentage_of_nodes_to_score: int = 0

    def with_weights(self, **weights: int) -> Profile:
        """A copy with some Score weights changed (``NodeResourcesFit=2``)."""
        plugins = tuple(
            replace(p, weight=weights[p.name]) if p.name in weights else p for p in self.plugins
        )
        return replace(self, plugins=plugins)

    def without(self, *names: str) -> Profile:
        return replace(self, plugins=tuple(p for p in self.plugins if p.name not in names))


def default_profile(
    scheduler_name: str = DEFAULT_SCHEDULER_NAME, percentage_of_nodes_to_score: int = 0
) -> Profile:
    return Profile(scheduler_name, DEFAULT_PLUGINS, percentage_of_nodes_to_score)
