"""The Sender in-process: an injected clock, and a fake spawn whose
matrix-commander the test plays itself, step by step (no threads of the
test's own, no sleeps).  The process tests (test_plugin.py) and the real
homeserver (test_e2e_*.py) cover the same ground end to end."""

import os
import select

import pytest
from fakes import Clock, FakeMatrixCommander

from audit_notify.config import Config
from audit_notify.counters import Counters
from audit_notify.message import Notification
from audit_notify.sender import BACKOFF_FIRST, REFUSALS_TO_BURY, Sender
from audit_notify.spool import Spool, spool_status


class World:
    """A spool, a Sender on it, the fake processes it started."""

    def __init__(self, tmp_path, **settings):
        (tmp_path / "state").mkdir()
        self.config = Config(matrix_commander="/nonexistent/matrix-commander", credentials="c", store="s",
                             room="#audit:localhost", state_dir=str(tmp_path / "state"),
                             max_messages_per_minute=settings.pop("cap", 0), **settings)
        self.clock = Clock()
        self.spool = Spool(str(tmp_path / "spool.db"), 10 ** 7, 10 ** 6, clock=self.clock)
        self.counters = Counters()
        self.children = []
        self.sender = Sender(self.config, self.spool, self.counters, clock=self.clock, spawn=self.spawn)

    def spawn(self, argv, env, **kwargs):
        child = FakeMatrixCommander(argv, env, **kwargs)
        self.children.append(child)
        return child

    def add(self, *bodies):
        for body in bodies:
            self.spool.add(Notification(body=body, html=body, fields={}, timestamp=1.0, severity="warning"))
        self.spool.commit()

    def step(self):
        """One turn of the daemon's loop for the sender: what is readable now."""
        import select
        fds = self.sender.fds()
        self.sender.step(select.select(fds, [], [], 0)[0] if fds else [])

    def started(self) -> FakeMatrixCommander:
        """Let the sender start matrix-commander and put its FIFO in place."""
        self.step()
        child = self.children[-1]
        assert self.sender._child.swapped.wait(10), "the FIFO was never put in place"
        return child

    def send_one(self, child) -> dict:
        """matrix-commander opens the FIFO; the sender writes the next event."""
        child.open_fifo()
        self.step()
        return child.take()["content"]

    def waiting(self):
        return spool_status(self.spool.path)["depth"]


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_delivers_in_order_and_forgets_only_what_was_acknowledged(world):
    world.add("first-one", "two")
    child = world.started()
    assert "--event" in child.argv and child.argv.count(child.fifo) == 1000
    assert not any("first-one" in a for a in child.argv)  # audit text never in argv
    assert world.send_one(child)["body"] == "first-one"
    world.step()
    assert world.waiting() == 2  # in flight, not acknowledged
    child.ack("$first")
    world.step()
    assert world.waiting() == 1 and world.counters.sent == 1
    assert world.send_one(child)["body"] == "two"
    child.ack("$second")
    world.step()
    assert world.waiting() == 0 and world.counters.sent == 2


def test_a_failure_is_retried_after_a_backoff_that_doubles(world):
    world.add("one")
    child = world.started()
    for attempt, delay in enumerate([BACKOFF_FIRST, 2 * BACKOFF_FIRST, 4 * BACKOFF_FIRST]):
        assert world.send_one(child)["body"] == "one"
        child.error("ERROR: matrix-commander: E145: Event send of file x failed. Sorry.")
        world.step()
        assert world.waiting() == 1 and world.counters.retried == attempt + 1
        assert world.sender.deadline() == world.clock.now + delay
        child.open_fifo()
        world.step()
        assert child.take() is None  # nothing written before the backoff is over
        world.clock.now += delay
    assert world.send_one(child)["body"] == "one"
    child.ack("$at-last")
    world.step()
    assert world.waiting() == 0 and world.counters.failed == 0


