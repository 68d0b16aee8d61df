"""Turning a request body into a stored object: decode, validate, default, system fields.

Everything here raises ``ApiError`` with a Kubernetes-worded message naming the field.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import yaml
from pydantic import ValidationError

from kumo.auth.user import UserInfo
from kumo.model.base import Resource, to_wire, unknown_fields
from kumo.model.meta import now_rfc3339
from kumo.model.registry import ResourceInfo
from kumo.model.validation import (
    dns1123_label,
    dns1123_subdomain,
    labels,
    qualified_name,
)
from kumo.platform.api.errors import ApiError, bad_request, invalid, unsupported_media_type

JSON_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml")
MAX_ANNOTATIONS_BYTES = 256 * 1024
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def decode_body(body: bytes, content_type: str, allowed: tuple[str, ...] = JSON_TYPES) -> Any:
    """JSON (or YAML) request body -> Python value; 400 on malformed input."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media not in allowed:
        raise unsupported_media_type(media, list(allowed))
    if not body.strip():
        raise bad_request("the request body is empty; send the object as JSON")
    if media in ("application/yaml", "application/x-yaml", "text/yaml"):
        try:
            docs = list(yaml.safe_load_all(body))
        except yaml.YAMLError as exc:
            raise bad_request(f"the request body is not valid YAML: {exc}") from exc
        if len(docs) != 1:
            raise bad_request(
                f"the request body must hold exactly one YAML document, found {len(docs)}"
            )
        return json.loads(json.dumps(docs[0], default=str))
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc


def field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            "[" in part
            or part.startswith(("function-", "lax-", "json-"))
            or part in ("int", "str", "float", "bool")
        ):
            continue
        else:
            out += f".{part}" if out else part
    return out


_TYPE_NAMES = {
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "string_type": "string",
    "bool_type": "boolean",
    "float_type": "number",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "list_type": "array",
}


def _describe(error: Any) -> str:
    kind = error["type"]
    value = error.get("input")
    shown = (
        json.dumps(value, default=str)
        if not isinstance(value, dict | list)
        else type(value).__name__
    )
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if kind == "missing":
        return "Required value"
    if kind in _TYPE_NAMES:
        return f"Invalid value: {shown}: must be of type {_TYPE_NAMES[kind]}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"Unsupported value: {shown}: supported values: {expected}"
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    return f"Invalid value: {shown}: {message}"


def validation_causes(exc: ValidationError) -> list[tuple[str, str]]:
    return [(field_path(tuple(e["loc"])), _describe(e)) for e in exc.errors()]


@dataclass(slots=True)
class Decoded:
    model: Resource
    warnings: list[str] = field(default_factory=list)


def check_type_meta(info: ResourceInfo, raw: dict[str, Any]) -> None:
    api_version = raw.get("apiVersion")
    kind = raw.get("kind")
    if api_version is None:
        raw["apiVersion"] = info.api_version
    elif api_version != info.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({info.api_version})"
        )
    if kind is None:
        raw["kind"] = info.kind
    elif kind != info.kind:
        raise bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({info.kind})"
        )


def decode_object(
    info: ResourceInfo, raw: Any, field_validation: str, name_hint: str = ""
) -> Decoded:
    """Validate types; report or reject unknown fields per ``fieldValidation``."""
    if not isinstance(raw, dict):
        raise bad_request(
            f"the request body must be a JSON object (a {info.kind}), not {type(raw).__name__}"
        )
    check_type_meta(info, raw)
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid(
            info.kind,
            info.group,
            name_hint,
            [("metadata", "Invalid value: must be of type object")],
        )
    name = (
        (metadata or {}).get("name") if isinstance((metadata or {}).get("name"), str) else name_hint
    )
    try:
        model = info.model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(info.kind, info.group, name or "", validation_causes(exc)) from exc
    unknown = unknown_fields(model)
    warnings: list[str] = []
    if unknown:
        if field_validation == "Strict":
            raise bad_request(
                "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
            )
        if field_validation != "Ignore":
            warnings = [
                f'unknown field "{u}" (kumo does not support it; it is kept but has no effect)'
                for u in unknown
            ]
    return Decoded(model, warnings)


def _name_problems(info: ResourceInfo, name: str) -> list[str]:
    if name in (".", "..") or "/" in name or "%" in name:
        return ["may not be '.', '..', or contain '/' or '%'"]
    rule = info.model.name_rule
    if rule == "path":  # RBAC objects: any path segment ("system:discovery")
        return []
    return dns1123_label(name) if rule == "label" else dns1123_subdomain(name)


