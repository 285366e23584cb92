"""The fast lane (lane.py): a flood's repeats are counted without becoming
incidents, and the messages are the same as without it, whatever follows
one: more of its process before or after it was counted, a count that
closed meanwhile (a SIGHUP), the end of the input.  Each case runs twice
through the real reader, with the lane and without, and the two must
send the same notifications (text, keys, edits, order), account for
every event the same way and know the same shapes (known.py)."""

import os
from dataclasses import replace

import pytest
from corpus import DATA, all_corpus_files, events_of, read
from records import UNSET, Clock, syscall

from audit_notify.config import Config
from audit_notify.counters import Counters
from audit_notify.notify import Notifier
from audit_notify.rules import RuleSet

TOOL = "/tmp/an-lane/an-true"  # run from a temporary place: critical


def _run(chunks, fast_lane, config):
    """Feed each chunk of records in turn; a Config between chunks is a
    SIGHUP.  What was sent, the accounting, and how many took the lane."""
    notes, counters = [], Counters()
    notifier = Notifier(config, RuleSet(), notes.append, counters, fast_lane=fast_lane)
    for chunk in chunks:
        if isinstance(chunk, Config):
            notifier.configure(chunk, RuleSet())
            continue
        for event in events_of(chunk.encode() if isinstance(chunk, str) else chunk):
            notifier.on_event(event)
    notifier.close_all()
    return notes, notifier.accounted(), notifier.grouper.kept_out, notifier.known.entries()


def _same_with_and_without_the_lane(chunks, config=None):
    config = config or Config()
    notes, accounted, kept_out, known = _run(chunks, True, config)
    plain_notes, plain_accounted, plain_kept_out, plain_known = _run(chunks, False, config)
    assert plain_kept_out == 0
    assert [n.body for n in notes] == [n.body for n in plain_notes]  # the readable difference first
    assert notes == plain_notes
    assert accounted == plain_accounted
    assert known == plain_known  # what is known, when last seen, how often
    return notes, accounted, kept_out


def _flood(clock, runs, every=0.1, first_pid=20000, child=None):
    """``runs`` execs of TOOL, each a process of its own; ``child(i)``, if
    it gives a delay, adds a write by a child of the i-th that long after."""
    records = []
    for i in range(runs):
        pid = first_pid + i
        records.append(syscall("execve", exe=TOOL, argv=(TOOL,), pid=pid, ppid=1, auid=UNSET, uid="0",
                               tty="(none)", stamp=clock.stamp(every)))
        delay = child(i) if child else None
        if delay is not None:
            records.append(syscall("openat", exe=TOOL, paths=[("/etc/sudoers.d/an-lane", "NORMAL")], a2="241",
                                   pid=pid + 50000, ppid=pid, auid=UNSET, uid="0", tty="(none)",
                                   stamp=clock.stamp(delay)))
            clock.now -= delay
    return "".join(records)


def test_a_flood_takes_the_lane_and_says_what_it_said_without():
    notes, accounted, kept_out = _same_with_and_without_the_lane([_flood(Clock(), 300)])
    assert kept_out > 250  # all but the first few, and those decided while the count began
    assert [n.kind for n in notes].count("incident") == 5  # digest_after
    assert notes[-1].kind == "repeat" and notes[-1].body.startswith("🚨 🔁 295 more times: ")
    assert accounted == [0, 5, 295, 0]


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_more_of_a_counted_process_makes_it_the_incident_it_would_have_been(delay):
    """A child's write 0.3 s after its exec (before the exec's critical
    hold, when its fate would have been decided), or 1.5 s after (counted
    already, its incident not closed): as without the lane, and either way
    the write to sudoers is a message of its own, never one of the count."""
    notes, _accounted, kept_out = _same_with_and_without_the_lane(
        [_flood(Clock(), 200, child=lambda i: delay if i in (100, 150) else None)])
    assert kept_out > 150
    written = [n for n in notes if n.kind == "incident" and "/etc/sudoers.d/an-lane" in n.body]
    assert len(written) == 2


def test_a_count_closed_before_a_kept_out_one_is_decided_makes_it_an_incident():
    """A SIGHUP that shortens the repeat window closes the count under
    repeats already kept out: they are incidents after all."""
    clock = Clock()
    first, second = _flood(clock, 100), _flood(clock, 50, first_pid=30000, every=0.5)
    notes, _accounted, kept_out = _same_with_and_without_the_lane(
        [first, replace(Config(), digest_window=0.05), second])
    assert kept_out > 50
    assert [n.kind for n in notes].count("incident") > 5


def test_a_flood_in_a_session_takes_the_lane_too():
    """The session may name its user after the flood began: decided with
    what the session says by then, as its incident would be."""
    clock = Clock()
    records = "".join(syscall("execve", exe=TOOL, argv=(TOOL, "-q"), pid=40000 + i, ppid=39999, auid="1000",
                              ses="7", tty="(none)", stamp=clock.stamp(0.2)) for i in range(100))
    _notes, _accounted, kept_out = _same_with_and_without_the_lane([records])
    assert kept_out > 50


def _ordinary(clock, runs, every=0.05, first_pid=50000, child=None):
    """``runs`` execs of ordinary programs by a logged-in user (auid 1000,
    its login before the log began) under a rule that logs users' commands:
    routine; ``child(i)``, if it gives a delay, adds an exec by a child of
    the i-th that long after."""
    programs = ("/usr/bin/ls", "/usr/bin/cat", "/usr/bin/grep", "/usr/bin/sort")
    records = []
    for i in range(runs):
        exe, pid = programs[i % len(programs)], first_pid + i
        records.append(syscall("execve", exe=exe, argv=(exe.rsplit("/", 1)[1], "-x"), pid=pid, ppid=first_pid - 1,
                               auid="1000", ses="7", key="user-commands", stamp=clock.stamp(every)))
        delay = child(i) if child else None
        if delay is not None:
            records.append(syscall("execve", exe="/usr/bin/id", argv=("id",), pid=pid + 50000, ppid=pid, auid="1000",
                                   ses="7", key="user-commands", stamp=clock.stamp(delay)))
            clock.now -= delay
    return "".join(records)


