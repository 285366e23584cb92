"""Repeats and routine: what is said once, with a count, instead of again.

* Repeats: the same action on the same object (the same command line, the
  same files, the same failed login source; ``Incident.fingerprint``)
  again and again, each within ``window`` seconds of the one before: the
  first ``after`` go out alone, the rest are counted into one message whose
  count climbs (an edit, which notifies nobody) and which says "quiet
  again" once ``window`` seconds pass without one.  A slow brute force is
  one climbing count, not a message a minute.  Different actions are never
  counted together, whatever came before them.
* Routine: ``info`` incidents send nothing of their own; they are counted
  into one summary per ``period`` ("routine: 41 commands by cron, ..."),
  edited in place as it grows.

Both keep their windows in the events' own time (a repeat count in its
host's, the routine summary in that of the host furthest on), so
``--dry-run`` over a file shows what the live plugin sends, and tests
need no sleeps.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .incidents import safe_key
from .severity import INFO, worst

# A count that climbs for this long is closed and a new one started.
MAX_WINDOW = 86400.0


@dataclass
class Window:
    """One fingerprint's current window of repeats."""

    key: str            # the repeat message's key (for its edits)
    start: float
    seen: float = 0.0   # the latest repeat, alone or counted
    alone: int = 0
    folded: int = 0
    first: float = 0.0
    last: float = 0.0
    severity: str = INFO
    node: str = ""
    sample: str = ""    # the headline of the first folded one, as plain text
    sample_html: str = ""
    sent_at: float = 0.0  # when the count's last version was made (event time)
    closed: bool = False
    fingerprint: str = ""  # whose repeats (a 🔕 on the count mutes its shape, answers.py)


class Repeats:
    """See the module docstring; ``after = 0`` turns folding off."""

    def __init__(self, after: int, window: float):
        self.after = after
        self.window = window
        self.windows: Dict[str, Window] = {}
        self._made = 0

    def offer(self, fingerprint: str, when: float, severity: str, node: str,
              headline: Callable[[], Tuple[str, str]]) -> Tuple[Optional[Window], List[Window]]:
        """Whether an incident goes alone (None) or into a count (its
        window); and the windows of this fingerprint it closes."""
        closed = []
        window = self.windows.get(fingerprint)
        if window is not None and self._over(window, when):
            closed = self._close(fingerprint)
            window = None
        if self.after <= 0:
            return None, closed
        if window is None:
            self._made += 1
            key = safe_key("repeat", node, "%.3f" % when, str(self._made))
            window = self.windows[fingerprint] = Window(key=key, start=when, node=node, fingerprint=fingerprint)
        window.seen = max(window.seen, when)
        if window.alone < self.after:
            window.alone += 1
            return None, closed
        if not window.folded:
            window.first = when
            window.sample, window.sample_html = headline()  # made only when needed: it may read the event whole
        return self._fold(window, when, severity), closed

    def counting(self, fingerprint: str, when: float) -> bool:
        """Whether the fingerprint's window is counting (the first
        ``after`` went alone) and still open at ``when``: the next of it
        will be folded unless the window closes first."""
        return self._counting(fingerprint, when) is not None

    def fold(self, fingerprint: str, when: float, severity: str) -> Optional[Window]:
        """What offer() does for one whose window is counting(): count it
        in, without making a headline first.  None, with nothing changed,
        where offer() has more to decide."""
        window = self._counting(fingerprint, when)
        if window is None:
            return None
        if when > window.seen:  # (this runs for most events of a flood: no max())
            window.seen = when
        return self._fold(window, when, severity)

    @staticmethod
    def unfold(window: Window):
        """Take one back out of a count still climbing (it turned out to be
        another action).  A count of one stays: its message is out."""
        if not window.closed and window.folded > 1:
            window.folded -= 1

    def _counting(self, fingerprint: str, when: float) -> Optional[Window]:
        """The fingerprint's window, if it is counting and open at ``when``."""
        window = self.windows.get(fingerprint)
        return window if window is not None and window.folded and not self._over(window, when) else None

    def _over(self, window: Window, when: float) -> bool:
        return when >= window.seen + self.window or when >= window.start + MAX_WINDOW

    @staticmethod
    def _fold(window: Window, when: float, severity: str) -> Window:
        window.folded += 1
        if when > window.last:
            window.last = when
        window.severity = worst(window.severity, severity) if window.folded > 1 else severity
        return window

    def due(self, now: float, node: Optional[str] = None) -> List[Window]:
        """The windows (of host ``node``, or all) over by ``now``, that
        host's time: their final ("quiet again") versions."""
        out = []
        for fingerprint in [f for f, w in self.windows.items() if self._end(w) <= now and node in (None, w.node)]:
            out += self._close(fingerprint)
        return out

    def _end(self, window: Window) -> float:
        return min(window.seen + self.window, window.start + MAX_WINDOW)

    def moments(self) -> Dict[str, float]:
        """Each host's next window end, in its own time."""
        ends: Dict[str, float] = {}
        for window in self.windows.values():
            end = self._end(window)
            if end < ends.get(window.node, float("inf")):
                ends[window.node] = end
        return ends

    def close_all(self) -> List[Window]:
        out = []
        for fingerprint in list(self.windows):
            out += self._close(fingerprint)
        return out

    def _close(self, fingerprint: str) -> List[Window]:
        window = self.windows.pop(fingerprint)
        window.closed = True
        return [window] if window.folded else []

    def snapshot(self) -> str:
        return json.dumps({f: asdict(w) for f, w in self.windows.items()})

    def restore(self, text: str):
        try:
            self.windows = {f: Window(**w) for f, w in json.loads(text or "{}").items()}
        except (ValueError, TypeError):  # a state from another version: start afresh
            self.windows = {}


