"""Upcasters: pure functions that lift an older event body to the next schema version.

``UPCASTERS[(type, n)]`` turns a version-``n`` body (a plain dict) into its
version ``n + 1`` shape. Types without an entry for a step did not change then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_V1_STATUS = {"green": "on-track", "amber": "at-risk", "yellow": "at-risk", "red": "off-track"}


def upcast_checkin_v1_v2(body: dict[str, Any]) -> dict[str, Any]:
    """v1 check-ins had ``progress`` as a 0–1 fraction, ``metric``, a traffic-light
    ``status`` and a ``comment``; v2 has ``percent`` 0–100, ``value``, ``confidence``
    and ``note``."""
    out: dict[str, Any] = {"type": body.get("type"), "subject": body.get("subject")}
    progress = body.get("progress")
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        out["percent"] = round(progress * 100, 6)
    elif progress is not None:
        out["percent"] = progress  # let validation name the bad value
    if body.get("metric") is not None:
        out["value"] = body["metric"]
    status = body.get("status", "green")
    out["confidence"] = _V1_STATUS.get(status, status) if isinstance(status, str) else status
    if body.get("comment") is not None:
        out["note"] = body["comment"]
    return out


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("checkin.recorded", 1): upcast_checkin_v1_v2,
}


def upcast(body: dict[str, Any], from_version: int, to_version: int) -> dict[str, Any]:
    """Apply every upcaster between two versions, in order."""
    kind = body.get("type")
    for version in range(from_version, to_version):
        step = UPCASTERS.get((kind, version)) if isinstance(kind, str) else None
        if step is not None:
            body = step(body)
    return body
