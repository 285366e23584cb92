"""auditd's own lifecycle: a restart is one calm message, a stop that
stays a stop is critical.

A ``service auditd restart`` (a package upgrade, a reboot) writes auditd's
DAEMON_END, its next DAEMON_START, and the rules reloaded at start
(augenrules: one auditctl -R that deletes every rule, then loads the file:
CONFIG_CHANGE records, and settings).  Each alone would be a message,
some critical ("auditd stopped", "all 352 rules deleted").  Here they are
one episode per host, one message edited as it completes::

    DAEMON_END ─> "auditd stopped by root, waiting for it to start" (warning, at once)
       │  DAEMON_START within RESTART_WINDOW, then its rule reload (quiet RELOAD_QUIET)
       v
    "auditd restarted by root: 352 rules reloaded (47 failed)"   (warning)

It is critical only when auditing ends up off or reduced: stopped and not
started again within RESTART_WINDOW; rules deleted and not reloaded, or
fewer loaded than deleted; auditing disabled (-e 0); auditd aborted.  A
start without a stop seen (a boot, the first run) is "auditd started: 352
rules loaded".  Rule changes outside an episode are a person's, and the
Grouper's (grouper.py _rules).

Under auditd, the plugin that reads DAEMON_END is stopped right after it,
and the next start runs a new plugin: an open episode is saved with the
daemon's state (snapshot) and restored by the next run, whose DAEMON_START
edits the same message.  What says "critical" when no start comes while no
plugin runs is outside this process (README, "auditd's own restarts").

Time is each host's own (clocks.py), as for incidents; the messages are
built here, in our own words, as the watcher's are.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List

from .counters import Counters
from .events import Event
from .format import compose
from .incidents import safe_key
from .message import Line, Notification, V, span
from .programs import basename
from .severity import CRITICAL, WARNING

# A stop followed by a start within this long (of the host's time) is a
# restart; past it, a stop is critical.
RESTART_WINDOW = 30.0
# After a start, rule changes this long apart are one reload; the episode
# ends this long after the last.  (auditctl -R loads hundreds in 0.1 s.)
RELOAD_QUIET = 1.0
# A start waits this long for its rule reload to begin.
RELOAD_WAIT = 10.0
# The programs of a reload: their own execs are part of it.
RELOADERS = ("auditctl", "augenrules", "auditd")
# At most this many hosts have an episode open (a bound on memory).
MAX_EPISODES = 10000


@dataclass
class Episode:
    """One host's stop, start and reload, as far as they have come."""

    node: str
    key: str
    first: float            # its first event's time
    by: str = ""            # who stopped it (DAEMON_END's sender)
    stopped: float = 0.0    # DAEMON_END's time; 0: no stop seen (a boot)
    started: float = 0.0    # DAEMON_START's time; 0: not (yet) started
    last: float = 0.0       # its latest rule change (or start)
    deleted: int = 0
    loaded: int = 0
    failed: int = 0
    settings: int = 0
    disabled: bool = False
    aborted: bool = False
    overdue: bool = False      # stopped, and not started again within RESTART_WINDOW
    ended_input: bool = False  # the input ended while it was stopped (a file read by hand)
    events: int = 0
    accounted: int = 0
    sent: List[str] = field(default_factory=list)  # the last version's severity and text


