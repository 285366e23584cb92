"""The daemon: one select() loop that reads, decides, spools and sends.

Reading never waits on delivery.  Signal handlers only set flags and wake
the loop through a self-pipe (signal.set_wakeup_fd), as auditd-plugins(5)
asks.  The loop blocks in select() with no timeout unless something is
due: an idle plugin uses no CPU.  Everything the loop touches outside
itself is injected (clock, wall clock, wait, read, the sender factory),
so tests drive it without sleeping.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import select
import signal
import sqlite3
import time
from dataclasses import replace
from typing import Callable, List, Optional, Tuple

from .answering import Answering
from .answers import Mutes
from .clocks import HostClocks
from .config import RESTART_KEYS, Config, Error, changed_keys
from .counters import Counters
from .events import NORMALIZED, Event
from .kernel import lost_total, read_kmsg
from .known import Known
from .notify import Notifier
from .logs import set_level
from .message import Notification, notice
from .reader import IDLE_TICK, READ_SIZE, EventReader
from .rules import RuleSet
from .sender import Sender
from .spool import SendingRights, SpoolError
from .watcher import Watcher

log = logging.getLogger("audit-notify")

# A stop waits this long for the event in flight and the critical
# messages still waiting (auditd itself does not wait for its plugins).
SHUTDOWN_GRACE = 5.0
# At EOF (someone piping ausearch by hand) the spool gets this long to be
# delivered; what is left is sent by the next start.
EOF_DRAIN_SECONDS = 120.0
# While input keeps coming, new notifications are committed at least this
# often; when it pauses, at once.
COMMIT_DELAY = 0.2
# After a failed commit (disk full), the next try comes this much later.
COMMIT_RETRY = 5.0
# Counters go to the log this often, and the spool's bounds are checked.
STATS_INTERVAL = 3600.0
BOUNDS_INTERVAL = 60.0
# A plugin that is not the sender tries to take over this often.
TAKEOVER_INTERVAL = 1.0
# The cycle collector looks at young objects once this many more have been
# made than freed (Python's default, 700, is every ~100 events of a flood).
# An event's objects are nearly all freed by reference counting, and cycles
# are few (a login and its session), so a rarer look loses no memory that
# matters and saves a tenth of ingest's time (tests/bench/bench_ingest.py).
GC_YOUNG = 20000

# How run() ended.
EOF, STOPPED, READ_ERROR = "eof", "stopped", "read error"


def wait_readable(fds: List[int], timeout: Optional[float]) -> List[int]:
    if not fds:
        time.sleep(timeout or 0)
        return []
    return select.select(fds, [], [], timeout)[0]


class Plugin:
    """Reads audit records, filters, digests, formats and hands them to the
    sink (the spool, or the dry run's printer), and lets the Sender
    deliver the spool.

    New notifications are committed in one transaction per burst of
    input, before the loop blocks again.  EOF or SIGTERM: flush what
    auparse and the digests hold, let the sender finish, log the totals.
    A plugin started while another still holds the spool's sending rights
    spools only, and takes over sending once those are free.
    """

    def __init__(self, config: Config, rules: RuleSet, auparse, sink, counters: Counters,
                 rights: Optional[SendingRights] = None, make_sender: Callable[[Config], Sender] = None,
                 reload: Callable[[], Tuple[Config, RuleSet]] = None, clock=time.monotonic, wall=time.time,
                 wait=wait_readable, read=os.read, hostname: str = "", live: bool = True,
                 kmsg: Optional[int] = None, kernel_lost: Optional[int] = None, known: Optional[Known] = None,
                 mutes: Optional[Mutes] = None, answering: Optional[Callable[..., Answering]] = None):
        self.config = config
        self.rules = rules
        self.sink = sink
        self.counters = counters
        self._wall = wall
        # Answers from the room (answering.py): made with our accept, read
        # once we send.  Without it (a dry run), ``mutes`` or none apply.
        self.answering: Optional[Answering] = None
        self.answering = answering(self._accept) if answering is not None else None
        if self.answering is not None:
            mutes = self.answering.mutes
        self.notifier = Notifier(config, rules, self._accept, counters, known=known, mutes=mutes)
        self.clocks = HostClocks()  # each host's own time, for the moments its input is quiet
        self._rights = rights
        self._make_sender = make_sender
        self.sender: Optional[Sender] = None
        self._reload_source = reload
        self._clock = clock
        self._wait = wait
        self._read = read
        self._host = hostname  # the node name when config.hostname is empty
        self.reader = EventReader(auparse, self._on_event, counters, config.hostname or hostname,
                                  config.eoe_timeout, lazy=_lazy(config))
        self.reader.normalize = bool(rules.fields() & NORMALIZED)
        # auditd's live stream (not a file read by hand): event numbers are
        # watched for losses, and a heartbeat tells the room it is watched.
        self.live = live
        self.watcher = Watcher(config, self._accept, counters, config.hostname or hostname, wall(), live=live,
                               kernel_lost=kernel_lost)
        self.watcher.muted = self.notifier.mutes.summary
        self._kmsg = kmsg  # /dev/kmsg, opened as root: where the kernel says it lost events
        self.stopping = False
        self.reload_requested = False
        self._dirty_since: Optional[float] = None
        self._commit_after = 0.0     # a failed commit waits until then
        self._spool_failing = False
        self._next_report = clock() + STATS_INTERVAL
        self._next_bounds = clock()
        self._next_takeover = clock()
        self._take_over()

    # -- events -------------------------------------------------------------

    def _on_event(self, event: Event):
        try:
            wall = self._wall()
            self.clocks.heard(event.get("node"), event.timestamp, wall)
            self.watcher.on_event(event, wall)
            self.notifier.on_event(event)
        except Exception:  # noqa: BLE001 - one odd event must not stop the plugin
            self.counters.problem("could not handle an event", exc_info=True)

    def announce_restart(self):
        """At start: a word to the room if the previous run ended uncleanly."""
        state = {name: self.sink.state(name) for name in ("pid", "clean", "updated")}
        spooled = self.sink.depth()
        self.watcher.restarted(state, spooled[0] if spooled else 0, self._wall())

    def _accept(self, notification: Notification):
        room = self._room_for(notification)
        if room:
            notification = replace(notification, room=room)
        if self.answering is not None:
            notification = self.answering.accepting(notification)
        self.sink.add(notification)
        if self._dirty_since is None:
            self._dirty_since = self._clock()

    def _room_for(self, notification: Notification) -> str:
        """A separate room per severity, where the config names one ("" is
        the configured room): the reliable lever for a phone's per-room
        notification settings."""
        config = self.config
        if notification.kind == "routine":
            return config.routine_room
        return {"critical": config.critical_room, "warning": config.warning_room}.get(notification.severity, "")

    def _notifier_due(self):
        """Incidents, repeats and the routine summary of quiet hosts: each
        host is as far on in its own time as the wall clock went since its
        last event (clocks.py)."""
        wall = self._wall()
        try:
            for node, moment in self.notifier.moments().items():
                if self.clocks.wall_at(node, moment) <= wall:  # (the moment itself at least: no rounding)
                    self.notifier.due(node, max(moment, self.clocks.now(node, wall)))
        except Exception:  # noqa: BLE001 - as _on_event
            self.counters.problem("could not handle an event", exc_info=True)

    def commit(self):
        """Make what was accepted durable; the sender also saves the
        counters and digest state for --status and the next start.  A
        spool that cannot be written (disk full) keeps what it could not
        write in memory and is tried again COMMIT_RETRY later."""
        state = None
        if self.sender is not None:
            state = {"counters": json.dumps(self.counters.snapshot()), "repeats": self.notifier.repeats.snapshot(),
                     "lifecycle": self.notifier.lifecycle.snapshot(), "pid": str(os.getpid()),
                     "updated": str(self._wall()), "clean": "0"}
        try:
            self.sink.commit(state)
            if self.answering is not None:
                self.answering.commit()
        except (SpoolError, sqlite3.Error) as exc:
            self._commit_after = self._clock() + COMMIT_RETRY
            if not self._spool_failing:
                self._spool_failing = True
                self.counters.errors += 1
                log.error("%s; %d notifications kept in memory until it can be written",
                          exc, self.sink.unwritten())
            return
        if self._spool_failing:
            self._spool_failing = False
            log.warning("the spool is writable again; everything accepted is on disk")
        self._dirty_since = None

    # -- signals ------------------------------------------------------------

    def request_stop(self, *_):
        self.stopping = True

    def request_reload(self, *_):
        self.reload_requested = True

    def reload(self):
        """SIGHUP: new config and rules, or the old ones and a log line why.
        Every key applies at once except RESTART_KEYS, which are named."""
        self.reload_requested = False
        if self._reload_source is None:
            return
        try:
            config, rules = self._reload_source()
        except Error as exc:
            log.error("reload failed, keeping the previous config and rules: %s", exc)
            return
        changed = changed_keys(self.config, config)
        later = [key for key in changed if key in RESTART_KEYS]
        config = replace(config, **{key: getattr(self.config, key) for key in later})
        self.config, self.rules = config, rules
        self.notifier.configure(config, rules)
        self.reader.lazy = _lazy(config)
        self.reader.normalize = bool(rules.fields() & NORMALIZED)
        self.reader.configure(config.hostname or self._host, config.eoe_timeout)
        self.watcher.configure(config, self._wall(), config.hostname or self._host)
        set_level(config.log_level)
        self.sink.configure(config)
        if self.sender is not None:
            self.sender.configure(config)
        if self.answering is not None:
            self.answering.configure(config)
        log.info("reloaded %s: %s; changed: %s", config.source, rules.summary(),
                 ", ".join(key for key in changed if key not in later) or "no settings")
        for key in later:
            log.warning("reload: %s changed, but it takes effect only when the plugin restarts "
                        "(service auditd restart); still using %r", key, getattr(config, key))

    # -- the loop -----------------------------------------------------------

    def _take_over(self):
        """Become the sender if the spool's sending rights are free."""
        self._next_takeover = self._clock() + TAKEOVER_INTERVAL
        if self.sender is None and self._rights is not None and self._rights.take():
            self.sender = self._make_sender(self.config)
            if self.answering is not None:
                self.answering.start()  # the one that sends reads the answers
            return True
        return False

    def _timeout(self) -> Optional[float]:
        now = self._clock()
        times = [self._next_report]
        if self.reader.pending():
            times.append(now + IDLE_TICK)
        wall = self._wall()
        for node, moment in self.notifier.moments().items():
            times.append(now + max(0.0, self.clocks.wall_at(node, moment) - wall))
        answering = self.answering.next_due() if self.answering is not None and self.sender is not None else None
        for due in (self.watcher.next_due(), answering):
            if due is not None:
                times.append(now + max(0.0, due - wall))
        if self._dirty_since is not None:
            times.append(self._commit_after)
        if self.sender is not None:
            deadline = self.sender.deadline()
            if deadline is not None:
                times.append(deadline)
        elif self._rights is not None:
            times.append(self._next_takeover)
        return max(0.0, min(times) - now)

    def run(self, fd: int, wakeup_fd: Optional[int] = None) -> str:
        """Process one input until EOF, a stop request or a read error."""
        thresholds = gc.get_threshold()
        gc.set_threshold(max(GC_YOUNG, thresholds[0]), *thresholds[1:])
        try:
            return self._run(fd, wakeup_fd)
        finally:
            gc.set_threshold(*thresholds)  # the process's own again (tests run many plugins)

    def _run(self, fd: int, wakeup_fd: Optional[int]) -> str:
        while not self.stopping:
            if self.reload_requested:
                self.reload()
            sender_fds = self.sender.fds() if self.sender else []
            answer_fds = self.answering.fds() if self.answering is not None else []
            watch = [fd] + ([wakeup_fd] if wakeup_fd is not None else []) + sender_fds + answer_fds
            if self._kmsg is not None:
                watch.append(self._kmsg)
            ready = self._wait_for_input(fd, watch)
            if wakeup_fd is not None and wakeup_fd in ready:
                _drain(wakeup_fd)
            if self._kmsg is not None and self._kmsg in ready:
                self._kernel_log()
            if fd in ready:
                try:
                    data = self._read(fd, READ_SIZE)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EINTR):
                        continue
                    # Not EOF: nobody is piping a file by hand; do not drain.
                    log.error("reading audit records failed: %s; stopping", exc)
                    self.counters.errors += 1
                    return READ_ERROR
                if not data:
                    # auditd stopping closes our stdin and sends SIGTERM at
                    # once: whichever is seen first, it is a stop.
                    return STOPPED if self.stopping else EOF
                self.reader.feed(data)
            self._tick(fd in ready)
            if self.answering is not None and self.sender is not None:
                self._answers(ready)  # reactions read, and the mutes' and re-announcements' times
            if self.sender is not None:
                self.sender.step(ready)
        return STOPPED

    def _wait_for_input(self, fd: int, watch: List[int]) -> List[int]:
        if self._dirty_since is None:
            return self._wait(watch, self._timeout())
        # More input right now?  Then group it into this transaction.
        ready = self._wait(watch, 0)
        now = self._clock()
        if (fd not in ready or now - self._dirty_since >= COMMIT_DELAY) and now >= self._commit_after:
            self.commit()
        return ready or self._wait(watch, self._timeout())

    def _tick(self, got_input: bool):
        now = self._clock()
        # Age events only when input pauses: auparse ages by the wall clock,
        # so aging while an old log streams in would cut events in two.
        if not got_input and self.reader.pending():
            self.reader.age()
        if not got_input and self.notifier.pending():
            self._notifier_due()
        due = self.watcher.next_due()
        if due is not None and self._wall() >= due:
            try:
                self.watcher.due(self._wall())
            except Exception:  # noqa: BLE001 - as _on_event
                self.counters.problem("could not watch the stream", exc_info=True)
        if now >= self._next_bounds:
            self._next_bounds = now + BOUNDS_INTERVAL
            self._enforce_bounds()
        if self.sender is None and now >= self._next_takeover and self._take_over():
            log.info("took over sending: the audit-notify that held the spool has exited")
        if now >= self._next_report:
            self._next_report = now + STATS_INTERVAL
            log.info("%s", self.report())

    def _answers(self, ready: List[int]):
        """Reactions read, mutes over, criticals to announce again."""
        try:
            self.answering.step(self._wall(), ready)
        except Exception:  # noqa: BLE001 - an answer must never stop the alerts
            self.counters.problem("could not apply an answer from the room", exc_info=True)

    def _enforce_bounds(self):
        try:
            dropped = self.sink.enforce_bounds()
        except SpoolError as exc:
            log.error("%s", exc)
            return
        if dropped:
            self.counters.dropped += dropped
            log.error("spool limit reached (%d MB, %d h): dropped the %d oldest, least important notifications",
                      self.config.spool_max_mb, self.config.spool_max_age_hours, dropped)
            self._accept(notice("audit-notify dropped %d older notifications: its spool reached its limit"
                                % dropped, self._wall(), dropped=str(dropped)))

    def _kernel_log(self):
        """Lines of the kernel's log: the count of lost audit events."""
        total = lost_total(read_kmsg(self._kmsg))
        if total is not None:
            self.watcher.kernel_lost(total, self._wall())

    def _mark_clean(self):
        """The state says this run ended cleanly: the next start is quiet."""
        try:
            self.sink.commit({"clean": "1", "updated": str(self._wall())})
        except SpoolError as exc:
            log.error("%s", exc)

    def report(self) -> str:
        spooled = self.sink.depth()
        if spooled is None:  # a dry run
            return self.counters.line()
        depth, oldest = spooled
        return self.counters.line() + " spooled=%d oldest=%.0fs" % (depth, self._wall() - oldest if oldest else 0)

    def finish(self, ending: str):
        """Emit what auparse and the digests hold, commit, let the sender
        work for its time, log the totals."""
        self.reader.flush()
        # Under auditd the end of input is auditd stopping: a stop of its
        # own that it just told is for the next run to go on with.
        self.notifier.close_all(stopping=self.live and ending in (EOF, STOPPED))
        self.notifier.known.close()
        self.watcher.due(self._wall())
        self.commit()
        if self.sender is not None:
            # Only someone piping a file by hand waits for the whole spool;
            # under auditd the end of input is auditd stopping, and the next
            # start sends what is left (critical messages go out first).
            by_hand = ending == EOF and not self.live
            self.sender.stop(EOF_DRAIN_SECONDS if by_hand else SHUTDOWN_GRACE, self._wait, drain=by_hand)
        self.commit()
        if self.answering is not None:
            self.answering.close()
        if self.sender is not None and ending != READ_ERROR:
            self._mark_clean()
        c = self.counters
        log.info("exiting: %s; events %d = filtered %d + in %d messages %d + repeats %d + routine %d",
                 self.report(), c.events, c.filtered, c.incidents, c.notified, c.digested, c.routine)


def _drain(fd: int):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def install_signals(plugin: Plugin) -> Tuple[int, int]:
    """SIGTERM/SIGINT stop, SIGHUP reloads; each wakes the loop."""
    read_end, write_end = os.pipe()
    for end in (read_end, write_end):
        os.set_blocking(end, False)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGTERM, plugin.request_stop)
    signal.signal(signal.SIGINT, plugin.request_stop)
    signal.signal(signal.SIGHUP, plugin.request_reload)
    return read_end, write_end


def _lazy(config: Config) -> bool:
    """Whether events start as summaries (reader.py): worth it unless every
    event is formatted (no grouping, no repeats), where reading them twice
    would only cost."""
    return config.group_events or config.digest_after > 0
