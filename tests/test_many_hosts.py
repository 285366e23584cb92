"""Many hosts: auditd's own remote logging aggregates a fleet, and the plugin
on the aggregating auditd names each event's origin host.

On one machine: an aggregating auditd (``local_events = no``, listening on a
TCP port) runs audit_notify.py as its plugin, and the kernel-holding auditd
(``name_format = user``, ``name = web1-sender``) forwards its records to it
with ``audisp-remote`` (Debian: apt-get install audispd-plugins).  Events
made on the sender must reach the room labelled "web1-sender: …", never with
this machine's own name.

Facts measured here (auditd 3.0.9, Debian 12):

* Forwarded records arrive at the aggregator's plugin exactly as the sender
  formatted them, ``node=web1-sender type=... msg=audit(...)``, RAW or
  ENRICHED as the *sender's* log_format says; the aggregator neither adds
  nor strips a ``node=`` (its own name_format only applies to its own
  records: DAEMON_START, DAEMON_ACCEPT, DAEMON_CLOSE, DAEMON_END).
* audisp-remote strips EOE records, so the plugin never sees an event's
  end marker.  auparse still ends a syscall event at its PROCTITLE record
  and knows one-record types (USER_*, DAEMON_*, ...); anything else ends
  at the next record of another event, or by eoe_timeout on an idle tick.
* The aggregator's plugin only sees network records with
  ``distribute_network = yes`` (auditd's default is no: they are logged,
  not dispatched).
* Forwarding adds a few ms: kernel time stamp to the aggregator's log
  ~9 ms (median; the local log ~6 ms), to the stand-in for matrix-commander
  ~125 ms either way (the plugin's idle tick and sending).
* Records without ``node=`` (a sender with name_format = NONE) are labelled
  with the aggregator's own name: every sender must set name_format.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from auditd_env import (
    append_from_child,
    auditd_unavailable_reason,
    free_tcp_port,
    private_auditd,
)
from rig import SCRIPT, WAIT, Rig

AUDISP_REMOTE = "/sbin/audisp-remote"
AUDISP_REMOTE_CONF = "/etc/audit/audisp-remote.conf"
SENDER = "web1-sender"
LOCAL = os.uname().nodename


def _fleet_unavailable_reason():
    reason = auditd_unavailable_reason()
    if reason:
        return reason
    if not os.access(AUDISP_REMOTE, os.X_OK) or not os.path.isfile(AUDISP_REMOTE_CONF):
        return "audisp-remote not installed (apt-get install audispd-plugins)"
    return None


def _remote_conf(path, port, local_port):
    """audisp-remote's config; it reads only /etc/audit/audisp-remote.conf,
    so the sender's mount namespace gets this file bind-mounted there."""
    path.write_text(
        "remote_server = 127.0.0.1\n"
        "port = %d\n"
        # a privileged source port, and the aggregator accepts no other
        # (tcp_client_ports): auditd 3.0.9 cannot listen on loopback only
        "local_port = %d\n"
        "transport = tcp\n"
        "mode = immediate\n"
        "format = managed\n"
        "queue_depth = 10240\n"
        "network_retry_time = 1\n"
        "max_tries_per_record = 3\n"
        "max_time_per_record = 5\n"
        "heartbeat_timeout = 0\n"
        "network_failure_action = syslog\n"
        "remote_ending_action = reconnect\n"
        "startup_failure_action = syslog\n" % (port, local_port))
    os.chmod(path, 0o640)  # root-owned, not world-writable, or audisp-remote refuses it
    return path


@contextlib.contextmanager
def fleet(tmp_path, rig, sender_format="RAW", rules=(), aggregator_conf=None):
    """The aggregator (plugin: audit_notify.py with rig's config) and the
    sender (kernel-holding, plugin: audisp-remote).  Stops the sender first,
    so audisp-remote delivers what it has, then the aggregator."""
    port = free_tcp_port()
    local_port = free_tcp_port(below=1024)
    conf = _remote_conf(tmp_path / "audisp-remote.conf", port, local_port)
    with private_auditd(tmp_path / "aggregator", plugin_path=SCRIPT, plugin_args=("--config=%s" % rig.config,),
                        local_events=False, tcp_listen_port=port, name_format="NONE",
                        extra_conf=dict({"tcp_client_ports": local_port}, **(aggregator_conf or {}))) as aggregator:
        with private_auditd(tmp_path / "sender", plugin_path=AUDISP_REMOTE, log_format=sender_format,
                            name_format="user", name=SENDER, binds={AUDISP_REMOTE_CONF: str(conf)},
                            rules=rules) as sender:
            # audisp-remote connects when auditd starts it; the aggregator
            # logs the connection (DAEMON_ACCEPT) and the sender's
            # DAEMON_START right after.
            aggregator.wait_for(lambda text: "node=%s type=DAEMON_START" % SENDER in text, timeout=WAIT)
            yield aggregator, sender


