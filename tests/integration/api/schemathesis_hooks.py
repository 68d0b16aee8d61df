"""Schemathesis hooks for the bounded fuzz run (loaded through SCHEMATHESIS_HOOKS).

- A watch is an endless stream by design; generated watch requests get
  ``timeoutSeconds=1`` so that they end and the run measures responses.
- Random path parameters almost never name an existing object, so half of the generated
  non-DELETE cases are pointed at the objects the test created beforehand (namespace and
  name ``fuzz``): fuzzed bodies then reach replace, patch, status and scale logic.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

EXISTING = "fuzz"


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    query = case.query
    if isinstance(query, dict) and "watch" in query:
        query["timeoutSeconds"] = 1
    return case


@schemathesis.hook
def flatmap_case(context: Any, case: Any) -> Any:
    params = case.path_parameters
    method = str(getattr(context.operation, "method", "")).lower()
    if not params or method == "delete":
        return st.just(case)

    def point_at_existing(pin: bool) -> Any:
        if pin:
            for name in ("namespace", "name"):
                if name in params:
                    params[name] = EXISTING
        return case

    return st.booleans().map(point_at_existing)
