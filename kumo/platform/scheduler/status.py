"""The typed result of every scheduling step: a ``Status`` with a ``Code``, never an exception.

What callers may rely on:
- ``SUCCESS`` and ``SKIP`` are shared instances; test with ``is_success`` / ``is_skip`` rather
  than identity, plugins may also build their own;
- a rejecting status (``UNSCHEDULABLE`` or ``UNSCHEDULABLE_AND_UNRESOLVABLE``) carries one or
  more human-readable ``reasons`` (Kubernetes' wording, e.g. "Insufficient memory"), which the
  scheduler counts per node to build the "0/N nodes are available: ..." message;
- ``plugin`` names the plugin that produced the status (the framework fills it in).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Code(enum.Enum):
    SUCCESS = "Success"
    ERROR = "Error"
    # The pod does not fit this node now; another node, or a change (preemption, a pod going
    # away), may help.
    UNSCHEDULABLE = "Unschedulable"
    # Nothing about other pods can make this node fit (a taint, a selector): preemption on this
    # node is pointless.
    UNSCHEDULABLE_AND_UNRESOLVABLE = "UnschedulableAndUnresolvable"
    # PreFilter / PreScore: this plugin has nothing to say about the pod; skip its Filter / Score.
    SKIP = "Skip"


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def is_success(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def is_skip(self) -> bool:
        return self.code is Code.SKIP

    @property
    def is_rejected(self) -> bool:
        """Unschedulable or UnschedulableAndUnresolvable."""
        return self.code is Code.UNSCHEDULABLE or self.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return self if self.plugin == plugin else Status(self.code, self.reasons, plugin)

    def __str__(self) -> str:
        text = f"{self.code.value}"
        if self.reasons:
            text += f": {self.message}"
        return f"{text} ({self.plugin})" if self.plugin else text


SUCCESS = Status()
SKIP = Status(Code.SKIP)


def unschedulable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE, reasons)


def unresolvable(*reasons: str) -> Status:
    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons)


def error(*reasons: str) -> Status:
    return Status(Code.ERROR, reasons)