_reason = _fleet_unavailable_reason()


# A remote host connecting or leaving is routine (counted in the hourly
# summary); these tests watch for it, so they raise it to a message of its
# own with the admin's severity lines.
RAISED = "warning: type=DAEMON_ACCEPT\nwarning: type=DAEMON_CLOSE\n"


def _rig(tmp_path, blacklist=""):
    rig = Rig(tmp_path, "digest_after = 0\n")
    rig.blacklist.write_text(blacklist + RAISED)
    return rig


def _host(head):
    """The host a headline names first, after its marks: "web1" of
    "⚠️ web1: …"."""
    return head.split(" ", 1)[1].split(": ", 1)[0]


def _daemon_message(heads, what):
    """The headline of this machine's auditd saying what (accepted/closed a
    remote connection), or None.  The first of each in a test: "new:"
    (known.py; each test has a state directory of its own)."""
    return next((h for h in heads if h.startswith("⚠️ %s: new: auditd %s a remote connection" % (LOCAL, what))),
                None)


def _headlines(rig):
    return [b.split("\n")[0] for b in rig.bodies()]


def _wait_for_body(rig, predicate, what, poll=0.005):
    """Poll the stand-in's record until a body matches; return the time it
    was first seen (wall clock), to measure latency."""
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        if any(predicate(b) for b in rig.bodies()):
            return time.time()
        time.sleep(poll)
    raise AssertionError("timed out waiting for %s; bodies: %r; log:\n%s" % (what, rig.bodies(), rig.log_text()))


def _sender_gone(rig, aggregator, sender, marker):
    """Once the aggregator has logged marker, stop the sender and wait until
    the plugin has delivered the aggregator's DAEMON_CLOSE: that comes after
    everything the sender sent, so whatever the plugin would have made of
    the sender's records has been sent by then.  (Stopping the aggregator
    sooner stops the plugin with notifications still in its spool.)"""
    aggregator.wait_for(lambda text: marker in text, timeout=WAIT)
    sender.stop()
    rig.wait_for(lambda: _daemon_message(_headlines(rig), "closed"), "the aggregator's DAEMON_CLOSE notification")


def _event_time(log_lines, needle):
    """The msg=audit(TIME:...) of the first record containing needle."""
    for line in log_lines:
        if needle in line:
            return float(re.search(r"msg=audit\((\d+\.\d+):", line).group(1))
    raise AssertionError("no record with %r" % needle)


def _dry_run_json(path):
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--json", "--config",
                          os.path.join(os.path.dirname(SCRIPT), "examples", "dry-run.conf"), str(path)],
                         capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize("sender_format", ["RAW", "ENRICHED"])
