"""Reading manifests for ``-f FILE|DIR|-``: multi-document YAML or JSON, ``kind: List``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    pass


@dataclass(slots=True)
class Manifest:
    source: str
    obj: dict[str, Any]


def _files(target: str, recursive: bool) -> list[Path]:
    path = Path(target)
    if not path.exists():
        raise ManifestError(f'the path "{target}" does not exist')
    if path.is_file():
        return [path]
    pattern = "**/*" if recursive else "*"
    found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in _SUFFIXES)
    if not found:
        raise ManifestError(f'no manifests (*.yaml, *.yml, *.json) in "{target}"')
    return found


def _documents(text: str, source: str) -> list[Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise ManifestError(f"error parsing {source}: {exc}") from exc
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"error parsing {source}: {exc}") from exc


def _flatten(doc: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        raise ManifestError(
            f"error validating {source}: a manifest must be a mapping with apiVersion and kind, got {type(doc).__name__}"
        )
    if doc.get("kind") == "List" or (
        str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list)
    ):
        out: list[dict[str, Any]] = []
        for item in doc.get("items") or []:
            out.extend(_flatten(item, source))
        return out
    for field in ("apiVersion", "kind"):
        if not doc.get(field):
            raise ManifestError(f"error validating {source}: {field} not set")
    # YAML turns some scalars into dates and the like; the API speaks JSON.
    converted: dict[str, Any] = json.loads(json.dumps(doc, default=str))
    return [converted]


def read(targets: tuple[str, ...], recursive: bool = False) -> list[Manifest]:
    manifests: list[Manifest] = []
    for target in targets:
        if target == "-":
            sources = [("STDIN", sys.stdin.read())]
        else:
            sources = [(str(p), p.read_text()) for p in _files(target, recursive)]
        for source, text in sources:
            for doc in _documents(text, source):
                manifests.extend(Manifest(source, obj) for obj in _flatten(doc, source))
    return manifests
