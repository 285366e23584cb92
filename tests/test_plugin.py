"""The plugin as auditd runs it: a process reading stdin, sending through a
recording stand-in for matrix-commander, reacting to EOF and signals."""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys

import pytest
from corpus import DATA, corpus, read
from rig import SCRIPT, WAIT, Rig

from audit_notify.sender import SENDER_SLOTS

SSH = ("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")
HOST = socket.gethostname()  # the node a record without node= comes from: first in every headline


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def test_dry_run_prints_one_message_per_action():
    """The corpus's 11 events: failed logins from five sources and their
    PAM records, one message per source (the tries counted in it)."""
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run", corpus(*SSH)], capture_output=True, text=True,
                         timeout=WAIT)
    assert out.returncode == 0, out.stderr
    headlines = [block.split("\n")[0] for block in out.stdout.strip().split("\n\n")]
    failed = [h for h in headlines if h.startswith("⚠️❌ %s: Failed SSH login for " % HOST)]
    assert failed and len(failed) == len(headlines) < 11
    # One per source, or more where a source came back days later.
    assert len({re.search(r" from (\S+)", h).group(1) for h in failed}) == 5
    assert "events 11 = filtered 0 + in %d messages 11 + repeats 0 + routine 0" % len(headlines) in out.stderr


def test_dry_run_one_message_per_event_when_asked(tmp_path):
    config = tmp_path / "per-event.conf"
    config.write_text("group_events = no\ndigest_after = 0\n")
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--config", str(config), corpus(*SSH)],
                         capture_output=True, text=True, timeout=WAIT)
    headlines = [block.split("\n")[0] for block in out.stdout.strip().split("\n\n")]
    assert len(headlines) == 11
    assert sum(h.startswith("⚠️❌ %s: Failed SSH login" % HOST) for h in headlines) == 6


def test_dry_run_json_lines(tmp_path):
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--json", corpus(*SSH)], capture_output=True,
                         text=True, timeout=WAIT)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines and all(set(line) == {"body", "formatted_body", "fields", "severity", "kind", "key", "edit",
                                       "serials"} for line in lines)
    assert {line["severity"] for line in lines} <= {"critical", "warning", "info"}
    final = {line["key"]: line for line in lines}  # the last version of each message
    assert sum(len(line["serials"]) for line in final.values()) == 11  # every event, in one message each
    assert lines[0]["fields"]["type"] in ("USER_LOGIN", "USER_AUTH", "USER_ACCT")


def test_dry_run_reads_stdin_too():
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run"], input=read(corpus(*SSH)), capture_output=True,
                         timeout=WAIT)
    assert out.returncode == 0
    assert out.stdout.decode().count("Failed SSH login") >= 3


def _exit_line(rig):
    lines = [l for l in rig.log_text().splitlines() if "exiting:" in l]
    return lines[-1] if lines else ""


def test_sends_each_event_once_through_one_matrix_commander_and_exits_0_at_eof(rig):
    rig.write_config("digest_after = 0\ngroup_events = no\n")
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
            "ERROR", "--print-event-id", "--room", "#audit:localhost", "--event"] + [fifo] * SENDER_SLOTS
        event = json.loads(call["event"])
        assert event["type"] == "m.room.message"
        assert event["content"]["format"] == "org.matrix.custom.html"
        assert event["content"]["m.mentions"] == {}
        assert call["home"] == "%s/state" % rig.dir
    assert len({c["argv"][-1] for c in calls}) == 1
    bodies = rig.bodies()
    assert sum(b.startswith("⚠️❌ %s: Failed SSH login for root from 173.242.116.187" % HOST) for b in bodies) == 1
    line = _exit_line(rig)
    assert ("records=11 events=11 filtered=2 incidents=9 notified=9 digested=0 digests=0 routine=0 sent=9 retried=0 "
            "rate_limited=0 failed=0") in line
    assert "spooled=0" in line and "events 11 = filtered 2 + in 9 messages 9 + repeats 0 + routine 0" in line
    assert stat.S_IMODE(os.stat(rig.log).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(rig.dir / "spool").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(rig.dir / "spool" / "spool.sqlite3").st_mode) == 0o600


