"""Tests of the private-auditd fixture (tests/auditd_env.py) against the real
kernel audit subsystem.  They need root and auditd; they are marked `auditd`
and serialize on /run/audit-notify-tests.lock."""

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from auditd_env import (
    AuditdBusy,
    AuditdError,
    PrivateAuditd,
    append_from_child,
    auditctl,
    auditd_unavailable_reason,
    event_ids,
    free_tcp_port,
    kernel_status,
    listening_tcp_ports,
    private_auditd,
    record_types,
)

_reason = auditd_unavailable_reason()
pytestmark = [
    pytest.mark.auditd,
    pytest.mark.skipif(_reason is not None, reason=_reason or ""),
]

# A plugin that appends its stdin verbatim to OUT and notes START (argv, env,
# stdin type), SIGTERM, EOF to OUT.events.  argv: OUT [MODE]
# MODE: stay (note SIGTERM but keep reading; exit on EOF) | die-on-marker
# (exit once a read contains "an-die") | stall (never read; exit on POLLHUP
# or SIGTERM)
RECORDER = textwrap.dedent(
    r"""
    #!/usr/bin/python3
    import json, os, signal, sys, time
    out = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "stay"
    ev = open(out + ".events", "a", buffering=1)
    def note(*a):
        ev.write("%.6f %d %s\n" % (time.time(), os.getpid(), " ".join(a)))
    note("START", json.dumps({"argv": sys.argv[1:], "env": dict(os.environ),
         "stdin": os.readlink("/proc/self/fd/0")}))
    if mode == "stall":  # never read; leave once auditd has closed its end
        import select
        poller = select.poll()
        poller.register(0, select.POLLHUP)
        while not any(ev & select.POLLHUP for _, ev in poller.poll(100)):
            time.sleep(0.1)
        note("HUP")
        sys.exit(0)
    signal.signal(signal.SIGTERM, lambda s, f: note("SIGTERM"))
    data = open(out, "ab", buffering=0)
    while True:
        b = os.read(0, 65536)
        if not b:
            note("EOF")
            break
        data.write(b)
        if mode == "die-on-marker" and b"an-die" in b:
            note("DIE")
            os._exit(3)
    """
).lstrip()


@pytest.fixture
def recorder(tmp_path):
    path = tmp_path / "recorder.py"
    path.write_text(RECORDER)
    os.chmod(path, 0o750)  # auditd insists on root-owned, >= 0750
    return path


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _lines(text):
    # NOT str.splitlines(): it also splits on \x1d, the ENRICHED separator
    return [l for l in text.split("\n") if l]


def _events(out):
    """[(time, pid, what, rest)] from the recorder's .events file."""
    rows = []
    for line in _read(str(out) + ".events").splitlines():
        t, pid, what, *rest = line.split(" ", 3)
        rows.append((float(t), int(pid), what, rest[0] if rest else ""))
    return rows


RAW_LINE = re.compile(r"^type=[A-Z_0-9]+(\[\d+\])? msg=audit\(\d+\.\d{3}:\d+\): ")


def test_plugin_receives_raw_records(tmp_path, recorder):
    out = tmp_path / "plugin.out"
    token = "an-test-%d" % os.getpid()
    watched = tmp_path / "watched.txt"
    watched.write_text("")
    with private_auditd(tmp_path, plugin_path=str(recorder),
                        plugin_args=(str(out), "stay"),
                        rules=[("-w", str(watched), "-p", "wa", "-k", "an-raw")]) as ad:
        assert kernel_status()["pid"] == ad.pid
        assert len(ad.plugin_pids()) == 1
        ad.user_message(token)
        append_from_child(watched)  # a kernel event: several records and an EOE
        ad.wait_for(lambda t: token in t, timeout=10, source=lambda: _read(out))
        ad.wait_for(lambda t: 'key="an-raw"' in t and "type=EOE" in t, timeout=10, source=lambda: _read(out))
        ad.wait_for_text(token, timeout=10)
        stream = _lines(_read(out))
        log = ad.log_lines()
    assert stream[0].startswith("type=DAEMON_START ")
    assert "format=raw" in stream[0]
    for line in stream:
        assert RAW_LINE.match(line), line
        assert "\x1d" not in line
    # the plugin gets EOE records; auditd does not write them to its log
    assert "EOE" in record_types(stream)
    assert "EOE" not in record_types(log)
    assert [l for l in stream if token in l][0].startswith("type=USER ")
    # the plugin ran with an empty environment, stdin a socket
    start = json.loads(_events(out)[0][3])
    assert start["argv"] == [str(out), "stay"]
    assert set(start["env"]) <= {"LC_CTYPE"}  # python itself may add LC_CTYPE
    assert start["stdin"].startswith("socket:")


