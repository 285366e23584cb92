"""Fuzzing the parse-and-format path with hypothesis, seeded with the corpora.

Input: real audit lines from tests/data/corpora and tests/data, mutated
(byte flips, truncations, splices of two records, inserted NUL, 0x1d,
newlines and huge fields, hex-encoded hostile bytes in acct/cmd/proctitle
and friends), whole real events, and arbitrary bytes.  Property, for every
input: EventReader (fed in chunks of 1..4096 bytes) and format_event never
raise; chunking does not change the events; every notification fits
MAX_BODY_BYTES / MAX_HTML_BYTES, its HTML has no tag but b, code and br, and
neither body nor HTML has a raw control, bidi or zero-width character (but
the plugin's own line breaks) or an "@".

CI runs the "ci" profile: derandomized (the same examples every run), no
example database, sized to take well under a minute.  For a longer, random
hunt::

    AUDIT_NOTIFY_FUZZ=long python -m pytest tests/test_fuzz.py
"""

import html.parser
import logging
import os
import re
import unicodedata

import pytest
from corpus import DATA, all_corpus_files, auparse, corpus, read
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit_notify.config import Config
from audit_notify.counters import Counters
from audit_notify.format import format_event
from audit_notify.message import MAX_BODY_BYTES, MAX_HTML_BYTES
from audit_notify.notify import Notifier
from audit_notify.reader import LINE_CUT, MAX_LINE_BYTES, EventReader
from audit_notify.rules import RuleSet

settings.register_profile(
    "ci", max_examples=600, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "long", max_examples=20000, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = settings.get_profile(os.environ.get("AUDIT_NOTIFY_FUZZ", "ci"))


def _corpus_lines():
    lines = set()
    files = all_corpus_files() + [os.path.join(DATA, n) for n in sorted(os.listdir(DATA)) if n.endswith(".log")]
    for path in files:
        for line in read(path).splitlines(keepends=True):
            if b"msg=audit(" in line and len(line) <= 20000:
                lines.add(line)
    return sorted(lines)


_ID = re.compile(rb"msg=audit\((\d+\.\d+):(\d+)\)")


def _ids(data):
    return set(_ID.findall(data))


def _corpus_events():
    """Small real files of whole events (laurel's and the parser crate's),
    no two with an event id in common."""
    found, seen = [], set()
    for path in all_corpus_files():
        if "/laurel/" in path or "/linux-audit-parser-rs/" in path:
            data = read(path)
            if len(data) <= 40000 and not _ids(data) & seen:
                found.append(data)
                seen |= _ids(data)
    return found


LINES = _corpus_lines()
EVENTS = _corpus_events()

# Text an attacker would like to see rendered: mentions, markup, bidi
# overrides, zero-width and other invisible characters, terminal escapes.
HOSTILE = [
    "@room", "@alice:example.org", "<b>x</b>", "<a href=\"https://evil\">x</a>", "<script>", "&amp;", "&#64;",
    "\u202e", "\u2066", "\u200b", "\u200d", "\ufeff", "\u2028", "\u2029", "\u00ad", "\x1b[31m", "\x00", "\x7f",
    "\x85", "\r\n", "\t", "\ud800", "＠", "`code`", "**bold**", "[x](https://evil)", "\U000e0041",
]

_VALUE = re.compile(rb'\b(acct|cmd|proctitle|comm|exe|name|a\d+|op|unit|hostname|addr|terminal|key|id|grp|'
                    rb'cwd|path|dev|text)=("[^"\n]*"|\S+)')


def _hostile_bytes():
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=6).map(
            lambda parts: "".join(parts).encode("utf-8", "surrogatepass")),
    )


