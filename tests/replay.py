"""Replaying a recorded host into the plugin's live loop, at the pace it
happened, on a fake clock: what auditd would have written to the plugin's
stdin, each line when its event happened (or some minutes later: a host
whose clock lags, or auditd catching up a backlog).

    data = shift_times(raw, int(time.time() - late - first_time(raw)))
    chunks = paced(data, late)                 # merged(paced(a), paced(b, 600)): a central host
    printed = replay(chunks, config, rules, start=chunks[0][0])
    headlines_of(printed) == headlines_of(dry_run(path_of_data, config_path))

The Plugin reads a real pipe in its real select() loop (daemon.py, run()
as cli.serve() calls it); only wait() (select's stand-in: it writes the
lines that are due into the pipe, or lets the clock run on by the timeout
the loop asked for) and the clock are the test's, so a three-minute day
replays in a second, with no sleeps.  tests/test_replay.py uses it; a
benchmark or an end-to-end test can use the same pieces.
"""

import io
import json
import os
import re
import subprocess
import sys
from typing import Iterable, List, Tuple

from corpus import ROOT, auparse

from audit_notify.cli import serve
from audit_notify.counters import Counters
from audit_notify.daemon import Plugin
from audit_notify.spool import Printer

_STAMP = re.compile(rb"msg=audit\((\d+)\.(\d{3}):")
_CLOCK_TIME = re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?\b")


def first_time(data: bytes) -> float:
    found = _STAMP.search(data)
    return int(found.group(1)) + int(found.group(2)) / 1000.0


def shift_times(data: bytes, seconds: int) -> bytes:
    """The records with their events' times moved by whole ``seconds``
    (milliseconds and serials as they were)."""
    return _STAMP.sub(lambda m: b"msg=audit(%d.%s:" % (int(m.group(1)) + seconds, m.group(2)), data)


def paced(data: bytes, late: float = 0.0) -> List[Tuple[float, bytes]]:
    """The lines in the order they were written, in chunks by when auditd
    hands them over: at their event's time plus ``late``, never before a
    line written ahead of them."""
    chunks: List[Tuple[float, bytes]] = []
    at = 0.0
    for line in data.splitlines(keepends=True):
        found = _STAMP.search(line)
        if found:
            at = max(at, int(found.group(1)) + int(found.group(2)) / 1000.0 + late)
        if chunks and chunks[-1][0] == at:
            chunks[-1] = (at, chunks[-1][1] + line)
        else:
            chunks.append((at, line))
    return chunks


class Clock:
    """The wall clock (and the monotonic one) of the replay."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class PacedInput:
    """The plugin's stdin as auditd feeds it: a pipe, and the stand-in for
    select() that writes each chunk into it once the clock reaches it, or
    lets the clock run on by the timeout the loop asked for."""

    def __init__(self, chunks: Iterable[Tuple[float, bytes]], clock: Clock, linger: float = 0.0):
        self.fd, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._chunks = list(chunks)
        self._next = 0
        self._buffer = b""
        self._in_pipe = 0
        self.clock = clock
        self.waits = 0
        self._linger = linger  # after the last line, this long of a quiet host before the end
        self._ends_at = None

    def wait(self, fds, timeout):
        self.waits += 1
        if not self._in_pipe and not self._buffer:
            if self._next == len(self._chunks):
                if self._ends_at is None:
                    self._ends_at = self.clock.now + self._linger
                if self.clock.now < self._ends_at:
                    self.clock.now = min(self._ends_at, self.clock.now + (timeout if timeout is not None else 1e9))
                    return []
                self._close()
                return [self.fd]  # the end: EOF is readable
            at = self._chunks[self._next][0]
            if at > self.clock.now:
                if timeout is not None and self.clock.now + timeout < at:
                    self.clock.now += timeout
                    return []
                self.clock.now = at
            while self._next < len(self._chunks) and self._chunks[self._next][0] <= self.clock.now:
                self._buffer += self._chunks[self._next][1]
                self._next += 1
        self._fill()
        return [self.fd]

    def read(self, fd, size):
        data = os.read(fd, size)
        self._in_pipe -= len(data)
        return data

    def _fill(self):
        if self._buffer:
            try:
                written = os.write(self._write, self._buffer)
            except BlockingIOError:
                written = 0
            self._buffer = self._buffer[written:]
            self._in_pipe += written

    def _close(self):
        if self._write is not None:
            os.close(self._write)
            self._write = None

    def close(self):
        self._close()
        os.close(self.fd)


def merged(*hosts: List[Tuple[float, bytes]]) -> List[Tuple[float, bytes]]:
    """The chunks of several hosts (paced() each, at its own lag) as one
    stream of records, each host's at its own pace: what auditd on a
    central host hands over of the hosts that send to it."""
    return sorted((chunk for host in hosts for chunk in host), key=lambda chunk: chunk[0])


def replay(chunks: List[Tuple[float, bytes]], config, rules, start: float, hostname: str = "replay-host",
           linger: float = 0.0):
    """What the live plugin sends for the ``chunks`` (paced()), each
    written to its stdin at its time, the clock starting at ``start``,
    and ``linger`` seconds of quiet after the last before auditd stops
    the plugin (EOF): the notifications, as --dry-run --json prints them."""
    clock = Clock(start)
    stdin = PacedInput(chunks, clock, linger)
    out = io.StringIO()
    counters = Counters()
    sink = Printer(out, True, counters)
    plugin = Plugin(config, rules, auparse, sink, counters, clock=clock, wall=clock, wait=stdin.wait,
                    read=stdin.read, hostname=hostname, live=True)
    try:
        assert serve(plugin, sink, counters, [stdin.fd], None) == 0
    finally:
        stdin.close()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def dry_run(path: str, config_path: str) -> List[dict]:
    """What ``audit-notify --dry-run --json`` prints for a file."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "audit_notify.py"), "--dry-run", "--json", "--config",
                          config_path, path], capture_output=True, timeout=300,
                         check=True)
    return [json.loads(line) for line in out.stdout.decode("utf-8").splitlines()]


def headlines_of(printed: List[dict], kinds=("incident", "repeat", "routine")) -> List[str]:
    """Each message's headline in its last version, in the order the
    messages were first sent, clock times as HH:MM (the room's view)."""
    latest, order = {}, []
    for note in printed:
        if note["kind"] not in kinds:
            continue
        key = note["key"] or "#%d" % len(order)
        if key not in latest:
            order.append(key)
        latest[key] = note
    return [_CLOCK_TIME.sub("HH:MM", latest[key]["body"].split("\n", 1)[0]) for key in order]
