"""Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic merge patch
that merges the lists Kubernetes merges by key (containers by name, ports by port, ...)."""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    pass


# ---- RFC 7386 -----------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def create_merge_patch(original: Any, modified: Any) -> Any:
    """The merge patch that turns ``original`` into ``modified`` (``{}`` when equal)."""
    if not isinstance(original, dict) or not isinstance(modified, dict):
        return copy.deepcopy(modified)
    patch: dict[str, Any] = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, value in modified.items():
        if key not in original:
            patch[key] = copy.deepcopy(value)
        elif original[key] != value:
            if isinstance(value, dict) and isinstance(original[key], dict):
                patch[key] = create_merge_patch(original[key], value)
            else:
                patch[key] = copy.deepcopy(value)
    return patch


def three_way_merge_patch(last_applied: Any, modified: Any, live: Any) -> Any:
    """kubectl apply's patch: fields the user dropped since ``last_applied`` are removed,
    every field the user sets wins, and fields others set on ``live`` are left alone."""
    patch: dict[str, Any] = {}
    last = last_applied if isinstance(last_applied, dict) else {}
    current = live if isinstance(live, dict) else {}
    for key in last:
        if key not in modified and key in current:
            patch[key] = None
    for key, value in modified.items():
        old = current.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            sub = three_way_merge_patch(last.get(key), value, old)
            if sub:
                patch[key] = sub
        elif isinstance(value, list) and key in current and last.get(key) == value:
            # The server fills defaults into list items (containers, ports, ...), so the live
            # list never equals the manifest's; a list the user did not change is left alone.
            continue
        elif old != value:
            patch[key] = copy.deepcopy(value)
    return patch


# ---- RFC 6902 -----------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise PatchError(f"path element {part!r} not found")
            doc = doc[part]
        elif isinstance(doc, list):
            doc = doc[_index(doc, part, allow_end=False)]
        else:
            raise PatchError(f"cannot descend into a scalar at {part!r}")
    return doc


def _index(seq: list[Any], part: str, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(seq)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise PatchError(f"invalid array index {part!r}")
    index = int(part)
    if index > len(seq) or (index == len(seq) and not allow_end):
        raise PatchError(f"array index {index} out of bounds")
    return index


_OPERATIONS = ("add", "remove", "replace", "move", "copy", "test")


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"operation {number}: needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if not isinstance(path, str):
            raise PatchError(f"operation {number}: 'path' must be a string")
        if kind not in _OPERATIONS:
            raise PatchError(
                f"operation {number}: unknown operation {kind!r}; use one of "
                + ", ".join(_OPERATIONS)
            )
        try:
            result = _apply_op(result, kind, _pointer(path), op)
        except PatchError as exc:
            raise PatchError(f"operation {number} ({kind} {path}): {exc}") from exc
    return result


def _apply_op(doc: Any, kind: str, parts: list[str], op: dict[str, Any]) -> Any:
    if kind == "test":
        if "value" not in op:
            raise PatchError("'value' is required")
        if _walk(doc, parts) != op["value"]:
            raise PatchError("test failed")
        return doc
    if kind in ("move", "copy"):
        source = op.get("from")
        if not isinstance(source, str):
            raise PatchError("'from' is required")
        value = copy.deepcopy(_walk(doc, _pointer(source)))
        if kind == "move":
            doc = _apply_op(doc, "remove", _pointer(source), {})
        return _apply_op(doc, "add", parts, {"value": value})
    if kind in ("add", "replace") and "value" not in op:
        raise PatchError("'value' is required")
    if not parts:
        if kind == "remove":
            raise PatchError("cannot remove the whole document")
        return copy.deepcopy(op["value"])
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        if kind == "add":
            parent[last] = copy.deepcopy(op["value"])
        elif kind == "replace":
            if last not in parent:
                raise PatchError(f"{last!r} not found")
            parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if last not in parent:
                raise PatchError(f"{last!r} not found")
            del parent[last]
        else:
            raise PatchError(f"unknown operation {kind!r}")
    elif isinstance(parent, list):
        if kind == "add":
            parent.insert(_index(parent, last, allow_end=True), copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[_index(parent, last, allow_end=False)] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[_index(parent, last, allow_end=False)]
        else:
            raise PatchError(f"unknown operation {kind!r}")
    else:
        raise PatchError("parent is not a container")
    return doc


# ---- strategic merge patch -------------------------------------------------------------

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
    "addresses": "ip",
    "taints": "key",
    "ownerReferences": "uid",
}
_PORTS_KEYS = ("containerPort", "port")
_SET_LISTS = {"finalizers"}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        elif isinstance(value, dict):
            result[key] = strategic_merge_patch(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_key(name: str, items: list[Any]) -> str | None:
    if name in MERGE_KEYS:
        return MERGE_KEYS[name]
    if name == "ports" and items and isinstance(items[0], dict):
        for candidate in _PORTS_KEYS:
            if candidate in items[0]:
                return candidate
    return None


def _merge_list(name: str, current: list[Any], patch: list[Any]) -> list[Any]:
    if name in _SET_LISTS:
        merged = list(current)
        merged.extend(item for item in patch if item not in merged)
        return merged
    key = _merge_key(name, patch) or _merge_key(name, current)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return copy.deepcopy(patch)
    result = [dict(item) if isinstance(item, dict) else item for item in current]
    for item in patch:
        directive = item.get("$patch")
        wanted = item.get(key)
        index = next(
            (
                i
                for i, have in enumerate(result)
                if isinstance(have, dict) and have.get(key) == wanted
            ),
            None,
        )
        if directive == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result
