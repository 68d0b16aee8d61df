"""The OpenAPI 3 document of every served path, built from the pydantic models."""

from __future__ import annotations

import functools
from typing import Any

import kumo
from kumo.model.base import Status
from kumo.model.meta import Scale
from kumo.model.registry import RESOURCES, ResourceInfo

_REF = "#/components/schemas/{model}"


def _schema_name(info: ResourceInfo) -> str:
    group = info.group.replace(".", "_") or "core"
    return f"{group}.{info.version}.{info.kind}"


def _collect(model: Any, name: str, schemas: dict[str, Any]) -> None:
    schema = model.model_json_schema(by_alias=True, ref_template=_REF, mode="validation")
    for def_name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(def_name, definition)
    schemas[name] = schema


def _param(
    name: str,
    where: str,
    description: str,
    schema: dict[str, Any] | None = None,
    required: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_LIST_PARAMS = [
    _param("labelSelector", "query", "A selector on labels, e.g. app=web,tier!=db"),
    _param("fieldSelector", "query", "A selector on fields, e.g. metadata.name=web"),
    _param(
        "limit",
        "query",
        "Most items to return; a continue token follows",
        {"type": "integer", "minimum": 0},
    ),
    _param("continue", "query", "The token from the previous page"),
    _param("resourceVersion", "query", "List or watch from this resourceVersion"),
    _param(
        "watch", "query", "Stream changes as newline-delimited JSON events", {"type": "boolean"}
    ),
    _param(
        "timeoutSeconds",
        "query",
        "End a watch after this many seconds",
        {"type": "integer", "minimum": 0},
    ),
    _param("allowWatchBookmarks", "query", "Send BOOKMARK events", {"type": "boolean"}),
]
_WRITE_PARAMS = [
    _param(
        "dryRun",
        "query",
        "All: validate and admit, do not store",
        {"type": "string", "enum": ["All"]},
    ),
    _param(
        "fieldValidation",
        "query",
        "Unknown fields: Strict, Warn or Ignore",
        {"type": "string", "enum": ["Strict", "Warn", "Ignore"]},
    ),
]
_DELETE_PARAMS = [
    _param(
        "gracePeriodSeconds",
        "query",
        "Seconds before the object is deleted",
        {"type": "integer", "minimum": 0},
    ),
    _param(
        "propagationPolicy",
        "query",
        "Foreground, Background or Orphan",
        {"type": "string", "enum": ["Foreground", "Background", "Orphan"]},
    ),
]


def _responses(ok: dict[str, Any], codes: tuple[str, ...]) -> dict[str, Any]:
    status = {
        "description": "Status",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Status")}}},
    }
    out: dict[str, Any] = dict(ok)
    for code in codes:
        out[code] = status
    return out


def _body(ref: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}},
    }


def _ok(ref: str, code: str = "200") -> dict[str, Any]:
    return {
        code: {
            "description": "OK",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}},
        }
    }


def _paths_for(info: ResourceInfo, schemas: dict[str, Any]) -> dict[str, Any]:
    name = _schema_name(info)
    list_name = f"{name}List"
    schemas[list_name] = {
        "type": "object",
        "properties": {
            "kind": {"type": "string"},
            "apiVersion": {"type": "string"},
            "metadata": {"$ref": _REF.format(model="ListMeta")},
            "items": {"type": "array", "items": {"$ref": _REF.format(model=name)}},
        },
    }
    root = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    ns_param = _param("namespace", "path", "The namespace", required=True)
    name_param = _param("name", "path", "The object's name", required=True)
    tag = [info.kind]
    base = (
        f"{root}/namespaces/{{namespace}}/{info.plural}"
        if info.namespaced
        else f"{root}/{info.plural}"
    )
    scope = [ns_param] if info.namespaced else []
    paths: dict[str, Any] = {}
    errors = ("400", "401", "403", "404", "409", "413", "415", "422")
    paths[base] = {
        "parameters": scope,
        "get": {
            "operationId": f"list{info.kind}{'Namespaced' if info.namespaced else ''}",
            "tags": tag,
            "parameters": _LIST_PARAMS,
            "responses": _responses(_ok(list_name), errors),
        },
        "post": {
            "operationId": f"create{info.kind}",
            "tags": tag,
            "parameters": _WRITE_PARAMS,
            "requestBody": _body(name),
            "responses": _responses(_ok(name, "201"), errors),
        },
        "delete": {
            "operationId": f"deleteCollection{info.kind}",
            "tags": tag,
            "parameters": [_LIST_PARAMS[0], _LIST_PARAMS[1], *_DELETE_PARAMS],
            "responses": _responses(_ok(list_name), errors),
        },
    }
    if info.namespaced:
        paths[f"{root}/{info.plural}"] = {
            "get": {
                "operationId": f"list{info.kind}ForAllNamespaces",
                "tags": tag,
                "parameters": _LIST_PARAMS,
                "responses": _responses(_ok(list_name), errors),
            }
        }
    patch_body = {
        "required": True,
        "content": {
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
            "application/json-patch+json": {
                "schema": {"type": "array", "items": {"type": "object"}}
            },
        },
    }
    item = f"{base}/{{name}}"
    paths[item] = {
        "parameters": [*scope, name_param],
        "get": {
            "operationId": f"read{info.kind}",
            "tags": tag,
            "responses": _responses(_ok(name), errors),
        },
        "put": {
            "operationId": f"replace{info.kind}",
            "tags": tag,
            "parameters": _WRITE_PARAMS,
            "requestBody": _body(name),
            "responses": _responses(_ok(name), errors),
        },
        "patch": {
            "operationId": f"patch{info.kind}",
            "tags": tag,
            "parameters": _WRITE_PARAMS,
            "requestBody": patch_body,
            "responses": _responses(_ok(name), errors),
        },
        "delete": {
            "operationId": f"delete{info.kind}",
            "tags": tag,
            "parameters": _DELETE_PARAMS,
            "responses": _responses({**_ok(name), **_ok(name, "202")}, errors),
        },
    }
    for sub in info.subresources:
        ref = "Scale" if sub == "scale" else name
        if sub in ("status", "scale"):
            paths[f"{item}/{sub}"] = {
                "parameters": [*scope, name_param],
                "get": {
                    "operationId": f"read{info.kind}{sub.title()}",
                    "tags": tag,
                    "responses": _responses(_ok(ref), errors),
                },
                "put": {
                    "operationId": f"replace{info.kind}{sub.title()}",
                    "tags": tag,
                    "requestBody": _body(ref),
                    "responses": _responses(_ok(ref), errors),
                },
                "patch": {
                    "operationId": f"patch{info.kind}{sub.title()}",
                    "tags": tag,
                    "requestBody": patch_body,
                    "responses": _responses(_ok(ref), errors),
                },
            }
    return paths


@functools.cache
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    _collect(Status, "Status", schemas)
    _collect(Scale, "Scale", schemas)
    paths: dict[str, Any] = {}
    for info in RESOURCES:
        _collect(info.model, _schema_name(info), schemas)
        paths.update(_paths_for(info, schemas))
    from kumo.model.base import ListMeta

    _collect(ListMeta, "ListMeta", schemas)
    return {
        "openapi": "3.0.3",
        "info": {"title": "kumo", "version": kumo.__version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"BearerToken": []}],
    }
