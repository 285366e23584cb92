"""The plugin as auditd runs it: a process reading stdin, sending through a
recording stand-in for matrix-commander, reacting to EOF and signals."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from corpus import audit_notify, corpus, read
from rig import SCRIPT, WAIT, Rig

SSH = ("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def test_dry_run_prints_one_notification_per_event():
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run", corpus(*SSH)], capture_output=True, text=True,
                         timeout=WAIT)
    assert out.returncode == 0, out.stderr
    headlines = [block.split("\n")[0] for block in out.stdout.strip().split("\n\n")]
    assert len(headlines) == 11
    assert sum(h.startswith("❌ Failed SSH login") for h in headlines) == 6


def test_dry_run_json_lines(tmp_path):
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--json", corpus(*SSH)], capture_output=True,
                         text=True, timeout=WAIT)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 11
    assert all(set(line) == {"body", "formatted_body", "fields"} for line in lines)
    assert lines[0]["fields"]["type"] == "USER_LOGIN"


def test_dry_run_reads_stdin_too():
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run"], input=read(corpus(*SSH)), capture_output=True,
                         timeout=WAIT)
    assert out.returncode == 0
    assert out.stdout.decode().count("Failed SSH login") == 6


def test_sends_each_event_once_and_exits_0_at_eof(rig):
    rig.blacklist.write_text("type=USER_ERR\n")
    plugin = rig.start()
    out, err = plugin.communicate(read(corpus(*SSH)), timeout=WAIT)
    assert plugin.returncode == 0, err
    calls = rig.calls()
    assert len(calls) == 9  # 11 events, 2 USER_ERR filtered
    for call in calls:
        # No audit text in argv; the event arrives whole on the child's own stdin.
        assert call["argv"] == [rig.mc.replace(rig.mc, "")] * 0 + [
            "--credentials", "%s/creds.json" % rig.dir, "--store", "%s/store" % rig.dir, "--log-level", "ERROR",
            "ERROR", "--print-event-id", "--room", "#audit:localhost", "--event", "-"]
        event = json.loads(call["stdin"])
        assert event["type"] == "m.room.message"
        assert event["content"]["format"] == "org.matrix.custom.html"
        assert event["content"]["m.mentions"] == {}
        assert call["home"] == "%s/state" % rig.dir
    bodies = [json.loads(c["stdin"])["content"]["body"] for c in calls]
    assert sum(b.startswith("❌ Failed SSH login for root from 173.242.116.187") for b in bodies) == 1
    assert "exiting: records=11 events=11 filtered=2 sent=9 failed=0" in rig.log_text()
    assert stat.S_IMODE(os.stat(rig.log).st_mode) == 0o600


def test_failed_sends_are_counted_and_logged_and_the_plugin_goes_on(rig):
    rig.mode("fail")
    plugin = rig.start()
    plugin.communicate(read(corpus("laurel", "src", "testdata", "record-login.txt")) +
                       read(corpus("laurel", "src", "testdata", "record-execve.txt")), timeout=WAIT)
    assert plugin.returncode == 0
    assert len(rig.calls()) == 2
    assert rig.log_text().count("E219: could not reach the homeserver") == 2
    assert "sent=0 failed=2" in rig.log_text()


def test_a_hanging_matrix_commander_is_killed_after_send_timeout(rig):
    rig.write_config("send_timeout = 1\n")
    rig.mode("hang")
    plugin = rig.start()
    started = time.monotonic()
    plugin.communicate(read(corpus("laurel", "src", "testdata", "record-login.txt")), timeout=WAIT)
    assert plugin.returncode == 0
    assert time.monotonic() - started < 15
    assert "timed out after 1 s" in rig.log_text()
    assert "failed=1" in rig.log_text()


def test_sigterm_finishes_and_exits_0(rig):
    plugin = rig.start()
    plugin.stdin.write(read(corpus(*SSH)))
    plugin.stdin.flush()
    rig.wait_for(lambda: len(rig.calls()) >= 1, "a first send")
    plugin.send_signal(signal.SIGTERM)
    assert plugin.wait(timeout=WAIT) == 0
    assert "exiting:" in rig.log_text()


def test_sighup_rereads_config_and_blacklist(rig):
    plugin = rig.start()
    login = read(corpus("laurel", "src", "testdata", "record-login.txt"))
    plugin.stdin.write(login)
    plugin.stdin.flush()
    rig.wait_for(lambda: len(rig.calls()) == 1, "the first notification")
    rig.blacklist.write_text("type LOGIN\n")
    plugin.send_signal(signal.SIGHUP)
    rig.wait_for(lambda: "reloaded" in rig.log_text(), "the reload")
    plugin.stdin.write(login.replace(b":151316)", b":151317)"))
    plugin.stdin.flush()
    # A bad blacklist on the next reload keeps the good one, and says why.
    rig.blacklist.write_text("type LOGIN\nbroken=\n")
    plugin.send_signal(signal.SIGHUP)
    rig.wait_for(lambda: "reload failed" in rig.log_text(), "the failed reload")
    plugin.stdin.write(login.replace(b":151316)", b":151318)"))
    plugin.stdin.close()
    assert plugin.wait(timeout=WAIT) == 0
    assert len(rig.calls()) == 1
    assert "%s:2: expected field=value" % rig.blacklist in rig.log_text()
    assert "filtered=2" in rig.log_text()


def test_bad_config_is_a_clear_error_at_startup(rig, tmp_path):
    rig.config.write_text("room = #a:b\nsend_timeout = never\n")
    out = subprocess.run([sys.executable, SCRIPT, "--config", str(rig.config)], input=b"", capture_output=True,
                         timeout=WAIT)
    assert out.returncode == 1
    assert ("%s:2: bad value for send_timeout" % rig.config).encode() in out.stderr


def test_log_file_in_a_world_writable_directory_is_refused(rig, tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    os.chmod(public, 0o1777)
    rig.config.write_text(rig.config.read_text().replace(str(rig.log), str(public / "x.log")))
    out = subprocess.run([sys.executable, SCRIPT, "--config", str(rig.config)], input=b"", capture_output=True,
                         timeout=WAIT)
    assert out.returncode == 1
    assert b"writable by everyone" in out.stderr
    assert not (public / "x.log").exists()


# --- the loop itself, with an injected wait ---------------------------------

class Recorder:
    def __init__(self):
        self.sent = []

    def submit(self, notification):
        self.sent.append(notification)

    def fds(self):
        return []

    def deadline(self):
        return None

    def step(self, readable=()):
        pass

    def stop(self, seconds, wait):
        pass


def test_idle_plugin_blocks_without_a_timeout():
    """No busy loop: with nothing pending, select() gets no timeout at all;
    with an event waiting for its EOE, it gets the idle tick."""
    read_end, write_end = os.pipe()
    timeouts = []
    outlet = Recorder()
    plugin = audit_notify.Plugin(audit_notify.Config(), audit_notify.RuleSet(), audit_notify.import_auparse(),
                                 outlet, audit_notify.Counters(), wait=None, hostname="h")
    script = [
        b"type=SYSCALL msg=audit(1000.000:5): arch=c000003e syscall=59 success=yes exit=0 items=0 ppid=1 pid=2 "
        b"auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"id\" "
        b"exe=\"/usr/bin/id\" key=\"k\"\n",
        None,   # idle tick: the event without EOE comes out
        b"",    # EOF
    ]

    def wait(fds, timeout):
        timeouts.append(timeout)
        chunk = script.pop(0)
        if chunk is None:
            return []
        if chunk:
            os.write(write_end, chunk)
        else:
            os.close(write_end)
        return [read_end]

    plugin._wait = wait
    assert plugin.run(read_end) is True
    assert timeouts == [None, audit_notify.IDLE_TICK, None]
    assert [n.fields["key"] for n in outlet.sent] == ["k"]
    os.close(read_end)
