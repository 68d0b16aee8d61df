"""Label and field selectors: parsing (Kubernetes' string syntax), and matching."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumo.model.base import LabelSelector
from kumo.model.validation import label_value, qualified_name


class SelectorError(ValueError):
    """A selector that does not parse; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "=":  # by far the most common: checked first, and cheaply
            value = labels.get(self.key)
            return value is not None and value == self.values[0]
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        if self.operator in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if self.operator in ("gt", "lt"):
            if not present:
                return False
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except ValueError:
                return False
            return have > want if self.operator == "gt" else have < want
        raise AssertionError(self.operator)


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements. The empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        have = labels or {}
        # A plain loop, not all(...): this runs for every object a selector list scans.
        for requirement in self.requirements:  # noqa: SIM110
            if not requirement.matches(have):
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.operator == "exists":
                parts.append(r.key)
            elif r.operator == "!":
                parts.append(f"!{r.key}")
            elif r.operator in ("=", "!="):
                parts.append(f"{r.key}{r.operator}{r.values[0]}")
            elif r.operator in ("gt", "lt"):
                parts.append(f"{r.key}{'>' if r.operator == 'gt' else '<'}{r.values[0]}")
            else:
                parts.append(f"{r.key} {r.operator} ({','.join(r.values)})")
        return ",".join(parts)


EVERYTHING = Selector()
NOTHING = Selector((Requirement("kumo.dev/never", "in", ()),))

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=,()<>]+)")


def _tokens(text: str) -> list[str]:
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise SelectorError(f"unable to parse requirement: at position {pos} of {text!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


def _check_key(key: str) -> None:
    problems = qualified_name(key)
    if problems:
        raise SelectorError(
            f"unable to parse requirement: invalid label key {key!r}: {problems[0]}"
        )


def _check_value(value: str) -> None:
    problems = label_value(value)
    if problems:
        raise SelectorError(f"invalid label value: {value!r}: {problems[0]}")


def parse_label_selector(text: str | None) -> Selector:
    """Parse ``a=b,c!=d,e in (x,y),f notin (z),g,!h``."""
    if text is None or not text.strip():
        return EVERYTHING
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"unable to parse requirement: unexpected end of {text!r}")
        token = tokens[i]
        i += 1
        return token

    while i < len(tokens):
        token = take()
        if token == "!":
            key = take()
            _check_key(key)
            requirements.append(Requirement(key, "!"))
        else:
            key = token
            _check_key(key)
            if i >= len(tokens) or tokens[i] == ",":
                requirements.append(Requirement(key, "exists"))
            else:
                op = take()
                if op in ("=", "=="):
                    value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                    if value:
                        i += 1
                    _check_value(value)
                    requirements.append(Requirement(key, "=", (value,)))
                elif op == "!=":
                    value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                    if value:
                        i += 1
                    _check_value(value)
                    requirements.append(Requirement(key, "!=", (value,)))
                elif op in (">", "<"):
                    value = take()
                    if not value.lstrip("-").isdigit():
                        raise SelectorError(
                            f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}"
                        )
                    requirements.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
                elif op in ("in", "notin"):
                    if take() != "(":
                        raise SelectorError(f"found {tokens[i - 1]!r}, expected: '(' in {text!r}")
                    values: list[str] = []
                    while True:
                        item = take()
                        if item == ")":
                            break
                        if item == ",":
                            continue
                        _check_value(item)
                        values.append(item)
                    if not values:
                        raise SelectorError(
                            f"for 'in', 'notin' operators, values set can't be empty: {text!r}"
                        )
                    requirements.append(Requirement(key, op, tuple(values)))
                else:
                    raise SelectorError(
                        f"found {op!r}, expected: in, notin, =, ==, !=, gt, lt in {text!r}"
                    )
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(
                    f"found {tokens[i]!r}, expected: ',' or 'end of string' in {text!r}"
                )
            i += 1
            if i >= len(tokens):
                raise SelectorError(f"unable to parse requirement: trailing ',' in {text!r}")
    return Selector(tuple(requirements))


_OPERATORS = {
    "In": "in",
    "NotIn": "notin",
    "Exists": "exists",
    "DoesNotExist": "!",
    "Gt": "gt",
    "Lt": "lt",
}


def from_label_selector(selector: LabelSelector | None) -> Selector:
    """A LabelSelector object (matchLabels + matchExpressions). ``None`` matches nothing,
    as in Kubernetes' LabelSelectorAsSelector; an empty object matches everything."""
    if selector is None:
        return NOTHING
    requirements = [
        Requirement(k, "=", (v,)) for k, v in sorted((selector.match_labels or {}).items())
    ]
    for expr in selector.match_expressions or []:
        op = _OPERATORS.get(expr.operator)
        if op is None:
            raise SelectorError(f"{expr.operator!r} is not a valid label selector operator")
        values = tuple(expr.values or ())
        if op in ("in", "notin") and not values:
            raise SelectorError(
                "values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
            )
        if op in ("exists", "!") and values:
            raise SelectorError(
                "values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            )
        requirements.append(Requirement(expr.key, op, values))
    return Selector(tuple(requirements))


def selector_from_map(labels: Mapping[str, str] | None) -> Selector:
    """A Service-style selector: every pair must match. ``None`` or empty matches nothing."""
    if not labels:
        return NOTHING
    return Selector(tuple(Requirement(k, "=", (v,)) for k, v in sorted(labels.items())))


# ---- field selectors --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for r in self.requirements:
            have = field_value(obj, r.field)
            if (have == r.value) != (r.operator == "="):
                return False
        return True

    @property
    def fields(self) -> set[str]:
        return {r.field for r in self.requirements}


def field_value(obj: Mapping[str, Any], path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def parse_field_selector(text: str | None) -> FieldSelector:
    if text is None or not text.strip():
        return FieldSelector()
    requirements = []
    for raw_part in text.split(","):
        part = raw_part.strip()
        if not part:
            raise SelectorError(f"invalid field selector: empty requirement in {text!r}")
        for op in ("!=", "==", "="):
            if op in part:
                field, value = part.split(op, 1)
                requirements.append(
                    FieldRequirement(field.strip(), "!=" if op == "!=" else "=", value.strip())
                )
                break
        else:
            raise SelectorError(f"invalid selector: '{part}'; can't understand '{part}'")
    return FieldSelector(tuple(requirements))
