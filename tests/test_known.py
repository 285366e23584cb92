"""Known versus new (known.py): the shapes of a host's ordinary actions,
remembered in memory and in the state directory, so that the same work a
day later is routine while what is critical stays critical.  The memory
on its own, on disk (across a SIGKILL, read-only), in the Notifier over
a recorded day fed twice, and the admin's door (audit-notify known)."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys

import pytest
from corpus import DATA, ROOT, SRC, events_of, read
from records import O_WRONLY_CREAT_TRUNC, UNSET, Clock, syscall, user
from rig import SCRIPT, WAIT

from audit_notify.clocks import ANY
from audit_notify.config import Config
from audit_notify.counters import Counters
from audit_notify.known import FILE_NAME, Known, known_path
from audit_notify.notify import Notifier
from audit_notify.rules import RuleSet, load_ruleset

T0 = 1800000000.0
DAY = 86400
DAYS = os.path.join(DATA, "days")
DRY_RUN_CONFIG = os.path.join(ROOT, "examples", "dry-run.conf")


# -- the memory -------------------------------------------------------------------

def test_a_shape_is_new_the_first_time_and_known_after():
    known = Known()
    assert known.seen("vm", "sudo\x1fopsadm", "sudo by opsadm as root from here", T0) is False
    assert known.seen("vm", "sudo\x1fopsadm", "sudo by opsadm as root from here", T0 + DAY) is True
    [(node, label, first, last, times)] = known.entries()
    assert (node, label, first, last, times) == ("vm", "sudo by opsadm as root from here", T0, T0 + DAY, 2)


def test_what_one_host_knows_another_does_not():
    known = Known()
    known.seen("web1", "login\x1falice", "ssh login by alice", T0)
    assert known.seen("web2", "login\x1falice", "ssh login by alice", T0 + 1) is False
    assert known.seen("web1", "login\x1falice", "ssh login by alice", T0 + 2) is True


def test_the_memory_is_bounded_and_forgets_the_least_recently_seen():
    known = Known(limit=3)
    for i, shape in enumerate("abc"):
        known.seen("vm", shape, "label " + shape, T0 + i)
    known.seen("vm", "a", "label a", T0 + 10)  # a is seen again: b is now the oldest
    known.seen("vm", "d", "label d", T0 + 11)
    assert [label for _, label, _, _, _ in known.entries()] == ["label c", "label a", "label d"]
    assert known.seen("vm", "b", "label b", T0 + 12) is False  # forgotten: new again (and c goes)
    assert known.seen("vm", "a", "label a", T0 + 13) is True


def test_forget_takes_a_glob_over_labels_or_hosts():
    known = Known()
    known.seen("web1", "1", "sudo by opsadm as root from 127.0.0.1", T0)
    known.seen("web1", "2", "ssh login by alice from 127.0.0.1", T0)
    known.seen("db1", "3", "ssh login by bob from 10.0.0.5", T0)
    assert known.forget("sudo *") == 1
    assert known.forget("db*") == 1
    assert [label for _, label, _, _, _ in known.entries()] == ["ssh login by alice from 127.0.0.1"]
    assert known.seen("web1", "1", "sudo by opsadm as root from 127.0.0.1", T0 + 1) is False
    assert known.forget() == 2 and known.entries() == []


# -- on disk ----------------------------------------------------------------------

_KILLED = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from audit_notify.known import Known
known = Known(sys.argv[2])
known.seen("vm", "sudo\\x1fopsadm", "sudo by opsadm as root from here", 1800000000.0)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_new_shape_survives_a_sigkill_right_after_it_was_seen(tmp_path):
    path = str(tmp_path / FILE_NAME)
    killed = subprocess.run([sys.executable, "-c", _KILLED, SRC, path], capture_output=True, timeout=WAIT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = Known(path)
    assert again.seen("vm", "sudo\x1fopsadm", "sudo by opsadm as root from here", T0 + DAY) is True
    again.close()


def _rows(path):
    """What another process reads from the file now."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT node, label, first, last, times FROM known ORDER BY label").fetchall()


