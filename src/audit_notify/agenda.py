"""The agenda: when an open incident goes out, is edited, and closes.

Incidents (incidents.py) live on a heap per host, keyed by their next
moment in that host's own time: the time of its events, never the wall
clock, so a host whose clock lags, or auditd catching up a backlog,
groups exactly as a prompt host and as --dry-run of the same file.  The
daemon moves a quiet host's time on by the wall clock since its last
event (clocks.py): only what a quiet host left open closes that way.

* an incident closes once nothing joined it for its quiet spell (a login
  with a terminal: when its session ends), and goes out then;
* a critical one goes out CRITICAL_HOLD after it turned critical, whatever
  may still join it; a held login, once its login is done;
* one already out that changed goes out again (an edit) at most every
  UPDATE_INTERVAL, and once more when it closes.

It also knows, host by host, since when an incident or a kept-out action
(lane.py) has waited to be decided (undecided_since): a repeat count may
not close before every action that might still join it was decided, or
the live plugin would count what --dry-run counts otherwise.

The Grouper (grouper.py) decides what joins what; this only keeps time.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

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
# At most this many hosts' times are kept; past it those with nothing on
# their agenda are forgotten (a bound on memory, not a setting).
MAX_HOSTS = 10000


class Agenda:
    """Open incidents and their next moments, host by host; ``emit`` gets
    each version."""

    def __init__(self, emit: Callable[[Incident], None]):
        self._emit = emit
        self._open: "OrderedDict[str, Incident]" = OrderedDict()
        # node -> (when, tie-break, an open incident's key or a subclass's own moment): a heap, lazily cleaned
        self._agendas: Dict[str, List[Tuple[float, int, Any]]] = {}
        # node -> (first, tie-break, an incident or a kept-out action) not yet decided: a heap, lazily cleaned
        self._undecided: Dict[str, List[Tuple[float, int, Any]]] = {}
        self._nows: "OrderedDict[str, float]" = OrderedDict()  # node -> how far its own time has come
        self._serial = 0
        self.now = 0.0  # the time of the host whose moments are being handled

    def due(self, node: str, now: float):
        """Hand over what is due by ``now`` on host ``node`` (its events'
        time; the daemon passes more when the host is quiet), and close
        what went quiet there.  It runs twice per event and mostly finds
        nothing due: that case returns after one look at the heap's top."""
        latest = self._nows.get(node)
        if latest is None or now > latest:
            self._nows[node] = latest = now
            if len(self._nows) > MAX_HOSTS:
                self._forget_hosts()
        self.now = latest
        agenda = self._agendas.get(node)
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
        if agenda is not None and not agenda:
            del self._agendas[node]
        while len(self._open) > MAX_OPEN:
            self._close(next(iter(self._open.values())))

    def _forget_hosts(self):
        """Past MAX_HOSTS, the hosts with nothing on their agenda are
        forgotten (their next event starts their time afresh)."""
        for node in [node for node in self._nows if node not in self._agendas]:
            del self._nows[node]
            if len(self._nows) <= MAX_HOSTS // 2:
                break

    def _schedule(self, incident: Incident):
        """Put the incident's next moment on the agenda (always later than
        now: due() relies on it)."""
        when = self._closes_at(incident)
        if not incident.emitted:
            when = min(when, self._first_at(incident))
        elif incident.changed:
            when = min(when, incident.emitted_at + UPDATE_INTERVAL)
        self._serial += 1
        heapq.heappush(self._agenda_of(incident.node), (when, self._serial, incident.key))

    def at(self, node: str, when: float, what: Any):
        """Put a subclass's own moment on host ``node``'s agenda:
        ``_ring(what)`` when it is due, in turn with the incidents'."""
        self._serial += 1
        heapq.heappush(self._agenda_of(node), (when, self._serial, what))

    def _agenda_of(self, node: str) -> List[Tuple[float, int, Any]]:
        agenda = self._agendas.get(node)
        if agenda is None:
            agenda = self._agendas[node] = []
        return agenda

    def _opened(self, incident: Incident):
        """A new open incident: on the agenda once scheduled, undecided
        until first handed over."""
        self._open[incident.key] = incident
        self.waits(incident.node, incident.first, incident)

    def waits(self, node: str, since: float, what: Any):
        """``what`` (an incident, or a subclass's kept-out action) waits to
        be decided since ``since``, until _decided(what) says it is not."""
        self._serial += 1
        undecided = self._undecided.get(node)
        if undecided is None:
            undecided = self._undecided[node] = []
        heapq.heappush(undecided, (since, self._serial, what))

    def undecided_since(self, node: Optional[str] = None) -> float:
        """The time of the oldest incident or kept-out action of host
        ``node`` (of any host if None) not yet decided; inf if none."""
        if node is None:
            return min((self.undecided_since(host) for host in list(self._undecided)), default=float("inf"))
        undecided = self._undecided.get(node)
        while undecided and self._decided(undecided[0][2]):
            heapq.heappop(undecided)
        if not undecided:
            self._undecided.pop(node, None)
            return float("inf")
        return undecided[0][0]

    def _decided(self, what: Any) -> bool:
        """Whether an incident was handed over (routine, alone or a repeat
        was decided then) or closed; a subclass's kept-out action says."""
        return what.emitted > 0 or what.closed

    def moments(self) -> Dict[str, float]:
        """Each host's next moment (its own time) at which due() may have
        something to do."""
        return {node: agenda[0][0] for node, agenda in self._agendas.items() if agenda}

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
