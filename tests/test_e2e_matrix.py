"""End to end against a real homeserver: the plugin sends through the real
matrix-commander to a real Synapse on 127.0.0.1, and a matrix-nio client
receives and decrypts.  Marked ``matrix`` (and ``auditd`` where a real
auditd makes the events)."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from corpus import DATA, corpus, read
from matrix_env import matrix_world
from rig import SCRIPT, WAIT

pytestmark = pytest.mark.matrix
SSH = ("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")


class Plugin:
    """audit_notify.py configured for a MatrixWorld's bot and room."""

    def __init__(self, world, tmp_path, extra="digest_after = 0\nmax_messages_per_minute = 0\n"):
        self.dir = tmp_path / "plugin"
        for sub in ("state", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config = self.dir / "audit-notify.conf"
        self.log = self.dir / "log" / "audit-notify.log"
        self.config.write_text(
            "matrix_commander = %s\ncredentials = %s\nstore = %s\nroom = %s\nstate_dir = %s\n"
            "spool_dir = %s\nlog_file = %s\nuser = root\n%s" % (
                world.mc_binary, world.creds_path, world.store_dir, world.room_alias, self.dir / "state",
                self.dir / "spool", self.log, extra))

    def start(self):
        return subprocess.Popen([sys.executable, SCRIPT, "--config", str(self.config)], stdin=subprocess.PIPE)

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""

    def exit_line(self):
        lines = [line for line in self.log_text().splitlines() if "exiting:" in line]
        return lines[-1] if lines else ""


@pytest.fixture
def world(tmp_path):
    with matrix_world(tmp_path) as world:
        yield world


def test_notifications_arrive_encrypted_readable_and_inert(world, tmp_path):
    plugin = Plugin(world, tmp_path)
    process = plugin.start()
    process.communicate(read(corpus(*SSH)), timeout=WAIT * 4)
    assert process.returncode == 0
    # 11 failed-login records: 7 incidents (one per source and connection burst).
    messages = world.receiver.wait_for_messages(7, timeout=WAIT * 2)
    assert len(messages) == 7
    for message in messages:
        assert message["wire_type"] == "m.room.encrypted"
        assert message["algorithm"] == "m.megolm.v1.aes-sha2"
        assert message["decrypted"]
        assert message["sender"] == world.bot_mxid
        assert message["content"]["format"] == "org.matrix.custom.html"
        assert message["content"]["m.mentions"] == {}
        assert "<" not in message["body"]
    headlines = [m["body"].split("\n")[0] for m in messages]
    node = os.uname().nodename
    assert "⚠️❌ %s: Failed SSH login for root and a user unknown here from 173.242.116.187 (2 tries)" % node \
        in headlines
    html = [m["formatted_body"] for m in messages if "173.242.116.187" in m["body"]][0]
    assert ("<b><code>%s</code>: Failed SSH login for <code>root</code> and a user unknown here from "
            "<code>173.242.116.187</code>" % node) in html
    # Every record's event is in exactly one message.
    serials = [serial for m in messages for serial in re.findall(r"#(\d+)", m["body"].split("\n")[-1])]
    assert len(serials) == len(set(serials)) == 11
    assert "sent=7 retried=0 rate_limited=0 failed=0" in plugin.exit_line()


def shown(message):
    """The body a reader sees for a received event: an edit (m.replace)
    carries the new text in m.new_content."""
    return message["content"].get("m.new_content", message["content"]).get("body", message["body"])


def _collect_until(receiver, bodies, timeout):
    """Messages until every one of ``bodies`` has arrived (or timeout)."""
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and not set(bodies) <= {shown(m) for m in got}:
        got += receiver.wait_for_messages(1, timeout=max(0.1, end - time.monotonic()))
    return got + receiver.drain()


def _spooled_bodies(plugin):
    import sqlite3

    db = sqlite3.connect("file:%s?mode=ro" % (plugin.dir / "spool" / "spool.sqlite3"), uri=True)
    try:
        return [json.loads(row[0])["body"] for row in db.execute("SELECT content FROM outbox ORDER BY id")]
    finally:
        db.close()


def test_sigkill_mid_stream_loses_nothing_accepted(world, tmp_path):
    plugin = Plugin(world, tmp_path)
    process = plugin.start()
    process.stdin.write(read(os.path.join(DATA, "debian12-sample.log")))
    process.stdin.flush()
    before = world.receiver.wait_for_messages(5, timeout=WAIT * 2)  # some went out
    process.kill()
    process.wait()
    left = _spooled_bodies(plugin)
    assert left, "the kill came after everything was sent; nothing was tested"
    again = plugin.start()
    again.communicate(b"", timeout=WAIT * 4)
    assert again.returncode == 0
    after = _collect_until(world.receiver, left, WAIT * 2)
    bodies = [shown(m) for m in after]
    # Everything accepted arrives: what was delivered before the kill, plus
    # all that was in the spool.  At most the one in flight comes twice.
    # auditd's own stop (lifecycle.py) is the one message the next run
    # rewrites on purpose (it goes on with the stop it finds in the spool:
    # critical now, no start came): its later version stands for it.
    rewritten = [body for body in left if body.startswith("⚠️ vm: auditd stopped by root, waiting")]
    assert all(any(b.startswith("🚨 vm: auditd stopped by root") for b in bodies) for _ in rewritten), bodies
    missing = [body for body in left if body not in bodies and body not in rewritten]
    assert missing == [], (len(missing), len(left), len(bodies), missing[:2], bodies[:2])
    assert len(before) + len(after) - len(set(shown(m) for m in before + after)) <= 1
    assert "spooled=0" in plugin.exit_line()
