"""Repeats and routine (repeats.py), alone and behind the Notifier: the
same action again is a count that climbs in one edited message; routine
is one summary per period.  Time is the events' own: no sleeps."""

from collections import Counter

from corpus import events_of

from audit_notify.config import Config
from audit_notify.counters import Counters
from audit_notify.agenda import UPDATE_INTERVAL
from audit_notify.notify import Notifier
from audit_notify.repeats import MAX_WINDOW, Repeats, Routine, top
from audit_notify.rules import RuleSet
from audit_notify.severity import CRITICAL, WARNING

def HEAD():
    return ("headline", "<b>headline</b>")


def test_the_first_few_go_alone_then_one_count_climbs_until_quiet():
    repeats = Repeats(after=3, window=60.0)
    fates = [repeats.offer("same", 100.0 + i, WARNING, "web1", HEAD)[0] for i in range(10)]
    assert fates[:3] == [None, None, None]
    [window] = {id(w): w for w in fates[3:]}.values()
    assert window.folded == 7 and (window.first, window.last) == (103.0, 109.0) and not window.closed
    assert repeats.due(168.9) == []                  # 59.9 s after the last one: still counting
    assert repeats.due(169.0) == [window] and window.closed
    # Once quiet, the same action starts afresh: alone again.
    assert repeats.offer("same", 200.0, WARNING, "web1", HEAD)[0] is None


def test_different_actions_are_never_counted_together():
    repeats = Repeats(after=1, window=60.0)
    for i in range(5):
        repeats.offer("a", float(i), WARNING, "web1", HEAD)
        repeats.offer("b", float(i), WARNING, "web1", HEAD)
    assert {f: w.folded for f, w in repeats.windows.items()} == {"a": 4, "b": 4}
    assert repeats.windows["a"].key != repeats.windows["b"].key


def test_a_count_takes_the_worst_severity_it_saw():
    repeats = Repeats(after=1, window=60.0)
    for i, severity in enumerate([WARNING, WARNING, CRITICAL, WARNING]):
        window, _ = repeats.offer("same", float(i), severity, "web1", HEAD)
    assert window.severity == CRITICAL


def test_after_zero_sends_everything_alone():
    repeats = Repeats(after=0, window=60.0)
    assert all(repeats.offer("same", float(i), WARNING, "", HEAD)[0] is None for i in range(100))
    assert repeats.moments() == {}


def test_a_count_that_never_goes_quiet_is_closed_after_a_day():
    repeats = Repeats(after=1, window=60.0)
    closed = []
    for i in range(int(MAX_WINDOW / 30) + 10):  # one every 30 s, for a day and 5 minutes
        closed += repeats.offer("same", i * 30.0, WARNING, "", HEAD)[1]
    assert len(closed) == 1 and closed[0].last - closed[0].first < MAX_WINDOW
    assert repeats.windows["same"].start >= MAX_WINDOW


def test_the_counts_survive_a_restart_and_a_foreign_state_is_ignored():
    repeats = Repeats(after=1, window=60.0)
    for i in range(4):
        repeats.offer("same", float(i), WARNING, "web1", HEAD)
    again = Repeats(after=1, window=60.0)
    again.restore(repeats.snapshot())
    assert again.windows == repeats.windows
    again.restore('{"same": {"unknown": 1}}')
    assert again.windows == {}


def test_routine_is_one_summary_per_period_sent_again_only_when_it_changed():
    routine = Routine(period=3600.0, every=600.0)
    assert routine.add(7200.0 + 5, "web1", "cron jobs of root", 12) == []
    routine.add(7200.0 + 65, "web1", "cron jobs of root", 12)
    routine.add(7200.0 + 70, "web2", "logins of alice", 9)
    assert routine.due(7200.0 + 600) == []           # the first version waits for `every`
    [version] = routine.due(7200.0 + 605)
    assert version.counts == {"web1": Counter({"cron jobs of root": 2}), "web2": Counter({"logins of alice": 1})}
    assert version.events == 33 and not version.closed
    assert routine.due(7200.0 + 1300) == []          # nothing new: no edit
    [last] = routine.add(10800.0 + 1, "web1", "cron jobs of root", 3)  # the next hour closes this one
    assert last is version and last.closed and last.key != routine.current.key


def test_top_is_largest_first_then_by_name():
    assert top(Counter({"b": 2, "a": 2, "c": 5, "d": 1}), 3) == [("c", 5), ("a", 2), ("b", 2)]


# -- behind the Notifier: a slow brute force -----------------------------------------

def _failed_password(i, when, addr="203.0.113.7"):
    return ("type=USER_AUTH msg=audit(%.3f:%d): pid=%d uid=0 auid=4294967295 ses=4294967295 "
            "msg='op=PAM:authentication grantors=? acct=\"root\" exe=\"/usr/sbin/sshd\" hostname=%s addr=%s "
            "terminal=ssh res=failed'\n" % (when, 1000 + i, 5000 + i, addr, addr))


def _notifier(after=3, window=600.0):
    notes, counters = [], Counters()
    config = Config(digest_after=after, digest_window=window)
    return Notifier(config, RuleSet(), notes.append, counters), notes, counters