def test_a_routine_flood_takes_the_lane_and_is_counted_as_without():
    notes, accounted, kept_out = _same_with_and_without_the_lane([_ordinary(Clock(), 400)])
    assert kept_out == 400
    assert [n.kind for n in notes] == ["routine"] * len(notes) and "400 actions, 400 events" in notes[-1].body
    assert accounted == [0, 0, 0, 400]


@pytest.mark.parametrize("delay", [0.5, 1.9, 2.5])
def test_a_routine_action_whose_process_goes_on_is_the_incident_it_would_have_been(delay):
    """A child's exec before the parent's action would have closed makes it
    an incident after all (two events, one action); after, an action of
    its own."""
    notes, accounted, kept_out = _same_with_and_without_the_lane(
        [_ordinary(Clock(), 200, child=lambda i: delay if i % 50 == 7 else None)])
    assert kept_out >= 200 - 4 * (delay < 2)
    assert accounted == [0, 0, 0, 204]


def test_routine_whose_clock_goes_back_is_counted_as_without_the_lane():
    """The same day fed again (its clock back by hours): what was closed
    at once without the lane is counted at once with it, in the same
    order, and a login still open is no process's of the new actions."""
    clock = Clock()
    first = _ordinary(clock, 100)
    clock.now -= 7200
    notes, _accounted, kept_out = _same_with_and_without_the_lane([first, _ordinary(clock, 100, first_pid=60000)])
    assert kept_out == 200
    day = os.path.join(DATA, "days", "stig.log")
    _same_with_and_without_the_lane([read(day), read(day)])


def _writes(clock, runs, users=6, every=0.05, first_pid=70000, child=None):
    """``runs`` writes of watched files (an admin's keyed watch) by
    ``users`` people (a login each, before the log began), each write a
    process of its own, by touch or cp: warnings, each shape new once, then
    known; ``child(i)``, if it gives a delay, adds a write by a child of
    the i-th that long after."""
    records = []
    for i in range(runs):
        uid, pid = str(2001 + i % users), first_pid + i
        exe = ("/usr/bin/touch", "/usr/bin/cp")[i // users % 2]
        records.append(syscall("openat", exe=exe, paths=[("/srv/data/u%s-f%d" % (uid, i % 40), "NORMAL")], a2="241",
                               pid=pid, ppid=first_pid - 1, auid=uid, uid=uid, ses=uid, key="data1",
                               stamp=clock.stamp(every)))
        delay = child(i) if child else None
        if delay is not None:
            records.append(syscall("openat", exe="/usr/bin/tee", paths=[("/srv/data/x%d" % i, "NORMAL")], a2="241",
                                   pid=pid + 50000, ppid=pid, auid=uid, uid=uid, ses=uid, key="data1",
                                   stamp=clock.stamp(delay)))
            clock.now -= delay
    return "".join(records)


def test_known_warnings_take_the_lane_and_are_counted_as_without():
    """Each user's first touch and first cp are new (a message each), the
    rest are known: counted as routine, without becoming incidents."""
    notes, accounted, kept_out = _same_with_and_without_the_lane([_writes(Clock(), 600)])
    assert kept_out == 600
    assert [n.kind for n in notes].count("incident") == 12 and all(" new: " in n.body for n in notes
                                                                    if n.kind == "incident")
    assert accounted == [0, 12, 0, 588]


@pytest.mark.parametrize("delay", [0.5, 2.5])
def test_a_known_warning_whose_process_goes_on_is_the_incident_it_would_have_been(delay):
    notes, accounted, kept_out = _same_with_and_without_the_lane(
        [_writes(Clock(), 300, child=lambda i: delay if i % 40 == 13 else None)])
    assert kept_out >= 300 - 8 * (delay < 2)
    assert sum(accounted) == 308


def test_known_warnings_whose_clock_goes_back_are_counted_as_without_the_lane():
    clock = Clock()
    first = _writes(clock, 200)
    clock.now -= 7200
    _notes, accounted, kept_out = _same_with_and_without_the_lane([first, _writes(clock, 200, first_pid=90000)])
    assert kept_out == 400 and accounted[1] == 12


def test_routine_and_known_warnings_waiting_when_grouping_is_turned_off_are_messages_as_without_the_lane():
    clock = Clock()
    first, second = _ordinary(clock, 30) + _writes(clock, 30), _ordinary(clock, 5, first_pid=80000)
    notes, _accounted, kept_out = _same_with_and_without_the_lane([first, replace(Config(), group_events=False),
                                                                   second])
    assert kept_out == 60 and len([n for n in notes if n.kind == "incident"]) > 12


def _logs():
    days = os.path.join(DATA, "days")
    ours = [os.path.join(DATA, name) for name in sorted(os.listdir(DATA)) if name.endswith(".log")]
    ours += [os.path.join(days, name) for name in sorted(os.listdir(days)) if name.endswith(".log")]
    return ours + all_corpus_files()


@pytest.mark.parametrize("path", _logs(), ids=os.path.basename)
def test_every_recorded_log_gives_the_same_messages_with_the_lane(path):
    _same_with_and_without_the_lane([read(path)])