def test_last_seen_times_are_saved_now_and_then_and_at_close(tmp_path):
    path = str(tmp_path / FILE_NAME)
    known = Known(path)
    known.seen("vm", "s", "label", T0)
    known.seen("vm", "s", "label", T0 + 10)  # the first save of last-seen times
    known.seen("vm", "s", "label", T0 + 20)  # within a minute of it: kept for the next
    assert _rows(path) == [("vm", "label", T0, T0 + 10, 2)]
    known.close()
    assert _rows(path) == [("vm", "label", T0, T0 + 20, 3)]
    reopened = Known(path)
    assert reopened.entries() == [("vm", "label", T0, T0 + 20, 3)]
    reopened.close()


def test_what_is_evicted_or_forgotten_is_gone_from_the_file_too(tmp_path):
    path = str(tmp_path / FILE_NAME)
    known = Known(path, limit=2)
    for i, shape in enumerate("abc"):
        known.seen("vm", shape, "label " + shape, T0 + i)
    known.forget("label c")
    known.close()
    assert _rows(path) == [("vm", "label b", T0 + 1, T0 + 1, 1)]


def _snapshot(directory):
    """Every file in a directory: its bytes and modification time."""
    found = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        with open(path, "rb") as handle:
            found[name] = (os.stat(path).st_mtime_ns, handle.read())
    return found


def test_a_read_only_memory_of_a_missing_file_is_empty_and_creates_nothing(tmp_path):
    path = str(tmp_path / FILE_NAME)
    known = Known(path, writable=False)
    assert known.entries() == []
    assert known.seen("vm", "s", "label", T0) is False and known.seen("vm", "s", "label", T0 + 1) is True
    known.close()
    assert os.listdir(tmp_path) == []


def test_a_read_only_memory_learns_in_memory_and_never_writes(tmp_path):
    path = str(tmp_path / FILE_NAME)
    live = Known(path)
    live.seen("vm", "old", "old label", T0)
    live.close()
    before = _snapshot(tmp_path)
    known = Known(path, writable=False)
    assert known.seen("vm", "old", "old label", T0 + DAY) is True
    assert known.seen("vm", "new", "new label", T0 + DAY) is False
    known.save(T0 + 2 * DAY)
    known.close()
    assert _snapshot(tmp_path) == before
    assert _rows(path) == [("vm", "old label", T0, T0, 1)]


def test_a_read_only_memory_reads_what_a_running_plugin_has_committed(tmp_path):
    path = str(tmp_path / FILE_NAME)
    live = Known(path)
    live.seen("vm", "s", "seen by the running plugin", T0)
    reader = Known(path, writable=False)
    assert [label for _, label, _, _, _ in reader.entries()] == ["seen by the running plugin"]
    reader.close()
    live.close()


# -- the Notifier: a day, and the same day again ----------------------------------------

def _next_day(data):
    """The same records a day later, as the host would log them: later
    times and serials, other pids and login sessions (init stays 1)."""
    data = re.sub(rb" (pid|ppid)=(\d+)", lambda m: m.group(0) if int(m.group(2)) <= 1 else
                  b" %s=%d" % (m.group(1), int(m.group(2)) + 100000), data)
    data = re.sub(rb" ses=(\d+)", lambda m: m.group(0) if m.group(1) == b"4294967295" else
                  b" ses=%d" % (int(m.group(1)) + 1000), data)
    return re.sub(rb"msg=audit\((\d+)\.(\d+):(\d+)\)", lambda m: b"msg=audit(%d.%s:%d)" % (
        int(m.group(1)) + DAY, m.group(2), int(m.group(3)) + 10_000_000), data)