def test_a_notification_refused_for_good_goes_to_the_dead_letters_and_the_queue_moves_on(world):
    world.add("poison", "after")
    child = world.started()
    for attempt in range(REFUSALS_TO_BURY):
        assert world.send_one(child)["body"] == "poison"
        child.error("ERROR: matrix-commander: E144: room_send failed with error "
                    "'RoomSendError: M_BAD_JSON Content not JSON.'.")
        world.step()
        world.clock.now += 60
    assert world.counters.failed == 1
    status = spool_status(world.spool.path)
    assert status["dead"] == 1
    assert world.send_one(child)["body"] == "after"
    child.ack("$after")
    world.step()
    notice = world.send_one(child)["body"]
    assert notice.startswith("⚠️ audit-notify could not deliver a notification") and "M_BAD_JSON" in notice


@pytest.mark.parametrize("error", [
    "E144: room_send failed with error 'RoomSendError: M_LIMIT_EXCEEDED Too Many Requests'.",
    "E145: Event send of file x failed. Sorry.",
    "E144: room_send failed with error 'RoomSendError: 502 Bad Gateway'.",
    "E144: room_send failed with error 'RoomSendError: M_FORBIDDEN You are not in this room'.",
])
def test_a_failure_that_is_not_about_the_notification_never_buries_it(world, error):
    world.add("keep me")
    child = world.started()
    for _ in range(3 * REFUSALS_TO_BURY):
        assert world.send_one(child)["body"] == "keep me"
        child.error("ERROR: matrix-commander: " + error)
        world.step()
        world.clock.now += 120
    assert world.counters.failed == 0 and spool_status(world.spool.path)["dead"] == 0
    assert world.waiting() == 1


def test_too_large_is_buried_at_once(world):
    world.add("huge", "next")
    child = world.started()
    world.send_one(child)
    child.error("ERROR: matrix-commander: E144: room_send failed with error 'RoomSendError: M_TOO_LARGE'.")
    world.step()
    assert world.counters.failed == 1
    world.clock.now += 1
    assert world.send_one(child)["body"] == "next"


def test_the_rate_cap_holds_the_next_message_back(tmp_path):
    world = World(tmp_path, cap=2)
    world.add("a", "b", "c")
    child = world.started()
    for name in ("a", "b"):
        assert world.send_one(child)["body"] == name
        child.ack("$" + name)
        world.step()
    assert world.sender.deadline() == world.clock.now + 60
    child.open_fifo()
    world.step()
    assert child.take() is None
    world.clock.now += 60
    assert world.send_one(child)["body"] == "c"


def test_no_acknowledgement_in_time_kills_it_and_tries_again(world):
    world.add("one")
    first = world.started()
    world.send_one(first)
    world.clock.now += world.config.send_timeout
    world.step()
    assert first.returncode == -9 and world.counters.retried == 1
    world.clock.now += BACKOFF_FIRST
    second = world.started()
    assert second is not first
    assert world.send_one(second)["body"] == "one"


def test_a_fifo_that_cannot_be_opened_restarts_matrix_commander_instead_of_raising(world):
    world.add("one")
    first = world.started()
    os.unlink(first.fifo)
    os.mkdir(first.fifo)  # not a FIFO any more: EISDIR, not ENXIO
    world.step()
    assert first.returncode == -9 and world.counters.retried == 0
    os.rmdir(first.fifo)
    world.clock.now += BACKOFF_FIRST
    second = world.started()
    assert world.send_one(second)["body"] == "one"


def test_a_reload_that_changes_the_room_replaces_matrix_commander_once_idle(world):
    from dataclasses import replace
    world.add("one")
    first = world.started()
    world.send_one(first)
    world.sender.configure(replace(world.config, room="#other:localhost"))
    world.step()
    assert first.returncode is None  # busy: not interrupted
    first.ack("$one")
    world.step()
    assert first.returncode == -15
    world.add("two")
    second = world.started()
    assert second.argv[second.argv.index("--room") + 1] == "#other:localhost"


def _note(body, severity="warning", key="", room="", mentions=()):
    return Notification(body=body, html=body, fields={}, timestamp=1.0, severity=severity, key=key, room=room,
                        mentions=mentions)


