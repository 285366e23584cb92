"""Spool: durable, ordered, bounded, readable while the plugin writes."""

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace

import pytest
from corpus import SRC

from audit_notify.message import Notification
from audit_notify.spool import URGENT, Spool, SpoolError, spool_status


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def _note(text, priority=0, size=0):
    return Notification(body=text + "x" * size, html=text, fields={}, timestamp=1.0, priority=priority)


def _bodies(path):
    """What the spool holds, in sending order, read as --status would."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return [json.loads(row[0])["body"] for row in db.execute("SELECT content FROM outbox ORDER BY id")]
    finally:
        db.close()


def test_items_come_out_oldest_first_and_leave_only_when_delivered(tmp_path):
    spool = Spool(str(tmp_path / "s.db"), 10 ** 6, 3600)
    for i in range(3):
        spool.add(_note("n%d" % i))
    assert spool.peek() is None  # added is not accepted: not until the commit
    spool.commit()
    first = spool.peek()
    assert first.content["body"] == "n0" and first.content["m.mentions"] == {}
    assert spool.refused(first.id) == 1 and spool.refused(first.id) == 2
    assert spool.peek().attempts == 2
    spool.delivered(first)
    assert spool.peek().content["body"] == "n1"
    assert spool.depth()[0] == 2


def test_an_urgent_warning_goes_out_with_the_critical_ones(tmp_path):
    """auditd's own stop (lifecycle.py) is a warning that must leave in the
    seconds the plugin has once auditd stops it: it ranks with the
    critical messages, which the sender finishes before it exits."""
    spool = Spool(str(tmp_path / "s.db"), 10 ** 6, 3600)
    spool.add(replace(_note("routine"), severity="info"))
    spool.add(replace(_note("warning"), severity="warning"))
    spool.add(replace(_note("stopping", priority=URGENT), severity="warning"))
    spool.commit()
    first = spool.peek()
    assert first.content["body"] == "stopping" and first.rank == 0


def test_committed_items_survive_sigkill(tmp_path):
    path = str(tmp_path / "s.db")
    code = ("import sys, os, signal; sys.path.insert(0, %r)\n"
            "from audit_notify.spool import Spool\n"
            "from audit_notify.message import Notification\n"
            "s = Spool(%r, 10**6, 3600)\n"
            "for i in range(50): s.add(Notification('kept%%d' %% i, '', {}, 1.0))\n"
            "s.commit()\n"
            "s.add(Notification('uncommitted', '', {}, 1.0))\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n" % (SRC, path))
    out = subprocess.run([sys.executable, "-c", code])
    assert out.returncode == -9
    spool = Spool(path, 10 ** 6, 3600)
    assert spool.depth()[0] == 50
    assert _bodies(path) == ["kept%d" % i for i in range(50)]


def test_a_full_disk_loses_nothing_accepted_or_unwritten(small_disk):
    path = str(small_disk.path / "s.db")
    spool = Spool(path, 10 ** 8, 3600)
    for i in range(5):
        spool.add(_note("before%d" % i))
    spool.commit()
    small_disk.fill()
    for i in range(300):
        spool.add(_note("during%d" % i, size=2000))
    with pytest.raises(SpoolError, match="cannot write the spool"):
        spool.commit()
    assert spool.unwritten() == 300
    assert spool.depth()[0] == 305
    first = spool.peek()
    assert first.content["body"] == "before0"  # what was accepted is still there, and still offered
    with contextlib.suppress(SpoolError):  # a DELETE may need room for the WAL too
        spool.delivered(first)
    assert spool.peek().content["body"] == "before1"  # never offered twice, written or not
    small_disk.free()
    spool.commit()
    assert spool.unwritten() == 0
    assert [b.rstrip("x") for b in _bodies(path)] == ["before%d" % i for i in range(1, 5)] + ["during%d" % i for i in range(300)]


def test_size_bound_drops_oldest_least_important_first(tmp_path):
    path = str(tmp_path / "s.db")
    spool = Spool(path, 20000, 3600)
    for i in range(10):
        spool.add(_note("important%d" % i, priority=1, size=1000))
        spool.add(_note("routine%d" % i, priority=0, size=1000))
    spool.commit()
    dropped = spool.enforce_bounds()
    assert dropped > 0 and spool.bytes <= 20000
    left = [body.rstrip("x") for body in _bodies(path)]
    assert [b for b in left if b.startswith("important")] == ["important%d" % i for i in range(10)]
    assert [b for b in left if b.startswith("routine")] == ["routine%d" % i for i in range(dropped, 10)]


def test_age_bound(tmp_path):
    clock = Clock()
    spool = Spool(str(tmp_path / "s.db"), 10 ** 6, 3600, clock=clock)
    spool.add(_note("old"))
    clock.now += 3000
    spool.add(_note("new"))
    spool.commit()
    clock.now += 1000
    assert spool.enforce_bounds() == 1
    assert spool.peek().content["body"] == "new"


def test_dead_letters_are_kept_apart(tmp_path):
    path = str(tmp_path / "s.db")
    spool = Spool(path, 10 ** 6, 3600)
    spool.add(_note("too big"))
    spool.add(_note("fine"))
    spool.commit()
    spool.bury(spool.peek(), "M_TOO_LARGE")
    assert spool.peek().content["body"] == "fine"
    status = spool_status(path)
    assert status["dead"] == 1 and status["depth"] == 1


def test_status_reads_while_the_plugin_writes(tmp_path):
    path = str(tmp_path / "s.db")
    spool = Spool(path, 10 ** 6, 3600)
    spool.add(_note("a"))
    spool.commit({"counters": json.dumps({"events": 7})})
    spool.add(_note("b"))  # added, not committed
    status = spool_status(path)
    assert status["depth"] == 1
    assert json.loads(status["state"]["counters"]) == {"events": 7}
    spool.commit()
    assert spool_status(path)["depth"] == 2
    assert not os.path.exists(path + "-journal")


def test_a_spool_from_the_previous_version_is_brought_up_to_date(tmp_path):
    path = str(tmp_path / "s.db")
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
            event_time REAL NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            content TEXT NOT NULL);
        INSERT INTO outbox (created, event_time, priority, content) VALUES (1, 1, 0, '{"body": "left over"}');
    """)
    old.commit()
    old.close()
    spool = Spool(path, 10 ** 6, 3600)
    item = spool.peek()
    assert (item.content["body"], item.kind) == ("left over", "event")
    spool.add(_note("new"))
    spool.commit()
    assert _bodies(path) == ["left over", "new"]


def _steps_to_add(tmp_path, n, name):
    """sqlite VM steps (in thousands) to add and commit n keyed items, one
    commit each, as a flood of incidents does."""
    spool = Spool(str(tmp_path / name), 10 ** 9, 3600)
    steps = [0]

    def count():
        steps[0] += 1
        return 0

    spool._db.set_progress_handler(count, 1000)
    for i in range(n):
        note = Notification(body="incident %d" % i, html="", fields={}, timestamp=1.0, priority=1,
                            key="incident|%d" % i)
        spool.add(note)
        spool.commit()
    spool.close()
    return steps[0]


def test_adding_keyed_items_costs_the_same_however_full_the_spool_is(tmp_path):
    """Each keyed add looks for an unsent item with its key: through the
    index, not a scan of the spool (a flood of 20,000 incidents took 50 s
    that way, and would take hours at the spool's size bound)."""
    small, big = _steps_to_add(tmp_path, 500, "small.db"), _steps_to_add(tmp_path, 2000, "big.db")
    assert big < 6 * small, (small, big)  # linear: 4x; a scan per add: 16x