def test_enriched_format_with_node_name(tmp_path, recorder):
    out = tmp_path / "plugin.out"
    token = "an-enriched-%d" % os.getpid()
    with private_auditd(tmp_path, plugin_path=str(recorder),
                        plugin_args=(str(out),), log_format="ENRICHED",
                        name_format="USER", name="an-test-node") as ad:
        ad.user_message(token)
        ad.wait_for(lambda t: token in t, timeout=10, source=lambda: _read(out))
        ad.wait_for_text(token, timeout=10)
        stream = _lines(_read(out))
        log = ad.log_lines()
    assert "format=enriched" in stream[0]
    for line in stream:
        assert line.startswith("node=an-test-node type="), line
    user = [l for l in stream if token in l][0]
    raw, enriched = user.split("\x1d")
    assert raw.startswith("node=an-test-node type=USER msg=audit(")
    assert 'UID="root"' in enriched and 'AUID="unset"' in enriched
    # the log file carries the same enriched text
    assert user in log


def test_stop_order_daemon_end_then_sigterm_then_eof(tmp_path, recorder):
    out = tmp_path / "plugin.out"
    with private_auditd(tmp_path, plugin_path=str(recorder),
                        plugin_args=(str(out), "stay")) as ad:
        ad.wait_for(lambda t: "DAEMON_START" in t, 10, source=lambda: _read(out))
        [plugin_pid] = ad.plugin_pids()
    assert ad.exit_code == 0
    assert any(l.startswith("type=DAEMON_END ") for l in _lines(_read(out)))
    rows = [r for r in _events(out) if r[1] == plugin_pid]
    whats = [r[2] for r in rows]
    assert whats == ["START", "SIGTERM", "EOF"], rows
    # EOF follows SIGTERM within auditd's 20 ms shutdown grace period
    assert 0 <= rows[2][0] - rows[1][0] < 1.0


def test_crashed_plugin_is_restarted_on_next_record(tmp_path, recorder):
    out = tmp_path / "plugin.out"
    events = str(out) + ".events"
    with private_auditd(tmp_path, plugin_path=str(recorder),
                        plugin_args=(str(out), "die-on-marker"),
                        max_restarts=1) as ad:
        ad.user_message("an-die-1")  # first instance exits
        ad.wait_for(lambda t: t.count("DIE") == 1, 10, source=lambda: _read(events))
        time.sleep(0.3)
        assert ad.plugin_pids() == []  # not restarted until the next record
        ad.user_message("an-after-1")  # write gets EPIPE -> restart, re-sent
        ad.wait_for(lambda t: "an-after-1" in t, 10, source=lambda: _read(out))
        ad.user_message("an-die-2")  # second instance exits
        ad.wait_for(lambda t: t.count("DIE") == 2, 10, source=lambda: _read(events))
        time.sleep(0.3)
        ad.user_message("an-after-2")  # restart 2 > max_restarts=1: dropped
        ad.wait_for(lambda m: any("exceeded max_restarts" in x for x in m), 10,
                    source=ad.daemon_messages)
        time.sleep(0.3)
        msgs = ad.daemon_messages()
        assert ad.plugin_pids() == []
        assert "an-after-2" in ad.log_text()  # the log still gets everything
    starts = [r for r in _events(out) if r[2] == "START"]
    assert len(starts) == 2
    assert any("terminated unexpectedly" in m for m in msgs)
    assert any("was restarted" in m for m in msgs)
    assert "an-after-2" not in _read(out)


def test_watch_rule_event_records_share_serial(tmp_path, recorder):
    out = tmp_path / "plugin.out"
    watched = tmp_path / "watched.txt"
    watched.write_text("x\n")
    with private_auditd(tmp_path, plugin_path=str(recorder),
                        plugin_args=(str(out),),
                        rules=[("-w", str(watched), "-p", "wa", "-k", "an-watched")]) as ad:
        append_from_child(watched, "more\n")
        ad.wait_for(lambda t: 'key="an-watched"' in t, 10, source=lambda: _read(out))
        time.sleep(0.2)
        stream = _lines(_read(out))
    syscall = [l for l in stream
               if l.startswith("type=SYSCALL ") and 'key="an-watched"' in l][0]
    eid = event_ids([syscall])[0]
    same = [l for l in stream if event_ids([l]) == [eid]]
    types = record_types(same)
    assert types[0] == "SYSCALL" and types[-1] == "EOE"
    assert {"CWD", "PATH", "PROCTITLE"} <= set(types)
    # adding the rule was itself audited
    assert any(l.startswith("type=CONFIG_CHANGE ") and "op=add_rule" in l
               and 'key="an-watched"' in l for l in stream)


