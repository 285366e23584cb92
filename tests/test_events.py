"""Events: records of one serial become one event, whatever the chunking."""

import json
import os
import random
import re

import pytest
from corpus import DATA, all_corpus_files, corpus, events_of, read
import records
from records import UNSET, syscall, user

from audit_notify.counters import Counters
from audit_notify.severity import classify
from audit_notify.events import SUMMARY_FIELDS
from audit_notify.reader import EventReader, LineIndex, import_auparse
from audit_notify.rules import RuleSet, parse_rules


def _serials(data):
    return {m.group(1, 2) for m in re.finditer(rb"msg=audit\((\d+\.\d+):(\d+)\)", data)}


def _shape(events):
    """The events, in time order: which reads complete which event decides
    the order of events that end in different reads (a user-space record
    goes out as soon as the next line is another event's), not what they are."""
    shaped = [(e.timestamp, e.get("serial"), e.fields, e.records) for e in events]
    return sorted(shaped, key=lambda item: (item[0], item[1], json.dumps(item[2], sort_keys=True)))


@pytest.mark.parametrize("path", all_corpus_files()[:200:3])
def test_chunking_never_changes_the_events(path):
    data = read(path)[:20000]
    whole = _shape(events_of(data, 4096))
    assert whole == _shape(events_of(data, 1))
    assert whole == _shape(events_of(data, 3))


def _enriched(data):
    return b"\x1d" in data


def _in_order(events):
    return sorted(events, key=lambda e: (e.timestamp, e.get("serial"), e.types()))


def _as_read_at_once(event):
    facts = event.facts
    return (event.types(), event.fields, event.records, event.timestamp, event.ended, event.skipped,
            facts.values, facts.paths, facts.command)


def test_summaries_read_whole_later_equal_events_read_at_once():
    """The lazy reader (summary first, the rest read again from the event's
    own lines when asked) gives exactly what reading everything at once
    gives, over every corpus event, and its summary fields are the whole
    event's.  Enriched streams keep auditd's names, not this host's."""
    files = all_corpus_files() + [os.path.join(DATA, name) for name in sorted(os.listdir(DATA))
                                   if name.endswith(".log")]
    events = summaries = enriched_summaries = syscalls = named = 0
    for path in files:
        data = read(path)
        counters = Counters()
        chunks = (4096, 7) if _enriched(data) and len(data) < 20000 else (4096,)
        at_once = [_as_read_at_once(e) for e in _in_order(events_of(data, lazy=False))]
        for chunk in chunks:
            lazy = _in_order(events_of(data, chunk, lazy=True, counters=counters))
            assert len(lazy) == len(at_once), path
            for event, expected in zip(lazy, at_once):
                summary = {name: event.get(name, None) for name in SUMMARY_FIELDS}
                summaries += not event.whole
                enriched_summaries += not event.whole and _enriched(data)
                syscalls += not event.whole and event.types()[:1] == ["SYSCALL"]
                who = {name: event.who(name) for name in WHO}  # (before the rest is read)
                named += not event.whole and event.types()[:1] == ["SYSCALL"]
                events += 1
                assert _as_read_at_once(event) == expected, (path, event.get("serial"))
                assert summary == {name: event.get(name, None) for name in SUMMARY_FIELDS}, path
                assert who == {name: event.get(name) for name in WHO}, (path, event.get("serial"))
        assert "could not read an event's records again" not in counters.problems, path
    # Most events do start as summaries, in enriched streams too.
    assert summaries > 0.9 * events, (summaries, events)
    assert enriched_summaries > 100, enriched_summaries
    # Those that start with a SYSCALL record (a flood's execs and writes)
    # say who without being read again, nearly all.
    assert named > 0.9 * syscalls > 500, (named, syscalls)


WHO = ("auid", "uid", "euid", "acct", "id")


def _who_as_read(text, enriched=""):
    """Each WHO field of the event in ``text`` from its summary, whether
    the summary stayed one, and the same fields read at once."""
    if enriched:
        text = text.replace("\n", "\x1d" + enriched + "\n", 1)
    [summary] = events_of(text.encode())
    [whole] = events_of(text.encode(), lazy=False)
    who = {name: summary.who(name) for name in WHO}
    return who, not summary.whole, {name: whole.get(name) for name in WHO}