@dataclass
class Period:
    """The routine of one period: counts by node and label."""

    key: str
    start: float
    end: float
    counts: Dict[str, Counter] = field(default_factory=dict)
    events: int = 0
    sent_at: float = 0.0     # when its last version was made (event time)
    changed: bool = False
    closed: bool = False


class Routine:
    """Counts ``info`` incidents per period; a version of the period's
    summary is due every ``every`` seconds while it changes, and at its end."""

    def __init__(self, period: float = 3600.0, every: float = 600.0):
        self.period = period
        self.every = every
        self.current: Optional[Period] = None
        self._closed_until = 0.0  # the end of the last period closed: none starts before it

    def add(self, when: float, node: str, label: str, events: int) -> List[Period]:
        """Count one routine incident; returns the periods this closes."""
        closed = []
        if self.current is not None and when >= self.current.end:
            closed = self.close_all()
        if self.current is None:
            # A host behind the others (a lagging clock) may still count
            # into a period they closed: it goes into the next, not into a
            # second summary of that period under the same key.
            start = max(when - when % self.period, self._closed_until)
            self.current = Period(key="routine|%.0f" % start, start=start, end=start + self.period,
                                  sent_at=when)
        period = self.current
        period.counts.setdefault(node, Counter())[label] += 1
        period.events += events
        period.changed = True
        return closed

    def due(self, now: float) -> List[Period]:
        """A version of the summary when one is due by ``now``."""
        period = self.current
        if period is None:
            return []
        if now >= period.end:
            return self.close_all()
        if period.changed and now >= period.sent_at + self.every:
            period.sent_at, period.changed = now, False
            return [period]
        return []

    def next_due(self) -> Optional[float]:
        period = self.current
        if period is None:
            return None
        return min(period.end, period.sent_at + self.every) if period.changed else period.end

    def close_all(self) -> List[Period]:
        period, self.current = self.current, None
        if period is None:
            return []
        period.closed = True
        self._closed_until = max(self._closed_until, period.end)
        return [period]


def top(counter: Counter, n: int) -> List[Tuple[str, int]]:
    """The ``n`` largest counts, largest first, ties by label."""
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]