def test_every_event_is_accounted_for(rig):
    rig.write_config("digest_after = 2\ndigest_window = 60\n")
    plugin = rig.start()
    sample = read(os.path.join(DATA, "debian12-sample.log"))
    plugin.communicate(sample, timeout=WAIT)
    line = _exit_line(rig)
    numbers = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.split(";")[0])}
    assert numbers["events"] == numbers["filtered"] + numbers["notified"] + numbers["digested"] + numbers["routine"]
    assert numbers["events"] > 300 and numbers["routine"] > 0
    # Every message went out once; a message edited went out again as an edit.
    calls = rig.calls()
    assert numbers["sent"] == len(calls) and numbers["incidents"] <= len(calls) < 60


def test_an_outage_keeps_everything_spooled_and_retries(rig):
    rig.write_config("digest_after = 0\ngroup_events = no\n")
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
    # A critical event: out CRITICAL_HOLD after it, in its host's time,
    # which goes on by the wall clock while the host is quiet.
    plugin.stdin.write(read(corpus("laurel", "src", "testdata", "record-ptrace.txt")))
    plugin.stdin.flush()
    rig.wait_for(lambda: "no acknowledgement within 1 s" in rig.log_text(), "the timeout")
    rig.mode("ok")
    plugin.stdin.close()
    assert plugin.wait(timeout=WAIT) == 0
    assert len(rig.bodies()) == 1
    assert "sent=1 retried=1" in _exit_line(rig)


def test_too_large_is_a_dead_letter_not_a_loop(rig):
    rig.write_config("digest_after = 0\ngroup_events = no\n")
    rig.mode("toolarge")
    plugin = rig.start()
    plugin.communicate(read(corpus("laurel", "src", "testdata", "record-login.txt")), timeout=WAIT)
    # The event, then the notice that takes its place (refused as well
    # here, where everything is too large: buried without a notice of its own).
    calls = [json.loads(c["event"])["content"]["body"] for c in rig.calls()]
    assert len(calls) == 2 and calls[1].startswith("⚠️ audit-notify could not deliver a notification"), calls
    assert "kept as a dead letter" in rig.log_text()
    status = subprocess.run([sys.executable, SCRIPT, "--config", str(rig.config), "--status"],
                            capture_output=True, text=True, timeout=WAIT)
    assert "dead letters: 2" in status.stdout and "spooled: 0 notifications" in status.stdout


