"""Plugin registry: name -> plugin class. ``build_framework`` turns a ``Profile`` into a
runnable ``Framework``; an unknown plugin name or bad args raise ``ValueError`` at start-up,
never mid-scheduling."""

from __future__ import annotations

from collections.abc import Mapping

from kumo.platform.scheduler.framework import Framework, Handle, Plugin
from kumo.platform.scheduler.plugins.balanced_allocation import BalancedAllocation
from kumo.platform.scheduler.plugins.default_binder import DefaultBinder
from kumo.platform.scheduler.plugins.image_locality import ImageLocality
from kumo.platform.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from kumo.platform.scheduler.plugins.node_affinity import NodeAffinity
from kumo.platform.scheduler.plugins.node_ports import NodePorts
from kumo.platform.scheduler.plugins.node_ready import NodeReady
from kumo.platform.scheduler.plugins.node_resources_fit import NodeResourcesFit
from kumo.platform.scheduler.plugins.node_unschedulable import NodeUnschedulable
from kumo.platform.scheduler.plugins.owner_spread import OwnerSpread
from kumo.platform.scheduler.plugins.taint_toleration import TaintToleration
from kumo.platform.scheduler.profile import Profile

Registry = Mapping[str, type[Plugin]]

DEFAULT_REGISTRY: dict[str, type[Plugin]] = {
    plugin.name: plugin
    for plugin in (
        NodeUnschedulable,
        NodeReady,
        TaintToleration,
        NodeAffinity,
        NodePorts,
        NodeResourcesFit,
        InterPodAffinity,
        BalancedAllocation,
        ImageLocality,
        OwnerSpread,
        DefaultBinder,
    )
}


def build_framework(
    profile: Profile, handle: Handle, registry: Registry | None = None
) -> Framework:
    registry = DEFAULT_REGISTRY if registry is None else registry
    plugins: list[tuple[Plugin, int]] = []
    for spec in profile.plugins:
        factory = registry.get(spec.name)
        if factory is None:
            known = ", ".join(sorted(registry))
            raise ValueError(f"unknown scheduler plugin {spec.name!r}; known plugins: {known}")
        try:
            plugin = factory(handle, spec.args)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"scheduler plugin {spec.name}: bad args: {exc}") from exc
        plugins.append((plugin, spec.weight))
    return Framework(
        plugins,
        percentage_of_nodes_to_score=profile.percentage_of_nodes_to_score,
        scheduler_name=profile.scheduler_name,
        memo_key=handle.cache.memo_key,
    )
