"""Finding a pod's containers on the node (for ``kumo logs`` / ``kumo exec``).

Every container the agent creates carries its pod's namespace, name and uid, its
container name and its attempt (restart number) as runtime labels, so the runtime
alone answers "which container is attempt N of container C of pod P".
"""

from __future__ import annotations

from kumo.node.runtime import (
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    ContainerRuntime,
    ContainerSummary,
)

__all__ = ["ContainerLookupError", "find_container", "pod_containers"]


class ContainerLookupError(LookupError):
    """No such container; the message is fit for the user (a 404 or 400 body).
    ``choices`` lists the pod's container names when a name is needed."""

    def __init__(self, message: str, choices: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.choices = choices


async def pod_containers(
    runtime: ContainerRuntime, namespace: str, pod_name: str, pod_uid: str | None = None
) -> list[ContainerSummary]:
    """Every container (all attempts, any state) of the pod; when several pods of that
    name exist on the node (one being torn down), only the newest one's."""
    labels = {LABEL_POD_NAMESPACE: namespace, LABEL_POD_NAME: pod_name}
    if pod_uid:
        labels[LABEL_POD_UID] = pod_uid
    found = await runtime.list_containers(labels)
    uids = {c.pod_uid for c in found}
    if len(uids) > 1:
        newest = max(found, key=lambda c: c.created_at.timestamp() if c.created_at else 0.0)
        found = [c for c in found if c.pod_uid == newest.pod_uid]
    return found


async def find_container(
    runtime: ContainerRuntime,
    namespace: str,
    pod_name: str,
    container: str | None = None,
    *,
    previous: bool = False,
    attempt: int | None = None,
    pod_uid: str | None = None,
    default_container: str | None = None,
) -> ContainerSummary:
    """One container of a pod: the latest attempt of ``container`` (or of
    ``default_container``, or of the only container the pod has), the one before it
    with ``previous``, or exactly ``attempt``. Raises ``ContainerLookupError``."""
    found = await pod_containers(runtime, namespace, pod_name, pod_uid)
    if not found:
        raise ContainerLookupError(f'pod "{pod_name}" has no containers on this node')
    names = tuple(sorted({c.container_name for c in found}))
    name = container or default_container
    if name is None:
        if len(names) != 1:
            raise ContainerLookupError(
                f"a container name must be specified for pod {pod_name}, "
                f"choose one of: [{' '.join(names)}]",
                names,
            )
        name = names[0]
    attempts = sorted((c for c in found if c.container_name == name), key=lambda c: c.attempt)
    if not attempts:
        raise ContainerLookupError(
            f'container "{name}" in pod "{pod_name}" is not available', names
        )
    if attempt is not None:
        for candidate in attempts:
            if candidate.attempt == attempt:
                return candidate
        raise ContainerLookupError(
            f'attempt {attempt} of container "{name}" in pod "{pod_name}" not found'
        )
    if previous:
        if len(attempts) < 2:
            raise ContainerLookupError(
                f'previous terminated container "{name}" in pod "{pod_name}" not found'
            )
        return attempts[-2]
    return attempts[-1]
