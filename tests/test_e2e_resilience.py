"""Never block auditd, never lose an event, never flood the room: a real
auditd makes the events, the plugin sends them through the real
matrix-commander to a real Synapse, and the homeserver is stopped, frozen,
or flooded on purpose.  Slow (minutes): they wait for real outages."""

import re
import subprocess
import time

import pytest
from auditd_env import auditd_unavailable_reason, private_auditd
from matrix_env import matrix_world
from rig import SCRIPT
from test_e2e_matrix import Plugin

_reason = auditd_unavailable_reason()
pytestmark = [pytest.mark.matrix, pytest.mark.auditd, pytest.mark.skipif(_reason is not None, reason=_reason or "")]


@pytest.fixture
def world(tmp_path):
    with matrix_world(tmp_path) as world:
        yield world


def _markers(messages, prefix):
    return [m.group(0) for m in (re.search(prefix + r"-\d+", msg["body"]) for msg in messages) if m]


def _collect(receiver, prefix, count, timeout):
    """Messages until ``count`` distinct markers have arrived."""
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(set(_markers(got, prefix))) < count:
        got += receiver.wait_for_messages(1, timeout=max(0.1, min(5, end - time.monotonic())))
    return got


def _wait(seconds, step=None):
    """Let real time pass (the outage itself), doing ``step`` each second."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if step:
            step()
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))


# The markers below are alike (auditctl -m by root): grouped, those after
# the first would be routine (known.py), counted and never sent, so these
# tests make every event a message of its own (group_events = no) to see
# each one arrive.
PER_EVENT = "group_events = no\n"


def test_homeserver_down_for_60_s_loses_nothing(world, tmp_path):
    plugin = Plugin(world, tmp_path, extra="digest_after = 0\nmax_messages_per_minute = 0\n" + PER_EVENT)
    sent = []

    with private_auditd(tmp_path, plugin_path=SCRIPT, plugin_args=("--config=%s" % plugin.config,)) as auditd:
        def emit():
            sent.append("an-down-%03d" % len(sent))
            auditd.user_message(sent[-1])

        for _ in range(3):
            emit()
        first = _collect(world.receiver, "an-down", 3, 60)
        assert len(set(_markers(first, "an-down"))) == 3
        world.homeserver.stop()
        _wait(60, emit)  # events keep coming while it is down
        world.homeserver.start()
        received = first + _collect(world.receiver, "an-down", len(sent) - 3, 180)
        report = auditd.state_report()
    assert sorted(set(_markers(received, "an-down"))) == sorted(sent)
    assert report["plugin queue overflow detected"] == "no"
    log = plugin.log_text()
    assert log.count("sending failed:") == 1 and "delivery resumed after" in log


def test_frozen_homeserver_hangs_nothing(world, tmp_path):
    plugin = Plugin(world, tmp_path,
                    extra="digest_after = 0\nmax_messages_per_minute = 0\nsend_timeout = 10\n" + PER_EVENT)
    sent = []

    def status_records():
        out = subprocess.run(["/usr/bin/python3", SCRIPT, "--config", str(plugin.config), "--status"],
                             capture_output=True, text=True).stdout
        found = re.search(r"records=(\d+)", out)
        return int(found.group(1)) if found else 0

    with private_auditd(tmp_path, plugin_path=SCRIPT, plugin_args=("--config=%s" % plugin.config,)) as auditd:
        def emit():
            sent.append("an-frozen-%03d" % len(sent))
            auditd.user_message(sent[-1])

        emit()
        first = _collect(world.receiver, "an-frozen", 1, 60)
        assert _markers(first, "an-frozen") == ["an-frozen-000"]
        world.homeserver.freeze()
        try:
            before = status_records()
            _wait(30, emit)
            # The plugin kept reading and spooling while the homeserver hung.
            assert status_records() >= before + 25
        finally:
            world.homeserver.thaw()
        received = first + _collect(world.receiver, "an-frozen", len(sent) - 1, 240)
        report = auditd.state_report()
    assert sorted(set(_markers(received, "an-frozen"))) == sorted(sent)
    assert report["plugin queue overflow detected"] == "no"


def _wait_for_exit(plugin, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not plugin.exit_line():
        time.sleep(0.1)
    return plugin.exit_line()


def _execs(log_text):
    """execve events of the flood rule in auditd's own log."""
    return sum(1 for line in log_text.split("\n") if line.startswith("type=SYSCALL") and 'key="an-flood"' in line)


