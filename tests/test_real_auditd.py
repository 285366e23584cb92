"""The plugin under a real auditd: the kernel makes the events, auditd's
dispatcher feeds them to audit_notify.py through plugins.d, and a recording
stand-in for matrix-commander shows what would have been sent."""

import os
import re
import subprocess
import time

import pytest
from auditd_env import append_from_child, auditctl, auditd_unavailable_reason, kernel_status, private_auditd
from replay import dry_run, headlines_of
from rig import SCRIPT, Rig

_reason = auditd_unavailable_reason()
pytestmark = [pytest.mark.auditd, pytest.mark.skipif(_reason is not None, reason=_reason or "")]


def _bodies(rig):
    return rig.bodies()


# Each headline starts with the host; each action here is the first of its
# shape the plugin has seen (a fresh state directory, known.py): "new:".
NEW = "⚠️ %s: new: " % os.uname().nodename


@pytest.mark.parametrize("log_format", ["RAW", "ENRICHED"])
def test_watched_file_change_becomes_one_notification(tmp_path, log_format):
    rig = Rig(tmp_path)
    watched = tmp_path / "watched.txt"
    watched.write_text("")
    key = "an-real-%s" % log_format.lower()
    with private_auditd(tmp_path, plugin_path=SCRIPT, plugin_args=("--config=%s" % rig.config,),
                        log_format=log_format, rules=["-w %s -p wa -k %s" % (watched, key)]) as auditd:
        append_from_child(watched)
        rig.wait_for(lambda: any(b.startswith(NEW + "Watched file") for b in _bodies(rig)), "the watch notification")
        auditd.user_message("an-real-marker")
        rig.wait_for(lambda: any(b.startswith(NEW + "Audit message: an-real-marker from /usr/sbin/auditctl by root")
                                 for b in _bodies(rig)), "the user message")
    # auditd stopped: the plugin got SIGTERM/EOF, exited cleanly and said what it did.
    rig.wait_for(lambda: "exiting:" in rig.log_text(), "the plugin's exit")
    hits = [b for b in _bodies(rig) if "Watched file" in b.split("\n")[0]]
    assert len(hits) == 1, hits
    # Adding the rule right after auditd started is part of its start (lifecycle.py).
    assert any(b.startswith("⚠️ %s: auditd started: 1 rule loaded" % os.uname().nodename) for b in rig.messages()), \
        rig.messages()
    headline = hits[0].split("\n")[0]
    assert headline.startswith(NEW + "Watched file opened for writing: %s by " % watched)
    assert headline.endswith("(rule %s)" % key)
    log = rig.log_text()
    assert "started: config %s" % rig.config in log
    assert "failed=0" in log and "errors=0" in log


def test_plugin_runs_with_auditds_empty_environment(tmp_path):
    """auditd starts plugins with no environment at all (no PATH, no HOME):
    matrix-commander still gets a HOME of its own."""
    rig = Rig(tmp_path)
    with private_auditd(tmp_path, plugin_path=SCRIPT, plugin_args=("--config=%s" % rig.config,)) as auditd:
        auditd.user_message("an-env-marker")
        rig.wait_for(lambda: any("an-env-marker" in b for b in _bodies(rig)), "the user message")
    call = [c for c in rig.calls() if "an-env-marker" in c["event"]][0]
    assert call["home"] == "%s/state" % tmp_path