def test_sigkill_loses_nothing_accepted(rig):
    """Killed mid-stream and started again on the same spool: every event
    that was accepted arrives, and no matrix-commander is left behind."""
    rig.write_config("digest_after = 0\ngroup_events = no\n")
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
    # The 11 events, and one word that the plugin had been killed.
    [restarted] = [b for b in delivered if b.startswith("⚠️ audit-notify restarted on ")]
    assert "was killed or crashed" in restarted and "11 notifications were waiting" in restarted, restarted
    delivered.remove(restarted)
    assert len(delivered) == 11 and len(set(delivered)) == 11
    assert "spooled=0" in _exit_line(rig)
    # A clean stop is not news: the next start says nothing.
    calls = len(rig.calls())
    third = rig.start()
    third.communicate(b"", timeout=WAIT)
    assert len(rig.calls()) == calls
    leftovers = subprocess.run(["pgrep", "-f", rig.mc], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_sigterm_finishes_and_exits_0(rig):
    rig.write_config("group_events = no\n")
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
    ptrace = read(corpus("laurel", "src", "testdata", "record-ptrace.txt"))  # critical: out within a second
    plugin.stdin.write(ptrace)
    plugin.stdin.flush()
    rig.wait_for(lambda: len(rig.bodies()) == 1, "the first notification")
    rig.blacklist.write_text("comm strace\n")
    plugin.send_signal(signal.SIGHUP)
    rig.wait_for(lambda: "reloaded" in rig.log_text(), "the reload")
    plugin.stdin.write(ptrace.replace(b":22145057)", b":22145058)"))
    plugin.stdin.flush()
    # A bad blacklist on the next reload keeps the good one, and says why.
    rig.blacklist.write_text("comm strace\nbroken=\n")
    plugin.send_signal(signal.SIGHUP)
    rig.wait_for(lambda: "reload failed" in rig.log_text(), "the failed reload")
    plugin.stdin.write(ptrace.replace(b":22145057)", b":22145059)"))
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


def test_a_new_instance_takes_over_sending_when_the_old_one_exits(rig):
    """auditd restarted: the old instance still holds the spool (a send in
    flight, a drain); the new one spools, and sends everything, its own
    and the old one's, once the old one has exited."""
    rig.write_config("digest_after = 0\ngroup_events = no\n")
    rig.mode("hang")
    old = rig.start()
    old.stdin.write(read(corpus(*SSH)))
    old.stdin.flush()
    rig.wait_for(lambda: len(rig.calls()) == 1, "the old instance's first send")
    new = rig.start()
    new.stdin.write(read(corpus("laurel", "src", "testdata", "record-login.txt")))
    new.stdin.flush()
    rig.wait_for(lambda: "holds the spool: this one spools, and sends once that one exits" in rig.log_text(),
                 "the new instance to start as a non-sender")
    rig.mode("ok")
    old.send_signal(signal.SIGTERM)
    old.wait(timeout=WAIT)
    rig.wait_for(lambda: "took over sending" in rig.log_text(), "the takeover")
    rig.wait_for(lambda: len(rig.bodies()) == 12, "all 11 + 1 notifications")
    assert new.poll() is None  # still running, still reading
    new.communicate(b"", timeout=WAIT)
    assert new.returncode == 0
    bodies = rig.bodies()
    assert len(bodies) == len(set(bodies)) == 12


def test_a_read_error_is_not_taken_for_eof(rig):
    """A broken stdin is an error (exit 1, no two-minute drain), not a
    person's ausearch pipe ending.  auditd's end of the socketpair closing
    with data of ours unread makes our next read fail: ECONNRESET."""
    auditd_end, plugin_end = socket.socketpair()
    plugin = subprocess.Popen([sys.executable, SCRIPT, "--config", str(rig.config)], stdin=plugin_end,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plugin_end.send(b"never read by auditd")
    plugin_end.close()
    rig.wait_for(lambda: "started:" in rig.log_text(), "the start")
    auditd_end.close()
    assert plugin.wait(timeout=WAIT) == 1
    assert "reading audit records failed: [Errno 104] Connection reset by peer; stopping" in rig.log_text()
    assert "exiting:" in rig.log_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a private mount namespace")
def test_without_a_syslog_socket_the_log_goes_to_a_file(tmp_path):
    """No /dev/log (containers, minimal VMs; this VM too): the log, and the
    reason the plugin will not start, go to /var/log/audit-notify.log
    (a private tmpfs here).  Where the host has a /dev/log, a regular file
    is mounted over it: a dead syslog, with the same outcome."""
    bad = tmp_path / "bad.conf"
    bad.write_text("no_such_key = 1\n")
    dead = tmp_path / "dead-syslog"
    dead.write_text("")
    hide = "mount --bind %s /dev/log && " % dead if os.path.exists("/dev/log") else ""  # a dead syslog
    script = ("mount -t tmpfs -o mode=755 tmpfs /var/log && %s%s %s --config %s < /dev/null 2>/dev/null; echo \"exit=$?\"; "
              "cat /var/log/audit-notify.log" % (hide, sys.executable, SCRIPT, bad))
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=WAIT)
    assert "exit=1" in out.stdout, out.stderr
    assert re.search(r"audit-notify\[\d+\]: ERROR not started: %s:1: unknown key 'no_such_key'" % re.escape(str(bad)),
                     out.stdout), out.stdout