def _final(messages, predicate):
    """Each message that satisfies predicate, as the room shows it last
    (after its edits), in the order the messages first came."""
    shown, order = {}, []
    for message in messages:
        content = message["content"]
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            if relates.get("event_id") in shown:
                shown[relates["event_id"]] = content["m.new_content"]["body"]
            continue
        if predicate(message["body"]):
            shown[message["event_id"]] = message["body"]
            order.append(message["event_id"])
    return [shown[event_id] for event_id in order]


def test_a_flood_of_20000_commands_is_one_count_and_capped(world, tmp_path):
    """20,000 runs of one program: a few messages, then one count edited as
    it climbs, never more than the cap a minute.  The program lives under
    /tmp, which makes each run critical (and critical skips the cap); the
    admin's severity line makes this flood a warning.  Each run is a
    message of its own (group_events = no): grouped, alike warnings after
    the first are routine (known.py), and nothing would be counted or held
    by the cap."""
    cap, after = 10, 15
    blacklist = tmp_path / "blacklist"
    blacklist.write_text("warning: key=an-flood\n")
    plugin = Plugin(world, tmp_path, extra="digest_after = %d\ndigest_window = 60\nmax_messages_per_minute = %d\n"
                    "blacklist = %s\ngroup_events = no\n" % (after, cap, blacklist))
    true = tmp_path / "an-flood-true"
    subprocess.run(["cp", "/bin/true", str(true)], check=True)
    rule = "-a always,exit -F arch=b64 -S execve -F path=%s -k an-flood" % true
    ours = lambda body: str(true) in body.split("\n")[0]  # noqa: E731
    with private_auditd(tmp_path, plugin_path=SCRIPT, plugin_args=("--config=%s" % plugin.config,),
                        rules=[rule]) as auditd:
        subprocess.run(["/bin/sh", "-c", 'i=0; while [ $i -lt 20000 ]; do %s; i=$((i+1)); done' % true], check=True)
        kernel_events = auditd.wait_for(lambda text: _execs(text) >= 20000 and text, timeout=120)
        report = auditd.state_report()
        counts = []
        end = time.monotonic() + 400
        received = []
        while time.monotonic() < end and not (counts and counts[0].split("\n")[1].endswith("quiet again")):
            received += world.receiver.wait_for_messages(1, timeout=5)
            counts = _final(received, lambda body: body.startswith("⚠️ 🔁 ") and ours(body))
    execs = _execs(kernel_events)
    assert report["plugin queue overflow detected"] == "no"
    alone = _final(received, lambda body: body.startswith("⚠️ ") and not body.startswith("⚠️ 🔁") and ours(body))
    assert len(alone) == after and len(counts) == 1, (alone, counts)
    folded = int(re.match(r"⚠️ 🔁 ([\d,]+) more time", counts[0]).group(1).replace(",", ""))
    assert len(alone) + folded == execs == 20000
    # The plugin accounts for every event it read.
    line = _wait_for_exit(plugin)
    assert line, "the plugin logged no exit line:\n" + plugin.log_text()[-3000:]
    numbers = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.split(";")[0])}
    assert numbers["events"] == numbers["filtered"] + numbers["notified"] + numbers["digested"] + numbers["routine"]
    assert numbers["digested"] == folded
    # Never more than the cap in any minute, by the homeserver's own clock
    # (edits included: each is a message to the homeserver); critical ones
    # (auditd stopping at the end) are never held back by it.
    stamps = sorted(m["origin_server_ts"] / 1000.0 for m in received if "🚨" not in m["body"][:4])
    assert max(sum(1 for t in stamps if start <= t < start + 60) for start in stamps) <= cap
