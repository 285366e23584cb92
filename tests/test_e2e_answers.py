"""Answering from the room, against the real Synapse: the person on call
reacts to an alert as a client does (matrix-nio's room_send of an
m.reaction, or a plain client-server PUT for a second person), and the
plugin, reading the room over the client-server API, acknowledges, mutes
and announces again.  Marked ``matrix``.  Every wait polls, bounded."""

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid

import nio
import pytest
from matrix_env import _http_json, matrix_world
from records import Clock, config_change, syscall
from rig import SCRIPT, WAIT
from test_e2e_matrix import Plugin as MatrixPlugin

pytestmark = pytest.mark.matrix
ALICE = "@alice:localhost"


class Plugin(MatrixPlugin):
    """audit_notify.py on a MatrixWorld's bot and room (test_e2e_matrix's),
    with alice to mention and answer, fed by a pipe."""

    def __init__(self, world, tmp_path, extra=""):
        super().__init__(world, tmp_path, extra="digest_after = 0\nmax_messages_per_minute = 0\nmention = %s\n%s"
                         % (ALICE, extra))
        self.process = None

    def start(self):
        self.process = subprocess.Popen([sys.executable, SCRIPT, "--config", str(self.config)],
                                        stdin=subprocess.PIPE)
        return self

    def feed(self, text):
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def finish(self):
        self.process.stdin.close()
        assert self.process.wait(timeout=WAIT * 2) == 0

    def wait_log(self, text, timeout=WAIT):
        end = time.monotonic() + timeout
        while text not in self.log_text():
            assert time.monotonic() < end, "not in the log within %s s: %r" % (timeout, text)
            time.sleep(0.2)

    def mutes(self):
        return subprocess.run([sys.executable, SCRIPT, "mutes", "--config", str(self.config)],
                              capture_output=True, text=True, check=True).stdout


class Events:
    """Audit records of a critical action (a shell appending to
    /etc/sudoers), stamped now, each time a new event of the same shape."""

    def __init__(self):
        self.clock = Clock(start=time.time(), serial=int(time.time()) % 100000 * 10)

    def critical(self, target="/etc/sudoers"):
        self.clock.now = max(self.clock.now, time.time())
        return syscall("execve", exe="/usr/bin/dash", argv=("sh", "-c", "echo x >> %s" % target), uid="0",
                       pid=4000 + self.clock.serial % 1000, stamp=self.clock.stamp(0.01))

    def tampering(self):
        self.clock.now = max(self.clock.now, time.time())
        return config_change("op=remove_rule key=\"identity\" list=4", stamp=self.clock.stamp(0.01))


def shown(message):
    return message["content"].get("m.new_content", message["content"]).get("body", message["body"]) or ""