class TwoDays:
    """One Notifier (one memory) fed a recorded day, a quiet night, then
    the same day again: the messages of each day, in their last version."""

    def __init__(self, name):
        data = read(os.path.join(DAYS, name + ".log"))
        with open(os.path.join(DAYS, name + ".manifest.json"), encoding="utf-8") as handle:
            actions = json.load(handle)["actions"]
        # The day's ordinary work comes first, its attack after.
        self.attack_starts = min(a["epoch"] for a in actions if a["kind"] == "attack") - 0.5
        config = Config(blacklist=os.path.join(ROOT, "blacklist.example"))
        self.sent = {}
        notifier = Notifier(config, load_ruleset(config), self._accept, Counters())
        self.times = {}
        self.days = []
        for shift, records in ((0, data), (DAY, _next_day(data))):
            events = events_of(records, node="vm")
            self.times.update((event.get("serial"), event.timestamp - shift) for event in events)
            for event in events:
                notifier.on_event(event)
            for node in ("vm", ANY):  # a quiet hour: what is open goes out
                notifier.due(node, events[-1].timestamp + 3600)
            self.days.append(self.sent)
            self.sent = {}
        notifier.close_all()
        self.days[-1].update(self.sent)

    def _accept(self, note):
        self.sent[note.key or str(len(self.sent))] = note

    def ordinary(self, day, severity):
        """The messages of a day's ordinary work (before its attack) at a severity."""
        return [note for note in self.days[day].values() if note.kind == "incident" and note.severity == severity
                and all(self.times[serial] < self.attack_starts for serial in note.serials)]

    def critical_events(self, day):
        """The events (by their first day's serial) in the day's critical messages."""
        return {int(serial) % 10_000_000 for note in self.days[day].values() if note.severity == "critical"
                for serial in note.serials}


@pytest.fixture(scope="module", params=("stig", "neo23x0"))
def two_days(request):
    if not os.path.exists(os.path.join(DAYS, request.param + ".log")):
        pytest.skip("day %s not recorded" % request.param)
    return TwoDays(request.param)


def test_the_same_ordinary_work_a_day_later_is_routine(two_days):
    first = [note.body.split("\n")[0] for note in two_days.ordinary(0, "warning")]
    again = [note.body.split("\n")[0] for note in two_days.ordinary(1, "warning")]
    assert len(first) >= 5, first
    assert again == [], again


def test_what_is_critical_stays_critical_however_well_known(two_days):
    assert two_days.critical_events(0)
    assert two_days.critical_events(1) == two_days.critical_events(0)


ALICE = "61001"  # an id no test machine has: no name lookup changes a result


def _terminal_login(clock, ses, pid, addr="198.51.100.20"):
    """alice's SSH login with a terminal, as sshd and PAM log it."""
    text = "".join(user(rtype, op, acct="alice", pid=pid, addr=addr, stamp=clock.stamp()) for rtype, op in (
        ("USER_AUTH", "PAM:authentication"), ("USER_ACCT", "PAM:accounting"), ("CRED_ACQ", "PAM:setcred")))
    text += ("type=LOGIN msg=audit(%s): pid=%d uid=0 subj=unconfined old-auid=%s auid=%s tty=(none) old-ses=%s "
             "ses=%s res=1\n" % (clock.stamp(), pid, UNSET, ALICE, UNSET, ses))
    text += user("USER_START", "PAM:session_open", acct="alice", pid=pid, auid=ALICE, ses=ses, addr=addr,
                 stamp=clock.stamp())
    return text + user("USER_LOGIN", "login", acct="alice", pid=pid + 1, auid=ALICE, ses=ses, addr=addr,
                       terminal="/dev/pts/1", extra="id=%s " % ALICE, stamp=clock.stamp())


def _logout(clock, ses, pid, after=60.0, addr="198.51.100.20"):
    return user("USER_END", "PAM:session_close", acct="alice", pid=pid, auid=ALICE, ses=ses, addr=addr,
                stamp=clock.stamp(after))


def test_a_known_login_that_turns_critical_later_is_never_lowered():
    """A terminal login goes out (or, known, into the routine count) once
    it is done, and stays open for its session: a critical deed of its
    own process after that is a message, however well the login is known."""
    sent = {}  # each message in its last version
    notifier = Notifier(Config(), RuleSet(), lambda note: sent.__setitem__(note.key, note), Counters())
    clock = Clock()

    def feed(text, quiet):
        for one in events_of(text.encode()):
            notifier.on_event(one)
        for node in ("testhost", ANY):
            notifier.due(node, clock.now + quiet)
        return [note.severity for note in sent.values() if note.kind == "incident"]

    assert feed(_terminal_login(clock, "7", 3000) + _logout(clock, "7", 3000), 3600) == ["warning"]  # new
    clock.now += DAY
    sent.clear()
    assert feed(_terminal_login(clock, "8", 5000), 30) == []  # known: routine
    assert feed(syscall("openat", exe="/usr/sbin/sshd", a0="ffffff9c", a2=O_WRONLY_CREAT_TRUNC,
                        paths=[("/etc/ld.so.preload", "CREATE")], uid="0", auid=ALICE, ses="8", pid=5000,
                        tty="(none)", stamp=clock.stamp(60)) + _logout(clock, "8", 5000), 3600) == ["critical"]


