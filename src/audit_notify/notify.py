"""From events to messages: filter, severity, incidents, repeats, routine.

    event ─> rules.wanted ─> severity (classify, then the admin's lines)
          ─> Grouper (incidents) ─┬─ info: counted into the Routine summary
                                  └─ else: Repeats ─┬─ alone: format_incident
                                                    └─ a repeat: format_repeat
          ─> accept(Notification)   (the spool, or the dry run's printer)

Every event is accounted for once its incident closes: filtered, in an
incident sent as a message, counted as a repeat, or routine.  A repeat of
an action already being counted takes the Grouper's fast lane (lane.py):
counted in where its incident would have been, without becoming one.
Time here is the events' own (the daemon passes the wall clock when input
is quiet), so a file read with --dry-run gives what the live plugin sends.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional

from .config import Config
from .counters import Counters
from .events import Event
from .format import format_incident, format_repeat, format_routine, repeat_headline, routine_label
from .agenda import UPDATE_INTERVAL
from .grouper import Grouper
from .lane import RepeatCounts
from .evidence import basename, commands_of_text
from .incidents import Incident
from .phrases import commands_run
from .programs import ELEVATORS
from .known import Known, shape_of
from .lineage import Lineage
from .message import Notification
from .repeats import Repeats, Routine, Window
from .rules import RuleSet
from .severity import CRITICAL, INFO, WARNING, Verdict, classify

log = logging.getLogger("audit-notify")


def _only_elevates(login: Incident) -> bool:
    """A login without a terminal that only ran sudo (ssh host 'sudo cmd'):
    the sudo's message says where it came from, and is the one message."""
    session = login.session
    if login.kind != "login" or login.severity != WARNING or session is None or session.terminal or any(
            piece.severity != INFO and piece.why not in ("login", "session opened") for piece in login.pieces):
        return False
    commands = commands_run(login, since=login.facts.get("logged_in", 1e18), persons=True)
    ran = [simple.words for command in commands for simple, _ in commands_of_text(command)]
    return bool(ran) and all(words and basename(words[0]) in ELEVATORS for words in ran)


