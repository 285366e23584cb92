"""Watching the watcher: what the room must hear about auditing itself that
no single audit event says.  (Tampering that events do say -- rules
deleted, auditing disabled, auditd stopped -- is critical in severity.py.)

* Lost events.  The kernel numbers the events of a host (the N of
  ``msg=audit(t:N)``), one sequence per host; auditd's own DAEMON records
  have a numbering of their own.  A number that does not come while later
  ones do was lost on the way: the kernel's backlog was full, auditd's
  queue to its plugins was full, or a remote host's link dropped it.  One
  message per episode, edited as the count grows, then "quiet again".
  Only the live stream is watched: a file read by hand (``ausearch -k``)
  has gaps by design.
* Silent hosts.  On a central host, a node that was sending and has sent
  nothing for ``node_silence_minutes`` gets a warning; its return edits it.
* A heartbeat.  Once a day at ``heartbeat`` (or "every 30m"), one message,
  edited in place each time, says the plugin is alive and what it handled:
  a person who stops seeing it updated knows the watcher is down.
* A restart after a crash.  The state the daemon saves says whether the
  previous run ended cleanly; if not, the room hears how long it was gone.

Time is the wall clock, passed in: tests need no sleeps.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

from .config import Config, Heartbeat
from .counters import Counters
from .events import Event
from .format import compose
from .incidents import safe_key
from .message import Line, Notification, V, span

# A number not seen this long after a later one is lost (events are
# emitted out of order by a little, and auparse holds some back).
SETTLE = 15.0
# A loss episode ends after this long without another loss.
EPISODE_QUIET = 300.0
# A count that changes is edited at most this often.
EDIT_EVERY = 30.0
# A jump this large is a new sequence (a reboot, merged logs), not a loss;
# and at most this many missing numbers are remembered one by one.
NEW_SEQUENCE = 1_000_000
MAX_MISSING = 200_000


def _clock(when: float, fmt: str = "%H:%M") -> str:
    return time.strftime(fmt, time.localtime(when))


def _message(severity: str, head: Line, lines: List[str], when: float, key: str, kind: str,
             mentions: Tuple[str, ...] = ()) -> Notification:
    """A message of the watcher's: its lines are our own words."""
    body, formatted = compose(severity, False, head, "", [Line((line,)) for line in lines], mentions)
    return Notification(body=body, html=formatted, fields={}, timestamp=when, priority=1 if severity != "info" else 0,
                        kind=kind, severity=severity, key=key, mentions=mentions)


class Gaps:
    """One host's event numbers: which never came."""

    def __init__(self):
        self.high: Optional[int] = None
        # number -> when it was found missing, oldest first (an OrderedDict:
        # taking from the front of a plain dict gets slower as it goes)
        self.missing: "OrderedDict[int, float]" = OrderedDict()
        self.lost = 0                        # settled as lost, not yet reported

    def see(self, serial: int, now: float):
        if self.high is None or serial - self.high > NEW_SEQUENCE or self.high - serial > NEW_SEQUENCE:
            self.high, self.missing = serial, OrderedDict()
            return
        if serial > self.high:
            gap = serial - self.high - 1
            if gap > MAX_MISSING - len(self.missing):
                self.lost += gap  # too many to remember one by one: lost as a block
            else:
                for number in range(self.high + 1, serial):
                    self.missing[number] = now
            self.high = serial
        else:
            self.missing.pop(serial, None)

    def settle(self, now: float) -> int:
        """Numbers missing for SETTLE seconds are lost; how many now.  They
        were noted in order, oldest first: stop at the first young one."""
        lost, self.lost = self.lost, 0
        while self.missing:
            number, since = next(iter(self.missing.items()))
            if now - since < SETTLE:
                break
            self.missing.popitem(last=False)
            lost += 1
        return lost

    def oldest(self) -> Optional[float]:
        """When the longest-missing number was found missing."""
        return next(iter(self.missing.values()), None)


class Episode:
    """Events lost on one host, from the first loss until EPISODE_QUIET."""

    def __init__(self, node: str, start: float, number: int):
        self.node, self.start, self.last = node, start, start
        self.count = 0
        self.key = safe_key("lost", node, "%.0f" % start, str(number))
        self.sent_at = 0.0
        self.sent_count = 0


