"""Reading: a byte stream of audit records becomes Events, via auparse.

Input is auditd's plugin stream (``format = string``, RAW or ENRICHED,
with or without ``node=``), ``ausearch --raw`` output, or log files; any
chunking of it gives the same events.  auparse does the grouping by
serial; this module joins the pieces auparse hands over separately, knows
when an event is over, and counts what auparse skips without a word.
"""

from __future__ import annotations

import contextlib
import re
from typing import Callable, Dict, List, Optional, Tuple

from .bindings import import_auparse  # noqa: F401 (the readers of a stream import it from here)
from .counters import Counters
from .events import Event, Malformed, event_from_parser, read_event_text, summary_from_parser

# Bytes read from stdin at a time: one pipe buffer.
READ_SIZE = 65536
# Events held back at most, waiting for more of their records.
HOLD_MAX = 1000
# The longest input line passed on: auditd writes a record line of at most
# ~9 KB (the kernel's MAX_AUDIT_MESSAGE_LENGTH, 8970) plus its enrichment.
# A longer line is not audit data from auditd (a file fed by hand): it is cut
# here, before auparse, which would hold and parse all of it.
MAX_LINE_BYTES = 65536
LINE_CUT = "input lines longer than %d bytes cut there (auditd writes at most ~9 KB a record line)" % MAX_LINE_BYTES
# Record types one event may have several of; any other type seen again
# under the same event id means another event with that id.
_REPEATING_TYPES = frozenset(("PATH", "EXECVE", "AVC", "AVC_PATH", "OBJ_PID", "SOCKADDR", "UNKNOWN"))
# How long input must pause before the events held back are emitted (the
# newest event, in case more of its records come; events whose EOE never
# came).  Only used while something is held: it is most of the latency of
# a lone event, and the records of one event arrive within milliseconds.
IDLE_TICK = 0.1
_EOE_LINE = re.compile(rb"(?:node=(\S*) )?type=EOE msg=audit\((\d+)\.(\d+):(\d+)\)")
# The same after a newline: findall() then tries only line starts, in C.
_EOE_AFTER_NEWLINE = re.compile(rb"\n(?:node=(\S*) )?type=EOE msg=audit\((\d+)\.(\d+):(\d+)\)")
_RECORD_LINE = re.compile(rb"(?:node=(\S*) )?type=\S+ msg=audit\((\d+)\.(\d+):(\d+)\)")
_BLANK_LINE = re.compile(rb"\n(?=\n)")