class Notifier:
    """See the module docstring.  ``accept`` takes each notification
    (a keyed one again for each new version: an edit)."""

    def __init__(self, config: Config, rules: RuleSet, accept: Callable[[Notification], None], counters: Counters,
                 fast_lane: bool = True, known: Optional[Known] = None):
        self.rules = rules
        # What this host's people do every day: a warning the first time,
        # routine afterwards (known.py).  In memory unless one is given.
        self.known = known if known is not None else Known()
        self.lineage = Lineage()  # who spawned whom: a web shell's children, a pipeline into a shell
        self._accept = accept
        self.counters = counters
        self.repeats = Repeats(config.digest_after, config.digest_window)
        # Without the fast lane (tests compare): the same messages, more work.
        lane = RepeatCounts(self.repeats.counting, self._fold, self._folded, self._routine, self._known) \
            if fast_lane else None
        self.grouper = Grouper(self._on_incident, grouping=config.group_events, repeats=lane)
        self.routine = Routine(config.routine_minutes * 60.0)
        self.mentions = config.mention

    def configure(self, config: Config, rules: RuleSet):
        """SIGHUP: new rules, repeat and routine settings, mentions."""
        self.rules = rules
        self.grouper.grouping = config.group_events
        self.repeats.after, self.repeats.window = config.digest_after, config.digest_window
        self.routine.period = config.routine_minutes * 60.0
        self.mentions = config.mention

    # -- events ---------------------------------------------------------------

    def on_event(self, event: Event):
        verdict = self.lineage.judge(event, classify(event))
        severity = self.rules.severity(event, verdict.severity) if self.rules.levels else verdict.severity
        if not self.rules.wanted(event, severity):
            self.counters.filtered += 1
            return
        if severity != verdict.severity:
            verdict = Verdict(severity, verdict.why)
        self.grouper.offer(event, verdict)

    def _on_incident(self, incident: Incident):
        if incident.fate == "routine" and incident.novelty == "known" and incident.severity == CRITICAL:
            incident.fate = ""  # a known action that turned critical later: never lowered
        if not incident.fate:
            self._decide(incident)
        elif incident.fate == "repeat" and len(incident.pieces) > incident.counted_as[1]:
            self._recount(incident)
        if incident.closed:
            counted = incident.count - incident.accounted
            incident.accounted = incident.count
            if incident.fate == "routine":
                self.counters.routine += counted
            elif incident.fate == "repeat":
                self.counters.digested += counted
            else:
                self.counters.notified += counted
        if incident.fate == "alone" and incident.new_text:
            note = format_incident(incident, self.mentions)
            # An edit only when the message reads differently: more events
            # joining (the last line's count) is not worth one.
            gist = (note.severity, note.body.rsplit("\n", 1)[0])
            if gist != incident.sent_gist:
                incident.sent_gist = gist
                self._send(note)

    def _decide(self, incident: Incident):
        """Routine, a message of its own, or a count of repeats: decided once,
        when an incident is first due."""
        if incident.severity == WARNING and self.grouper.grouping and not incident.novelty:
            shape = shape_of(incident)
            if shape is not None:
                known = self.known.seen(incident.node, shape[0], shape[1], incident.first)
                incident.novelty = "known" if known else "new"
        retried = incident.kind == "failed-login" and incident.facts.get("retried")  # a typo, then the login
        if (incident.severity == INFO or retried or incident.novelty == "known" and incident.severity == WARNING
                or _only_elevates(incident)) and self.grouper.grouping:  # without grouping: every event a message
            incident.fate = "routine"
            for period in self.routine.add(incident.last, incident.node, routine_label(incident), incident.count):
                self._send(format_routine(period))
            return
        fingerprint = incident.fingerprint()
        window, closed = self.repeats.offer(fingerprint, incident.first, incident.severity, incident.node,
                                            lambda: repeat_headline(incident))
        for done in closed:
            self._send(format_repeat(done, self.repeats.window, self.mentions))
        if window is None:
            incident.fate = "alone"
            self.counters.incidents += 1
            return
        incident.fate = "repeat"
        incident.counted_as = (fingerprint, len(incident.pieces))
        self._counted(window, incident.first)

    def _recount(self, incident: Incident):
        """A repeat that something notable joined after it was counted (the
        process a flood's exec started writes sudoers a second later) is
        another action now: out of the count, and a message of its own.  No
        critical or warning action is counted with different ones."""
        fingerprint = incident.fingerprint()
        if fingerprint == incident.counted_as[0]:  # the same as the others still
            incident.counted_as = (fingerprint, len(incident.pieces))
            return
        window = self.repeats.windows.get(incident.counted_as[0])
        if window is not None:
            self.repeats.unfold(window)
        incident.fate, incident.new_text = "alone", True
        self.counters.incidents += 1

    def _counted(self, window: Window, first: float):
        """One more in a count of repeats: the count's first version, or an
        edit if the last is UPDATE_INTERVAL old."""
        self.counters.digests += window.folded == 1
        if window.folded == 1 or first >= window.sent_at + UPDATE_INTERVAL:
            window.sent_at = first  # the count climbs in an edit at most this often
            self._send(format_repeat(window, self.repeats.window, self.mentions))

    # -- the Grouper's fast lane ---------------------------------------------------

    def _fold(self, fingerprint: str, when: float, severity: str) -> bool:
        """A one-event action the Grouper kept out of the incidents, due to be
        decided: counted in its repeat count as _decide() would, or False
        (the count closed meanwhile): the Grouper makes it an incident."""
        window = self.repeats.fold(fingerprint, when, severity)
        if window is None:
            return False
        self.counters.digested += 1
        self._counted(window, when)
        return True

    def _folded(self, incident: Incident):
        """One that _fold() counted got company (more of its process) before
        it would have closed: it is the incident it would have been, a
        repeat already; its events are accounted for when it closes."""
        incident.fate = "repeat"
        incident.counted_as = (incident.fingerprint(), len(incident.pieces))
        self.counters.digested -= 1

    def _routine(self, incident: Incident) -> bool:
        """A routine one-event action the Grouper kept out of the incidents,
        at the moment its incident would have closed: counted into the
        routine summary as _on_incident() and _decide() would count it;
        False if they would not (grouping turned off meanwhile: a SIGHUP)."""
        if not self.grouper.grouping:
            return False
        incident.fate = "routine"
        for period in self.routine.add(incident.last, incident.node, routine_label(incident), incident.count):
            self._send(format_routine(period))
        incident.accounted = incident.count
        self.counters.routine += incident.count
        return True

    def _known(self, incident: Incident) -> bool:
        """A warning one-event action the Grouper kept out, at the moment
        its incident would have closed: whether _decide() would find its
        shape known (and so count it as routine: it is remembered as seen
        again here).  If not, nothing is asked of the memory: its incident
        is made, and _decide() learns the shape as usual."""
        if not self.grouper.grouping:
            return False
        shape = shape_of(incident)
        if shape is None or not self.known.knows(incident.node, shape[0]):
            return False
        self.known.seen(incident.node, shape[0], shape[1], incident.first)
        incident.novelty = "known"
        return True

    def _send(self, notification: Notification):
        self._accept(notification)

    # -- time -----------------------------------------------------------------

    def due(self, now: float):
        """What is due by ``now``: incidents, repeat windows, routine."""
        self.grouper.due(now)
        for window in self.repeats.due(now):
            self._send(format_repeat(window, self.repeats.window, self.mentions))
        for period in self.routine.due(now):
            self._send(format_routine(period))

    def next_due(self) -> Optional[float]:
        times = [t for t in (self.grouper.next_due(), self.repeats.next_due(), self.routine.next_due())
                 if t is not None]
        return min(times) if times else None

    def pending(self) -> bool:
        return self.grouper.pending() or bool(self.repeats.windows) or self.routine.current is not None

    def close_all(self):
        """The end (EOF, SIGTERM): everything open goes out in its final form."""
        self.grouper.close_all()
        for window in self.repeats.close_all():
            self._send(format_repeat(window, self.repeats.window, self.mentions))
        for period in self.routine.close_all():
            self._send(format_routine(period))

    def accounted(self) -> List[int]:
        c = self.counters
        return [c.filtered, c.notified, c.digested, c.routine]