@st.composite
def _mutation(draw, line):
    """One change to one line of audit text."""
    data = bytearray(line)
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "hex", "quote", "huge"]))
    if kind == "flip" and data:
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
        if draw(st.booleans()):
            data += b"\n"
    elif kind == "splice":
        other = draw(st.sampled_from(LINES))
        data = data[:draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))):]
    elif kind == "insert":
        what = draw(st.sampled_from([b"\0", b"\x1d", b"\n", b"\r", b"\r\n", b"\0\n", b"=", b"'", b'"', b" ",
                                     b"msg=audit(", b"type=", b"node=x "]))
        at = draw(st.integers(0, len(data)))
        data[at:at] = what * draw(st.integers(1, 3))
    elif kind in ("hex", "quote"):
        found = list(_VALUE.finditer(bytes(data)))
        if found:
            target = draw(st.sampled_from(found))
            value = draw(_hostile_bytes())
            encoded = value.hex().upper().encode() if kind == "hex" else b'"' + value.replace(b"\n", b"") + b'"'
            data[target.start(2):target.end(2)] = encoded
    elif kind == "huge":
        # A huge field: built from a size, not drawn byte by byte.
        size = draw(st.sampled_from([3000, 20000, 70000]))
        fill = draw(st.sampled_from([b"A", b"@", b"\xe2\x80\xae", b"\xff", b"<b>", b"41"]))
        name = draw(st.sampled_from([b"proctitle", b"cmd", b"acct", b"a0", b"x", b"comm"]))
        found = [m for m in _VALUE.finditer(bytes(data)) if m.group(1) == name]
        value = (fill * (size // len(fill) + 1))[:size]
        if found:
            data[found[0].start(2):found[0].end(2)] = value
        else:
            at = len(data.rstrip(b"\n"))
            data[at:at] = b" " + name + b"=" + value
    return bytes(data)


@st.composite
def _piece(draw):
    kind = draw(st.sampled_from(["line", "line", "mutated", "mutated", "mutated", "event", "bytes"]))
    if kind == "line":
        return draw(st.sampled_from(LINES))
    if kind == "mutated":
        line = draw(st.sampled_from(LINES))
        for _ in range(draw(st.integers(1, 3))):
            line = draw(_mutation(line))
        return line
    if kind == "event":
        data = draw(st.sampled_from(EVENTS))
        return draw(_mutation(data)) if draw(st.booleans()) else data
    return draw(st.binary(max_size=2000))


def _own_serials(pieces):
    """Each piece gets serials of its own (serial * 8 + its index), so that
    no event id comes back in a later piece: a repeated id is merged into
    the first event or not depending on the chunking (see
    test_a_repeated_event_id_is_grouped_the_same_whatever_the_chunking)."""
    return b"".join(_ID.sub(lambda m, k=k: b"msg=audit(%s:%d)" % (m.group(1), int(m.group(2)) * 8 + k), piece)
                    for k, piece in enumerate(pieces))


STREAMS = st.lists(_piece(), min_size=1, max_size=6).map(_own_serials)
CHUNKS = st.lists(st.integers(1, 4096), min_size=1, max_size=8)


def _feed(data, chunks):
    """Events and problem counts from ``data`` fed in chunks of the given
    sizes, cycled.  At most ~1000 feeds: auparse looks for the end of the
    line again on every feed, so a 70 KB line fed a byte at a time would
    take seconds, for no more coverage (the plugin reads 64 KiB at a time)."""
    floor = len(data) // 1000
    chunks = [max(size, floor) for size in chunks]
    events = []
    counters = Counters()
    reader = EventReader(auparse, events.append, counters, "fuzzhost")
    at, i = 0, 0
    while at < len(data):
        size = chunks[i % len(chunks)]
        reader.feed(data[at:at + size])
        at, i = at + size, i + 1
    reader.flush()
    return events, counters


def _shape(events):
    """The events, in an order of their own: auparse emits the events of one
    feed() in an order that depends on the chunking (a one-record USER_ACCT
    before a SYSCALL event whose EOE came earlier: see the report), so only
    the events themselves are compared.  Within an event, the pieces a
    broken input came in may be joined in another order, so its records are
    compared as a set and the first-wins flat fields not at all.  Records of
    one id that arrive apart, with records years newer between them, are
    one event or two depending on when auparse ages events out (at each
    feed): so the records of one id are compared, not how many events
    carried them."""
    by_id = {}
    for e in events:
        by_id.setdefault((e.get("node"), e.get("serial"), e.timestamp), []).extend(
            repr((t, sorted(f.items()))) for t, f in e.records)
    return sorted(repr((key, sorted(records))) for key, records in by_id.items())


# --- what a notification must never contain ----------------------------------

_INVISIBLE = ("Cc", "Cf", "Zl", "Zp", "Cs")
ALLOWED_TAGS = {"b", "code", "br"}


def _forbidden(text):
    """The characters of ``text`` that must not reach a reader raw."""
    return {c for c in text if c != "\n" and (c == "@" or unicodedata.category(c) in _INVISIBLE)}


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.tags.append(("<!--", data))

    def handle_decl(self, decl):
        self.tags.append(("<!", decl))

    def handle_pi(self, data):
        self.tags.append(("<?", data))

    def unknown_decl(self, data):
        self.tags.append(("<![", data))


def check_notification(note):
    body_bytes, html_bytes = len(note.body.encode("utf-8")), len(note.html.encode("utf-8"))
    assert body_bytes <= MAX_BODY_BYTES, body_bytes
    assert html_bytes <= MAX_HTML_BYTES, html_bytes
    parser = _Tags()
    parser.feed(note.html)
    parser.close()
    assert {tag for tag, _ in parser.tags} <= ALLOWED_TAGS, parser.tags
    assert all(attrs == [] for _, attrs in parser.tags), parser.tags
    text = "".join(parser.text)
    for where, lines in (("body", note.body.split("\n")), ("html", [l for l in text.split("\n")]),
                         ("raw html", note.html.split("\n"))):
        for line in lines:
            assert not _forbidden(line), (where, _forbidden(line), line)


def check_stream(data, chunks):
    whole, counters = _feed(data, [max(1, len(data))])
    pieces, counters2 = _feed(data, chunks)
    assert _shape(pieces) == _shape(whole)
    assert counters2.problems == counters.problems
    for event in whole:
        check_notification(format_event(event))
    for note in _grouped(whole):
        check_notification(note)


def _grouped(events):
    """Every message the default (grouping) path makes of the events:
    incidents, repeat counts and the routine summary, each version; and
    every event accounted for once."""
    notes, counters = [], Counters()
    notifier = Notifier(Config(), RuleSet(), notes.append, counters)
    for event in events:
        notifier.on_event(event)
    notifier.close_all()
    assert sum(notifier.accounted()) == len(events)
    return notes


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    """Counters.problem logs each kind once per reader: thousands of readers
    here, and a traceback each; the tests look at the counters instead."""
    logger = logging.getLogger("audit-notify")
    old = logger.disabled
    logger.disabled = True
    yield
    logger.disabled = old


# --- the properties ------------------------------------------------------------


def _broken_records():
    """The corpus's real malformed records, as an explicit example."""
    names = ("line-broken-avc-info.txt", "line-broken-subj1.txt", "line-broken-subj2.txt")
    return b"".join(read(corpus("linux-audit-parser-rs", "src", "testdata", n)) for n in names)


@settings(PROFILE)
@given(STREAMS, CHUNKS)
@example(_broken_records(), [1])
@example(b"xxtype=AVC msg=audit(1.2:3): a=b\ntype=AVC msg=audit(abc:def): a=b\n\x00\x00\n", [3])
@example(b"type=SYSCALL msg=audit(1.000:5): arch=c000003e syscall=59 success=yes exit=0\r\n"
         b"type=EXECVE msg=audit(1.000:5): argc=3 a0=\"x\" a2=" + "\u202e@room".encode().hex().encode() + b"\n",
         [7, 1])
def test_any_input_parses_and_formats_safely(data, chunks):
    check_stream(data, chunks)


@settings(PROFILE)
@given(st.binary(max_size=8192), CHUNKS)
def test_arbitrary_bytes(data, chunks):
    check_stream(data, chunks)


@settings(PROFILE, max_examples=min(PROFILE.max_examples, 100))
@given(st.lists(st.sampled_from(EVENTS), min_size=2, max_size=4, unique=True), st.randoms(use_true_random=False),
       CHUNKS)
def test_interleaved_real_events_keep_their_records(files, rnd, chunks):
    """The records of several real files, shuffled together but each file's
    own records in order, as the kernel interleaves concurrent events: all
    within one second (auparse ends an event once a record more than
    eoe_timeout newer arrives, so records of other years would cut it,
    more or less depending on the chunking).  Chunking changes nothing, and
    every record that went in is in some event."""
    queues = [re.sub(rb"msg=audit\(\d+\.(\d+):", rb"msg=audit(1700000000.\1:", f).splitlines(keepends=True)
              for f in files]
    mixed = []
    while any(queues):
        queue = rnd.choice([q for q in queues if q])
        mixed.append(queue.pop(0))
    data = b"".join(mixed)
    check_stream(data, chunks)
    records = sum(len(e.records) for e in _feed(data, chunks)[0])
    assert records == len(re.findall(rb"^(?:node=\S+ )?type=(?!EOE)", data, re.M))


# --- hostile values in every field --------------------------------------------

@settings(PROFILE, max_examples=min(PROFILE.max_examples, 200))
@given(st.sampled_from([l for l in LINES if _VALUE.search(l)]), _hostile_bytes(), st.booleans(),
       st.sampled_from(["", "@room\u202e", "<b>x\u200b"]))
def test_a_hostile_value_in_any_field_or_node_is_shown_inert(line, value, as_hex, node):
    """A hostile value in one field of a real record (hex-encoded as the
    kernel logs odd bytes, or quoted), and a hostile node= name.  Before
    Line marked values with V, values that landed on an even index of a
    headline (generic and audit headlines, the node after a headline with
    an odd number of parts) reached the reader raw."""
    found = list(_VALUE.finditer(line))
    target = found[len(value) % len(found)]
    encoded = value.hex().upper().encode() if as_hex else b'"' + value.replace(b"\n", b"") + b'"'
    data = line[:target.start(2)] + encoded + line[target.end(2):]
    if node:
        data = b"node=" + node.encode() + b" " + re.sub(rb"^node=\S+ ", b"", data)
    check_stream(data, [4096])


def test_a_generic_headline_shows_a_hostile_op_inert():
    """The exact input that showed the bug: a USER_DEVICE record (a generic
    headline) whose op is '@room' and a right-to-left override.  It read
    '✅ USER_DEVICE event: @room\u202e by ... via /usr/sbin/sshd'."""
    record = ("type=USER_DEVICE msg=audit(1700000000.000:9): pid=1 uid=0 auid=1000 ses=1 msg='op=@room\u202e "
              "acct=\"x\" exe=\"/usr/sbin/sshd\" hostname=? addr=? terminal=? res=success'\n").encode()
    [event] = _feed(record, [4096])[0]
    note = format_event(event)
    check_notification(note)
    assert "＠room\\u202e" in note.body.split("\n")[0]


def test_a_repeated_event_id_is_grouped_the_same_whatever_the_chunking():
    data = read(corpus("laurel", "src", "testdata", "shell-proc-trace-confusion.txt")) * 2
    whole, _ = _feed(data, [len(data)])
    # Today: 143 events fed whole (serial 2638064 twice in one event, "SYSCALL SYSCALL"), 144 byte by byte.
    assert _shape(_feed(data, [1])[0]) == _shape(whole)


def test_an_earlier_event_in_the_same_feed_does_not_cut_an_event():
    service = read(corpus("laurel", "src", "testdata", "record-service-start.txt"))
    group = read(corpus("linux-audit-parser-rs", "src", "testdata", "line-add-group.txt")).replace(
        b"1724970920.775:6704", b"1661853391.646:4486225")
    data = service + group
    # Today, fed whole: SERVICE_START | ADD_GROUP | SYSCALL SOCKADDR UNKNOWN[1420]; byte by byte: whole.
    whole = _feed(data, [len(data)])[0]
    assert [e.types() for e in whole if e.get("serial") == "4486226"] == [
        ["SERVICE_START", "SYSCALL", "SOCKADDR", "UNKNOWN[1420]"]]
    assert _shape(_feed(data, [1])[0]) == _shape(whole)


# --- giant lines: cut before parsing, the same however they arrive -----------

GIANT = 10 << 20
_AROUND = [0, 1, 300, MAX_LINE_BYTES // 2, MAX_LINE_BYTES - 1, MAX_LINE_BYTES, MAX_LINE_BYTES + 1,
           2 * MAX_LINE_BYTES + 5, 200000]


@settings(PROFILE, max_examples=min(PROFILE.max_examples, 300))
@given(st.lists(st.sampled_from(_AROUND), min_size=1, max_size=8), st.booleans(),
       st.lists(st.sampled_from([1, 2, 4096, MAX_LINE_BYTES - 1, MAX_LINE_BYTES, MAX_LINE_BYTES + 3, 150001]),
                min_size=1, max_size=5))
def test_every_line_is_cut_at_max_line_bytes_whatever_the_chunking(sizes, open_end, chunks):
    """What the reader passes on to auparse is each line's first
    MAX_LINE_BYTES, its newline kept; one cut counted per line cut."""
    lines = [bytes([65 + k % 26]) * size for k, size in enumerate(sizes)]
    data = b"\n".join(lines) + (b"" if open_end else b"\n")
    expected = b"\n".join(line[:MAX_LINE_BYTES] for line in lines) + (b"" if open_end else b"\n")
    counters = Counters()
    reader = EventReader(auparse, lambda event: None, counters, "h")
    passed, at, i = [], 0, 0
    while at < len(data):
        size = max(chunks[i % len(chunks)], len(data) // 2000)  # at most ~2000 feeds
        passed.append(reader._cut_long_lines(data[at:at + size]))
        at, i = at + size, i + 1
    assert b"".join(passed) == expected
    assert counters.problems.get(LINE_CUT, 0) == sum(size > MAX_LINE_BYTES for size in sizes)


_GIANTS = {
    "acct of a USER_LOGIN": b"type=USER_LOGIN msg=audit(1725003193.327:117287): pid=1712 uid=0 auid=4294967295 "
                            b"ses=4294967295 msg='op=login acct=\"%s\" exe=\"/usr/sbin/sshd\" hostname=? "
                            b"addr=10.9.9.9 terminal=sshd res=failed'\n",
    "hostname of a USER_AUTH": b"type=USER_AUTH msg=audit(1725003193.327:117288): pid=1712 uid=0 auid=4294967295 "
                               b"ses=4294967295 msg='op=PAM:authentication grantors=? acct=\"bob\" "
                               b"exe=\"/usr/sbin/sshd\" hostname=%s addr=10.9.9.9 terminal=ssh res=failed'\n",
    "key of a SYSCALL": b"type=SYSCALL msg=audit(1725003100.000:900003): arch=c000003e syscall=59 success=yes "
                        b"exit=0 items=0 ppid=1 pid=2 auid=1000 uid=0 comm=\"x\" exe=\"/usr/bin/x\" key=%s\n"
                        b"type=EOE msg=audit(1725003100.000:900003): \n",
    "hex acct, enriched": b"type=USER_ACCT msg=audit(1725003193.327:117289): pid=1712 uid=0 auid=1000 ses=3 "
                          b"msg='op=PAM:accounting grantors=pam_unix acct=%s exe=\"/usr/bin/sudo\" hostname=? "
                          b"addr=? terminal=/dev/pts/0 res=success'\x1dUID=\"root\" AUID=\"alice\"\n",
}


@pytest.mark.parametrize("name", sorted(_GIANTS))
def test_a_giant_field_is_cut_the_same_whatever_the_chunking(name):
    """10 MiB in one field: one cut, said once; the events around it whole
    and the same however the input is split; every message within limits."""
    fill = b"41" if name.startswith("hex") else b"A"
    giant = _GIANTS[name] % (fill * (GIANT // len(fill)))
    before, after = [line for line in LINES if line.startswith(b"type=USER_")][:2]
    data = before + giant + after
    whole, counters = _feed(data, [len(data)])
    assert counters.problems == {LINE_CUT: 1}
    for chunks in ([65536], [4096, 1], [MAX_LINE_BYTES + 1, 7]):
        pieces, counters2 = _feed(data, chunks)
        assert _shape(pieces) == _shape(whole) and counters2.problems == counters.problems
    for event in whole:
        check_notification(format_event(event))
    for note in _grouped(whole):
        check_notification(note)