def test_a_slow_brute_force_is_three_messages_and_one_count_edited_as_it_climbs():
    """200 failed root passwords from one address, one every 30 s (each
    its own incident: sshd's quiet spell is shorter): the first three go
    out alone, then one count, edited at most every UPDATE_INTERVAL, whose
    last version holds all the rest.  Another address is another action."""
    notifier, notes, counters = _notifier()
    data = "".join(_failed_password(i, 1800000000.0 + 30 * i) for i in range(200))
    data += _failed_password(999, 1800000000.0 + 30 * 200, addr="198.51.100.9")
    for event in events_of(data.encode()):
        notifier.on_event(event)
    notifier.close_all()
    alone = [n for n in notes if n.kind == "incident"]
    counts = [n for n in notes if n.kind == "repeat"]
    assert len(alone) == 3 + 1 and "198.51.100.9" in alone[-1].body.split("\n")[0]
    assert len({n.key for n in counts}) == 1
    assert counts[-1].body.startswith("⚠️ 🔁 197 more times: ❌ testhost: Failed SSH login for root from 203.0.113.7")
    assert counts[-1].body.split("\n")[1].endswith("quiet again")
    assert counts[0].body.startswith("⚠️ 🔁 1 more time: ")
    # Attempts 30 s apart, longer than UPDATE_INTERVAL: each edits the
    # count, and the close once more.
    assert len(counts) == 197 + 1
    assert counters.digested == 197 and counters.notified == 4
    assert sum(notifier.accounted()) == 201


def _watched_write(i, when):
    """A write to a watched file by a process of its own (a job run again
    and again): each its own incident, all alike; critical (a cron file),
    as a warning of the same shape would be routine after the first
    (known.py)."""
    stamp = "%.3f:%d" % (when, 5000 + i)
    return ('type=SYSCALL msg=audit(%s): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=55d0 a2=241 '
            'a3=1b6 items=1 ppid=1 pid=%d auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) '
            'ses=1 comm="sh" exe="/usr/bin/dash" key="an-flood"\n'
            'type=PATH msg=audit(%s): item=0 name="/etc/cron.d/an-flood" inode=42 dev=fe:00 mode=0100644 ouid=0 ogid=0 '
            'rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\n'
            'type=EOE msg=audit(%s): \n' % (stamp, 4000 + i, stamp, stamp))


def _last_versions(notes):
    latest = {}
    for note in notes:
        latest[note.key] = note.body
    return latest


def test_a_quiet_host_closes_a_count_only_once_what_may_still_join_it_is_decided():
    """A job writes a watched file at 0 s, 10 s and 69 s (a count of
    repeats after the first; it ends 60 s after the last).  The live
    plugin moves the quiet host's time on (the daemon's quiet moments):
    at 70 s the count is over, but the write of 69 s is still in its
    quiet spell, not yet decided.  The count waits for it, as a file read
    at once counts it: the same messages either way."""
    start = 1800000000.0
    data = "".join(_watched_write(i, start + at) for i, at in enumerate((0.0, 10.0, 69.0))).encode()
    dry, dry_notes, _ = _notifier(after=1, window=60.0)
    live, live_notes, _ = _notifier(after=1, window=60.0)
    for event in events_of(data):
        dry.on_event(event)
        live.on_event(event)
    for now in (start + 70.0, start + 70.5, start + 71.0, start + 200.0):  # the host is quiet: its time goes on
        for node, moment in live.moments().items():
            if moment <= now:
                live.due(node, now)
    closed_live = [n for n in live_notes if n.kind == "repeat" and n.body.endswith("quiet again")]
    live.close_all()
    dry.close_all()
    assert closed_live, "the count closed while the host was quiet"
    assert closed_live[-1].body.startswith("🚨 🔁 2 more times: testhost: Watched file opened for writing: "
                                           "/etc/cron.d/an-flood")
    assert _last_versions(live_notes) == _last_versions(dry_notes)
    assert live.moments() == {}


def test_a_period_a_host_behind_the_others_still_counts_into_is_the_next_one():
    """The routine summary follows the host furthest on: once it closed an
    hour, a host behind it counts into the next hour's summary, not into a
    second summary of the closed one under the same key."""
    routine = Routine(period=3600.0)
    routine.add(7200.0 + 5, "ahead", "cron jobs of root", 1)
    [closed] = routine.due(10800.0)
    routine.add(10800.0 - 300, "behind", "cron jobs of root", 1)
    assert routine.current.key != closed.key and routine.current.start == 10800.0


def test_a_fast_flood_edits_the_count_at_most_every_update_interval():
    notifier, notes, counters = _notifier()
    data = "".join(_watched_write(i, 1800000000.0 + 0.5 * i) for i in range(1000))
    for event in events_of(data.encode()):
        notifier.on_event(event)
    notifier.close_all()
    counts = [n for n in notes if n.kind == "repeat"]
    assert len([n for n in notes if n.kind == "incident"]) == 3
    # 500 s of flood: a version at most every 10 s, plus the first and the last.
    assert 2 <= len(counts) <= 500 / UPDATE_INTERVAL + 2, len(counts)
    assert counts[-1].body.startswith(
        "🚨 🔁 997 more times: testhost: Watched file opened for writing: /etc/cron.d/an-flood")
    assert counters.digested == 997 and sum(notifier.accounted()) == 1000
