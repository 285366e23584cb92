"""Delivery: the spool, oldest first, through one long-lived matrix-commander.

The Sender is driven by the daemon's loop (``fds``, ``deadline``,
``step``): it never blocks, so reading audit records never waits on the
homeserver.  What it sends stays in the spool until the homeserver has
acknowledged it with an event id.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from typing import Callable, Iterable, List, Optional

from .config import Config
from .counters import Counters
from .matrix import MC_ERROR, die_with_parent, mc_env, pid_files, send_argv
from .message import notice
from .spool import Item, Spool, SpoolError

log = logging.getLogger("audit-notify")

# Events per matrix-commander process.  Each process starts a Megolm
# session (~1.4 KB that every later start loads; the original started one
# per message and its store reached 13 MB) and rotates it every 100
# messages on its own; a restart costs about a second of sending.
SENDER_SLOTS = 1000
# An idle matrix-commander is replaced after this long, so that a phone
# added to the room can read new notifications within the hour.
SENDER_MAX_AGE = 3600.0
# How long matrix-commander may take from start to reading its first event.
SENDER_START_TIMEOUT = 120.0
# Retry delays after a failed send: 1 s, doubling, at most a minute (so a
# homeserver back from an outage is used again within a minute).
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
# How often to check whether matrix-commander has exited, or finished
# starting up.
POLL_INTERVAL = 0.02
# How often, with notifications waiting, to check whether matrix-commander
# has opened the FIFO again after its last event (a few milliseconds).
READER_POLL = 0.002
# How often the swap thread looks for matrix-commander's pid file.
SWAP_POLL = 0.003
# At EOF, stop waiting for the homeserver after this many failed sends in a
# row (it is down: the spool is sent by the next start).
EOF_GIVE_UP_FAILURES = 4
# An item the homeserver refuses outright this many times goes to the dead
# letters (see Sender._refused_for_good).
REFUSALS_TO_BURY = 3
# Matrix error codes that refuse a notification for what it is: sending it
# again gets the same answer.  E143 is matrix-commander refusing the event
# file itself.
_ITEM_REFUSALS = re.compile(r"\b(M_TOO_LARGE|M_BAD_JSON|M_NOT_JSON|M_INVALID_PARAM|E143)\b")
# Bytes of matrix-commander's output read at a time.
OUTPUT_READ = 65536


class _Child:
    """One running matrix-commander and its unread output."""

    def __init__(self, process: subprocess.Popen, now: float, room: str):
        self.process = process
        self.room = room  # matrix-commander sends to one room: another needs another process
        self.started = now
        self.swapper: Optional[threading.Thread] = None
        self.swapped = threading.Event()   # the FIFO has replaced the placeholder file
        self.sent = 0
        self.stale = False  # started with settings a reload has changed: replace it once idle
        self.buffers = {process.stdout.fileno(): b"", process.stderr.fileno(): b""}
        self.open = set(self.buffers)
        for fd in self.open:
            os.set_blocking(fd, False)

    def lines(self, fd: int) -> List[str]:
        """Complete lines newly readable on ``fd``."""
        try:
            chunk = os.read(fd, OUTPUT_READ)
        except BlockingIOError:
            return []
        if not chunk:
            self.open.discard(fd)
            chunk = b"\n" if self.buffers[fd] else b""
        *done, self.buffers[fd] = (self.buffers[fd] + chunk).split(b"\n")
        return [line.decode("utf-8", "replace") for line in done if line.strip()]


class Sender:
    """Delivers the spool, oldest first, through one long-lived matrix-commander.

    matrix-commander streams only plain lines (``-m _``: no HTML twin, no
    m.mentions), but ``--event FILE ...`` sends one JSON event per file, in
    order, printing each event id.  Given one FIFO path SENDER_SLOTS times,
    it blocks opening it until we write an event, sends it, prints the id
    and opens it again: a warm process, ~50 ms a message.  Its start-up
    check wants a regular file, so the path is an empty file until the
    process has written its pid file (just after the check; it logs in
    before its first open, 50-140 ms measured), then becomes the FIFO.  A
    small thread makes that swap, so that a busy loop cannot miss the
    moment; if it is missed anyway, the process skips the empty file, ends,
    and is started again.

    Exactly one event is in flight: one written before the last was
    acknowledged would be read glued to it and both lost.  An item leaves
    the spool only when its event id comes back; an error, a timeout or the
    process dying leaves it for a retry after a backoff (one log line when
    an outage starts and one when it ends); M_TOO_LARGE buries it.  The
    process is killed if the plugin dies (PR_SET_PDEATHSIG) and on its
    next start any orphan of ours is stopped first: two matrix-commanders
    on one store lose messages.
    """

    def __init__(self, config: Config, spool: Spool, counters: Counters, clock=time.monotonic,
                 spawn=subprocess.Popen):
        self.config = config
        self._spool = spool
        self._counters = counters
        self._clock = clock
        self._spawn = spawn
        self._child: Optional[_Child] = None
        self._inflight: Optional[Item] = None
        self._inflight_room = ""
        self._inflight_deadline = 0.0
        self._next_try = 0.0
        self._failures = 0
        self._outage_since: Optional[float] = None
        self._sends: List[float] = []       # times of recent sends, for the rate cap
        self._waiting_reader = False
        self.run_dir = os.path.join(config.state_dir, "run")
        self.fifo = os.path.join(self.run_dir, "events")

    def configure(self, config: Config):
        """SIGHUP: new settings.  A matrix-commander started with another
        program or room is replaced once it is idle."""
        old, self.config = self.config, config
        if self._child is not None and send_argv(old, []) != send_argv(config, []):
            self._child.stale = True

    # -- the loop's view --------------------------------------------------

    def fds(self) -> List[int]:
        return sorted(self._child.open) if self._child else []

    def _left_to_send(self, everything: bool) -> bool:
        """Whether stop() still waits: for anything spooled, or only for a
        critical message (one the rate cap never holds back)."""
        item = self._spool.peek()
        return item is not None and (everything or item.rank == 0)

    def deadline(self) -> Optional[float]:
        """When step() must run next even if no output arrives.  Computed
        from the state as it is now (the swap thread may just have made
        the FIFO ready), so there is never a sleep with work waiting."""
        now = self._clock()
        child = self._child
        if child is None:
            return max(now, self._next_try)  # keep one warm, once any backoff is over
        if not child.open:
            return now + POLL_INTERVAL  # it exited: reap it
        if not child.swapped.is_set():
            return min(now + POLL_INTERVAL, child.started + SENDER_START_TIMEOUT)
        if self._inflight is not None:
            return self._inflight_deadline
        item = self._spool.peek()
        if item is not None:
            return max(now + (READER_POLL if self._waiting_reader else 0.0), self._next_try,
                       self._rate_free_at() if item.rank > 0 else now)
        return child.started + SENDER_MAX_AGE

    def _rate_free_at(self) -> float:
        """When the rate cap allows the next message."""
        cap = self.config.max_messages_per_minute
        now = self._clock()
        self._sends = [t for t in self._sends if t > now - 60.0]
        if cap <= 0 or len(self._sends) < cap:
            return now
        return self._sends[-cap] + 60.0

    def step(self, readable: Iterable[int] = ()):
        child = self._child
        if child is not None:
            self._read_output(child, readable)
            self._check_child(child)
        if self._inflight is None and self._clock() >= self._next_try:
            self._send_next()

    def _read_output(self, child: _Child, fds: Iterable[int]):
        for fd in list(fds):
            if fd in child.open:
                for line in child.lines(fd):
                    self._on_line(fd == child.process.stdout.fileno(), line)

    # -- the child --------------------------------------------------------

    def _check_child(self, child: _Child):
        now = self._clock()
        if not child.open and child.process.poll() is not None:
            self._child = None
            code = child.process.returncode
            child.swapper.join()
            if self._inflight is not None:
                self._failed("matrix-commander exited with code %s" % code)
            elif not child.swapped.is_set() or child.sent == 0:
                self._failed("matrix-commander stopped at start-up with code %s" % code)
            return
        if not child.swapped.is_set():
            if now >= child.started + SENDER_START_TIMEOUT:
                self._kill("matrix-commander did not start within %d s" % SENDER_START_TIMEOUT)
        elif self._inflight is not None and now >= self._inflight_deadline:
            self._kill("no acknowledgement within %g s" % self.config.send_timeout)
        elif self._inflight is None and (child.sent >= SENDER_SLOTS or now >= child.started + SENDER_MAX_AGE
                                         or child.stale):
            self._end_child(gently=True)

    def _start(self, room: str):
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        self._stop_orphans()
        for path in (self.fifo, self.fifo + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(os.open(self.fifo, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            process = self._spawn(
                send_argv(self.config, [self.fifo] * SENDER_SLOTS, room), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mc_env(self.config), close_fds=True,
                cwd=self.config.state_dir, preexec_fn=die_with_parent)
        except OSError as exc:
            self._failed("cannot run %s: %s" % (self.config.matrix_commander, exc))
            return
        child = self._child = _Child(process, self._clock(), room)
        child.swapper = threading.Thread(target=self._swap_when_checked, args=(child,), daemon=True)
        child.swapper.start()

    def _pid_file(self, pid: int) -> bool:
        return any(found == pid for _path, found in pid_files(self.config))

    def _swap_when_checked(self, child: _Child):
        """Thread: once matrix-commander has written its pid file, put the
        FIFO where it checked for a regular file."""
        end = time.monotonic() + SENDER_START_TIMEOUT
        while child.process.poll() is None and time.monotonic() < end:
            if self._pid_file(child.process.pid):
                os.mkfifo(self.fifo + ".tmp", 0o600)
                os.rename(self.fifo + ".tmp", self.fifo)
                child.swapped.set()
                return
            time.sleep(SWAP_POLL)

    def _stop_orphans(self):
        """Stop a matrix-commander left by an earlier plugin on our store."""
        for path, pid in pid_files(self.config):
            with contextlib.suppress(OSError):
                with open("/proc/%d/cmdline" % pid, "rb") as handle:
                    cmdline = handle.read().split(b"\0")
                if self.config.store.encode() in cmdline and self.fifo.encode() in cmdline:
                    log.warning("stopping an orphaned matrix-commander (pid %d) on our store", pid)
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _kill(self, reason: str):
        """A stuck or broken matrix-commander: kill it; the item in flight
        (if any) is retried after a backoff."""
        self._end_child(gently=False)
        self._failed(reason)

    def _end_child(self, gently: bool):
        """Stop matrix-commander and forget it: gently (SIGTERM, a grace,
        then SIGKILL) for an idle one being retired, at once otherwise."""
        child, self._child = self._child, None
        if gently:
            child.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)
        child.process.kill()
        child.process.wait()
        child.swapper.join()
        for stream in (child.process.stdout, child.process.stderr):
            stream.close()

    # -- events -----------------------------------------------------------

    def _send_next(self):
        item = self._spool.peek()
        room = (item.room if item is not None else "") or self.config.room
        if self._child is None:
            self._start(room)  # kept warm even with nothing to send
            return
        if item is None:
            self._waiting_reader = False
            return
        if self._child.room != room:
            # Another room: matrix-commander takes turns on the one store
            # (two at once lose messages), so this one goes first.
            self._end_child(gently=True)
            return
        if not self._child.swapped.is_set() or (item.rank > 0 and not self._rate_allows()):
            return  # critical is never held back by the cap
        event = json.dumps({"type": "m.room.message", "content": self._content(item, room)}).encode("utf-8")
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # matrix-commander has not opened it yet
                self._waiting_reader = True
            else:  # the FIFO is gone or unusable: start over with a new one
                self._kill("cannot open %s: %s" % (self.fifo, exc))
            return
        self._waiting_reader = False
        # matrix-commander opens the FIFO again only once it is done with the
        # last event: whatever it said about that one (an E145 after an E144)
        # is in the pipes now, and must not be taken for this one's answer.
        self._read_output(self._child, self._child.open)
        self._inflight = item
        self._inflight_room = room
        self._inflight_deadline = self._clock() + self.config.send_timeout
        try:
            os.set_blocking(fd, True)
            os.write(fd, event)
        except BrokenPipeError:
            pass  # it died: _check_child sees the exit and retries the item
        finally:
            os.close(fd)

    def _content(self, item: Item, room: str) -> dict:
        """The item's content, or, for a key whose first message is in the
        room already, an edit of that message (m.replace): clients show it
        updated and, by the default push rules, do not notify again; the
        mentions stay in the new content but notify nobody anew."""
        original = self._spool.sent_id(item.key, room) if item.key else None
        if original is None:
            return item.content
        new = dict(item.content)
        return {"msgtype": new.get("msgtype", "m.text"), "body": "* " + new.get("body", ""),
                "format": "org.matrix.custom.html", "formatted_body": "* " + new.get("formatted_body", ""),
                "m.new_content": new, "m.mentions": {},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original}}

    def _rate_allows(self) -> bool:
        return self._rate_free_at() <= self._clock()

    def _on_line(self, is_stdout: bool, line: str):
        if is_stdout and self._inflight is not None and line.startswith("$"):
            self._delivered(line.split()[0])
        elif not is_stdout and self._inflight is not None and MC_ERROR.search(line):
            self._failed(line.strip())
        elif not is_stdout:
            log.debug("matrix-commander: %s", line.strip()[:300])

    def _delivered(self, event_id: str):
        item, self._inflight = self._inflight, None
        try:
            self._spool.delivered(item, event_id, self._inflight_room)
        except SpoolError as exc:
            self._counters.problem(str(exc))
        self._counters.sent += 1
        self._child.sent += 1
        self._sends.append(self._clock())
        if self._outage_since is not None:
            log.warning("delivery resumed after %d failed attempts over %.0f s",
                        self._failures, self._clock() - self._outage_since)
        self._failures, self._outage_since, self._next_try = 0, None, 0.0

    def _failed(self, reason: str):
        item, self._inflight = self._inflight, None
        now = self._clock()
        if item is not None:
            try:
                if self._refused_for_good(item, reason):
                    return
            except SpoolError as exc:
                self._counters.problem(str(exc))
            self._counters.retried += 1
            self._counters.rate_limited += "M_LIMIT_EXCEEDED" in reason
        self._failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
        self._next_try = now + delay
        if self._outage_since is None:
            self._outage_since = now
            log.error("sending failed: %s; retrying with backoff, the notifications stay spooled", reason[:300])
        else:
            log.debug("sending failed again (%d): %s; next try in %.0f s", self._failures, reason[:300], delay)

    def _refused_for_good(self, item: Item, reason: str) -> bool:
        """An item the homeserver refuses for what it is (too large, bad
        JSON...) would block the queue forever: after REFUSALS_TO_BURY such
        refusals (at once if too large) it goes to the dead letters, and a
        notice takes its place in the room.  Failures that are not about
        the item (network, 5xx, rate limit, a room we may not post in)
        never bury anything: they would bury every item in turn."""
        code = item_refusal(reason)
        if code is None:
            return False
        times = self._spool.refused(item.id)
        if code != "M_TOO_LARGE" and times < REFUSALS_TO_BURY:
            return False
        self._spool.bury(item, reason[:300])
        self._counters.failed += 1
        log.error("the homeserver refused notification %d %d time(s) (%s); kept as a dead letter",
                  item.id, times, code)
        if item.kind == "notice":  # a notice about a notice could be refused in turn, and so on
            return True
        self._spool.add(notice("audit-notify could not deliver a notification accepted at %s: the homeserver "
                               "refused it (%s). It is kept as a dead letter (audit-notify --status)."
                               % (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item.created)), code),
                               item.created, dead_letter=str(item.id)))
        self._spool.commit()
        return True

    def stop(self, seconds: float, wait: Callable[[List[int], Optional[float]], List[int]], drain: bool):
        """Finish the event in flight and the critical messages waiting,
        and with ``drain`` (EOF: someone piping ausearch) the whole spool,
        for at most ``seconds``, and not through an outage; then stop
        matrix-commander.  The rest stays spooled for the next start."""
        end = self._clock() + seconds
        while self._clock() < end and (self._inflight is not None or (
                self._failures < EOF_GIVE_UP_FAILURES and self._left_to_send(drain))):
            deadline = self.deadline()
            timeout = max(0.0, min(end, deadline if deadline is not None else end) - self._clock())
            self.step(wait(self.fds(), timeout))
        if self._inflight is not None:
            self._kill("stopped before the homeserver acknowledged it")
        if self._child is not None:
            self._end_child(gently=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.fifo)


def item_refusal(reason: str) -> Optional[str]:
    """The error code if matrix-commander's error line says the homeserver
    refused the item itself; None for anything that may pass later."""
    found = _ITEM_REFUSALS.search(reason)
    return found.group(1) if found else None
