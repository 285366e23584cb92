"""The plugin as auditd runs it: a process reading stdin, sending through a
recording stand-in for matrix-commander, reacting to EOF and signals."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from corpus import DATA, audit_notify, corpus, read
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


def _exit_line(rig):
    lines = [l for l in rig.log_text().splitlines() if "exiting:" in l]
    return lines[-1] if lines else ""


def test_sends_each_event_once_through_one_matrix_commander_and_exits_0_at_eof(rig):
    rig.write_config("digest_after = 0\n")
    rig.blacklist.write_text("type=USER_ERR\n")
    plugin = rig.start()
    out, err = plugin.communicate(read(corpus(*SSH)), timeout=WAIT)
    assert plugin.returncode == 0, err
    calls = rig.calls()
    assert len(calls) == 9  # 11 events, 2 USER_ERR filtered
    fifo = "%s/state/run/events" % rig.dir
    for call in calls:
        # One process for all of them; no audit text in argv, only our FIFO's path.
        assert call["argv"] == [
            "--credentials", "%s/creds.json" % rig.dir, "--store", "%s/store" % rig.dir, "--log-level", "ERROR",
            "ERROR", "--print-event-id", "--room", "#audit:localhost", "--event"] + [fifo] * audit_notify.SENDER_SLOTS
        event = json.loads(call["event"])
        assert event["type"] == "m.room.message"
        assert event["content"]["format"] == "org.matrix.custom.html"
        assert event["content"]["m.mentions"] == {}
        assert call["home"] == "%s/state" % rig.dir
    assert len({c["argv"][-1] for c in calls}) == 1
    bodies = rig.bodies()
    assert sum(b.startswith("❌ Failed SSH login for root from 173.242.116.187") for b in bodies) == 1
    line = _exit_line(rig)
    assert "records=11 events=11 filtered=2 notified=9 digested=0 digests=0 sent=9 retried=0 rate_limited=0 failed=0" in line
    assert "spooled=0" in line and "events 11 = filtered 2 + sent alone 9 + digested 0" in line
    assert stat.S_IMODE(os.stat(rig.log).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(rig.dir / "spool").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(rig.dir / "spool" / "spool.sqlite3").st_mode) == 0o600


def test_digests_account_for_every_event(rig):
    rig.write_config("digest_after = 2\ndigest_window = 60\n")
    plugin = rig.start()
    sample = read(os.path.join(DATA, "debian12-sample.log"))
    plugin.communicate(sample, timeout=WAIT)
    line = _exit_line(rig)
    numbers = dict(re.findall(r"(\w+)=(\d+)", line.split(";")[0]))
    assert int(numbers["events"]) == int(numbers["filtered"]) + int(numbers["notified"]) + int(numbers["digested"])
    assert int(numbers["digested"]) > 0 and int(numbers["digests"]) > 0
    assert int(numbers["sent"]) == int(numbers["notified"]) + int(numbers["digests"]) == len(rig.calls())
    digested = sum(int(re.match(r"🔁 \+([\d,]+) more", b).group(1).replace(",", ""))
                   for b in rig.bodies() if b.startswith("🔁"))
    assert digested == int(numbers["digested"])


def test_an_outage_keeps_everything_spooled_and_retries(rig):
    rig.write_config("digest_after = 0\n")
    rig.mode("fail")
    plugin = rig.start()
    plugin.stdin.write(read(corpus("laurel", "src", "testdata", "record-login.txt")) +
                       read(corpus("laurel", "src", "testdata", "record-execve.txt")))
    plugin.stdin.flush()
    rig.wait_for(lambda: len(rig.calls()) >= 2, "two failed attempts")
    rig.mode("ok")
    plugin.stdin.close()  # EOF: deliver what is spooled, then exit
    assert plugin.wait(timeout=WAIT) == 0
    assert len(rig.bodies()) == 2
    log = rig.log_text()
    assert log.count("sending failed: ERROR: matrix-commander: E145") == 1  # once per outage, not per retry
    assert "delivery resumed after" in log
    assert "sent=2 retried=" in _exit_line(rig) and "spooled=0" in _exit_line(rig)


def test_a_hanging_matrix_commander_is_killed_and_the_event_retried(rig):
    rig.write_config("send_timeout = 1\n")
    rig.mode("hang")
    plugin = rig.start()
    plugin.stdin.write(read(corpus("laurel", "src", "testdata", "record-login.txt")))
    plugin.stdin.flush()
    rig.wait_for(lambda: "no acknowledgement within 1 s" in rig.log_text(), "the timeout")
    rig.mode("ok")
    plugin.stdin.close()
    assert plugin.wait(timeout=WAIT) == 0
    assert len(rig.bodies()) == 1
    assert "sent=1 retried=1" in _exit_line(rig)


def test_too_large_is_a_dead_letter_not_a_loop(rig):
    rig.write_config("digest_after = 0\n")
    rig.mode("toolarge")
    plugin = rig.start()
    plugin.communicate(read(corpus("laurel", "src", "testdata", "record-login.txt")), timeout=WAIT)
    assert len(rig.calls()) == 1
    assert "kept as a dead letter" in rig.log_text()
    status = subprocess.run([sys.executable, SCRIPT, "--config", str(rig.config), "--status"],
                            capture_output=True, text=True, timeout=WAIT)
    assert "dead letters: 1" in status.stdout and "spooled: 0 notifications" in status.stdout


def test_sigkill_loses_nothing_accepted(rig):
    """Killed mid-stream and started again on the same spool: every event
    that was accepted arrives, and no matrix-commander is left behind."""
    rig.write_config("digest_after = 0\n")
    rig.mode("hang")  # nothing gets acknowledged before the kill
    plugin = rig.start()
    plugin.stdin.write(read(corpus(*SSH)))
    plugin.stdin.flush()
    rig.wait_for(lambda: len(rig.calls()) == 1, "the first event in flight")
    status = subprocess.run([sys.executable, SCRIPT, "--config", str(rig.config), "--status"],
                            capture_output=True, text=True, timeout=WAIT)
    assert "spooled: 11 notifications" in status.stdout, status.stdout
    assert "plugin: pid %d, running" % plugin.pid in status.stdout
    plugin.kill()
    plugin.wait()
    rig.mode("ok")
    again = rig.start()
    again.communicate(b"", timeout=WAIT)
    assert again.returncode == 0
    delivered = rig.bodies()
    assert len(delivered) == 11 and len(set(delivered)) == 11
    assert "spooled=0" in _exit_line(rig)
    leftovers = subprocess.run(["pgrep", "-f", rig.mc], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_sigterm_finishes_and_exits_0(rig):
    plugin = rig.start()
    plugin.stdin.write(read(corpus(*SSH)))
    plugin.stdin.flush()
    rig.wait_for(lambda: len(rig.calls()) >= 1, "a first send")
    plugin.send_signal(signal.SIGTERM)
    assert plugin.wait(timeout=WAIT) == 0
    assert "exiting:" in rig.log_text()
    # What was not sent yet is still spooled for the next start.
    status = subprocess.run([sys.executable, SCRIPT, "--config", str(rig.config), "--status"],
                            capture_output=True, text=True, timeout=WAIT)
    sent = int(re.search(r"sent=(\d+)", _exit_line(rig)).group(1))
    assert "spooled: %d notifications" % (11 - sent) in status.stdout or sent == 11


def test_sighup_rereads_config_and_blacklist(rig):
    plugin = rig.start()
    login = read(corpus("laurel", "src", "testdata", "record-login.txt"))
    plugin.stdin.write(login)
    plugin.stdin.flush()
    rig.wait_for(lambda: len(rig.bodies()) == 1, "the first notification")
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
    assert len(rig.bodies()) == 1
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
    """A sink that keeps what it is given."""

    def __init__(self):
        self.sent = []

    def add(self, notification):
        self.sent.append(notification)

    def commit(self):
        pass


def test_idle_plugin_blocks_until_the_hourly_report():
    """No busy loop: with nothing pending, select() waits until the next
    hourly counters line; with an event waiting for its EOE, it gets the
    idle tick."""
    read_end, write_end = os.pipe()
    timeouts = []
    outlet = Recorder()
    plugin = audit_notify.Plugin(audit_notify.Config(), audit_notify.RuleSet(), audit_notify.import_auparse(),
                                 outlet, audit_notify.Counters(), wait=None, hostname="h", clock=lambda: 0.0)
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
    # The 0 is a peek for more input before committing the new notification.
    assert timeouts == [audit_notify.STATS_INTERVAL, audit_notify.IDLE_TICK, 0]
    assert [n.fields["key"] for n in outlet.sent] == ["k"]
    os.close(read_end)
