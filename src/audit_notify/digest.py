"""Digests: a flood of one kind of event becomes one summary per window.

Windows are kept in the events' own time, so ``--dry-run`` over a file
shows exactly what the live plugin sends, and tests need no sleeps.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

from .events import Event
from .format import headline
from .message import Notification, V

# Events with equal values of these fields have the same "shape": the same
# rule, kind, action, subject, result, program and host.
SHAPE_FIELDS = ("node", "type", "key", "kind", "action", "primary_subject", "result", "success", "how")


def shape_of(event: Event) -> str:
    return "\x1f".join(event.get(name) for name in SHAPE_FIELDS)


@dataclass
class Window:
    """One shape's current window, in the events' own time."""

    start: float
    alone: int = 0
    folded: int = 0
    first: float = 0.0
    last: float = 0.0
    sample: str = ""
    sample_html: str = ""
    priority: int = 0
    node: str = ""


class Digester:
    """Per shape and window of ``window`` seconds of *event* time, the first
    ``after`` events go out alone and the rest are counted into one summary,
    sent when the window closes.  Using the events' timestamps, not the
    wall clock, makes --dry-run over a file show exactly what the live
    plugin sends, and makes tests exact without sleeping.  ``after = 0``
    turns digests off."""

    def __init__(self, after: int, window: float):
        self.after = after
        self.window = window
        self.windows: Dict[str, Window] = {}

    def offer(self, event: Event) -> Tuple[bool, List[Notification]]:
        """Whether to send ``event`` alone, and the summaries of any window
        of its shape that it closes."""
        if self.after <= 0:
            return True, []
        key = shape_of(event)
        closed = []
        window = self.windows.get(key)
        if window is not None and event.timestamp >= window.start + self.window:
            closed = self._close(key)
            window = None
        if window is None:
            window = self.windows[key] = Window(start=event.timestamp)
        if window.alone < self.after:
            window.alone += 1
            return True, closed
        if not window.folded:
            head, failed = headline(event)
            head = head + (" on ", V(event.get("node"))) if event.get("node") else head
            window.first, window.sample, window.sample_html = event.timestamp, head.text(), head.html()
            window.node = event.get("node")
            window.priority = 1 if failed else 0
        window.folded += 1
        window.last = max(window.last, event.timestamp)
        return False, closed

    def due(self, now: float) -> List[Notification]:
        """Close the windows that ended by ``now`` (event time, or the wall
        clock when the plugin is live and idle)."""
        out = []
        for key in [k for k, w in self.windows.items() if w.start + self.window <= now]:
            out += self._close(key)
        return out

    def close_all(self) -> List[Notification]:
        out = []
        for key in list(self.windows):
            out += self._close(key)
        return out

    def pending(self) -> bool:
        return any(w.folded for w in self.windows.values())

    def _close(self, key: str) -> List[Notification]:
        window = self.windows.pop(key)
        return [digest_notification(window, self.window)] if window.folded else []

    def snapshot(self) -> str:
        return json.dumps({k: w.__dict__ for k, w in self.windows.items()})

    def restore(self, text: str):
        self.windows = {k: Window(**v) for k, v in json.loads(text or "{}").items()}


def digest_notification(window: Window, length: float) -> Notification:
    first, last = (time.strftime("%H:%M:%S", time.localtime(t)) for t in (window.first, window.last))
    count = "{:,}".format(window.folded)
    what = "%s more in %d s, like: " % (count, length)
    span = "first %s, last %s (%s)" % (first, last, time.strftime("%Z", time.localtime(window.last)))
    body = "🔁 +%s%s\n%s" % (what, window.sample, span)
    formatted = "🔁 <b>+%s</b>%s<br>\n%s" % (html.escape(what), window.sample_html, html.escape(span))
    fields = {"digest": count, "first": str(window.first), "last": str(window.last), "node": window.node}
    return Notification(body=body, html=formatted, fields=fields, timestamp=window.last, priority=window.priority,
                        kind="digest")