class Watcher:
    """See the module docstring.  ``accept`` takes each notification."""

    def __init__(self, config: Config, accept: Callable[[Notification], None], counters: Counters,
                 local_node: str, now: float, live: bool = True, kernel_lost: Optional[int] = None):
        self._accept = accept
        self.counters = counters
        # auditd's live stream; a file read by hand has gaps by design and
        # no day to beat through: no gaps watched, no heartbeat.
        self.live = live
        self.gaps: Dict[str, Gaps] = {}
        self.episodes: Dict[str, Episode] = {}
        self._episodes_made = 0
        self.seen: Dict[str, float] = {}           # remote node -> when its last event came
        self.silent: Dict[str, float] = {}         # remote node -> when it was said to be silent
        self.started = now
        self.kernel_baseline = kernel_lost  # the kernel's lost count at start (kernel.status), if known
        self.heartbeat: Optional[Heartbeat] = None
        # The mutes that last (answers.Mutes.summary): the heartbeat shows
        # them, and the watcher's own messages are never muted.
        self.muted: Callable[[], List[str]] = list
        self.configure(config, now, local_node)
        self._baseline = counters.snapshot()
        self._last_beat = now

    def configure(self, config: Config, now: float, local_node: str):
        """The settings, at start and on SIGHUP; a reload that leaves the
        heartbeat as it was keeps its schedule."""
        self.local = local_node
        self.mentions = config.mention
        self.silence = config.node_silence_minutes * 60.0
        heartbeat = config.heartbeat if self.live else Heartbeat()
        if heartbeat != self.heartbeat:
            self.heartbeat = heartbeat
            self.next_beat = self._next_beat(now)

    # -- input ----------------------------------------------------------------

    def on_event(self, event: Event, now: float):
        node = event.get("node")
        if node != self.local:
            self.seen[node] = now
            if node in self.silent:
                self._back(node, now)
        rtype = event.get("type")
        if rtype in ("DAEMON_START", "DAEMON_END", "DAEMON_ABORT"):
            # While auditd is down the kernel goes on numbering what nobody
            # receives: that hole is told as auditd stopping, not as a loss.
            self.gaps.pop(node, None)
        if not self.live or rtype.startswith("DAEMON_"):
            return  # auditd numbers its own records apart
        serial = event.get("serial")
        if serial.isdigit():
            gaps = self.gaps.get(node)
            if gaps is None:  # (not setdefault: it would make a Gaps for every event)
                gaps = self.gaps[node] = Gaps()
            gaps.see(int(serial), now)

    def kernel_lost(self, total: int, now: float):
        """The kernel's count of lost events (since boot) as its log says it
        now; the rise since the last count (or since start) is lost."""
        if self.kernel_baseline is None:
            self.kernel_baseline = total - 1  # not known at start: at least this one
        if total > self.kernel_baseline:
            self._lost(self.local, total - self.kernel_baseline, now)
        self.kernel_baseline = total

    # -- time -----------------------------------------------------------------

    def due(self, now: float):
        for node, gaps in self.gaps.items():
            lost = gaps.settle(now)
            if lost:
                self._lost(node, lost, now)
        for node, episode in list(self.episodes.items()):
            if now - episode.last >= EPISODE_QUIET:
                del self.episodes[node]
                self._accept(self._lost_message(episode, now, over=True))
            elif episode.count != episode.sent_count and now - episode.sent_at >= EDIT_EVERY:
                self._send_lost(episode, now)
        if self.silence:
            for node, last in self.seen.items():
                if node not in self.silent and now - last >= self.silence:
                    self._silent(node, last, now)
        if self.next_beat is not None and now >= self.next_beat:
            self._beat(now)

    def next_due(self) -> Optional[float]:
        times = [self.next_beat] if self.next_beat is not None else []
        for gaps in self.gaps.values():
            if gaps.lost:
                times.append(0.0)
            elif gaps.missing:
                times.append(gaps.oldest() + SETTLE)
        for episode in self.episodes.values():
            times.append(episode.last + EPISODE_QUIET)
            if episode.count != episode.sent_count:
                times.append(episode.sent_at + EDIT_EVERY)
        if self.silence:
            times += [last + self.silence for node, last in self.seen.items() if node not in self.silent]
        return min(times) if times else None

    # -- lost events -----------------------------------------------------------

    def _lost(self, node: str, count: int, now: float):
        episode = self.episodes.get(node)
        if episode is None:
            self._episodes_made += 1
            episode = self.episodes[node] = Episode(node, now, self._episodes_made)
        episode.count += count
        episode.last = now
        if not episode.sent_at or now - episode.sent_at >= EDIT_EVERY:
            self._send_lost(episode, now)

    def _send_lost(self, episode: Episode, now: float):
        episode.sent_at, episode.sent_count = now, episode.count
        self._accept(self._lost_message(episode, now))

    def _lost_message(self, episode: Episode, now: float, over: bool = False) -> Notification:
        head = Line(("{:,} audit event{} lost on ".format(episode.count, "" if episode.count == 1 else "s"),
                     V(episode.node)))
        lines = ["between %s and %s, %s" % (_clock(episode.start - SETTLE, "%H:%M:%S"),
                                            _clock(episode.last, "%H:%M:%S %Z"),
                                            "quiet again" if over else "still losing"),
                 "the kernel's backlog or auditd's queue to its plugins overflowed (or a remote link dropped "
                 "them): what happened then is not in these messages; see README, 'Lost events'"]
        # Mentions notify on the first version only: an edit notifies nobody.
        return _message("critical", head, lines, now, episode.key, "notice", self.mentions)

    # -- silent hosts ------------------------------------------------------------

    def _silent(self, node: str, last: float, now: float):
        self.silent[node] = last
        head = Line((V(node), " has sent no audit events for %s" % span(now - last)))
        lines = ["last one at %s; auditd's remote link (audisp-remote) or the host may be down" %
                 _clock(last, "%H:%M:%S %Z")]
        self._accept(_message("warning", head, lines, now, self._silent_key(node, last), "notice"))

    def _back(self, node: str, now: float):
        last = self.silent.pop(node)
        head = Line((V(node), " was silent for %s, sending again" % span(now - last)))
        lines = ["no audit events from %s to %s" % (_clock(last, "%H:%M:%S"), _clock(now, "%H:%M:%S %Z"))]
        self._accept(_message("warning", head, lines, now, self._silent_key(node, last), "notice"))

    @staticmethod
    def _silent_key(node: str, since: float) -> str:
        return safe_key("silent", node, "%.0f" % since)

    # -- heartbeat ---------------------------------------------------------------

    def _next_beat(self, now: float) -> Optional[float]:
        if self.heartbeat.every:
            return now + self.heartbeat.every
        if self.heartbeat.at is None:
            return None
        hour, minute = self.heartbeat.at
        local = time.localtime(now)
        today = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, hour, minute, 0, 0, 0, -1))
        return today if today > now else time.mktime((local.tm_year, local.tm_mon, local.tm_mday + 1, hour,
                                                      minute, 0, 0, 0, -1))

    def _beat(self, now: float):
        """The day's heartbeat: one message, the same key every time, so the
        room shows one line that is edited (and notifies nobody) each day."""
        now_counts, before = self.counters.snapshot(), self._baseline
        delta = {name: value - before.get(name, 0) for name, value in now_counts.items() if isinstance(value, int)}
        head = Line(("audit-notify is watching ", V(self.local)))
        lines = ["since %s: %s events read, %s in %s messages, %s counted as repeats, %s routine, %s filtered; "
                 "%s messages delivered" % (
                     _clock(self._last_beat, "%Y-%m-%d %H:%M"), "{:,}".format(delta["events"]),
                     "{:,}".format(delta["notified"]), "{:,}".format(delta["incidents"]),
                     "{:,}".format(delta["digested"]), "{:,}".format(delta["routine"]),
                     "{:,}".format(delta["filtered"]), "{:,}".format(delta["sent"])),
                 "updated %s; running since %s. If this line stops being updated, the watcher is down." % (
                     _clock(now, "%Y-%m-%d %H:%M %Z"), _clock(self.started, "%Y-%m-%d %H:%M"))]
        lines += self.muted()
        self._accept(_message("info", head, lines, now, safe_key("heartbeat", self.local), "heartbeat"))
        self._baseline, self._last_beat = now_counts, now
        self.next_beat = self._next_beat(now + 1)

    # -- restart -------------------------------------------------------------------

    def restarted(self, state: Dict[str, str], waiting: int, now: float):
        """At start: if the previous run left no clean end in its state (it
        was killed, crashed, or the host lost power), say so once."""
        if not state.get("pid") or state.get("clean") != "0":
            return  # a clean stop, a first start, or a version that did not say
        try:
            last = float(state.get("updated", ""))
        except ValueError:
            last = None
        gone = (" (last sign of life %s, %s ago)" % (_clock(last, "%Y-%m-%d %H:%M:%S %Z"), span(now - last))
                if last else "")
        head = Line(("audit-notify restarted on ", V(self.local), " after stopping uncleanly"))
        lines = ["the previous run (pid %s) was killed or crashed%s" % (state["pid"], gone),
                 "%d notifications were waiting in its spool; they are sent now" % waiting]
        self._accept(_message("warning", head, lines, now, "", "notice"))