def test_plugin_queue_overflow_is_reported(tmp_path, recorder):
    out = tmp_path / "plugin.out"
    with private_auditd(tmp_path, plugin_path=str(recorder),
                        plugin_args=(str(out), "stall"), q_depth=10) as ad:
        child = subprocess.Popen(
            [sys.executable, "-c",
             "import os, time\ntime.sleep(0.5)\nfor i in range(150): os.chdir('/')"])
        ad.add_rule("-a", "always,exit", "-F", "arch=b64", "-S", "chdir",
                    "-F", "pid=%d" % child.pid, "-k", "an-flood")
        child.wait(timeout=60)
        ad.wait_for(lambda m: any("queue to plugins is full" in x for x in m),
                    30, source=ad.daemon_messages)
        state = ad.state_report()
    assert state["plugin queue overflow detected"] == "yes"
    assert state["plugin queue size"] == "10"


def test_lock_prevents_a_second_private_auditd(tmp_path, recorder):
    with private_auditd(tmp_path / "a") as ad:
        second = PrivateAuditd(tmp_path / "b", lock_timeout=0.3)
        with pytest.raises(AuditdBusy):
            second.start()
        assert kernel_status()["pid"] == ad.pid


def test_stop_restores_kernel_state(tmp_path):
    before = kernel_status()
    with private_auditd(tmp_path, backlog_limit=4321,
                        rules=["-w /etc/hostname -p wa -k an-restore"]) as ad:
        assert kernel_status()["backlog_limit"] == 4321
        assert "an-restore" in auditctl("-l")
        assert kernel_status()["enabled"] == 1
    after = kernel_status()
    assert after["pid"] == 0
    assert after["backlog_limit"] == before["backlog_limit"]
    assert after["enabled"] == before["enabled"]
    assert auditctl("-l").strip() == "No rules"
    assert "The audit daemon is exiting." in "\n".join(ad.daemon_messages())


def test_foreground_mode_messages_on_stderr(tmp_path):
    with private_auditd(tmp_path, mode="foreground") as ad:
        ad.user_message("an-fg")
        ad.wait_for_text("an-fg")
    assert any("Init complete" in m for m in ad.daemon_messages())
    assert "type=DAEMON_END" in ad.log_text()


def test_an_aggregator_runs_beside_the_kernel_auditd_and_leaves_it_alone(tmp_path, recorder):
    """local_events=False: no lock, no kernel registration, its own /run
    (auditd.pid and auditd.state), no auditctl -D when it stops."""
    out = tmp_path / "plugin.out"
    with private_auditd(tmp_path / "k", rules=["-w /etc/hostname -p wa -k an-keep"]) as kernel:
        port = free_tcp_port()
        with private_auditd(tmp_path / "a", plugin_path=str(recorder), plugin_args=(str(out),),
                            local_events=False, tcp_listen_port=port, lock_timeout=0.3) as agg:
            assert kernel_status()["pid"] == kernel.pid
            assert port in listening_tcp_ports()
            assert Path("/var/run/auditd.pid").read_text().strip() == str(kernel.pid)
            assert Path(f"/proc/{agg.pid}/root/run/auditd.pid").read_text().strip() == str(agg.pid)
            report = agg.state_report()
            assert report["listening for network connections"] == "yes"
            assert kernel.state_report()["listening for network connections"] == "no"
            with pytest.raises(AuditdError):
                agg.add_rule("-w", "/etc/hostname", "-p", "wa")
            ad_conf = agg.conf_file.read_text()
            assert "local_events = no" in ad_conf and "distribute_network = yes" in ad_conf
        assert port not in listening_tcp_ports()
        assert kernel_status()["pid"] == kernel.pid
        assert "an-keep" in auditctl("-l")
        assert Path("/var/run/auditd.pid").read_text().strip() == str(kernel.pid)
        kernel.user_message("an-still-here")
        kernel.wait_for_text("an-still-here")
    # the aggregator's plugin saw its DAEMON_START: it ran, without the kernel
    assert _lines(_read(out))[0].startswith("type=DAEMON_START ")
    assert "type=DAEMON_END" in agg.log_text()