class Lifecycle:
    """The episodes of every host; ``accept`` gets each message version."""

    def __init__(self, accept: Callable[[Notification], None], counters: Counters):
        self._accept = accept
        self._counters = counters
        self.episodes: "OrderedDict[str, Episode]" = OrderedDict()
        self._made = 0

    # -- the way in -----------------------------------------------------------

    def offer(self, event: Event, catch_up: Callable[[str, float], None]) -> bool:
        """Take ``event`` if it is auditd's stop, start or abort, or part
        of an open episode's reload; False for the Grouper to take.  An
        event taken first lets the rest catch up with its time
        (``catch_up(node, when)``: what is due before it goes out first)."""
        rtype = event.get("type")
        if not self.episodes and not rtype.startswith("DAEMON_"):
            return False  # (nearly every event: no episode open)
        node, when = event.get("node"), event.timestamp
        self.due(node, when)
        episode = self.episodes.get(node)
        if not rtype.startswith("DAEMON_") and (episode is None or not self._reloads(episode, event)):
            return False
        catch_up(node, when)
        if rtype == "DAEMON_END" or rtype == "DAEMON_ABORT":
            if episode is not None:
                episode.overdue = not episode.started  # a stop that no start followed
                self._close(episode)
            episode = self._open(node, when)
            episode.stopped = when
            episode.by = _who(event)
            episode.aborted = rtype == "DAEMON_ABORT"
        elif rtype == "DAEMON_START":
            if episode is None or episode.started:  # (a stop, however long ago, is ended by this start)
                if episode is not None:
                    self._close(episode)
                episode = self._open(node, when)
            episode.started = episode.last = when
        elif not rtype.startswith("DAEMON_"):
            self._count(episode, event)
        else:
            return False  # auditd's other records (a log rotated, a remote host): the Grouper's
        episode.events += 1
        self._send(episode)
        return True

    def _reloads(self, episode: Episode, event: Event) -> bool:
        """Whether an event is part of the episode's reload: a rule change,
        or a reloading program's own doing, while it is stopped or still
        reloading."""
        if not self._still_reloading(episode, event.timestamp):
            return False
        if event.get("type") == "CONFIG_CHANGE":
            return True
        facts = event.facts
        return event.get("type") == "SYSCALL" and basename(facts.get("exe") or facts.get("comm")) in RELOADERS

    @staticmethod
    def _still_reloading(episode: Episode, when: float) -> bool:
        if not episode.started:
            return True  # stopped: what comes until the start (audit-stop.rules) is the episode's
        if episode.last == episode.started:
            return when <= episode.started + RELOAD_WAIT
        return when <= episode.last + RELOAD_QUIET

    @staticmethod
    def _count(episode: Episode, event: Event):
        if event.get("type") != "CONFIG_CHANGE":
            return
        facts = event.facts
        op = facts.get("op")
        failed = facts.get("res") in ("0", "no", "failed")
        if op in ("remove_rule", "remove rule") and not failed:
            episode.deleted += 1
        elif op in ("add_rule", "add rule") and not failed:
            episode.loaded += 1
        elif not failed:
            episode.settings += 1
        episode.failed += failed
        if event.get("audit_enabled") == "0":
            episode.disabled = True
        episode.last = event.timestamp

    def _open(self, node: str, when: float) -> Episode:
        self._made += 1
        episode = self.episodes[node] = Episode(node=node, key=safe_key("auditd", node, "%.3f" % when,
                                                                        str(self._made)), first=when)
        while len(self.episodes) > MAX_EPISODES:
            self._close(next(iter(self.episodes.values())))
        return episode

    # -- time -----------------------------------------------------------------

    def _deadline(self, episode: Episode) -> float:
        """When the episode next has something to say: a stop not followed
        by a start is critical then; a reload is over then."""
        if not episode.started:
            return float("inf") if episode.overdue or episode.ended_input else episode.stopped + RESTART_WINDOW
        if episode.last == episode.started:
            return episode.started + RELOAD_WAIT
        return episode.last + RELOAD_QUIET

    def due(self, node: str, now: float):
        """What is due by ``now`` of host ``node``'s own time."""
        episode = self.episodes.get(node)
        if episode is None or now < self._deadline(episode):
            return
        if episode.started:
            self._close(episode)
        else:
            episode.overdue = True
            self._send(episode)  # stays open: a later start edits it

    def moments(self) -> Dict[str, float]:
        moments = {}
        for node, episode in self.episodes.items():
            deadline = self._deadline(episode)
            if deadline != float("inf"):
                moments[node] = deadline
        return moments

    def pending(self) -> bool:
        return bool(self.episodes)

    def close_all(self, stopping: bool = False):
        """The end of the input.  ``stopping``: auditd is stopping us, and
        the next run goes on with what is open (snapshot); else (a file read
        by hand) every episode is told as it stands."""
        for episode in list(self.episodes.values()):
            if stopping and not episode.started:
                self._counters.notified += episode.events - episode.accounted  # in a message already out
                episode.accounted = episode.events
                continue
            if not episode.started:
                episode.ended_input = True
            self._close(episode)

    def _close(self, episode: Episode):
        if self.episodes.get(episode.node) is episode:
            del self.episodes[episode.node]
        self._send(episode, final=True)

    # -- across plugin runs ---------------------------------------------------

    def snapshot(self) -> str:
        return json.dumps({node: asdict(episode) for node, episode in self.episodes.items()})

    def restore(self, text: str):
        try:
            self.episodes = OrderedDict((node, Episode(**values)) for node, values in json.loads(text or "{}").items())
        except (ValueError, TypeError):  # a state from another version: start afresh
            self.episodes = OrderedDict()

    # -- the message ------------------------------------------------------------

    @staticmethod
    def _verdict(episode: Episode):
        """(severity, headline, lines) of the episode as it stands."""
        by = (" by ", V(episode.by)) if episode.by else ()
        rules = _rules(episode)
        lines = []
        if episode.stopped:
            lines.append("stopped at %s" % _clock(episode.stopped) + (
                ", started again %s later" % span(episode.started - episode.stopped) if episode.started else ""))
        if episode.deleted or episode.loaded or episode.failed or episode.settings:
            lines.append("rules: %d deleted, %d loaded, %d failed; %d settings changed"
                         % (episode.deleted, episode.loaded, episode.failed, episode.settings))
        if episode.aborted:
            return CRITICAL, Line(("auditd aborted",) + by), lines
        if not episode.started:
            if episode.overdue or episode.ended_input:
                lines.append("not started again before the input ended" if episode.ended_input else
                             "not started again within %s" % span(RESTART_WINDOW))
                return CRITICAL, Line(("auditd stopped",) + by), lines
            lines.append("critical if not started again within %s" % span(RESTART_WINDOW))
            return WARNING, Line(("auditd stopped",) + by + (", waiting for it to start again",)), lines
        what = "auditd restarted" if episode.stopped else "auditd started"
        late = episode.stopped and episode.started > episode.stopped + RESTART_WINDOW
        reduced = episode.deleted > episode.loaded
        severity = CRITICAL if episode.disabled or reduced or late else WARNING
        if episode.disabled:
            rules += ", auditing disabled"
        elif reduced:
            rules = "fewer rules: %d deleted, %d loaded" % (episode.deleted, episode.loaded)
        head = Line((what,) + by + ((": " + rules,) if rules else ()))
        return severity, head, lines

    def _send(self, episode: Episode, final: bool = False):
        """A version of the episode's message when it says something new:
        at the stop, when a stop is overdue, on what makes it critical, at
        the end; its events are accounted for as each version goes."""
        if not final and not episode.overdue and (episode.started or episode.sent):
            if not (episode.aborted or episode.disabled):
                return  # a start and its reload: told once they are done
        severity, head, lines = self._verdict(episode)
        body, formatted = compose(severity, False, head, episode.node, [Line((line,)) for line in lines], ())
        self._counters.notified += episode.events - episode.accounted
        episode.accounted = episode.events
        gist = [severity, body.split("\n", 1)[0]]
        if gist == episode.sent:
            return
        if not episode.sent:
            self._counters.incidents += 1
        episode.sent = gist
        # Urgent (spool.URGENT): the stop's warning must leave in the seconds
        # the plugin has after DAEMON_END, as a critical message would.
        self._accept(Notification(body=body, html=formatted, fields={"lifecycle": "1"}, timestamp=episode.first,
                                  priority=2, kind="incident", severity=severity, key=episode.key))


def _who(event: Event) -> str:
    """Who stopped auditd: the sender's login, else its user."""
    for name in ("auid", "uid"):
        value = event.get(name)
        if value and value not in ("4294967295", "-1", "unset"):
            return value
    return ""


def _rules(episode: Episode) -> str:
    if not episode.loaded and not episode.deleted:
        return ""
    verb = "reloaded" if episode.stopped else "loaded"
    tried = episode.loaded + episode.failed  # (a rule that failed to load was not in before either)
    text = "%d rule%s %s" % (tried, "" if tried == 1 else "s", verb)
    return text + (" (%d failed)" % episode.failed if episode.failed else "")


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))