@pytest.mark.auditd
@pytest.mark.skipif(_reason is not None, reason=_reason or "")
def test_events_from_the_sender_are_labelled_with_its_node_name(tmp_path, sender_format, record_property):
    rig = _rig(tmp_path)
    watched = tmp_path / "watched.txt"
    watched.write_text("")
    key = "an-fleet-%s" % sender_format.lower()
    marker = "an-fleet-marker-%s" % sender_format.lower()
    with fleet(tmp_path, rig, sender_format, rules=["-w %s -p wa -k %s" % (watched, key)]) as (aggregator, sender):
        sender.user_message(marker)
        marker_seen = _wait_for_body(rig, lambda b: marker in b, "the user message")
        append_from_child(watched)
        watch_seen = _wait_for_body(rig, lambda b: "Watched file" in b.split("\n")[0], "the watch notification")
        report = aggregator.state_report()
        sender_log = sender.log_lines()
    forwarded = aggregator.log_lines()

    # What crossed the wire: the sender's records, node= prefixed, no EOE.
    from_sender = [line for line in forwarded if line.startswith("node=%s " % SENDER)]
    assert any(marker in line for line in from_sender)
    assert any(key in line for line in from_sender)
    assert not any("type=EOE" in line for line in forwarded)
    assert report["active connections"] == "1" and report["listening for network connections"] == "yes"
    # The aggregator's own records carry no node= (name_format = NONE).
    assert any(line.startswith("type=DAEMON_ACCEPT ") for line in forwarded)

    heads = _headlines(rig)
    [message] = [h for h in heads if marker in h]
    assert message == "⚠️ %s: new: Audit message: %s from /usr/sbin/auditctl by root" % (SENDER, marker)
    [watch] = [h for h in heads if "Watched file" in h]
    assert watch.startswith("⚠️ %s: new: Watched file opened for writing: %s by " % (SENDER, watched))
    assert watch.endswith("(rule %s)" % key)
    # Nothing that happened on the sender is labelled with this machine's name.
    for head in heads:
        if marker in head or key in head:
            assert _host(head) == SENDER, head

    # The notifications' fields (what blacklist rules match on) carry the
    # sender's node: the plugin's --dry-run --json over the very records the
    # aggregator logged and dispatched.
    events = _dry_run_json(aggregator.log_file)
    [marker_event] = [e for e in events if marker in e["body"]]
    [watch_event] = [e for e in events if e["fields"].get("key") == key and e["fields"]["type"] == "SYSCALL"]
    assert marker_event["fields"]["node"] == SENDER
    assert watch_event["fields"]["node"] == SENDER
    assert watch_event["fields"]["records"].split()[0] == "SYSCALL" and "PATH" in watch_event["fields"]["records"]

    # Latency, kernel time stamp of the event on the sender to the stand-in
    # for matrix-commander on the aggregator's side (the first one includes
    # starting the stand-in).  No EOE crossed the wire, yet neither waits
    # for auparse's eoe_timeout: a USER record is a one-record event, and
    # auparse ends a syscall event at its PROCTITLE record.
    marker_latency = marker_seen - _event_time(sender_log, marker)
    watch_latency = watch_seen - _event_time(sender_log, 'key="%s"' % key)
    record_property("marker_latency_s", round(marker_latency, 3))
    record_property("watch_latency_s", round(watch_latency, 3))
    print("latency sender -> plugin -> matrix-commander: user message %.3f s, watched file %.3f s"
          % (marker_latency, watch_latency))
    assert marker_latency < 5 and watch_latency < 10


@pytest.mark.auditd
@pytest.mark.skipif(_reason is not None, reason=_reason or "")
def test_blacklisting_a_node_drops_only_that_hosts_events(tmp_path):
    rig = _rig(tmp_path, "node=%s\n" % SENDER)
    with fleet(tmp_path, rig) as (aggregator, sender):
        sender.user_message("an-fleet-dropped")
        _sender_gone(rig, aggregator, sender, "an-fleet-dropped")
    rig.wait_for(lambda: "exiting:" in rig.log_text(), "the plugin's exit")
    heads = _headlines(rig)
    assert not any("an-fleet-dropped" in h or _host(h) == SENDER for h in heads), heads
    # The aggregator's own events (no node=: its name_format is NONE) still
    # come, labelled with this machine's name; the sender's were read and
    # filtered, not missed.
    assert _daemon_message(heads, "accepted"), heads
    exit_line = [l for l in rig.log_text().splitlines() if "exiting:" in l][-1]
    assert int(re.search(r" filtered=(\d+)", exit_line).group(1)) >= 2, exit_line


@pytest.mark.auditd
@pytest.mark.skipif(_reason is not None, reason=_reason or "")
def test_without_distribute_network_the_plugin_sees_nothing_from_the_fleet(tmp_path):
    """auditd's default is distribute_network = no: the aggregator logs the
    sender's records but hands its plugins only its own.  The central
    host's auditd.conf needs distribute_network = yes."""
    rig = _rig(tmp_path)
    with fleet(tmp_path, rig, aggregator_conf={"distribute_network": "no"}) as (aggregator, sender):
        sender.user_message("an-fleet-undistributed")
        _sender_gone(rig, aggregator, sender, "an-fleet-undistributed")
    heads = _headlines(rig)
    assert _daemon_message(heads, "accepted"), heads
    assert not any(SENDER in h or "an-fleet-undistributed" in h for h in heads), heads


# ---------------------------------------------------------------------------
# Digests group per host: no auditd needed, the plugin reads a flood from
# two hosts on its stdin, as the aggregator's dispatcher would feed it.