@pytest.mark.parametrize("auid, uid", [("1000", "0"), ("0", "2999999"), ("4294967294", "2147483648"),
                                       (UNSET, "3000000000"), ("007", "65534")])
def test_a_summary_says_who_as_auparse_would_without_being_read_again(auid, uid):
    """The ids of an event's first record, a SYSCALL in the kernel's
    layout, are named from its text: this host's names ("root", a passwd
    name, "unknown(N)" as a C int, "unset"), or in an enriched record the
    recording host's, as auparse interprets them."""
    text = syscall("openat", auid=auid, uid=uid, euid="0")
    who, summary, whole = _who_as_read(text)
    assert who == whole and summary, (who, whole)
    who, summary, whole = _who_as_read(text, 'ARCH=x86_64 SYSCALL=openat AUID="zed" UID="unknown(2001)" EUID="root"')
    assert who == whole and summary, (who, whole)
    assert (who["auid"], who["uid"]) == ("zed", "unknown(2001)")


@pytest.mark.parametrize("enriched", ['ARCH=x86_64 SYSCALL=openat AUID=7A6564 UID="root"',
                                      'ARCH=x86_64 SYSCALL=openat AUID="unknown-x" UID="a b"',
                                      'AUID="z\\x" UID="root"'])
def test_who_an_enrichment_names_oddly_is_read_as_auparse_reads_it(enriched):
    who, _summary, whole = _who_as_read(syscall("openat", auid="1000", uid="1000"), enriched)
    assert who == whole


def test_who_in_other_records_is_read_whole():
    for text in (user("USER_LOGIN", "login", acct="bob", uid="1000", auid="1000"),
                 syscall("openat").replace("type=SYSCALL", "type=SYSCALL msg=audit(1.0:1): auid=5", 0)):
        who, _summary, whole = _who_as_read(text)
        assert who == whole


def test_the_line_index_finds_each_record_s_line_whatever_order_auparse_claims_them():
    """Records are claimed nearly in line order; the lines passed over (EOE
    lines, another event's records) are found later; a line is given once,
    enrichment and all, and a record whose line is not there gets None (its
    event is then read whole at once)."""
    def line(serial, rtype, rest):
        return 'type=%s msg=audit(1700000000.000:%d): %s\x1dUID="u%d"' % (rtype, serial, rest, serial)
    lines = [line(1, "SYSCALL", "a"), line(2, "SYSCALL", "b"), line(1, "PATH", "c"),
             "type=EOE msg=audit(1700000000.000:1): ", line(2, "PATH", "d"), "type=EOE msg=audit(1700000000.000:2): "]
    index = LineIndex()
    index.add(("\n".join(lines) + "\n").encode())
    for want in (lines[0], lines[2], lines[1], lines[4]):  # event 1's records, then event 2's
        assert index.take(want.split("\x1d")[0]) == want
    assert index.take(lines[0].split("\x1d")[0]) is None  # claimed already
    assert index.take("type=PATH msg=audit(1700000000.000:3): e") is None
    plain = LineIndex()
    plain.add(b"type=EOE msg=audit(1700000000.000:1): \n")
    assert plain.take("anything") == "anything"  # no enrichment: the record is its line