def wait_for(receiver, test, timeout=WAIT):
    """The first message that passes ``test`` (others are kept in seen)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for message in receiver.wait_for_messages(1, timeout=max(0.1, end - time.monotonic())):
            receiver.seen.append(message)
            if test(message):
                return message
    raise AssertionError("no such message within %s s; got: %r" % (timeout, [shown(m) for m in receiver.seen]))


def first_line(text):
    return lambda m: "m.relates_to" not in m["content"] and text in shown(m).split("\n")[0]


def edit_of(event_id, text):
    return lambda m: (m["content"].get("m.relates_to", {}).get("event_id") == event_id
                      and text in shown(m))


def react(world, event_id, key):
    """alice reacts as her client does (matrix-nio sends m.reaction in the clear)."""
    receiver = world.receiver
    answer = receiver._run(receiver.client.room_send(
        world.room_id, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id,
                                                       "key": key}}, ignore_unverified_devices=True))
    assert isinstance(answer, nio.RoomSendResponse), answer
    return answer.event_id


def unreact(world, reaction_id):
    answer = world.receiver._run(world.receiver.client.room_redact(world.room_id, reaction_id))
    assert isinstance(answer, nio.RoomRedactResponse), answer


def second_person(world):
    """carol: in the room, not a responder; reacts with a plain client-server PUT."""
    carol = world.homeserver.register("carol", "carol-pw")
    world.receiver._run(world.receiver.client.room_invite(world.room_id, carol["user_id"]))
    _http_json("%s/_matrix/client/v3/join/%s" % (world.homeserver.url, world.room_id), {},
               token=carol["access_token"])

    def react_as_carol(event_id, key):
        url = "%s/_matrix/client/v3/rooms/%s/send/m.reaction/%s" % (world.homeserver.url, world.room_id,
                                                                    uuid.uuid4().hex)
        body = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT", headers={
            "Authorization": "Bearer " + carol["access_token"], "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    return react_as_carol


@pytest.fixture
def world(tmp_path):
    with matrix_world(tmp_path) as world:
        world.receiver.seen = []
        yield world


def test_mute_holds_back_the_next_and_counts_it_others_cannot_mute(world, tmp_path):
    carol_reacts = second_person(world)
    plugin = Plugin(world, tmp_path).start()
    events = Events()
    receiver = world.receiver
    plugin.feed(events.critical())
    first = wait_for(receiver, first_line("/etc/sudoers"))
    # Someone who is not a responder mutes: ignored, logged, nothing changes.
    carol_reacts(first["event_id"], "🔕")
    plugin.wait_log("by @carol:localhost on")
    plugin.feed(events.critical())
    second = wait_for(receiver, first_line("/etc/sudoers"))  # the control: a repeat is sent
    assert second["event_id"] != first["event_id"]
    # The watcher's alarms cannot be muted: a 🔕 on "audit rules deleted" is refused.
    plugin.feed(events.tampering())
    alarm = wait_for(receiver, first_line("identity"))
    react(world, alarm["event_id"], "🔕")
    plugin.wait_log("never muted")
    # A responder mutes: the message says so, and the next is held back.
    react(world, second["event_id"], "🔕")
    wait_for(receiver, edit_of(second["event_id"], "muted by %s until" % ALICE))
    assert "muted by" not in shown(second)
    plugin.feed(events.critical())
    plugin.feed(events.tampering())  # sent after the muted one would have been
    wait_for(receiver, first_line("identity"))
    plugin.finish()
    rest = receiver.drain()
    receiver.seen += rest
    criticals = [m for m in receiver.seen if first_line("/etc/sudoers")(m)]
    assert len(criticals) == 2, [shown(m) for m in criticals]
    summaries = [shown(m) for m in receiver.seen if "Routine" in shown(m).split("\n")[0]]
    assert summaries and "1 muted: " in summaries[-1] and "(critical)" in summaries[-1], summaries
    assert "1 time since" in summaries[-1]
    assert "mute 1:" in plugin.mutes()


def test_acknowledge_edits_and_an_unacknowledged_critical_is_announced_again(world, tmp_path):
    plugin = Plugin(world, tmp_path, "reannounce = 20s\nreannounce_times = 1\n").start()
    events = Events()
    receiver = world.receiver
    plugin.feed(events.critical("/etc/sudoers"))
    acked = wait_for(receiver, first_line("/etc/sudoers"))
    plugin.feed(events.critical("/etc/shadow"))
    ignored = wait_for(receiver, first_line("/etc/shadow"))
    started = time.monotonic()
    react(world, acked["event_id"], "✅")
    edit = wait_for(receiver, edit_of(acked["event_id"], "acknowledged by %s at" % ALICE))
    assert time.monotonic() - started < 30
    assert shown(edit).startswith("🚨 ")  # the severity mark kept
    again = wait_for(receiver, lambda m: m["content"].get("m.relates_to", {}).get("m.in_reply_to"), timeout=WAIT * 2)
    assert again["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == ignored["event_id"]
    assert again["content"]["m.mentions"] == {"user_ids": [ALICE]}
    assert "not acknowledged yet" in again["body"] and "/etc/shadow" in again["body"]
    plugin.finish()
    receiver.seen += receiver.drain()
    replies = [m for m in receiver.seen if m["content"].get("m.relates_to", {}).get("m.in_reply_to")]
    assert len(replies) == 1  # the acknowledged one is not announced again, the other only once


def test_a_mute_survives_sigkill_and_restart_then_expires(world, tmp_path):
    plugin = Plugin(world, tmp_path, "mute = 40s\n").start()
    events = Events()
    receiver = world.receiver
    plugin.feed(events.critical())
    first = wait_for(receiver, first_line("/etc/sudoers"))
    reaction = react(world, first["event_id"], "🔕")
    wait_for(receiver, edit_of(first["event_id"], "muted by"))
    plugin.process.kill()
    plugin.process.wait()
    plugin.start()
    plugin.feed(events.critical())
    plugin.feed(events.critical("/etc/shadow"))  # sent after the muted one would have been
    wait_for(receiver, first_line("/etc/shadow"))
    assert [m for m in receiver.seen if first_line("/etc/sudoers")(m)] == [first]
    assert "1 held back" in plugin.mutes()
    end = time.monotonic() + WAIT * 2
    while "mutes: none" not in plugin.mutes():
        assert time.monotonic() < end, "the mute did not expire"
        time.sleep(0.5)
    plugin.feed(events.critical())
    after = wait_for(receiver, first_line("/etc/sudoers"))
    assert "was muted by %s" % ALICE in shown(after) and "happened 1 time meanwhile" in shown(after)
    unreact(world, reaction)  # an expired mute's 🔕 removed: nothing to end, nothing breaks
    plugin.finish()
