"""The agenda: when an open incident goes out, is edited, and closes.

Incidents (incidents.py) live on a heap keyed by their next moment, in
the events' own time (the daemon passes the wall clock when input is
quiet, so a file read with --dry-run gives what the live plugin sends):

* an incident closes once nothing joined it for its quiet spell (a login
  with a terminal: when its session ends), and goes out then;
* a critical one goes out CRITICAL_HOLD after it turned critical, whatever
  may still join it; a held login, once its login is done;
* one already out that changed goes out again (an edit) at most every
  UPDATE_INTERVAL, and once more when it closes.

The Grouper (grouper.py) decides what joins what; this only keeps time.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Any, Callable, List, Optional, Tuple

from .incidents import Incident

# A critical incident goes out at most this long after it turned critical,
# whatever may still join it (later pieces edit the message).
CRITICAL_HOLD = 1.0
# A sent incident that changes is edited at most this often, and once more
# when it closes.
UPDATE_INTERVAL = 10.0
# At most this many incidents are open at once; past it the oldest go out
# early (a bound on memory, not a setting).
MAX_OPEN = 5000
# A login is held open for its session (to list what was typed in it) at
# most this long; a session whose end the log never shows ends here.
MAX_SESSION = 86400.0


class Agenda:
    """Open incidents and their next moments; ``emit`` gets each version."""

    def __init__(self, emit: Callable[[Incident], None]):
        self._emit = emit
        self._open: "OrderedDict[str, Incident]" = OrderedDict()
        # (when, tie-break, an open incident's key or a subclass's own moment): a heap, lazily cleaned
        self._agenda: List[Tuple[float, int, Any]] = []
        self._serial = 0
        self.now = 0.0

    def due(self, now: float):
        """Hand over what is due by ``now`` (event time; the daemon passes
        the wall clock when the input is quiet), and close what went quiet.
        It runs twice per event and mostly finds nothing due: that case
        returns after one look at the heap's top."""
        if now > self.now:
            self.now = now
        agenda = self._agenda
        if (not agenda or agenda[0][0] > now) and len(self._open) <= MAX_OPEN:
            return
        while agenda and agenda[0][0] <= now:
            _when, _tie, key = heapq.heappop(agenda)
            if key.__class__ is not str:
                self._ring(key)  # a subclass's own (at())
                continue
            incident = self._open.get(key)
            if incident is None:
                continue
            if now >= self._closes_at(incident):
                self._close(incident)
                continue
            if not incident.emitted and now >= self._first_at(incident):
                self._hand_over(incident)  # critical, or a login's session still open
            elif incident.emitted and incident.changed and now >= incident.emitted_at + UPDATE_INTERVAL:
                self._hand_over(incident)
            self._schedule(incident)
        while len(self._open) > MAX_OPEN:
            self._close(next(iter(self._open.values())))

    def _schedule(self, incident: Incident):
        """Put the incident's next moment on the agenda (always later than
        now: due() relies on it)."""
        when = self._closes_at(incident)
        if not incident.emitted:
            when = min(when, self._first_at(incident))
        elif incident.changed:
            when = min(when, incident.emitted_at + UPDATE_INTERVAL)
        self._serial += 1
        heapq.heappush(self._agenda, (when, self._serial, incident.key))

    def at(self, when: float, what: Any):
        """Put a subclass's own moment on the agenda: ``_ring(what)`` when it
        is due, in turn with the incidents'."""
        self._serial += 1
        heapq.heappush(self._agenda, (when, self._serial, what))

    def _ring(self, what: Any):
        """A moment put on the agenda with at() is due."""

    @staticmethod
    def _closes_at(incident: Incident) -> float:
        """When an incident closes: once quiet; a login held for its session
        at its end (or after MAX_SESSION, whatever the log says)."""
        if incident.held_open:
            return incident.first + MAX_SESSION
        return incident.absorbs_until

    @staticmethod
    def _first_at(incident: Incident) -> float:
        """When an incident that is still open goes out first: CRITICAL_HOLD
        after it turned critical; a held login once its quiet spell is over."""
        when = float("inf")
        if incident.critical_at is not None:
            when = incident.critical_at + CRITICAL_HOLD
        if incident.held_open:
            when = min(when, incident.absorbs_until)
        return when

    def next_due(self) -> Optional[float]:
        """The event time at which due() may have something to do."""
        return self._agenda[0][0] if self._agenda else None

    def close_all(self):
        for incident in list(self._open.values()):
            self._close(incident)

    def pending(self) -> bool:
        return bool(self._open)

    def _hand_over(self, incident: Incident):
        incident.new_text = incident.changed or not incident.emitted
        incident.emitted += 1
        incident.emitted_at = self.now
        incident.changed = False
        self._emit(incident)

    def _close(self, incident: Incident):
        incident.closed = True
        self._open.pop(incident.key, None)
        self._forget(incident)
        self._hand_over(incident)  # the final version (new text or not): its events are accounted then

    def _forget(self, incident: Incident):
        """What a subclass remembers of an open incident goes with it."""