def test_the_line_index_gives_an_event_s_lines_at_once_or_record_by_record():
    """An event's lines at the head, one after another (EOE lines of the
    events before are passed over), come as one string; records that are
    not all there in order are found one by one; one that is missing, or
    whose line is too long to have been kept, gives None."""
    def line(node, serial, rtype, rest):
        prefix = "node=%s " % node if node else ""
        return '%stype=%s msg=audit(1700000000.000:%d): %s\x1dUID="u%d"' % (prefix, rtype, serial, rest, serial)

    def eoe(node, serial):
        return "%stype=EOE msg=audit(1700000000.000:%d): " % ("node=%s " % node if node else "", serial)

    def texts(*lines):
        return [one.split("\x1d")[0] for one in lines]

    a1, a2, b1, c1, c2 = (line("", 1, "SYSCALL", "a"), line("", 1, "PATH", "b"), line("h", 2, "SYSCALL", "c"),
                          line("", 3, "SYSCALL", "d"), line("", 3, "PATH", "e"))
    d1, d2, f1 = line("", 4, "SYSCALL", "f"), line("", 4, "PATH", "g"), line("", 5, "SYSCALL", "x" * 70000)
    g1 = line("", 6, "SYSCALL", "ab")
    lines = [a1, a2, eoe("", 1), b1, eoe("h", 2), c1, d1, c2, d2, f1, g1]
    index = LineIndex()
    index.add(("\n".join(lines) + "\n").encode())
    assert index.lines_of(texts(a1, a2)) == a1 + "\n" + a2 + "\n"
    assert index.lines_of(texts(b1)) == b1 + "\n"  # after an EOE line, and one with a node= prefix
    assert index.lines_of(texts(c1, c2)) == c1 + "\n" + c2 + "\n"  # interleaved with event 4: one by one
    assert index.lines_of(texts(d1, d2) + [eoe("", 4).rstrip()]) == d1 + "\n" + d2 + "\n" + eoe("", 4).rstrip() + "\n"
    assert index.lines_of(texts(f1)) is None  # too long to carry between reads
    assert index.lines_of([g1.split("b")[0]]) is None  # a line that only starts with the record's text
    assert index.lines_of([eoe("h", 2)]) == eoe("h", 2) + "\n"  # an EOE record: its text, line gone or not
    assert index.lines_of(texts(a1)) is None  # claimed already
    plain = LineIndex()
    assert plain.lines_of(["type=EOE msg=audit(1700000000.000:1): "]) == "type=EOE msg=audit(1700000000.000:1): \n"


def test_a_summary_answers_rules_and_severity_without_reading_every_record():
    data = read(corpus("laurel", "src", "testdata", "record-execve.txt"))
    [event] = events_of(data)
    assert classify(event).severity == "info"
    assert event.facts.get("exe") == "/usr/bin/whoami" and event.facts.get("syscall") == "execve"
    rules = parse_rules("exe=/usr/sbin/auditd records=\"SYSCALL PROCTITLE\"\n", "test")
    assert RuleSet(tuple(rules)).wanted(event)
    assert not event.whole  # records= ruled the rule out before exe= was asked
    assert event.get("exe") == "/usr/bin/whoami"
    assert event.whole


def test_records_of_one_serial_are_one_event():
    events = events_of(read(corpus("laurel", "src", "testdata", "record-execve.txt")))
    assert len(events) == 1
    assert events[0].types() == ["SYSCALL", "EXECVE", "CWD", "PATH", "PATH", "PROCTITLE"]


def test_node_prefix_becomes_the_node_field():
    events = events_of(read(corpus("laurel", "src", "testdata", "record-execve.txt")))
    assert events[0].get("node") == "work"
    local = events_of(read(corpus("laurel", "src", "testdata", "record-login.txt")), node="web1")
    assert local[0].get("node") == "web1"


def test_login_and_its_syscall_are_one_event():
    # auparse ends a LOGIN record's event before its SYSCALL arrives.
    events = events_of(read(corpus("laurel", "src", "testdata", "record-login.txt")))
    assert [e.types() for e in events] == [["LOGIN", "SYSCALL"]]


def test_a_kernel_event_goes_out_once_a_line_past_its_eoe_is_read():
    # auparse ends an event on its EOE without handing the EOE over; the
    # reader sees EOE lines itself, so a flood is not held back until a
    # pause or a thousand events.
    execve = read(corpus("laurel", "src", "testdata", "record-execve.txt"))
    login = read(corpus("laurel", "src", "testdata", "record-login.txt"))
    got = []
    reader = EventReader(import_auparse(), got.append, Counters(), "h")
    reader.feed(execve)
    reader.feed(login)  # lines past the execve's EOE
    assert [e.types() for e in got][:1] == [["SYSCALL", "EXECVE", "CWD", "PATH", "PATH", "PROCTITLE"]]
    reader.feed(execve.replace(b":15558)", b":15559)"))  # auparse hands over the LOGIN's SYSCALL late
    assert [e.types() for e in got][1:] == [["LOGIN", "SYSCALL"]]  # joined, without a pause


