"""Watching the watcher (watcher.py): lost events, silent hosts, the
heartbeat, a restart after a crash; with an injected clock, no sleeps.
tests/test_real_auditd.py makes a real kernel lose events."""

import time

from corpus import events_of

from audit_notify.config import Config, Heartbeat, parse_heartbeat
from audit_notify.counters import Counters
from audit_notify.watcher import EDIT_EVERY, EPISODE_QUIET, SETTLE, Watcher

T0 = 1800000000.0


def _events(serials, node="", rtype="USER", start=T0):
    text = "".join("%stype=%s msg=audit(%.3f:%d): pid=1 uid=0 auid=0 ses=1 msg='text=x res=success'\n"
                   % ("node=%s " % node if node else "", rtype, start + i * 0.001, serial)
                   for i, serial in enumerate(serials))
    return events_of(text.encode(), node="web1")


class Room:
    """What the watcher said, each key's last version."""

    def __init__(self):
        self.said = []

    def __call__(self, note):
        self.said.append(note)

    def keys(self):
        return list(dict.fromkeys(n.key for n in self.said))


def _watcher(room, heartbeat="", silence=15.0, counters=None, now=T0):
    config = Config(heartbeat=parse_heartbeat(heartbeat), node_silence_minutes=silence, mention=("@admin:example.org",))
    return Watcher(config, room, counters or Counters(), "web1", now)


def test_missing_event_numbers_are_one_critical_message_per_episode_with_the_count():
    room = Room()
    watcher = _watcher(room)
    now = T0
    for event in _events([n for n in range(1, 101) if not 40 <= n < 50]):
        watcher.on_event(event, now)
    watcher.due(now + SETTLE - 1)
    assert room.said == []                      # they may still come
    watcher.due(now + SETTLE)
    [first] = room.said
    assert first.severity == "critical" and first.body.startswith("🚨 10 audit events lost on web1")
    assert first.mentions == ("@admin:example.org",) and "@admin:example.org" in first.html
    # More lost soon after: the same message, edited (at most every EDIT_EVERY).
    now += 20
    for event in _events([101, 103, 104, 200]):
        watcher.on_event(event, now)
    watcher.due(now + SETTLE)
    watcher.due(now + SETTLE + EDIT_EVERY)
    assert {n.key for n in room.said} == {first.key}
    assert room.said[-1].body.startswith("🚨 106 audit events lost on web1")
    watcher.due(now + SETTLE + EPISODE_QUIET)
    assert room.said[-1].key == first.key and "quiet again" in room.said[-1].body


def test_numbers_that_come_late_are_not_lost_and_auditds_own_records_do_not_count():
    room = Room()
    watcher = _watcher(room)
    for event in _events([1, 2, 5, 3, 4, 6]) + _events([9000, 12], rtype="DAEMON_START") + _events([7, 8]):
        watcher.on_event(event, T0)
    watcher.due(T0 + SETTLE * 10)
    assert room.said == []
    # A jump of millions is a new sequence (a reboot, another log), not a loss.
    for event in _events([5000000, 5000001]):
        watcher.on_event(event, T0 + SETTLE * 10)
    watcher.due(T0 + SETTLE * 20)
    assert room.said == []


def test_a_file_read_by_hand_is_not_watched_for_gaps():
    room = Room()
    watcher = Watcher(Config(heartbeat=Heartbeat()), room, Counters(), "web1", T0, live=False)
    for event in _events([1, 50, 900]):
        watcher.on_event(event, T0)
    watcher.due(T0 + 3600)
    assert room.said == []


def test_a_host_that_goes_quiet_is_a_warning_edited_when_it_is_back():
    room = Room()
    watcher = _watcher(room, silence=15.0)
    for event in _events([1, 2], node="db1"):
        watcher.on_event(event, T0)
    for event in _events([3], node="web1"):  # this host's own quiet is not news here
        watcher.on_event(event, T0)
    watcher.due(T0 + 14 * 60)
    assert room.said == []
    watcher.due(T0 + 15 * 60)
    [silent] = room.said
    assert silent.severity == "warning" and silent.body.startswith("⚠️ db1 has sent no audit events for 15 min")
    assert watcher.next_due() is None or watcher.next_due() > T0 + 15 * 60
    for event in _events([3], node="db1"):
        watcher.on_event(event, T0 + 40 * 60)
    back = room.said[-1]
    assert back.key == silent.key and back.body.startswith("⚠️ db1 was silent for 40 min, sending again")


def test_the_heartbeat_is_one_message_edited_every_day_with_what_was_handled():
    room = Room()
    counters = Counters()
    local = time.localtime(T0)
    start = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 8, 0, 0, 0, 0, -1))
    watcher = _watcher(room, heartbeat="09:00", counters=counters, now=start)
    assert watcher.next_due() == start + 3600
    counters.events, counters.sent = 1200, 14
    watcher.due(start + 3600 - 1)
    assert room.said == []
    watcher.due(start + 3600)
    [beat] = room.said
    assert beat.key == "heartbeat|web1" and beat.severity == "info" and beat.kind == "heartbeat"
    assert "1,200 events read" in beat.body and "14 messages delivered" in beat.body
    counters.events, counters.sent = 1500, 20
    assert watcher.next_due() == start + 3600 + 86400
    watcher.due(start + 3600 + 86400)
    assert [n.key for n in room.said] == ["heartbeat|web1"] * 2  # the same message, edited
    assert "300 events read" in room.said[-1].body and "6 messages delivered" in room.said[-1].body


def test_a_heartbeat_every_few_minutes_and_none_when_off():
    room = Room()
    watcher = _watcher(room, heartbeat="every 30m")
    assert watcher.next_due() == T0 + 1800
    assert _watcher(Room(), heartbeat="").next_due() is None


def test_a_restart_after_a_kill_says_so_once_and_a_clean_one_says_nothing():
    room = Room()
    watcher = _watcher(room)
    watcher.restarted({"pid": "4242", "clean": "0", "updated": str(T0 - 300)}, 7, T0)
    [said] = room.said
    assert said.severity == "warning" and "pid 4242" in said.body and "5 min ago" in said.body
    assert "7 notifications were waiting" in said.body
    for state in ({"pid": "4242", "clean": "1", "updated": str(T0)}, {}, {"pid": "4242", "updated": str(T0)}):
        watcher.restarted(state, 0, T0)
    assert len(room.said) == 1
