"""auditd's own lifecycle (lifecycle.py), behind the Notifier: a restart
is one warning edited as it completes, a stop that stays a stop or leaves
auditing reduced is critical.  Records as auditd 3.0.9 and auditctl -R
write them (a restart recorded with a private auditd: DAEMON_END by the
signal's sender, DAEMON_START, then augenrules' -D, settings and rules)."""

from corpus import events_of
from records import Clock

from audit_notify.config import Config
from audit_notify.counters import Counters
from audit_notify.lifecycle import RELOAD_QUIET, RESTART_WINDOW
from audit_notify.notify import Notifier
from audit_notify.rules import RuleSet
from audit_notify.spool import URGENT

NODE = "testhost"
UNSET = "4294967295"


def _stop(clock, kind="DAEMON_END", after=0.0):
    op = "terminate" if kind == "DAEMON_END" else "abort"
    return "type=%s msg=audit(%s): op=%s auid=0 uid=0 ses=%s pid=4140 res=success\n" % (
        kind, clock.stamp(after), op, UNSET)


def _start(clock, after=0.0):
    return ("type=DAEMON_START msg=audit(%s): op=start ver=3.0.9 format=raw kernel=6.18.44 auid=%s pid=4171 uid=0 "
            "ses=%s res=success\n" % (clock.stamp(after), UNSET, UNSET))


def _change(clock, what, after=0.001, res="1"):
    return "type=CONFIG_CHANGE msg=audit(%s): auid=%s ses=%s %s list=4 res=%s\n" % (
        clock.stamp(after), UNSET, UNSET, what, res)


def _reload(clock, deleted, loaded, failed=0):
    """augenrules --load: auditctl -R of a file that begins with -D."""
    text = "".join(_change(clock, 'op=remove_rule key="r%d"' % i) for i in range(deleted))
    text += _change(clock, "op=set audit_backlog_limit=8192 old=64")
    text += "".join(_change(clock, 'op=add_rule key="r%d"' % i) for i in range(loaded))
    text += "".join(_change(clock, 'op=add_rule key="bad%d"' % i, res="0") for i in range(failed))
    return text


class Room:
    """A Notifier and what it sent, each message in its last version."""

    def __init__(self):
        self.sent, self.counters = [], Counters()
        self.notifier = Notifier(Config(), RuleSet(), self.sent.append, self.counters)

    def feed(self, text):
        for event in events_of(text.encode()):
            self.notifier.on_event(event)
        return self

    def quiet_until(self, now):
        """The host is quiet: its time goes on (the daemon's quiet moments)."""
        for node, moment in self.notifier.moments().items():
            if moment <= now:
                self.notifier.due(node, now)
        return self

    def messages(self):
        latest = {}
        for note in self.sent:
            latest[note.key] = note
        return list(latest.values())

    def heads(self):
        return [(n.severity, n.body.split("\n")[0]) for n in self.messages()]


def test_a_restart_with_its_rules_reloaded_is_one_warning_edited_as_it_completes():
    clock, room = Clock(), Room()
    room.feed(_stop(clock))
    assert room.heads() == [("warning", "⚠️ testhost: auditd stopped by root, waiting for it to start again")]
    assert room.sent[0].priority == URGENT  # it leaves in the seconds the plugin has (spool.py)
    # 352 rules in the file, 47 of which this kernel refuses (they were not in before either).
    room.feed(_start(clock, 0.4) + _reload(clock, deleted=305, loaded=305, failed=47))
    room.quiet_until(clock.now + RELOAD_QUIET + 0.01)
    assert room.heads() == [("warning", "⚠️ testhost: auditd restarted by root: 352 rules reloaded (47 failed)")]
    assert len({n.key for n in room.sent}) == 1 and len(room.sent) == 2  # the stop, then the edit
    assert room.notifier.moments() == {} and not room.notifier.pending()
    assert room.counters.notified == 1 + 1 + 305 + 1 + 305 + 47 and room.counters.incidents == 1


def test_three_restarts_are_three_warnings():
    clock, room = Clock(), Room()
    room.feed(_start(clock) + _reload(clock, 0, 76))
    for _ in range(3):
        room.feed(_stop(clock, after=10.0) + _start(clock, 0.3) + _reload(clock, 76, 76))
    room.notifier.close_all()
    assert room.heads() == [("warning", "⚠️ testhost: auditd started: 76 rules loaded")] + \
        [("warning", "⚠️ testhost: auditd restarted by root: 76 rules reloaded")] * 3