# Files with the records of one serial far apart, other events in between:
# auparse has already emitted the first part when the rest arrives.
# audit-rhel7.log: 2 of 46 serials; httpd.log: 1 of 6,470 (AVC and its
# SYSCALL 10 lines apart).  audit2allow/test.log has two SYSCALL records
# under one event id (an aggregation that glued lines): read as two events.
SCATTERED = ("audit-rhel7.log", "httpd.log", "audit2allow/test.log")


def test_every_corpus_file_gives_at_most_one_event_per_serial():
    checked = 0
    for path in all_corpus_files():
        if path.endswith(SCATTERED):
            continue
        data = read(path)
        events = events_of(data)
        assert len(events) <= max(1, len(_serials(data))), path
        checked += 1
    assert checked > 100


def test_interleaved_records_are_grouped_by_serial():
    path = corpus("laurel", "src", "testdata", "shell-proc-trace-reordered.txt")
    data = read(path)
    events = events_of(data)
    assert len(events) == len(_serials(data)) == 9
    execs = [e for e in events if "EXECVE" in e.types()]
    assert all("SYSCALL" in e.types() for e in execs)


def test_events_without_eoe_are_still_emitted():
    # test.log has no EOE records at all: every event must come out at the end.
    data = read(corpus("audit-userspace", "auparse", "test", "test.log"))
    assert b"type=EOE" not in data
    assert len(events_of(data)) == 7


def test_in_a_log_without_eoe_a_one_record_event_does_not_overtake_an_older_one():
    """auditd's own log file has no EOE records: an event of several records
    waits for newer records to show it is whole, and a one-record event a
    second newer (a PAM record, auditd's DAEMON_END after the rule reload)
    waits for it: events come out in time order, as from the stream."""
    def without_eoe(text):
        return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("type=EOE"))
    data = without_eoe(records.syscall("openat", paths=[("/etc/hosts", "NORMAL")], stamp="1700000000.100:10"))
    data += records.user("USER_AUTH", "PAM:authentication", stamp="1700000001.000:11")
    data += without_eoe(records.syscall("openat", paths=[("/etc/hosts", "NORMAL")], stamp="1700000003.500:12"))
    for chunk in (len(data), 64):  # in one read, and in many
        assert [e.get("serial") for e in events_of(data.encode(), chunk=chunk)] == ["10", "11", "12"]


def test_original_fields_are_present_with_the_original_meaning():
    event = events_of(read(corpus("laurel", "src", "testdata", "record-execve.txt")))[0]
    assert event.get("type") == "SYSCALL"
    assert event.get("kind") == "audit-rule"
    assert event.get("action") == "executed"
    assert event.get("how") == "/usr/bin/whoami"
    assert event.get("primary_subject") == "user = auid"
    assert event.get("secondary_subject") == "root = uid"
    assert event.get("primary_object") == "name = /usr/bin/whoami"
    assert event.get("session") == "1"
    assert event.get("object_kind") == "file"
    assert event.get("serial") == "15558"
    assert "serial=15558" in event.get("time")


def test_unset_primary_subject_reads_system_as_in_the_original():
    data = read(corpus("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh"))
    errs = [e for e in events_of(data) if e.get("type") == "USER_ERR" and e.get("auid") == "unset"]
    assert errs and errs[0].get("primary_subject") == "system = auid"


def test_raw_fields_are_interpreted():
    event = events_of(read(corpus("laurel", "src", "testdata", "record-perl-reverse-shell.txt")))[0]
    assert event.get("syscall") == "execve"
    assert event.get("exe") == "/usr/bin/perl"
    assert event.get("uid") == "root"  # enriched UID="root"
    assert event.get("proctitle").startswith("perl -e use Socket;")  # hex decoded
    assert event.get("argv").startswith("perl -e 'use Socket;$i=")


def test_split_execve_arguments_are_joined():
    event = events_of(read(corpus("laurel", "src", "testdata", "record-execve-long.txt")))[0]
    argv = event.get("argv")
    assert argv.startswith("/bin/echo baaaa")
    # a1_len counts hex digits: 16384 of them are 8192 bytes, in 3 records.
    assert len(argv.split(" ", 1)[1]) == 8192
    assert argv.endswith("g")


