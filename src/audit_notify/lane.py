"""The fast lane: a flood's repeats counted without becoming incidents.

A flood is mostly new one-event actions alike: the same program run again
and again, the same denial.  Each would be an incident (incidents.py):
made, scheduled, handed over at its first moment, counted into its repeat
count (repeats.py), then closed and forgotten, some 350 Python calls that
end in "one more".  Here, one that repeats an action being counted (the
same fingerprint, its count already climbing) is kept out of the incidents
as a Counted, with a moment on the agenda where its incident's first
hand-over would have been (CRITICAL_HOLD after it if critical, else when it
would have closed):

* at that moment it is counted in, as that hand-over would have counted it;
* if the count has closed by then, or more of its process (the same pid,
  or a child) comes before its incident would have closed, it is made the
  incident it would have been (the same key, the same moments, and, if
  counted in already, a repeat that sent nothing), and all goes on as if it
  had been one from the start.

A routine one-event action (info: an ordinary program a rule logs) takes
the lane too, whatever came before it: at the moment its incident would
have closed it is counted into the routine summary, as that incident's
one hand-over would have counted it (``RepeatCounts.routine``), unless
more of its process came first and made it that incident.  So does a
warning one (a person writing a watched file): at that moment, if its
shape is known (known.py) it is counted as routine as well
(``RepeatCounts.known``); if not, it is made its incident and closed
there and then, with the message a new shape gets.

So the messages are the same with or without the lane; only the work is
not.  The Grouper (grouper.py) decides which actions may take it: new ones,
of no open incident's process, no shell's; repeats not in a scheduler's
session.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Tuple

from .agenda import CRITICAL_HOLD, MAX_OPEN, Agenda
from .events import Event
from .incidents import Incident, Piece, Session, fingerprint_of
from .severity import CRITICAL, INFO, WARNING, Verdict


class RepeatCounts(NamedTuple):
    """What the fast lane asks of the repeat counts (the Notifier's)."""

    counting: Callable[[str, float], bool]   # (fingerprint, when): is that action's count climbing?
    fold: Callable[[str, float, str], bool]  # (fingerprint, when, severity): count one in, if it still is
    folded: Callable[[Incident], None]       # one counted in got company: it is that incident, a repeat
    routine: Callable[[Incident], bool]      # a routine one-event action, closed: counted into the summary?
    known: Optional[Callable[[Incident], bool]] = None  # a warning one, closed: is its shape known (routine)?


class Counted:
    """A one-event action kept out of the incidents: what it takes to count
    it in, or to make it the incident it would have been."""

    __slots__ = ("process", "event", "verdict", "kind", "words", "session", "number", "fingerprint", "until",
                 "state", "decided_at", "routine", "lane")

    def __init__(self, process: Tuple[str, str], event: Event, verdict: Verdict, kind: str, words: List[str],
                 session: Optional[Session], number: int, fingerprint: str, until: float, routine: bool = False):
        self.process = process   # (node, pid)
        self.event = event
        self.verdict = verdict
        self.kind = kind
        self.words = words
        self.session = session
        self.number = number     # the number its incident's key would have had
        self.fingerprint = fingerprint  # as it was when it came (its session may say more by its moment)
        self.until = until       # when its incident would have closed: nothing joins it after
        self.state = "waiting"   # then "counted", or "incident" (made one after all)
        self.decided_at = 0.0    # when it was counted in
        self.routine = routine   # in a scheduler's session (Incident.routine)
        self.lane = "repeat"     # or "routine" (info), "known" (a warning whose shape may be known)


class FastLane(Agenda):
    """The lane, between the Agenda (time) and the Grouper (attribution),
    which provides _new, _join, _remember_process and _forget_process."""

    def __init__(self, emit: Callable[[Incident], None], repeats: Optional[RepeatCounts]):
        super().__init__(emit)
        self._repeats = repeats
        self._made = 0  # incidents made, or kept out: the number in their keys
        self._counted: Dict[Tuple[str, str], Counted] = {}  # (node, pid) -> kept out, its incident not yet closed
        self._counted_order: Deque[Counted] = deque()       # the same, oldest first, to forget them
        self._waiting = 0  # kept out, not yet counted in
        self.kept_out = 0  # how many took the lane (bench_stages.py shows it)

    def _keep_out(self, kind: str, event: Event, verdict: Verdict, words: List[str], session: Optional[Session],
                  quiet: float, node: str, routine: bool = False) -> bool:
        """Whether a new one-event action is kept out of the incidents (the
        caller has made sure it is new): one that repeats an action being
        counted; while the lane holds fewer than MAX_OPEN, a routine one
        (info), or a warning whose shape may be known by its moment."""
        lane = "repeat"
        if verdict.severity == INFO:
            lane, fingerprint = "routine", ""
        else:
            fingerprint = self._fingerprint(kind, event, verdict, words, session, node)
            if not self._repeats.counting(fingerprint, event.timestamp):
                if verdict.severity != WARNING or self._repeats.known is None:
                    return False
                lane = "known"
        if lane != "repeat" and self._waiting >= MAX_OPEN:  # a bound on memory, as the open incidents have
            return False
        self._made += 1
        self.kept_out += 1
        counted = Counted((node, event.facts.get("pid")), event, verdict, kind, words, session,
                          self._made, fingerprint, event.timestamp + quiet, routine)
        counted.lane = lane
        critical = verdict.severity == CRITICAL
        self.at(node, min(counted.until, event.timestamp + CRITICAL_HOLD) if critical else counted.until, counted)
        self.waits(node, event.timestamp, counted)
        self._waiting += 1
        if counted.process[1]:  # without a pid nothing could join it
            self._counted[counted.process] = counted
            self._counted_order.append(counted)
            # Its incident would have been its process's, until it closed:
            # the one its process had before is not its process's any more.
            self._forget_process(counted.process)
        return True

    @staticmethod
    def _fingerprint(kind: str, event: Event, verdict: Verdict, words: List[str], session: Optional[Session],
                     node: str) -> str:
        """The fingerprint of the incident a one-event action would be: made
        as _new and _join would make it."""
        return fingerprint_of(node, kind, verdict.severity, session, event,
                              {"command": " ".join(words)} if words else {},
                              [Piece(verdict.severity, verdict.why, event)])

    def _ring(self, counted: Any) -> Optional[Incident]:
        """A kept-out action's moment: counted in, or an incident after all
        (returned)."""
        if counted.state != "waiting":
            return None  # an incident already
        event, verdict = counted.event, counted.verdict
        if counted.lane != "repeat":  # its incident closes now: routine, or a known warning counted as such
            incident = self._as_incident(counted)
            if (counted.lane == "routine" or self._repeats.known(incident)) and self._repeats.routine(incident):
                self._waiting -= 1
                counted.state, counted.decided_at = "counted", self.now
                return None
            made = self._incident_after_all(counted)  # a new shape (its message), or grouping turned off
            self._close(made)  # (closing now, where it would have closed)
            return made
        fingerprint = counted.fingerprint if counted.session is None else \
            self._fingerprint(counted.kind, event, verdict, counted.words, counted.session, counted.process[0])
        if self._repeats.fold(fingerprint, event.timestamp, verdict.severity):
            self._waiting -= 1
            counted.state, counted.decided_at = "counted", self.now
            return None
        return self._incident_after_all(counted)  # its count closed meanwhile: the incident, due at once

    def _company(self, event: Event):
        """Before ``event`` is attributed: kept-out actions whose incidents
        would have closed by now are forgotten; one whose process made
        ``event``, or is its parent, is made the incident it would have
        been, which ``event`` then joins as usual."""
        order, now, nows = self._counted_order, self.now, self._nows
        while order and order[0].until <= nows.get(order[0].process[0], now):
            gone = order.popleft()
            if self._counted.get(gone.process) is gone:
                del self._counted[gone.process]
        node, values = event.get("node"), event.facts.values
        for pid in (values.get("pid"), values.get("ppid")):
            counted = self._counted.get((node, pid)) if pid else None
            if counted is not None and counted.until > now:
                self._incident_after_all(counted)

    @staticmethod
    def _as_incident(counted: Counted) -> Incident:
        """The closed incident a kept-out action would have been, as its
        shape (known.shape_of) and its summary's label (format.routine_label)
        read it: not made open, not on the agenda, its key unused."""
        event = counted.event
        incident = Incident("", counted.kind, counted.process[0], event.timestamp, event.timestamp)
        incident.session = counted.session
        incident.anchor = event
        incident.closed = True
        incident.routine = counted.routine
        if counted.words:
            incident.facts["command"] = " ".join(counted.words)
        incident.add(event, counted.verdict, counted.until - event.timestamp)
        return incident

    def _incident_after_all(self, counted: Counted) -> Incident:
        """The incident a kept-out action would have been, made now as it
        was made then (its key's number too) and, if it was counted in, as
        its first hand-over left it: a repeat that sent nothing."""
        if self._counted.get(counted.process) is counted:
            del self._counted[counted.process]
        event = counted.event
        incident = self._new(counted.kind, event, counted.process[1] or event.get("serial"), counted.number)
        if counted.words:
            incident.facts["command"] = " ".join(counted.words)
        incident.routine = counted.routine
        if counted.state == "counted":
            incident.emitted, incident.emitted_at = 1, counted.decided_at
        else:
            self._waiting -= 1
        self._join(incident, event, counted.verdict)
        if counted.state == "counted":
            incident.changed = False
            self._repeats.folded(incident)
        counted.state = "incident"
        self._remember_process(event, incident)
        return incident

    def _decided(self, what: Any) -> bool:
        if what.__class__ is Counted:
            return what.state != "waiting"
        return super()._decided(what)

    def pending(self) -> bool:
        return super().pending() or self._waiting > 0

    def close_all(self):
        """The end: kept-out actions and open incidents are decided in the
        order they were made, as the incidents alone would be (a routine
        summary counts in that order, and the input's clock may go back)."""
        waiting = [what for agenda in self._agendas.values() for _when, _tie, what in agenda
                   if what.__class__ is Counted and what.state == "waiting"]
        for what in sorted(waiting + list(self._open.values()), key=lambda what: what.number):
            if what.__class__ is Counted:
                made = self._ring(what)
                if made is not None and self._open.get(made.key) is made:
                    self._close(made)
            elif self._open.get(what.key) is what:
                self._close(what)
        super().close_all()

    # -- the Grouper's ---------------------------------------------------------

    def _new(self, kind: str, event: Event, anchor: str, number: Optional[int] = None) -> Incident:
        raise NotImplementedError

    def _join(self, incident: Incident, event: Event, verdict: Verdict, quiet: Optional[float] = None) -> Incident:
        raise NotImplementedError

    def _remember_process(self, event: Event, incident: Incident):
        raise NotImplementedError

    def _forget_process(self, process: Tuple[str, str]):
        raise NotImplementedError