def test_events_the_kernel_loses_are_one_message_with_their_count(tmp_path):
    """A backlog of 2 that the kernel may not wait on, and a burst of
    20,000 watched writes: the kernel loses events (they get no number, so
    no gap shows them) and says so in its log; the plugin, which opened
    /dev/kmsg as root before dropping privileges, tells the room once."""
    rig = Rig(tmp_path, "digest_after = 0\n")
    watched = tmp_path / "burst.txt"
    watched.write_text("")
    wait_time = kernel_status()["backlog_wait_time"]
    with private_auditd(tmp_path, plugin_path=SCRIPT, plugin_args=("--config=%s" % rig.config,),
                        backlog_limit=2, rules=["-w %s -p wa -k an-burst" % watched]) as auditd:
        try:
            auditctl("--backlog_wait_time", "0")
            # The kernel says "audit_lost=N" at most 10 times per 5 s, a budget
            # it shares with other rate-limited lines (the records it printed
            # itself while no auditd ran, just before): let it refill.
            time.sleep(6)
            lost_before = kernel_status()["lost"]
            subprocess.run(["/usr/bin/python3", "-c", "import sys\nfor i in range(20000): open(sys.argv[1], 'a').close()",
                            str(watched)], check=True, timeout=120)
            lost = kernel_status()["lost"] - lost_before
            rig.wait_for(lambda: any("audit events lost on" in b or "audit event lost on" in b
                                     for b in rig.messages()), "the lost-events message")
        finally:
            auditctl("--backlog_wait_time", str(wait_time), check=False)
        auditd.user_message("an-lost-end")
        rig.wait_for(lambda: any("an-lost-end" in b for b in rig.messages()), "the marker after the burst")
    assert lost > 0, "the kernel lost nothing: the test proved nothing"
    [told] = [b for b in rig.messages() if " lost on " in b.split("\n")[0]]
    count = int(re.match(r"🚨 ([\d,]+) audit events? lost on ", told).group(1).replace(",", ""))
    # The kernel's log is rate-limited: its last line may not carry the last count.
    assert 0 < count <= lost, (count, lost, told)


def test_three_restarts_under_load_are_three_calm_messages(tmp_path):
    """``service auditd restart`` three times while commands run (issue 18):
    each restart is one warning, "auditd restarted by root: 3 rules
    reloaded", that the plugin stopped with auditd begins and the next run
    of the plugin completes (an edit); nothing critical.  The audit log the
    restarts leave says the same through --dry-run."""
    rig = Rig(tmp_path)
    rules = tmp_path / "audit.rules"  # what augenrules --load loads: it begins with -D
    rules.write_text("-D\n-b 8192\n-w /etc/passwd -p wa -k an-identity\n-w /etc/shadow -p wa -k an-identity\n"
                     "-a always,exit -F arch=b64 -S execve -F exe=/usr/bin/id -k an-load\n")
    with private_auditd(tmp_path, plugin_path=SCRIPT, plugin_args=("--config=%s" % rig.config,)) as auditd:
        auditctl("-R", str(rules))  # the boot's load
        started = "⚠️ %s: auditd started: 3 rules loaded" % os.uname().nodename
        rig.wait_for(lambda: any(m.startswith(started) for m in rig.messages()), "the start")
        load = subprocess.Popen(["/bin/sh", "-c", "while :; do /usr/bin/id >/dev/null; sleep 0.05; done"])
        try:
            for done in range(1, 4):
                auditd.restart(rules)
                rig.wait_for(lambda: sum(m.startswith("⚠️ %s: auditd restarted by root: 3 rules reloaded"
                                                      % os.uname().nodename) for m in rig.messages()) == done,
                             "restart %d told" % done)
        finally:
            load.terminate()
            load.wait()
        log = auditd.log_text()
        heads = [m.split("\n")[0] for m in rig.messages()]  # (before the test's own stop of auditd)
    node = os.uname().nodename
    ours = ("⚠️ %s: auditd" % node, "🚨 %s: auditd" % node)
    assert [h for h in heads if h.startswith(ours)] == \
        ["⚠️ %s: auditd started: 3 rules loaded" % node] + \
        ["⚠️ %s: auditd restarted by root: 3 rules reloaded" % node] * 3, heads
    assert not any(h.startswith("🚨") for h in heads), heads
    assert len([h for h in heads if not h.startswith("ℹ️ Routine")]) == 1 + 3, heads  # the load is routine
    # The audit log of the same: the three restarts, three warnings.
    (tmp_path / "audit.log").write_text(log)
    dry = headlines_of(dry_run(str(tmp_path / "audit.log"), str(rig.config)))
    assert [h for h in dry if h.startswith(ours)] == \
        ["⚠️ %s: auditd started: 3 rules loaded" % node] + \
        ["⚠️ %s: auditd restarted by root: 3 rules reloaded" % node] * 3, dry
    assert not any(h.startswith("🚨") for h in dry), dry