def test_hex_encoded_username_is_decoded():
    data = read(corpus("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh"))
    accounts = {e.get("acct") for e in events_of(data)}
    assert "(unknown user)" in accounts


def test_key_is_set_only_when_a_rule_key_exists():
    events = events_of(read(corpus("laurel", "src", "testdata", "record-syscall-key.txt")))
    assert [e.get("key") for e in events] == ["filter-this", "filter-this", "this-too"]
    plain = events_of(read(corpus("laurel", "src", "testdata", "record-execve.txt")))[0]
    assert "key" not in plain.fields


def test_invalid_utf8_and_controls_do_not_break_reading():
    line = (b"type=USER_LOGIN msg=audit(1700000000.100:77): pid=6 uid=0 auid=4294967295 ses=4294967295 "
            b"msg='op=login acct=\"\xff\xfeab\" exe=\"/usr/sbin/sshd\" hostname=? addr=203.0.113.7 "
            b"terminal=ssh res=failed'\n")
    hexed = line.replace(b'acct="\xff\xfeab"', b"acct=610A62E280AE63").replace(b":77)", b":78)")
    events = events_of(line + hexed)
    # Bytes that are not UTF-8 stay distinguishable from text that looks
    # like their escapes (message.clean shows them as \\xff, never as text).
    assert [e.get("acct") for e in events] == ["\udcff\udcfeab", "a\nb\u202ec"]


def test_garbage_between_records_is_skipped(caplog):
    good = read(corpus("laurel", "src", "testdata", "record-login.txt"))
    data = bytes(range(256)) * 20 + b"\n\x00\x00\nnot a record\n" + good
    counters = Counters()
    events = []
    reader = EventReader(import_auparse(), events.append, counters, "h")
    reader.feed(data)
    reader.flush()
    assert [e.types() for e in events] == [["LOGIN", "SYSCALL"]]
    assert counters.events == 1 and counters.records == 2


def test_age_emits_an_event_whose_eoe_never_came():
    events = []
    reader = EventReader(import_auparse(), events.append, Counters(), "h")
    reader.feed(b"type=SYSCALL msg=audit(1000.000:5): arch=c000003e syscall=59 success=yes exit=0 items=0 "
                b"ppid=1 pid=2 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 "
                b"comm=\"id\" exe=\"/usr/bin/id\" key=\"k\"\n")
    assert events == [] and reader.pending()
    reader.age()
    assert [e.get("key") for e in events] == ["k"]
    assert not reader.pending()


def test_lines_that_are_not_records_are_counted_exactly_however_the_input_is_cut():
    """The count of input lines auparse skips (neither type= nor node= at
    their start, not blank) is the same line by line and for any cutting
    of the input into reads, with reads long enough to be counted span by
    span (reader._count_line_starts) and lines cut anywhere."""
    rnd = random.Random(11)
    record = "type=USER_CMD msg=audit(1700000000.%03d:%d): pid=1 uid=0 auid=0 ses=1 msg='cmd=6C73 res=success'"
    kinds = [lambda i: record % (i % 1000, i), lambda i: "node=h " + record % (i % 1000, i), lambda i: "",
             lambda i: "typo=%d x" % i, lambda i: "type", lambda i: " type=X", lambda i: "nodes=%d" % i,
             lambda i: "x" * rnd.randrange(1, 300)]
    lines = [rnd.choice(kinds)(i) for i in range(6000)] + ["x" * 40000] + [kinds[0](6001)]
    strays = sum(1 for line in lines if line and not line.startswith(("type=", "node=")))
    data = ("\n".join(lines) + "\n").encode()
    for cut in ("reads", "random"):
        counters = Counters()
        reader = EventReader(import_auparse(), lambda event: None, counters, "h")
        start = 0
        while start < len(data):
            size = 65536 if cut == "reads" else rnd.choice((1, 5, 6, 7, 100, 30000, 70000))
            reader.feed(data[start:start + size])
            start += size
        reader.flush()
        assert counters.problems.get("input lines that are not audit records skipped", 0) == strays, cut
