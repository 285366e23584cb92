"""The doctor's view of the watcher's own health: whether auditd runs the
plugin now, whether it sends, the kernel's audit status, auditd's
settings.  Processes come from a /proc written by the test, the kernel's
status from a stand-in: every situation can be made, none is mocked away
(tests/test_setup.py runs the doctor against a real auditd)."""

import io
import os

from audit_notify.config import Config
from audit_notify.doctor import Doctor
from audit_notify.kernel import Status
from audit_notify.message import notice
from audit_notify.spool import Spool

PLUGIN = "/usr/local/sbin/audit-notify"
ENTRY = {"path": PLUGIN, "args": "--config /etc/audit-notify/audit-notify.conf"}


def _proc(tmp_path, *processes):
    """A /proc holding these (pid, ppid, comm, argv) processes."""
    proc = tmp_path / "proc"
    for pid, ppid, comm, argv in processes:
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "status").write_text("Name:\t%s\nPid:\t%d\nPPid:\t%d\n" % (comm, pid, ppid))
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return str(proc)


def _doctor(tmp_path, proc=None, kernel=None, now=1000.0):
    out = io.StringIO()
    doctor = Doctor(out, root=str(tmp_path), proc=proc or str(tmp_path / "none"), kernel=kernel or _kernel(),
                    clock=lambda: now)
    return doctor, out


def _kernel(**changes):
    values = dict(enabled=1, failure=1, pid=100, rate_limit=0, backlog_limit=8192, lost=0, backlog=0)
    values.update(changes)
    return lambda: Status(**values)


def test_the_plugin_running_under_auditd_is_ok(tmp_path):
    proc = _proc(tmp_path, (100, 1, "auditd", ["/sbin/auditd"]),
                 (101, 100, "python3", ["/usr/bin/python3", PLUGIN, "--config", "/etc/audit-notify/x.conf"]))
    doctor, out = _doctor(tmp_path, proc)
    assert doctor._running(Config(), [ENTRY]) == 101
    assert out.getvalue() == "ok   plugin: running, pid 101, started by auditd (pid 100)\n"


def test_auditd_that_gave_up_on_the_plugin_is_a_failure_with_the_way_out(tmp_path):
    """In a real install every line said ok while auditd had given up after
    max_restarts failed starts."""
    proc = _proc(tmp_path, (100, 1, "auditd", ["/sbin/auditd"]),
                 (102, 1, "python3", ["/usr/bin/python3", PLUGIN]))  # not auditd's: run by hand
    doctor, out = _doctor(tmp_path, proc)
    assert doctor._running(Config(), [ENTRY]) is None
    assert out.getvalue().startswith("FAIL plugin: auditd (pid 100) is not running it now")
    assert "max_restarts" in out.getvalue() and doctor.failures == 1
    doctor, out = _doctor(tmp_path / "empty", _proc(tmp_path / "empty"))
    assert doctor._running(Config(), [ENTRY]) is None
    assert out.getvalue().startswith("FAIL auditd is not running")


def test_a_plugin_that_runs_but_does_not_send_is_a_failure(tmp_path):
    config = Config(spool_dir=str(tmp_path / "spool"), state_dir=str(tmp_path))
    os.makedirs(config.spool_dir)
    spool = Spool(os.path.join(config.spool_dir, "spool.sqlite3"), 10 ** 6, 86400, clock=lambda: 1000.0)
    spool.add(notice("waiting", 1000.0))
    spool.commit({"pid": "101"})
    spool.close()
    doctor, out = _doctor(tmp_path, now=1000.0 + 3600)
    doctor._sending(config, 101)
    assert out.getvalue().startswith("FAIL sending: the plugin runs but its oldest message has waited 60 min")
    doctor, out = _doctor(tmp_path, now=1000.0 + 5)
    doctor._sending(config, 101)
    assert out.getvalue().startswith("ok   sending: 1 waiting, the oldest 5 s")


def test_the_kernels_status_says_what_to_change(tmp_path):
    for changes, level, words in (({}, "ok", "kernel: enabled 1"),
                                  (dict(enabled=0), "FAIL", "auditing is off"),
                                  (dict(pid=0), "FAIL", "no auditd receives"),
                                  (dict(lost=1234), "warn", "lost 1234 since boot")):
        doctor, out = _doctor(tmp_path, kernel=_kernel(**changes))
        doctor._kernel()
        first = out.getvalue().splitlines()[0]
        assert first.startswith("%-4s kernel: " % level) and words in first, first
    doctor, out = _doctor(tmp_path, kernel=_kernel(failure=0))
    doctor._kernel()
    assert "failure mode 0 loses events silently" in out.getvalue()


def test_auditd_settings_that_starve_the_plugin_are_named(tmp_path):
    conf = tmp_path / "etc" / "audit"
    conf.mkdir(parents=True)
    (conf / "auditd.conf").write_text("q_depth = 500\noverflow_action = SUSPEND\nmax_restarts = 10\n"
                                      "tcp_listen_port = 60\ndistribute_network = no\n")
    doctor, out = _doctor(tmp_path)
    doctor._auditd_conf()
    said = out.getvalue()
    assert said.startswith("warn auditd.conf: q_depth 500, overflow_action suspend, max_restarts 10")
    assert "q_depth = 8000" in said and "stops auditing" in said
    assert "FAIL auditd.conf: this host receives remote events (tcp_listen_port 60) but distribute_network" in said


def test_the_doctor_says_when_nobody_can_answer_from_the_room(tmp_path):
    doctor, out = _doctor(tmp_path)
    doctor._answers(Config())
    assert out.getvalue().startswith("warn answers: nobody can answer from the room")
    doctor, out = _doctor(tmp_path)
    doctor._answers(Config(mention=("@alice:example.org",), reannounce=0))
    assert out.getvalue().startswith("ok   answers: @alice:example.org may acknowledge")
    assert "no re-announcement" in out.getvalue()
