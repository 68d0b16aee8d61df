"""Small shared field types: quantities, int-or-string, resource lists."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from kumo.model.validation import QuantityError, parse_quantity


def _quantity(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("must be a quantity string such as '500m' or '128Mi', or a number")
    try:
        parse_quantity(value)
    except QuantityError as exc:
        raise ValueError(str(exc)) from exc
    return value if isinstance(value, str) else str(value)


Quantity = Annotated[str, BeforeValidator(_quantity)]
"""A resource quantity, kept as the user wrote it ("500m", "1Gi"); numbers become strings."""

ResourceList = dict[str, Quantity]


def _int_or_string(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be an integer or a string")
    return value


IntOrString = Annotated[int | str, BeforeValidator(_int_or_string), PlainSerializer(lambda v: v)]
"""Kubernetes' IntOrString: a port number or name, a count or a percentage."""


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """Resolve an IntOrString against a total ("25%" of 10 -> 3 rounded up, 2 down)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.endswith("%"):
        percent = int(text[:-1])
        scaled = percent * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(text)