def _flood(nodes, count, start=1800000000.0):
    """count identical watched-file events from each node, interleaved, each
    from a process of its own (a script run again and again), the nodes'
    records sharing time stamps and serials (two hosts' serials do collide:
    the counters are per kernel).  Writes into /etc/cron.d, critical: alike
    warnings after the first would be routine (known.py), never counted."""
    lines = []
    for i in range(count):
        stamp = "%.3f:%d" % (start + i * 0.01, 5000 + i)
        for node in nodes:
            lines.append(
                'node=%s type=SYSCALL msg=audit(%s): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c '
                'a1=55d0 a2=80441 a3=1b6 items=1 ppid=1 pid=%d auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 '
                'sgid=0 fsgid=0 tty=(none) ses=1 comm="sh" exe="/usr/bin/dash" key="an-flood"' % (node, stamp, 4000 + i))
        for node in nodes:
            lines.append('node=%s type=CWD msg=audit(%s): cwd="/root"' % (node, stamp))
            lines.append(
                'node=%s type=PATH msg=audit(%s): item=0 name="/etc/cron.d/an-flood" inode=42 dev=fe:00 mode=0100644 '
                'ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0'
                % (node, stamp))
    return ("\n".join(lines) + "\n").encode()


def test_a_flood_from_two_hosts_gives_one_repeat_count_per_host(tmp_path):
    rig = Rig(tmp_path, "digest_after = 3\ndigest_window = 60\n")
    nodes = ("web1", "web2")
    plugin = rig.start()
    out, err = plugin.communicate(_flood(nodes, 500), timeout=WAIT)
    assert plugin.returncode == 0, err
    shown = rig.messages()
    for node in nodes:
        head = "%s: Watched file opened for writing: /etc/cron.d/an-flood by root via /usr/bin/dash (rule an-flood)" \
            % node
        alone = [b for b in shown if b.split("\n")[0] == "🚨 " + head]
        counts = [b for b in shown if b.startswith("🚨 🔁 ") and head in b]
        assert len(alone) == 3, shown
        # One count per host, edited as it climbed; what the room shows last
        # is the whole flood.
        assert counts == ["🚨 🔁 497 more times: %s\n08:00:00–08:00:04 UTC, quiet again" % head], shown
    assert len(shown) == 8, shown
    exit_line = [line for line in rig.log_text().splitlines() if "exiting:" in line][-1]
    # Records of the two hosts with equal time stamps and serials were not
    # merged: 1,000 events of 3 records each.
    assert "records=3000 events=1000 " in exit_line, exit_line
    assert "events 1000 = filtered 0 + in 6 messages 6 + repeats 994 + routine 0" in exit_line, exit_line


def _forwarder(sender):
    """The sender's audisp-remote (its auditd's child)."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/status" % name) as handle:
                    status = dict(line.split(":", 1) for line in handle if ":" in line)
            except OSError:
                continue
            if status["Name"].strip() == "audisp-remote" and int(status["PPid"]) == sender.pid:
                return int(name)
    raise AssertionError("no audisp-remote under the sender's auditd")


@pytest.mark.auditd
@pytest.mark.skipif(_reason is not None, reason=_reason or "")
def test_a_sender_that_goes_quiet_is_warned_and_its_return_edits_the_warning(tmp_path):
    """Its forwarding stopped (audisp-remote frozen), the sender is silent:
    a warning within node_silence_minutes; forwarding again edits it."""
    rig = _rig(tmp_path)
    rig.write_config("digest_after = 0\nnode_silence_minutes = 0.25\n")
    with fleet(tmp_path, rig) as (aggregator, sender):
        sender.user_message("an-fleet-before")
        rig.wait_for(lambda: any("an-fleet-before" in b for b in rig.messages()), "the sender's event")
        forwarder = _forwarder(sender)
        os.kill(forwarder, signal.SIGSTOP)
        try:
            rig.wait_for(lambda: any(b.startswith("⚠️ %s has sent no audit events" % SENDER)
                                     for b in rig.messages()), "the silent-host warning")
        finally:
            os.kill(forwarder, signal.SIGCONT)
        sender.user_message("an-fleet-after")
        rig.wait_for(lambda: any("was silent for" in b for b in rig.messages()), "the edit: sending again")
    shown = [b for b in rig.messages() if b.startswith("⚠️ %s " % SENDER)]
    # One message in the room: the warning, edited when the host came back.
    assert len(shown) == 1 and shown[0].startswith("⚠️ %s was silent for " % SENDER), shown
    assert not any(" lost on " in b for b in rig.messages()), rig.messages()
