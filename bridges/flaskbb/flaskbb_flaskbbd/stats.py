"""Logins and failed logins of the last hour, as this FlaskBB process answered them,
per minute, and their chart (an SVG made on the server) for the admins' page.

Counts live in the process's memory: each worker process of a multi-process server
counts its own, and a restart starts from zero.
"""

from __future__ import annotations

import threading
import time
from typing import Dict, List, Optional, Tuple

#: Minutes the chart shows.
MINUTES = 60

_lock = threading.Lock()
#: minute (seconds since the epoch // 60) -> [logins, failures]
_counts: Dict[int, List[int]] = {}


def record(success: bool, now: Optional[float] = None) -> None:
    """Counts one login (``success``) or one failed login."""
    minute = int((time.time() if now is None else now) // 60)
    with _lock:
        slot = _counts.setdefault(minute, [0, 0])
        slot[0 if success else 1] += 1
        for old in [m for m in _counts if m <= minute - MINUTES]:
            del _counts[old]


def last_hour(now: Optional[float] = None) -> List[Tuple[int, int]]:
    """(logins, failures) of each of the last 60 minutes, oldest first."""
    minute = int((time.time() if now is None else now) // 60)
    with _lock:
        return [tuple(_counts.get(m, [0, 0])) for m in range(minute - MINUTES + 1, minute + 1)]  # type: ignore[misc]


def chart_svg(now: Optional[float] = None) -> str:
    """A bar chart of :func:`last_hour`: logins green, failures red, one pair of bars
    a minute, with the totals as its title."""
    data = last_hour(now)
    logins = sum(d[0] for d in data)
    failures = sum(d[1] for d in data)
    width, height, bar = 600, 120, 10
    peak = max([max(d) for d in data] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flaskbbd-chart" width="{width}" height="{height + 20}" '
        f'viewBox="0 0 {width} {height + 20}" role="img">',
        f"<title>Last hour: {logins} logins, {failures} failed logins</title>",
        f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#999"/>',
    ]
    for i, (ok, failed) in enumerate(data):
        x = i * bar
        for offset, value, colour in ((0, ok, "#5cb85c"), (bar // 2, failed, "#d9534f")):
            if value:
                h = max(1, round(value * (height - 10) / peak))
                parts.append(
                    f'<rect x="{x + offset}" y="{height - h}" width="{bar // 2 - 1}" height="{h}" fill="{colour}">'
                    f"<title>{value}</title></rect>"
                )
    parts.append(f'<text x="0" y="{height + 15}" font-size="11" fill="#666">-60 min</text>')
    parts.append(f'<text x="{width}" y="{height + 15}" font-size="11" fill="#666" text-anchor="end">now</text>')
    parts.append(
        f'<text x="{width // 2}" y="{height + 15}" font-size="11" fill="#666" text-anchor="middle">'
        f"{logins} logins, {failures} failed</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["chart_svg", "last_hour", "record"]
