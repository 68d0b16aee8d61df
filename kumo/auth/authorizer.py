"""Authorization: what a request wants to do, and who may.

``Authorizer.authorize`` returns a ``Decision``; anything not explicitly allowed is denied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kumo.auth.user import UserInfo


@dataclass(frozen=True, slots=True)
class Attributes:
    """One request, as RBAC sees it (Kubernetes' authorizer.Attributes)."""

    user: UserInfo
    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # set for non-resource requests (/metrics, /version, ...)

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)

    def describe(self) -> str:
        """Kubernetes' wording of a denial."""
        who = f'User "{self.user.name}"'
        if not self.is_resource_request:
            return f'{who} cannot {self.verb} path "{self.path}"'
        resource = self.resource + (f"/{self.subresource}" if self.subresource else "")
        where = (
            f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        )
        return (
            f'{who} cannot {self.verb} resource "{resource}" in API group "{self.api_group}"{where}'
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """``reason`` is shown in SubjectAccessReview answers and, for a denial, appended to the
    403 message (as Kubernetes does)."""

    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    async def authorize(self, attributes: Attributes) -> Decision: ...


class MastersOnly:
    """Allows members of system:masters, denies everyone else."""

    async def authorize(self, attributes: Attributes) -> Decision:
        if attributes.user.is_master:
            return Decision(True, "system:masters")
        return Decision(False)
