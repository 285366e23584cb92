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
Time here is the events' own, host by host (the daemon moves a quiet host
on by the wall clock since its last event, clocks.py), so a file read with
--dry-run gives what the live plugin sends.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, Dict, List, Optional

from .config import Config
from .counters import Counters
from .events import Event
from .format import format_incident, format_repeat, format_routine, repeat_headline, routine_label
from .agenda import UPDATE_INTERVAL
from .clocks import ANY
from .grouper import Grouper
from .lane import RepeatCounts
from .evidence import basename, commands_of_text
from .incidents import Incident
from .phrases import commands_run
from .programs import ELEVATORS
from .known import Known, shape_of
from .answers import Mutes, mute_shape
from .lineage import Lineage
from .lifecycle import Lifecycle
from .message import Notification
from .repeats import Period, Repeats, Routine, Window
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


def _mutable(incident: Incident) -> bool:
    """Whether a 🔕 may mute it: never the audit system's own alarms (rules
    changed or deleted, auditing disabled, auditd stopped or gone)."""
    anchor = incident.anchor
    return incident.kind != "rules" and (anchor is None or not (
        anchor.get("type").startswith("DAEMON_") or anchor.get("type") == "CONFIG_CHANGE"))


def _shape(incident: Incident) -> str:
    return mute_shape(incident.fingerprint()) if _mutable(incident) else ""


class Notifier:
    """See the module docstring.  ``accept`` takes each notification
    (a keyed one again for each new version: an edit)."""

    def __init__(self, config: Config, rules: RuleSet, accept: Callable[[Notification], None], counters: Counters,
                 fast_lane: bool = True, known: Optional[Known] = None, mutes: Optional[Mutes] = None):
        self.rules = rules
        # Shapes a person muted from the room (answers.py): counted into the
        # routine summary, not sent.  None in a dry run without --state.
        self.mutes = mutes if mutes is not None else Mutes()
        self._after: dict = {}  # incident key -> the line saying it was muted until just now
        # What this host's people do every day: a warning the first time,
        # routine afterwards (known.py).  In memory unless one is given.
        self.known = known if known is not None else Known()
        self.lineage = Lineage()  # who spawned whom: a web shell's children, a pipeline into a shell
        self._accept = accept
        self.counters = counters
        self.repeats = Repeats(config.digest_after, config.digest_window)
        # Without the fast lane (tests compare): the same messages, more work.
        lane = RepeatCounts(self.repeats.counting, self._fold, self._folded, self._count_routine, self._known) \
            if fast_lane else None
        self.grouper = Grouper(self._on_incident, grouping=config.group_events, repeats=lane)
        self.routine = Routine(config.routine_minutes * 60.0)
        self.lifecycle = Lifecycle(self._send, counters)  # auditd's own stops, starts and reloads
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
        if self.lifecycle.offer(event, self.grouper.due):
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
        if incident.closed and "ops" in incident.facts:
            incident.new_text = True  # a rules burst's message gives its total once it is over (phrases.rule_count)
        if incident.fate == "alone" and incident.new_text:
            note = replace(format_incident(incident, self.mentions), shape=_shape(incident))
            if incident.key in self._after:
                note = note.with_line(self._after[incident.key])
            # An edit only when the message reads differently: more events
            # joining (the last line's count) is not worth one.
            gist = (note.severity, note.body.rsplit("\n", 1)[0])
            if gist != incident.sent_gist:
                incident.sent_gist = gist
                self._send(note)
        if incident.closed and self._after:
            self._after.pop(incident.key, None)

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
                self._send(self._routine(period))
            return
        fingerprint = incident.fingerprint()
        if self.mutes.active or self.mutes.ended:
            if self._muted(incident, fingerprint):
                return
        window, closed = self.repeats.offer(fingerprint, incident.first, incident.severity, incident.node,
                                            lambda: repeat_headline(incident))
        for done in closed:
            self._send(self._repeat(done))
        if window is None:
            incident.fate = "alone"
            self.counters.incidents += 1
            return
        incident.fate = "repeat"
        incident.counted_as = (fingerprint, len(incident.pieces))
        self._counted(window, incident.first)

    def _muted(self, incident: Incident, fingerprint: str) -> bool:
        """A shape muted from the room: counted into the routine summary
        ("muted: …"), not sent.  The first one after a mute ended says so."""
        shape = mute_shape(fingerprint) if _mutable(incident) else ""
        mute = self.mutes.hit(shape, incident.first)
        if mute is None:
            ended = self.mutes.after(shape) if shape else None
            if ended is not None:
                self._after[incident.key] = ended.after()
            return False
        incident.fate = "routine"
        for period in self.routine.add(incident.last, incident.node, "muted: " + mute.label, incident.count):
            self._send(self._routine(period))
        return True

    def _repeat(self, window: Window) -> Notification:
        note = format_repeat(window, self.repeats.window, self.mentions)
        return replace(note, shape=mute_shape(window.fingerprint)) if window.fingerprint else note

    def _routine(self, period: Period) -> Notification:
        return format_routine(period, self.mutes.summary())

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
            self._send(self._repeat(window))

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

    def _count_routine(self, incident: Incident) -> bool:
        """A routine one-event action the Grouper kept out of the incidents,
        at the moment its incident would have closed: counted into the
        routine summary as _on_incident() and _decide() would count it;
        False if they would not (grouping turned off meanwhile: a SIGHUP)."""
        if not self.grouper.grouping:
            return False
        incident.fate = "routine"
        for period in self.routine.add(incident.last, incident.node, routine_label(incident), incident.count):
            self._send(self._routine(period))
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

    def due(self, node: Optional[str], now: float):
        """What is due by ``now`` of host ``node``'s own time: its incidents
        and repeat counts; with ANY, the routine summary, by the time of
        the host furthest on.  A count or a summary waits for every action
        that may still join it to be decided first (as a file read at once
        decides them, agenda.py)."""
        if node is ANY:
            for period in self.routine.due(min(now, self.grouper.undecided_since())):
                self._send(self._routine(period))
            return
        self.grouper.due(node, now)
        self.lifecycle.due(node, now)
        for window in self.repeats.due(min(now, self.grouper.undecided_since(node)), node):
            self._send(self._repeat(window))

    def moments(self) -> Dict[Optional[str], float]:
        """Each host's next moment, in its own time, at which due() may have
        something to do (ANY: the routine summary's).  A count or summary
        waiting for an undecided action has none: that action's is first."""
        moments: Dict[Optional[str], float] = self.grouper.moments()
        for node, end in self.lifecycle.moments().items():
            moments[node] = min(end, moments.get(node, end))
        for node, end in self.repeats.moments().items():
            if end < moments.get(node, float("inf")) and end <= self.grouper.undecided_since(node):
                moments[node] = end
        end = self.routine.next_due()
        if end is not None and end <= self.grouper.undecided_since():
            moments[ANY] = end
        return moments

    def pending(self) -> bool:
        return self.grouper.pending() or bool(self.repeats.windows) or self.routine.current is not None or \
            self.lifecycle.pending()

    def close_all(self, stopping: bool = False):
        """The end (EOF, SIGTERM): everything open goes out in its final form
        (but, when auditd stops us, a stop of its own, which the next run
        goes on with: lifecycle.py)."""
        self.grouper.close_all()
        self.lifecycle.close_all(stopping)
        for window in self.repeats.close_all():
            self._send(self._repeat(window))
        for period in self.routine.close_all():
            self._send(self._routine(period))

    def accounted(self) -> List[int]:
        c = self.counters
        return [c.filtered, c.notified, c.digested, c.routine]