def test_a_stop_not_followed_by_a_start_turns_critical_and_a_late_start_edits_it():
    clock, room = Clock(), Room()
    room.feed(_stop(clock))
    room.quiet_until(clock.now + RESTART_WINDOW - 0.1)
    assert [h[0] for h in room.heads()] == ["warning"]
    room.quiet_until(clock.now + RESTART_WINDOW)
    assert room.heads() == [("critical", "🚨 testhost: auditd stopped by root")]
    assert "not started again within 30 s" in room.messages()[0].body
    assert room.notifier.moments() == {}  # nothing more to do until a start
    room.feed(_start(clock, 300.0) + _reload(clock, 10, 10))
    room.notifier.close_all()
    [(severity, head)] = room.heads()
    assert severity == "critical" and head == "🚨 testhost: auditd restarted by root: 10 rules reloaded"
    assert "started again 5 min later" in room.messages()[0].body


def test_auditing_reduced_or_off_after_a_restart_is_critical():
    for reload, head in ((lambda c: _reload(c, 352, 300), "🚨 testhost: auditd restarted by root: fewer rules: 352 deleted, "
                          "300 loaded"),
                         (lambda c: _reload(c, 352, 0), "🚨 testhost: auditd restarted by root: fewer rules: 352 deleted, "
                          "0 loaded"),
                         (lambda c: _reload(c, 5, 5) + _change(c, "op=set audit_enabled=0 old=1"),
                          "🚨 testhost: auditd restarted by root: 5 rules reloaded, auditing disabled")):
        clock, room = Clock(), Room()
        room.feed(_stop(clock) + _start(clock, 0.3) + reload(clock))
        room.quiet_until(clock.now + RELOAD_QUIET + 0.01)
        assert room.heads() == [("critical", head)]


def test_auditing_disabled_in_a_restart_is_told_at_once_and_an_abort_is_critical():
    clock, room = Clock(), Room()
    room.feed(_stop(clock) + _start(clock, 0.3) + _change(clock, "op=set audit_enabled=0 old=1"))
    assert [h[0] for h in room.heads()] == ["critical"]  # not when the reload is over
    clock, room = Clock(), Room()
    room.feed(_stop(clock, kind="DAEMON_ABORT"))
    assert room.heads() == [("critical", "🚨 testhost: auditd aborted by root")]


def test_rules_deleted_outside_a_restart_are_a_persons_and_critical_as_before():
    clock, room = Clock(), Room()
    room.feed(_start(clock) + _reload(clock, 0, 3))
    room.feed(_change(clock, 'op=remove_rule key="r1"', after=60.0))
    room.notifier.close_all()
    [started, deleted] = room.heads()
    assert started == ("warning", "⚠️ testhost: auditd started: 3 rules loaded")
    assert deleted[0] == "critical" and "deleted" in deleted[1]


def test_the_next_run_edits_the_stop_the_last_run_told():
    """Under auditd the plugin that reads DAEMON_END is stopped at once, and
    the next start runs a new one: the episode goes with the saved state,
    and the new run's start edits the same message."""
    clock, first = Clock(), Room()
    first.feed(_stop(clock))
    first.notifier.close_all(stopping=True)  # auditd stops us: the stop is not told as final
    [stopping] = first.sent
    assert stopping.severity == "warning" and first.counters.notified == 1
    second = Room()
    second.notifier.lifecycle.restore(first.notifier.lifecycle.snapshot())
    second.feed(_start(clock, 0.5) + _reload(clock, 9, 9))
    second.quiet_until(clock.now + RELOAD_QUIET + 0.01)
    [restarted] = second.sent
    assert restarted.key == stopping.key and restarted.severity == "warning"
    assert restarted.body.startswith("⚠️ testhost: auditd restarted by root: 9 rules reloaded")
    assert second.counters.incidents == 0 and second.counters.notified == 1 + 9 + 1 + 9
    second.notifier.lifecycle.restore("not json")
    assert second.notifier.lifecycle.episodes == {}


def test_a_stop_at_the_end_of_a_file_read_by_hand_is_critical():
    clock, room = Clock(), Room()
    room.feed(_stop(clock))
    room.notifier.close_all()
    assert room.heads() == [("critical", "🚨 testhost: auditd stopped by root")]
    assert "not started again before the input ended" in room.messages()[0].body