# -- the admin's door: audit-notify known, and the dry run's --state ------------------------

def _run(*args, timeout=WAIT):
    return subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True, timeout=timeout)


def _learned(directory, day="stig"):
    """A state directory whose memory has seen a recorded day, as the
    plugin leaves it."""
    known = Known(known_path(str(directory)))
    config = Config(blacklist=os.path.join(ROOT, "blacklist.example"))
    notifier = Notifier(config, load_ruleset(config), lambda note: None, Counters(), known=known)
    for event in events_of(read(os.path.join(DAYS, day + ".log")), node="vm"):
        notifier.on_event(event)
    notifier.close_all()
    known.close()
    return known.entries()


def test_known_lists_what_the_plugin_knows_and_forgets_by_pattern(tmp_path):
    known = Known(known_path(str(tmp_path)))
    known.seen("vm", "1", "sudo by opsadm as root from 127.0.0.1", T0)
    known.seen("vm", "2", "sshd login by alice from 127.0.0.1", T0)
    known.seen("vm", "2", "sshd login by alice from 127.0.0.1", T0 + DAY)
    known.close()
    listed = _run("known", "--state", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("vm  sudo by opsadm as root from 127.0.0.1  first ") and lines[0].endswith(" 1 times")
    assert lines[1].startswith("vm  sshd login by alice from 127.0.0.1  first ") and lines[1].endswith(" 2 times")
    forgot = _run("known", "--state", str(tmp_path), "--forget", "sudo *")
    assert (forgot.returncode, forgot.stdout) == (0, "forgot 1 shapes\n")
    assert [line.split("  ")[1] for line in _run("known", "--state", str(tmp_path)).stdout.splitlines()] == \
        ["sshd login by alice from 127.0.0.1"]
    assert _run("known", "--state", str(tmp_path), "--forget").stdout == "forgot 1 shapes\n"
    assert _run("known", "--state", str(tmp_path)).stdout == ""


def test_known_of_an_empty_state_directory_says_so_and_creates_nothing(tmp_path):
    listed = _run("known", "--state", str(tmp_path))
    assert listed.returncode == 0 and listed.stdout.startswith("nothing known yet")
    assert os.listdir(tmp_path) == []


def _warnings(out):
    """The warning messages of a dry run's --json output, in their last
    version; not auditd's own start (lifecycle.py), which no memory makes
    routine."""
    final = {}
    for line in out.splitlines():
        note = json.loads(line)
        final[note["key"] or len(final)] = note
    return [note for note in final.values() if note["kind"] == "incident" and note["severity"] == "warning"
            and not (note["key"] or "").startswith("auditd|")]


def test_a_dry_run_from_a_state_directory_knows_it_and_never_writes_it(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    assert _learned(state)
    before = _snapshot(state)
    day = os.path.join(DAYS, "stig.log")
    fresh = _run("--dry-run", "--json", "--config", DRY_RUN_CONFIG, day)
    knowing = _run("--dry-run", "--json", "--config", DRY_RUN_CONFIG, "--state", str(state), day)
    assert fresh.returncode == 0 and knowing.returncode == 0, knowing.stderr
    assert len(_warnings(fresh.stdout)) >= 5
    assert _warnings(knowing.stdout) == []
    assert _snapshot(state) == before


def test_state_is_for_dry_runs_only(tmp_path):
    refused = _run("--state", str(tmp_path), os.path.join(DATA, "debian12-sample.log"))
    assert refused.returncode == 2 and "--state needs --dry-run" in refused.stderr
    assert os.listdir(tmp_path) == []
