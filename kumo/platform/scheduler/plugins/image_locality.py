"""ImageLocality: prefer nodes that already have the pod's images (Node ``status.images``),
weighted by image size and by how widely the image is spread (an image on every node says
little), clamped to 23 MiB .. 1000 MiB per container as Kubernetes does."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from kumo.platform.scheduler.framework import (
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_UPDATE_IMAGES,
    CycleState,
    PreScorePlugin,
    ScorePlugin,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.status import SKIP, SUCCESS, Status

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def calculate_priority(sum_scores: int, containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * containers
    if max_threshold <= MIN_THRESHOLD:
        return 0
    clamped = min(max(sum_scores, MIN_THRESHOLD), max_threshold)
    return MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


class ImageLocality(PreScorePlugin, ScorePlugin):
    name = "ImageLocality"

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, NODE_UPDATE_IMAGES)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        # No node has any of the images: every score would be 0.
        image_nodes = self.handle.cache.image_nodes
        return SUCCESS if any(image in image_nodes for image in pod.images) else SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        cache = self.handle.cache
        total_nodes = cache.node_count
        if total_nodes == 0:
            return 0
        total = 0
        for image in pod.images:
            size = node.images.get(image)
            if size is not None:
                spread = cache.image_nodes.get(image, 0) / total_nodes
                total += int(size * spread)
        return calculate_priority(total, pod.container_count)

    def memo_signature(self, state: CycleState, pod: PodInfo) -> Hashable:
        # Besides the node's own images: how many nodes have each of the pod's images.
        cache = self.handle.cache
        counts = tuple(cache.image_nodes.get(i, 0) for i in pod.images)
        return (pod.images, pod.container_count, counts, cache.node_count)
