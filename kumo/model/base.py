"""The base of every kumo type: camelCase wire names, strict types, unknown fields kept.

Callers may rely on:
- ``to_wire(obj)`` gives the Kubernetes JSON form (camelCase keys, no ``None`` values);
- a field kumo does not know is never dropped: it stays in the object and
  ``unknown_fields(obj)`` names it, so the API can warn about it or reject it;
- wrong types are rejected, not coerced (``replicas: "3"`` is an error, as in Kubernetes).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field

_ACRONYMS = {
    "ip": "IP",
    "ips": "IPs",
    "id": "ID",
    "pid": "PID",
    "ipc": "IPC",
    "cidr": "CIDR",
    "cidrs": "CIDRs",
    "uri": "URI",
    "tls": "TLS",
    "fqdn": "FQDN",
}


def camel(name: str) -> str:
    """Python attribute name -> Kubernetes wire name (``pod_ip`` -> ``podIP``)."""
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(_ACRONYMS.get(part, part[:1].upper() + part[1:]) for part in rest)


class KumoModel(BaseModel):
    """Base for every wire type."""

    model_config = ConfigDict(
        alias_generator=camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
        strict=True,
        validate_default=False,
    )


def to_wire(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready Kubernetes form of a model."""
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


def unknown_fields(model: BaseModel, path: str = "") -> list[str]:
    """Dotted paths of every field the model kept but does not understand."""
    found: list[str] = []
    for key in model.__pydantic_extra__ or {}:
        found.append(f"{path}.{key}" if path else key)
    for name, info in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        wire = info.alias or name
        here = f"{path}.{wire}" if path else wire
        found.extend(_unknown_in_value(value, here))
    return found


def _unknown_in_value(value: Any, path: str) -> list[str]:
    if isinstance(value, BaseModel):
        return unknown_fields(value, path)
    if isinstance(value, list):
        out: list[str] = []
        for index, item in enumerate(value):
            out.extend(_unknown_in_value(item, f"{path}[{index}]"))
        return out
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            if isinstance(item, BaseModel | list | dict):
                out.extend(_unknown_in_value(item, f"{path}[{key}]"))
        return out
    return []


FIELD_IS_IMMUTABLE = "field is immutable"


def wire_value(value: Any) -> Any:
    """A field's value as it appears on the wire (models become camelCase dicts)."""
    if isinstance(value, BaseModel):
        return to_wire(value)
    if isinstance(value, list):
        return [wire_value(item) for item in value]
    if isinstance(value, dict):
        return {key: wire_value(item) for key, item in value.items()}
    return value


def show_value(value: Any) -> str:
    """A value for an error message: compact JSON, cut short when long."""
    text = orjson.dumps(wire_value(value)).decode()
    return text if len(text) <= 200 else text[:197] + "..."


def immutable_field(path: str, new: Any, old: Any) -> list[tuple[str, str]]:
    """Kubernetes' ValidateImmutableField: ``path: Invalid value: ...: field is immutable``."""
    if wire_value(new) == wire_value(old):
        return []
    return [(path, f"Invalid value: {show_value(new)}: {FIELD_IS_IMMUTABLE}")]


class OwnerReference(KumoModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ManagedFieldsEntry(KumoModel):
    manager: str | None = None
    operation: str | None = None
    api_version: str | None = None
    time: str | None = None
    fields_type: str | None = None
    fields_v1: dict[str, Any] | None = None
    subresource: str | None = None


class ObjectMeta(KumoModel):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[ManagedFieldsEntry] | None = None
    self_link: str | None = None


class ListMeta(KumoModel):
    resource_version: str | None = None
    continue_: str | None = Field(default=None, alias="continue")
    remaining_item_count: int | None = None


class LabelSelectorRequirement(KumoModel):
    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(KumoModel):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class Condition(KumoModel):
    """A status condition, the shape every kumo kind uses."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    last_update_time: str | None = None
    last_heartbeat_time: str | None = None
    last_probe_time: str | None = None
    observed_generation: int | None = None


class StatusCause(KumoModel):
    reason: str | None = None
    message: str | None = None
    field: str | None = None


class StatusDetails(KumoModel):
    name: str | None = None
    group: str | None = None
    kind: str | None = None
    uid: str | None = None
    causes: list[StatusCause] | None = None
    retry_after_seconds: int | None = None


class Status(KumoModel):
    """The body of every API error (and of some successful deletes)."""

    api_version: str = "v1"
    kind: str = "Status"
    metadata: ListMeta = Field(default_factory=ListMeta)
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    details: StatusDetails | None = None
    code: int | None = None


class Resource(KumoModel):
    """A top-level API object. Subclasses fix ``api_version`` and ``kind``.

    Class attributes describe how the API serves the kind; ``kumo.model.registry``
    collects them.
    """

    api_version: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    plural: ClassVar[str] = ""
    singular: ClassVar[str] = ""
    short_names: ClassVar[tuple[str, ...]] = ()
    namespaced: ClassVar[bool] = True
    subresources: ClassVar[tuple[str, ...]] = ()
    categories: ClassVar[tuple[str, ...]] = ()
    # "spec" kinds bump metadata.generation when spec changes; data kinds do not.
    has_spec: ClassVar[bool] = True
    # How names are checked: "subdomain" (DNS-1123 subdomain) or "label" (DNS-1123 label).
    name_rule: ClassVar[str] = "subdomain"  # or "label", or "path" (any path segment)
    # Extra field selectors the list endpoint accepts besides metadata.name/namespace.
    selectable_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        return cls.model_validate(data)

    def validate_semantics(self) -> list[tuple[str, str]]:
        """(field path, problem) pairs that types alone cannot catch. Overridden per kind."""
        return []

    def apply_defaults(self) -> None:
        """Fill what Kubernetes defaults server-side. Overridden per kind."""

    def validate_update(self, old: Self) -> list[tuple[str, str]]:
        """(field path, problem) pairs for changes the kind forbids (immutable fields)."""
        return []