class LineIndex:
    """The input lines as fed, for reading an event again later.

    auparse hands a record's text back without its ENRICHED part (after
    0x1d: the names auditd resolved on the host that logged it), and
    reading it again without that would resolve ids with this host's
    passwd.  So, once the stream shows enrichment, the lines are kept here
    until their records are claimed; a record that is not found (the index
    was trimmed, or auparse cut the line at a NUL) makes its event be read
    whole at once, never with names guessed.  A stream without enrichment
    costs nothing here.

    auparse hands records over nearly in the order their lines came, and
    an event's records are most often the lines at the head, one after
    another.  So the lines wait as one string, with the head's place in
    it, and an event's lines are claimed as one slice of it, each record
    checked at its place; no line is cut out on its own.  Otherwise (the
    records are not all there, in order) each record is looked for as
    take() says.  Splitting every read into lines, and a call per record,
    was about 8 % of reading an ENRICHED log.
    """

    MAX_CHARS = 4_000_000  # unclaimed text kept (lines no event claimed)
    MAX_PASSED = 10000  # lines passed over (another event's records), looked for by their text
    SCAN = 256  # lines a record is looked for past the head

    def __init__(self, enriched: bool = False):
        self.enriched = enriched
        self._text = ""   # whole lines not yet claimed nor passed over, from self._head on
        self._head = 0
        self._passed: Dict[str, str] = {}  # lines the head passed over, by their text up to 0x1d

    def add(self, data: bytes):
        """Keep whole lines (``data`` ends with a newline)."""
        if not self.enriched and b"\x1d" not in data:
            return
        self.enriched = True
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # such a line is not kept: its event is read whole at once
            text = None
        if text is None or "\0" in text:  # auparse cut the line at a NUL: reading it again would differ
            kept = []
            for line in data.split(b"\n")[:-1]:
                with contextlib.suppress(UnicodeDecodeError):
                    line = line.decode("utf-8")
                    if "\0" not in line:
                        kept.append(line + "\n")
            text = "".join(kept)
        rest = self._text[self._head:]
        if len(rest) > self.MAX_CHARS:  # never claimed: the older half goes
            rest = rest[rest.find("\n", len(rest) // 2) + 1:]
        self._text, self._head = rest + text, 0

    def lines_of(self, texts: List[str]) -> Optional[str]:
        """The lines an event's records (their texts, as auparse gives them)
        came from, enrichment and all, as one string ending with a newline;
        None if one is not there."""
        if not self.enriched:
            texts.append("")
            return "\n".join(texts)
        buf, head = self._text, self._head
        while buf.startswith(_EOE_START, head) or (buf.startswith("node=", head) and _eoe_at(buf, head)):
            head = buf.find("\n", head) + 1  # an EOE line: its event went without it
        self._head = at = head
        for text in texts:  # each record as _is_line_of says, at its place in the string (no line cut out)
            if not buf.startswith(text, at):
                break
            after = at + len(text)
            end = buf.find("\n", after)
            if end < 0 or (end != after and buf[after] != "\x1d") or \
                    (end - at > MAX_LINE_BYTES // 4 and _too_long(buf[at:end])):
                break
            at = end + 1
        else:  # all at the head, one after another: the usual case
            self._head = at
            return buf[head:at]
        lines = []
        for text in texts:
            line = self.take(text)
            if line is None:
                return None
            lines.append(line)
        lines.append("")
        return "\n".join(lines)

    def take(self, text: str) -> Optional[str]:
        """The line a record came from, with its enrichment (without its
        newline)."""
        if not self.enriched:
            return text
        line = self._find(text)
        return None if line is None or _too_long(line) else line

    def _find(self, text: str) -> Optional[str]:
        """A record's line: at the head, among the lines passed over, or up
        to SCAN lines on (those passed go to the others)."""
        line = self._next_line()
        if line is not None and _is_line_of(line, text):
            self._head += len(line) + 1
            return line
        passed = self._passed
        if passed:
            line = passed.pop(text, None)
            if line is not None:
                return line
        if _eoe_at(text):
            return text  # an EOE record has nothing to enrich (its line may have gone by)
        for _ in range(self.SCAN):
            line = self._next_line()
            if line is None:
                break
            self._head += len(line) + 1
            if _is_line_of(line, text):
                return line
            if not _eoe_at(line):
                passed[line.partition("\x1d")[0]] = line
        if len(passed) > self.MAX_PASSED:
            for old in list(passed)[:len(passed) // 2]:
                del passed[old]
        return None

    def _next_line(self) -> Optional[str]:
        """The line at the head (not claimed from it)."""
        end = self._text.find("\n", self._head)
        return self._text[self._head:end] if end >= 0 else None


_EOE_START = "type=EOE msg=audit("


def _eoe_at(text: str, at: int = 0) -> bool:
    """Whether an EOE line starts at ``at`` (after its node= prefix, if any)."""
    return text.startswith(_EOE_START, at) or (
        text.startswith("node=", at) and text.startswith(_EOE_START, text.find(" ", at) + 1))


def _is_line_of(line: str, text: str) -> bool:
    """Whether ``line`` is the line of the record whose text is ``text``:
    that text, then the enrichment or nothing."""
    return line.startswith(text) and (len(line) == len(text) or line[len(text)] == "\x1d")


def _too_long(line: str) -> bool:
    """A line too long to carry between reads (_whole_lines) is never
    given, however the input was cut: its event is read whole at once."""
    return len(line) > MAX_LINE_BYTES // 4 and len(line.encode("utf-8", "surrogateescape")) > MAX_LINE_BYTES


class EventReader:
    """Turns a byte stream of audit records into Events, via auparse's feed.

    auparse groups records by serial and node, ends an event on its EOE,
    and on ``age()`` (called on idle ticks) or ``flush()`` (at the end)
    also emits events whose EOE never came.  Any chunking of the input gives
    the same events.

    auparse sometimes hands one serial over in pieces: it ends a LOGIN
    record's event at once although the kernel follows it with a SYSCALL
    record; records that arrive out of order (a PROCTITLE before its
    SYSCALL) start a second piece; and within one read it hands events over
    in time order, so an earlier-stamped event cuts a later one in two.  So
    pieces are held and joined by (node, serial, time) until the event is
    over: its EOE has come, the input pauses (idle tick), the events
    arriving are ``eoe_timeout`` seconds newer (unless it is the one still
    being read), or too many are held.

    auparse does not hand the EOE record over (except in a piece it hands
    over late, as the SYSCALL after a LOGIN, once it reads the next
    record).  So EOE lines are picked out of the input as it is fed, and an
    event with its SYSCALL goes out once auparse has read a line past its
    EOE (or hands it over in a later read: auparse holds a whole event back
    while an older one is still open, as a host whose clock lags the
    others' has on a central host); a one-record user-space event as soon
    as auparse hands it over
    (nothing can be added to it), so that it reaches the incidents in order
    with the kernel's events around it.  Input lines that
    are not audit records, which auparse skips without a word, and NUL
    bytes, at which it cuts a record, are counted.
    """

    def __init__(self, auparse, sink: Callable[[Event], None], counters: Counters,
                 default_node: str = "", eoe_timeout: int = 2, lazy: bool = True):
        self._auparse = auparse
        self._sink = sink
        self._counters = counters
        self._node = default_node
        self._held: Dict[Tuple[str, str, float], Event] = {}
        self._newest = 0.0
        self._timeout = eoe_timeout
        self._line_open = False
        self._line_head = b""  # the first bytes of a line that is not finished
        self._line_bytes = 0   # bytes of the unfinished line passed on so far (at most MAX_LINE_BYTES)
        self._cutting = False  # in a line cut at MAX_LINE_BYTES: its bytes are dropped up to its newline
        self._tail = b""       # the unfinished last line, for _whole_lines
        self._eoes: set = set()  # ids whose EOE auparse has read a line past
        self._last_eoes: set = set()  # ids whose EOE is the last line read
        self._reading = None   # the id of the last record line read: maybe more to come
        # Recent ids that have an EOE line (more than one record): the last
        # HOLD_MAX to 2 * HOLD_MAX, in two sets (set.update runs in C, where
        # keeping exactly the last HOLD_MAX would take a step per id).
        self._with_eoe: set = set()
        self._with_eoe_before: set = set()
        self._lines: Optional[LineIndex] = LineIndex() if lazy else None
        # Whether summaries carry the normalizer's fields (rules on them need
        # them for every event; messages read them again when they need them).
        self.normalize = True
        self._fed = False
        self._parser = auparse.AuParser(auparse.AUSOURCE_FEED)
        self._parser.set_escape_mode(auparse.AUPARSE_ESC_RAW)
        self._parser.set_eoe_timeout(eoe_timeout)
        # add_callback() takes a plain function, not a bound method.
        self._parser.add_callback(lambda au, cbtype, user: self._ready(au, cbtype, user), None)

    def _ready(self, au, cbtype, _user):
        # An exception escaping into auparse's C code would surface later as
        # a SystemError from feed(); catch everything and count it instead.
        try:
            if cbtype != self._auparse.AUPARSE_CB_EVENT_READY:
                return
            if self._lines is None:
                event = event_from_parser(au, self._auparse, self._node)
            else:
                lines_of = self._lines.lines_of if self._lines.enriched else None  # (without: a record is its line)
                event = summary_from_parser(au, self._auparse, self._node, lines_of, self._read_again, self.normalize)
            records = len(event.types())
            self._counters.records += records
            event.standalone = records == 1 and _user_space(au)
            if event.skipped:
                self._counters.problem("records whose type cannot be read skipped", event.skipped)
            self._hold(event)
        except Malformed as exc:
            self._counters.problem("malformed input skipped: %s" % exc)
        except Exception:  # noqa: BLE001 - a bad event must not stop the stream
            self._counters.problem("could not read an audit event", exc_info=True)

    @property
    def lazy(self) -> bool:
        """Whether events start as summaries.  Worth it when most events
        are only digested; with digests off every event is formatted, and
        reading it twice would only cost."""
        return self._lines is not None

    @lazy.setter
    def lazy(self, on: bool):
        if on and self._lines is None:
            # Lines fed before now are not in the new index: if the stream
            # may be enriched, their events are read whole.
            self._lines = LineIndex(enriched=self._fed)
        elif not on:
            self._lines = None

    def configure(self, node: str, eoe_timeout: int):
        """SIGHUP: the node name for records without one, and how long an
        event waits for its EOE."""
        self._node = node
        self._timeout = eoe_timeout
        self._parser.set_eoe_timeout(eoe_timeout)

    def _read_again(self, text: str) -> Optional[Event]:
        try:
            return read_event_text(self._auparse, text, self._node)
        except Exception:  # noqa: BLE001 - keep what the summary has
            self._counters.problem("could not read an event's records again", exc_info=True)
            return None

    def _hold(self, event: Event):
        key = (event.get("node"), event.get("serial"), event.timestamp)
        first = self._held.get(key)
        if first is not None and (set(first.types()) & set(event.types())) - _REPEATING_TYPES:
            self._emit(self._held.pop(key))  # the same id again (a replayed log): another event
            first = None
        if first is not None:
            first.absorb(event)
            event = first
        else:
            self._held[key] = event
        if event.timestamp > self._newest:
            self._newest = event.timestamp

    def _release(self):
        """After each feed(): emit the events whose EOE came (all pieces of
        one read are joined first, whatever order auparse handed them over
        in), then those that are too old or too many to keep waiting."""
        eoes, self._eoes = self._eoes, set()
        with_eoe, before = self._with_eoe, self._with_eoe_before
        last = self._last_eoes
        ready = [k for k, e in self._held.items()
                 if e.ended or ((k in eoes or (k in with_eoe or k in before) and k not in last) and "SYSCALL" in e.types())]
        alone = [k for k, e in self._held.items()
                 if e.standalone and k != self._reading and k not in with_eoe and k not in before and not e.ended]
        if alone:
            ready += self._in_order(alone, set(ready))
        for key in sorted(ready, key=_order):  # in time order
            self._emit(self._held.pop(key))
        for old in list(self._held):  # oldest first: stop at the first still young,
            young = self._held[old].timestamp >= self._newest - self._timeout and len(self._held) <= HOLD_MAX
            if young or old == self._reading:  # or still being read: its next line may come next
                break
            self._emit(self._held.pop(old))

    def _in_order(self, alone: List[Tuple[str, str, float]], ready: set) -> List[Tuple[str, str, float]]:
        """Of the one-record events that could go, those that no older event
        of their host still held overtakes: in a log without EOE records
        (auditd's own log file) an event of several records waits for newer
        records to show it is whole, and a DAEMON_END must not come before
        the rule changes a second older than it."""
        going = ready.union(alone)
        waiting: Dict[str, Tuple[float, int]] = {}  # node -> (time, serial) of its oldest event held on
        for key in self._held:
            if key not in going:
                order = _order(key)
                if order < waiting.get(key[0], _LAST):
                    waiting[key[0]] = order
        return [key for key in alone if _order(key) < waiting.get(key[0], _LAST)]

    def _emit(self, event: Event):
        if not event.types():
            return  # an EOE whose records were all unreadable
        self._counters.events += 1
        self._sink(event)

    def _emit_held(self):
        self._eoes, self._last_eoes = set(), set()
        held, self._held = self._held, {}
        for event in held.values():
            self._emit(event)

    def feed(self, data: bytes):
        if data:
            data = self._cut_long_lines(data)
        if data:
            self._count_strays(data)
            lines = self._whole_lines(data)
            if lines:
                self._note_eoes(lines)
                if self._lines is not None:
                    self._lines.add(lines)
            self._fed = True
            self._parser.feed(data)
            self._line_open = not data.endswith(b"\n")
            self._release()

    def _cut_long_lines(self, data: bytes) -> bytes:
        """``data`` with each line cut at MAX_LINE_BYTES, however the input
        is split into reads: the first MAX_LINE_BYTES of a longer line are
        passed on, the rest is dropped up to its newline, which is passed
        on.  Each cut is counted (and logged once).  Without a long line
        (always, from auditd) this is a few searches of ``data`` in C."""
        pos, run, out, before = 0, 0, [], self._line_bytes
        if self._cutting:  # the rest of a line cut in an earlier read
            end = data.find(b"\n")
            self._dropped(data, 0, len(data) if end < 0 else end)
            if end < 0:
                return b""
            self._cutting = False
            run, pos, before = end, end + 1, 0
        while True:
            found = _long_line(data, pos, before)
            if found is None:
                break
            start, end = found
            keep = start + MAX_LINE_BYTES - (before if start == pos else 0)
            out.append(data[run:keep])
            self._counters.problem(LINE_CUT)
            self._dropped(data, keep, end)
            if end == len(data):  # its newline is in a later read
                self._cutting, self._line_bytes = True, MAX_LINE_BYTES
                return b"".join(out)
            run, pos, before = end, end + 1, 0
        if run:
            out.append(data[run:])
            data = b"".join(out)
        last = data.rfind(b"\n")
        self._line_bytes = len(data) - last - 1 if last >= 0 else self._line_bytes + len(data)
        return data

    def _dropped(self, data: bytes, start: int, end: int):
        """What a cut drops still says whether the stream is enriched."""
        if self._lines is not None and data.find(b"\x1d", start, end) >= 0:
            self._lines.enriched = True

    def _whole_lines(self, data: bytes) -> bytes:
        """The lines this read finishes, the unfinished one before it
        included; the rest waits for the next read (at most MAX_LINE_BYTES:
        the lines are cut before)."""
        text = self._tail + data
        end = text.rfind(b"\n") + 1
        self._tail = text[end:]
        return text[:end]

    def _note_eoes(self, text: bytes):
        """The (node, serial, time) of every EOE line in ``text`` (whole
        lines), and the id of its last record line."""
        end = len(text)
        self._eoes |= self._last_eoes
        self._last_eoes = set()
        last_line = text.rfind(b"\n", 0, end - 1) + 1
        found = _EOE_AFTER_NEWLINE.findall(text, 0, last_line)  # those before the last line (one a line)
        first = _EOE_LINE.match(text, 0, last_line) if last_line else None  # no newline before it
        if first:
            found.insert(0, first.groups())
        eoes = [self._key(*groups) for groups in found]
        self._eoes.update(eoes)
        last = _EOE_LINE.match(text, last_line, end)
        if last:
            eoes.append(self._key(*last.groups()))
            self._last_eoes.add(eoes[-1])
        self._with_eoe.update(eoes)
        if len(self._with_eoe) > HOLD_MAX:
            self._with_eoe_before, self._with_eoe = self._with_eoe, set()
        last = _RECORD_LINE.match(text, last_line, end)
        if last:
            self._reading = self._key(*last.groups())

    def _key(self, node: Optional[bytes], sec: bytes, milli: bytes, serial: bytes) -> tuple:
        """(node, serial, time) of a record line, as _hold keys its event."""
        return (node.decode("utf-8", "surrogateescape") if node else self._node, serial.decode(),
                int(sec) + int(milli) / 1000.0)

    def _count_strays(self, data: bytes):
        """Count the lines auparse will skip without a word (neither type=
        nor node= at their start, not blank) and NUL bytes, with bytes.count
        alone: this runs on every byte of input, so where every line is a
        type= record (most input) the other kinds are not counted."""
        nuls = data.count(b"\0") if b"\0" in data else 0  # (in: memchr, much faster than count)
        if nuls:
            self._counters.problem("NUL bytes in the input (auparse cuts a record there)", nuls)
        end = data.rfind(b"\n")
        if end < 0:
            if len(self._line_head) < 5:
                self._line_head += data[:5]
            self._line_open = True
            return
        # (data has no newline after end.)  Counting one byte by removing it
        # runs at memchr's speed; bytes.count of one byte is ~8 times slower.
        lines = len(data) - len(data.replace(b"\n", b""))
        # The first line is judged by its head, which may have come in an
        # earlier read; the others by what follows each newline but the last.
        if self._line_open:
            good = (self._line_head + data[:5]).startswith((b"type=", b"node="))
        else:
            good = data.startswith((b"type=", b"node=", b"\n"))  # (a blank line is harmless)
        good += _count_line_starts(data, b"\ntype=", end + 1)
        if good < lines:  # not every line a record: the rarer kinds of good line
            good += _count_line_starts(data, b"\nnode=", end + 1) + len(_BLANK_LINE.findall(data, 0, end + 1))
        strays = lines - good
        if strays > 0:
            self._counters.problem("input lines that are not audit records skipped", strays)
        self._line_head = data[end + 1:end + 6]

    def end_of_input(self):
        """Close a last line without its newline: auparse would drop it, or
        glue it to the next file's first record."""
        if self._line_open:
            self.feed(b"\n")

    def pending(self) -> bool:
        return bool(self._held) or bool(self._parser.feed_has_data())

    def age(self):
        """Idle tick: emit what auparse held back, and held LOGIN events."""
        self._parser.feed_age_events()
        self._emit_held()

    def flush(self):
        self.end_of_input()
        self._parser.flush_feed()
        self._emit_held()


def _long_line(data: bytes, pos: int, before: int) -> Optional[Tuple[int, int]]:
    """(start, end) of the first line in ``data[pos:]`` longer than
    MAX_LINE_BYTES (``end``: its newline, or the end of ``data``), the
    line at ``pos`` counting the ``before`` bytes it had in earlier reads;
    None if there is none.  Such a line holds a whole window of half that
    length, aligned from the line after ``pos``: only windows without a
    newline are looked at more closely, so short lines cost one search
    per window, not one per line."""
    size, half = len(data), MAX_LINE_BYTES // 2
    first = data.find(b"\n", pos)
    if before + (size if first < 0 else first) - pos > MAX_LINE_BYTES:
        return pos, size if first < 0 else first
    if first < 0:
        return None
    at = first + 1
    while True:
        window = at
        while window + half <= size and data.find(b"\n", window, window + half) >= 0:
            window += half
        if window + half > size:
            return None
        start = data.rfind(b"\n", at - 1, window) + 1
        end = data.find(b"\n", window + half)
        end = size if end < 0 else end
        if end - start > MAX_LINE_BYTES:
            return start, end
        if end == size:
            return None
        at = end + 1


# bytes.count() searches a span of 30,000 bytes or more with an algorithm
# (two-way) that is three times slower on audit text than the one it uses on
# shorter spans: a read is counted in spans shorter than that.
_SPAN = 25000


_LAST = (float("inf"), 0)


def _order(key: Tuple[str, str, float]) -> Tuple[float, int]:
    """A held event's place in time: (time, serial)."""
    return key[2], int(key[1]) if key[1].isdigit() else 0


def _count_line_starts(data: bytes, needle: bytes, end: int) -> int:
    """data.count(needle, 0, end) for a ``needle`` that starts with a
    newline, counted span by span; each span ends at a newline, which no
    needle can run across (it would have to hold that newline after its
    first byte: the needle holds no other)."""
    found, start = 0, 0
    while start < end:
        stop = data.find(b"\n", start + _SPAN, end) if start + _SPAN < end else -1
        if stop < 0:
            stop = end
        found += data.count(needle, start, stop)
        start = stop
    return found


def _user_space(au) -> bool:
    """Whether the parser's current event is a record from user space
    (PAM, sudo, auditd itself: types 1100-1299 and 2100-2999).  Such a
    record is whole as it comes, unless the syscall that sent it was
    audited too (then a SYSCALL record and an EOE follow under its id): so
    it goes out once the next line read is another event's and no EOE of
    its id was seen, instead of waiting for the input to pause, and arrives
    in order with the kernel's events around it."""
    au.first_record()
    try:
        number = au.get_type()
    except (LookupError, RuntimeError):
        return False
    return 1100 <= number < 1300 or 2100 <= number < 3000