def generate_name(prefix: str) -> str:
    return prefix[: 63 - 5] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))


def validate_metadata(info: ResourceInfo, model: Resource) -> list[tuple[str, str]]:
    meta = model.metadata
    out: list[tuple[str, str]] = []
    if not meta.name:
        out.append(("metadata.name", "Required value: name or generateName is required"))
    else:
        out.extend(
            ("metadata.name", f"Invalid value: {meta.name!r}: {p}")
            for p in _name_problems(info, meta.name)
        )
    if info.namespaced and not meta.namespace:
        out.append(("metadata.namespace", "Required value"))
    if not info.namespaced and meta.namespace:
        out.append(("metadata.namespace", "Forbidden: not allowed on this type"))
    out.extend(labels("metadata.labels", meta.labels))
    size = 0
    for key, value in (meta.annotations or {}).items():
        out.extend(
            ("metadata.annotations", f"Invalid value: {key!r}: {p}") for p in qualified_name(key)
        )
        size += len(key) + len(value)
    if size > MAX_ANNOTATIONS_BYTES:
        out.append(
            ("metadata.annotations", f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes")
        )
    controllers = 0
    for i, ref in enumerate(meta.owner_references or []):
        here = f"metadata.ownerReferences[{i}]"
        for wire, value in (
            ("apiVersion", ref.api_version),
            ("kind", ref.kind),
            ("name", ref.name),
            ("uid", ref.uid),
        ):
            if not value:
                out.append((f"{here}.{wire}", "Required value"))
        if ref.controller:
            controllers += 1
    if controllers > 1:
        out.append(
            (
                "metadata.ownerReferences",
                "Invalid value: Only one reference can have Controller set to true",
            )
        )
    for i, finalizer in enumerate(meta.finalizers or []):
        out.extend(
            (f"metadata.finalizers[{i}]", f"Invalid value: {finalizer!r}: {p}")
            for p in qualified_name(finalizer)
        )
    if {"orphan", "foregroundDeletion"} <= set(meta.finalizers or []):
        out.append(
            (
                "metadata.finalizers",
                "Invalid value: finalizer orphan and foregroundDeletion cannot be both set",
            )
        )
    if meta.generate_name and not meta.name:
        pass
    return out


def prepare_create(info: ResourceInfo, model: Resource, namespace: str) -> None:
    """System fields of a new object, then kind defaults."""
    meta = model.metadata
    if info.namespaced:
        meta.namespace = namespace or meta.namespace
    else:
        meta.namespace = None
    if not meta.name and meta.generate_name:
        meta.name = generate_name(meta.generate_name)
    meta.uid = str(uuid.uuid4())
    meta.creation_timestamp = now_rfc3339()
    meta.resource_version = None
    meta.deletion_timestamp = None
    meta.deletion_grace_period_seconds = None
    meta.self_link = None
    meta.generation = 1
    if "status" in info.subresources and info.kind != "Node" and hasattr(model, "status"):
        model.status = None
    model.apply_defaults()


def admit_new(info: ResourceInfo, model: Resource) -> dict[str, Any]:
    """Validate a defaulted object; return its wire form."""
    problems = validate_metadata(info, model) + model.validate_semantics()
    if problems:
        raise invalid(info.kind, info.group, model.metadata.name or "", problems)
    return to_wire(model)


def spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: a change here bumps metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class AdmissionPlugin(Protocol):
    """A step every write goes through after validation (quota, service accounts, ...).

    ``operation`` is CREATE, UPDATE or DELETE; ``obj`` is the wire form about to be stored
    (plugins may change it); raise ``ApiError`` to refuse; return warnings (sent back in
    ``Warning`` headers) or None.

    A plugin whose decision depends on other objects (quota) may also define
    ``async lock_key(operation, info, namespace, obj, old) -> str | None``: writes that get
    the same key take turns from before ``admit`` until they are stored (``obj`` is None for
    a create, which takes its turn before its body is decoded).
    """

    async def admit(
        self,
        operation: str,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
    ) -> list[str] | None: ...


async def lock_keys(
    plugins: list[AdmissionPlugin],
    operation: str,
    info: ResourceInfo,
    *,
    namespace: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None,
) -> list[str]:
    """The serialization keys the plugins want for this write, sorted (a fixed lock order)."""
    keys: set[str] = set()
    for plugin in plugins:
        method = getattr(plugin, "lock_key", None)
        if method is None:
            continue
        key = await method(operation, info, namespace, obj, old)
        if key:
            keys.add(str(key))
    return sorted(keys)


def as_api_error(exc: Exception) -> ApiError | None:
    return exc if isinstance(exc, ApiError) else None
