"""Spool: durable, ordered, bounded, readable while the plugin writes."""

import json
import os
import subprocess
import sys

from corpus import ROOT, audit_notify

Spool = audit_notify.Spool
Notification = audit_notify.Notification


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def _note(text, priority=0, size=0):
    return Notification(body=text + "x" * size, html=text, fields={}, timestamp=1.0, priority=priority)


def test_items_come_out_oldest_first_and_leave_only_when_delivered(tmp_path):
    spool = Spool(str(tmp_path / "s.db"), 10 ** 6, 3600)
    for i in range(3):
        spool.add(_note("n%d" % i))
    spool.commit()
    first = spool.peek()
    assert first.content["body"] == "n0" and first.content["m.mentions"] == {}
    assert spool.peek(first.id).content["body"] == "n1"
    spool.attempt_failed(first.id)
    assert spool.peek().attempts == 1
    spool.delivered(first.id)
    assert spool.peek().content["body"] == "n1"
    assert spool.depth()[0] == 2


def test_committed_items_survive_sigkill(tmp_path):
    path = str(tmp_path / "s.db")
    code = ("import sys, os, signal; sys.path.insert(0, %r); import audit_notify as a\n"
            "s = a.Spool(%r, 10**6, 3600)\n"
            "for i in range(50): s.add(a.Notification('kept%%d' %% i, '', {}, 1.0))\n"
            "s.commit()\n"
            "s.add(a.Notification('uncommitted', '', {}, 1.0))\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n" % (ROOT, path))
    out = subprocess.run([sys.executable, "-c", code])
    assert out.returncode == -9
    spool = Spool(path, 10 ** 6, 3600)
    assert spool.depth()[0] == 50
    bodies = []
    item = spool.peek()
    while item:
        bodies.append(item.content["body"])
        item = spool.peek(item.id)
    assert bodies == ["kept%d" % i for i in range(50)]


def test_size_bound_drops_oldest_least_important_first(tmp_path):
    spool = Spool(str(tmp_path / "s.db"), 20000, 3600)
    for i in range(10):
        spool.add(_note("important%d" % i, priority=1, size=1000))
        spool.add(_note("routine%d" % i, priority=0, size=1000))
    spool.commit()
    dropped = spool.enforce_bounds()
    spool.commit()
    assert dropped > 0 and spool.bytes <= 20000
    left = []
    item = spool.peek()
    while item:
        left.append(item.content["body"].rstrip("x"))
        item = spool.peek(item.id)
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
    spool.bury(spool.peek().id, "M_TOO_LARGE")
    assert spool.peek().content["body"] == "fine"
    status = audit_notify.spool_status(path)
    assert status["dead"] == 1 and status["depth"] == 1


def test_status_reads_while_a_writer_holds_a_transaction(tmp_path):
    path = str(tmp_path / "s.db")
    spool = Spool(path, 10 ** 6, 3600)
    spool.add(_note("a"))
    spool.set_state("counters", json.dumps({"events": 7}))
    spool.commit()
    spool.add(_note("b"))  # open transaction, not committed
    status = audit_notify.spool_status(path)
    assert status["depth"] == 1
    assert json.loads(status["state"]["counters"]) == {"events": 7}
    spool.commit()
    assert audit_notify.spool_status(path)["depth"] == 2
    assert not os.path.exists(path + "-journal")