def test_critical_goes_first_and_past_the_rate_cap(tmp_path):
    """A queue full of routine and warnings never holds a critical message
    back: it leaves first, and the per-minute cap does not apply to it."""
    world = World(tmp_path, cap=1)
    for i in range(3):
        world.spool.add(_note("warning %d" % i))
    world.spool.add(_note("routine", severity="info"))
    world.spool.add(_note("critical", severity="critical"))
    world.spool.commit()
    child = world.started()
    assert world.send_one(child)["body"] == "critical"
    child.ack("$critical")
    world.step()
    world.clock.now += 60  # it counted: the next message waits for the cap
    assert world.send_one(child)["body"] == "warning 0"
    child.ack("$w0")
    world.step()
    world.spool.add(_note("critical again", severity="critical"))
    world.spool.commit()
    assert world.send_one(child)["body"] == "critical again"  # the cap is used up, yet it goes
    child.ack("$c2")
    world.step()
    child.open_fifo()
    world.step()
    assert child.take() is None  # the warnings wait for the cap


def test_a_newer_version_replaces_the_unsent_one_and_edits_the_sent_one(world):
    world.spool.add(_note("count: 1", key="repeat|x"))
    world.spool.add(_note("count: 2", key="repeat|x"))  # not sent yet: replaced in place
    world.spool.commit()
    child = world.started()
    first = world.send_one(child)
    assert first["body"] == "count: 2" and "m.relates_to" not in first
    child.ack("$first")
    world.step()
    world.spool.add(_note("count: 9", key="repeat|x", mentions=("@alice:example.org",)))
    world.spool.commit()
    edit = world.send_one(child)
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$first"}
    assert edit["m.new_content"]["body"] == "count: 9" and edit["body"] == "* count: 9"
    assert edit["m.mentions"] == {}  # an edit notifies nobody
    child.ack("$edit")
    world.step()
    assert world.waiting() == 0


def test_each_severity_goes_to_its_room_one_matrix_commander_at_a_time(world):
    world.spool.add(_note("to the room"))
    world.spool.add(_note("to the critical room", room="#critical:localhost"))
    world.spool.commit()
    first = world.started()
    assert first.argv[first.argv.index("--room") + 1] == "#audit:localhost"
    assert world.send_one(first)["body"] == "to the room"
    first.ack("$a")
    world.step()
    assert first.returncode == -15  # idle: replaced for the other room
    second = world.started()
    assert second.argv[second.argv.index("--room") + 1] == "#critical:localhost"
    assert [c for c in world.children if c.returncode is None] == [second]
    assert world.send_one(second)["body"] == "to the critical room"


def _playing(world, child, sent):
    """A wait() for Sender.stop that plays matrix-commander: it opens the
    FIFO, takes what was written and acknowledges it, as time passes."""
    def wait(fds, timeout):
        if child._reader is None:
            child.open_fifo()
        else:
            taken = child.take()
            if taken:
                sent.append(taken["content"]["body"])
                child.ack("$%d" % len(sent))
        world.clock.now += min(timeout, 1.0) if timeout else 0.01
        return select.select(fds, [], [], 0.01)[0] if fds else []
    return wait


def test_a_stop_sends_the_critical_messages_waiting_and_leaves_the_rest_for_the_next_start(tmp_path):
    """auditd stopping (perhaps by an intruder) is itself a critical
    message: it must leave before the plugin does; the warnings the rate
    cap holds back wait in the spool instead of delaying the stop."""
    world = World(tmp_path, cap=1)
    world.spool.add(_note("warning 0"))
    world.spool.add(_note("warning 1"))
    world.spool.commit()
    child = world.started()
    assert world.send_one(child)["body"] == "warning 0"
    child.ack("$w0")
    world.step()
    world.spool.add(_note("auditd stopped", severity="critical"))
    world.spool.commit()
    sent = []
    started = world.clock.now
    world.sender.stop(5.0, _playing(world, child, sent), drain=False)
    assert sent == ["auditd stopped"]
    assert world.waiting() == 1 and world.spool.peek().rank == 1  # warning 1, for the next start
    assert child.returncode is not None and world.clock.now - started < 5.0


def test_the_end_of_a_file_piped_by_hand_waits_for_the_whole_spool(tmp_path):
    world = World(tmp_path, cap=1)
    world.spool.add(_note("warning 0"))
    world.spool.add(_note("warning 1"))
    world.spool.commit()
    child = world.started()
    sent = []
    world.sender.stop(120.0, _playing(world, child, sent), drain=True)
    assert sent == ["warning 0", "warning 1"] and world.waiting() == 0
