"""Splitting a watch stream into events: lines cut anywhere by the transport, blank lines,
a last line without a newline, ERROR events."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from kumo.client import ApiException
from kumo.client.client import _watch_event, _watch_lines


def events_from(chunks: list[bytes]) -> list[tuple[str, dict[str, object]]]:
    out = []
    pieces: list[bytes] = []
    for chunk in chunks:
        if b"\n" not in chunk:
            pieces.append(chunk)
            continue
        for line in _watch_lines(chunk, pieces):
            event = _watch_event(line)
            if event is not None:
                out.append((event.type, event.object))
    last = _watch_event(b"".join(pieces))
    if last is not None:
        out.append((last.type, last.object))
    return out


def test_events_survive_any_chunking() -> None:
    events = [
        {
            "type": "ADDED" if i % 3 else "MODIFIED",
            "object": {"metadata": {"name": f"o{i}"}, "n": i},
        }
        for i in range(50)
    ]
    stream = b"".join(orjson.dumps(e) + b"\n" for e in events) + b"\n"
    expected = [(e["type"], e["object"]) for e in events]
    rng = random.Random(1)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(0, 40)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert events_from(chunks) == expected
    # The last line may come without its newline.
    assert events_from([stream.rstrip(b"\n")]) == expected


def test_error_event_raises_with_its_status() -> None:
    line = orjson.dumps(
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    )
    with pytest.raises(ApiException) as caught:
        _watch_event(line)
    assert caught.value.code == 410


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        _watch_event(b"{not json")
    with pytest.raises(json.JSONDecodeError):
        _watch_event(b"[1, 2]")
