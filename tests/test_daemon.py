"""The daemon's loop in-process: injected clock, wait and read, a fake
spawn for matrix-commander (fakes.py); no sleeps.  What auditd sees of it
(a process, signals, stdin) is in test_plugin.py."""

import gc
import io
import json
import logging
import os
import sqlite3
from dataclasses import replace

import pytest
from corpus import DATA, read
from fakes import Clock, FakeMatrixCommander

from audit_notify.cli import UNEXPECTED, serve
from audit_notify.config import Config, Heartbeat
from audit_notify.counters import Counters
from audit_notify.answering import CHECK_INTERVAL, Answering
from audit_notify.ledger import Ledger
from audit_notify.grouper import QUIET_DEFAULT
from audit_notify.daemon import EOF, GC_YOUNG, READ_ERROR, STATS_INTERVAL, STOPPED, TAKEOVER_INTERVAL, Plugin
from audit_notify.reader import IDLE_TICK, import_auparse
from audit_notify.rules import RuleSet, parse_rules
from audit_notify.sender import Sender
from audit_notify.spool import Printer, SendingRights, open_spool, spool_path

SAMPLE = os.path.join(DATA, "debian12-sample.log")


class Recorder(Printer):
    """The dry run's sink, keeping what it is given."""

    def __init__(self):
        super().__init__(io.StringIO(), False, Counters())
        self.sent = []

    def add(self, notification):
        self.sent.append(notification)


class Loop:
    """A Plugin on a real spool in tmp_path, with everything it touches
    outside itself injected."""

    def __init__(self, tmp_path, reads=None, answering=False, **settings):
        self.dir = tmp_path
        (tmp_path / "state").mkdir(exist_ok=True)
        self.config = Config(matrix_commander="/nonexistent", credentials="c", store="s", room="#a:localhost",
                             state_dir=str(tmp_path / "state"), spool_dir=str(tmp_path / "spool"),
                             max_messages_per_minute=0, source=str(tmp_path / "audit-notify.conf"), **settings)
        self.clock = Clock()
        self.counters = Counters()
        self.spool, self.rights = open_spool(self.config)
        self.children = []
        self.made = []
        self.reloads = []
        self.reads = list(reads or [])
        self._idled = False
        self.plugin = Plugin(self.config, RuleSet(), import_auparse(), self.spool, self.counters,
                             rights=self.rights, make_sender=self.make_sender, reload=self.reload,
                             clock=self.clock, wall=self.clock, wait=self.wait, read=self.read, hostname="h",
                             answering=self.answering if answering else None)

    def answering(self, accept):
        """The answer path without a room to read (nobody may answer)."""
        return Answering(self.config, Ledger(spool_path(self.config)), None, accept, wall=self.clock)

    def make_sender(self, config):
        self.made.append(config)
        return Sender(config, self.spool, self.counters, clock=self.clock, spawn=self.spawn)

    def spawn(self, argv, env, **kwargs):
        self.children.append(FakeMatrixCommander(argv, env, **kwargs))
        return self.children[-1]

    def reload(self):
        config, rules = self.reloads.pop(0)
        return config, rules

    def wait(self, fds, timeout):
        """Input is always ready while there are reads left; then one idle
        turn (time passes by the timeout asked for, and nothing is
        readable), then the test takes over again."""
        if self.reads:
            return [fds[0]]
        if self._idled:
            self._idled = False
            raise StopLoop
        self._idled = True
        self.clock.now += timeout or 0
        return []

    def read(self, fd, size):
        what = self.reads.pop(0)
        if isinstance(what, BaseException):
            raise what
        return what() if callable(what) else what


class StopLoop(Exception):
    """The test's way out of run() once the script of reads is done."""


def test_a_read_error_is_an_error_not_the_end_of_input(tmp_path, caplog):
    loop = Loop(tmp_path, reads=[read(SAMPLE)[:20000], OSError(5, "Input/output error")])
    with caplog.at_level(logging.ERROR, logger="audit-notify"):
        assert loop.plugin.run(0) == READ_ERROR
    assert "reading audit records failed: [Errno 5] Input/output error; stopping" in caplog.text
    assert loop.counters.errors == 1


def test_eof_is_the_end_of_input(tmp_path):
    loop = Loop(tmp_path, reads=[read(SAMPLE), b""])
    assert loop.plugin.run(0) == EOF
    assert loop.counters.events > 300


def test_the_cycle_collector_looks_less_often_while_running_and_as_before_after(tmp_path):
    """A flood's objects are freed by reference counting; the collector's
    default (every 700 net new objects) cost a tenth of ingest.  The
    process's own thresholds come back when run() returns."""
    before = gc.get_threshold()
    seen = []
    loop = Loop(tmp_path, reads=[read(SAMPLE), lambda: (seen.append(gc.get_threshold()), b"")[1]])
    assert loop.plugin.run(0) == EOF
    assert seen == [(max(GC_YOUNG, before[0]),) + before[1:]]
    assert gc.get_threshold() == before


def test_auditd_stopping_is_a_stop_whichever_of_eof_and_sigterm_is_seen_first(tmp_path):
    """auditd closes the pipe and sends SIGTERM together; seen in one turn,
    it is a stop (a bounded grace), not a file piped by hand (a drain)."""
    loop = Loop(tmp_path, reads=[read(SAMPLE)[:20000]])
    loop.reads.append(lambda: (loop.plugin.request_stop(), b"")[1])  # the signal lands during the read
    assert loop.plugin.run(0) == STOPPED


def test_a_plugin_without_the_sending_rights_takes_over_once_they_are_free(tmp_path, caplog):
    (tmp_path / "spool").mkdir()
    old_instance = SendingRights(os.path.join(str(tmp_path / "spool"), "lock"))
    assert old_instance.take()
    loop = Loop(tmp_path, reads=[read(SAMPLE)])
    assert loop.plugin.sender is None and loop.made == []
    with pytest.raises(StopLoop):
        loop.plugin.run(0)
    assert loop.spool.depth()[0] > 10  # spooled all the same
    os.close(old_instance._fd)  # the old instance exits
    loop.clock.now += TAKEOVER_INTERVAL
    with caplog.at_level(logging.INFO, logger="audit-notify"), pytest.raises(StopLoop):
        loop.plugin.run(0)
    assert len(loop.made) == 1 and loop.plugin.sender is not None
    assert "took over sending" in caplog.text
    with pytest.raises(StopLoop):
        loop.plugin.run(0)  # the sender starts matrix-commander
    assert len(loop.children) == 1


def test_a_full_disk_is_retried_and_nothing_accepted_is_lost(tmp_path, small_disk, caplog):
    loop = Loop(tmp_path, reads=[read(SAMPLE), b""])
    loop.plugin.sink = loop.spool = type(loop.spool)(str(small_disk.path / "spool.db"), 10 ** 8, 10 ** 6)
    small_disk.fill()
    assert loop.plugin.run(0) == EOF
    with caplog.at_level(logging.ERROR, logger="audit-notify"):
        loop.plugin.commit()
        loop.clock.now += 1
        loop.plugin.commit()  # logged once, not once per try
    assert caplog.text.count("cannot write the spool") == 1 and "kept in memory" in caplog.text
    waiting = loop.spool.unwritten()
    assert waiting > 10
    assert loop.plugin._timeout() <= 5.0  # the loop comes back to try again
    small_disk.free()
    loop.clock.now += 10
    with caplog.at_level(logging.WARNING, logger="audit-notify"):
        loop.plugin.commit()
    assert "the spool is writable again" in caplog.text
    assert loop.spool.unwritten() == 0
    db = sqlite3.connect(str(small_disk.path / "spool.db"))
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == waiting


def test_reload_applies_every_key_it_can_and_names_the_others(tmp_path, caplog):
    loop = Loop(tmp_path)
    plugin = loop.plugin
    with pytest.raises(StopLoop):
        plugin.run(0)  # takes the sending rights, starts matrix-commander
    assert plugin.sender._child.swapped.wait(10)
    new = replace(loop.config, eoe_timeout=9, hostname="renamed", log_level="debug", spool_max_mb=1,
                  spool_max_age_hours=2.0, digest_after=0, digest_window=30.0, max_messages_per_minute=7,
                  send_timeout=5.0, room="#b:localhost", matrix_commander="/other/mc",
                  user="someone", log_file="/var/log/x", state_dir="/elsewhere", spool_dir="/elsewhere/spool",
                  credentials="/elsewhere/c", store="/elsewhere/s", mention=("@admin:localhost",),
                  heartbeat=Heartbeat(every=1800.0), node_silence_minutes=5.0)
    rules = RuleSet(tuple(parse_rules("type=USER_LOGIN\n", "blacklist")))
    loop.reloads.append((new, rules))
    plugin.request_reload()
    caplog.set_level(logging.INFO, logger="audit-notify")
    reloaded_at = loop.clock()
    with pytest.raises(StopLoop):
        plugin.run(0)
    assert logging.getLogger("audit-notify").level == logging.DEBUG
    # Applied at once:
    assert plugin.rules is rules
    assert plugin.reader._timeout == 9 and plugin.reader._node == "renamed"
    assert (loop.spool.max_bytes, loop.spool.max_age) == (1 << 20, 7200.0)
    assert (plugin.notifier.repeats.after, plugin.notifier.repeats.window) == (0, 30.0)
    assert plugin.sender.config.max_messages_per_minute == 7 and plugin.sender.config.send_timeout == 5.0
    assert plugin.sender.config.room == "#b:localhost" and plugin.sender.config.matrix_commander == "/other/mc"
    assert loop.children[0].returncode is not None  # the old matrix-commander is replaced
    watcher = plugin.watcher
    assert (watcher.mentions, watcher.heartbeat, watcher.silence, watcher.local) == \
        (("@admin:localhost",), Heartbeat(every=1800.0), 300.0, "renamed")
    assert reloaded_at + 1800 <= watcher.next_beat <= loop.clock() + 1801  # every 30 min from the reload on
    # Named, and kept as they were until a restart:
    for key in ("user", "log_file", "state_dir", "spool_dir", "credentials", "store"):
        assert "reload: %s changed, but it takes effect only when the plugin restarts" % key in caplog.text
        assert getattr(plugin.config, key) == getattr(loop.config, key)


def test_a_bad_reload_keeps_everything(tmp_path, caplog):
    loop = Loop(tmp_path)
    from audit_notify.config import Error

    def bad():
        raise Error("x.conf:3: unknown key 'nope'")
    loop.plugin._reload_source = bad
    loop.plugin.request_reload()
    with caplog.at_level(logging.ERROR, logger="audit-notify"), pytest.raises(StopLoop):
        loop.plugin.run(0)
    assert "reload failed, keeping the previous config and rules: x.conf:3: unknown key 'nope'" in caplog.text
    assert loop.plugin.config == loop.config


def test_the_last_resort_logs_the_traceback_counts_it_and_fails(tmp_path, caplog):
    loop = Loop(tmp_path, reads=[read(SAMPLE)[:30000], ValueError("a bug somewhere")])

    def wait(fds, timeout):
        if loop.reads:
            return [fds[0]]
        loop.clock.now += timeout or 0.01  # the stop's grace passes
        return []
    loop.plugin._wait = wait
    with caplog.at_level(logging.ERROR, logger="audit-notify"):
        assert serve(loop.plugin, loop.spool, loop.counters, [0], None) == 1
    assert UNEXPECTED in caplog.text and "ValueError: a bug somewhere" in caplog.text
    assert loop.counters.problems[UNEXPECTED] == 1
    # What was accepted before is on disk, and so is the count.
    db = sqlite3.connect(loop.config.spool_dir + "/spool.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] > 3
    saved = json.loads(db.execute("SELECT value FROM state WHERE name = 'counters'").fetchone()[0])
    assert saved["problems"][UNEXPECTED] == 1


def test_idle_plugin_blocks_until_the_hourly_report():
    """No busy loop: with nothing pending, select() waits until the next
    hourly counters line; with an event waiting for its EOE, it gets the
    idle tick; with an incident open, until it closes, in its host's own
    time (its quiet spell after its event, whatever the wall clock says:
    the event is from 1970)."""
    read_end, write_end = os.pipe()
    timeouts = []
    plugin = Plugin(Config(), RuleSet(), import_auparse(), Recorder(), Counters(), hostname="h",
                    clock=lambda: 0.0, wall=lambda: 50000.0)
    script = [
        b"type=SYSCALL msg=audit(1000.000:5): arch=c000003e syscall=2 success=yes exit=3 items=0 ppid=1 pid=2 "
        b"auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"cat\" "
        b"exe=\"/usr/bin/cat\" key=\"k\"\n",
        None,   # idle tick: the event without EOE comes out, its incident opens
        b"",    # EOF (before the incident closed)
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
    assert plugin.run(read_end) == EOF
    assert timeouts == [STATS_INTERVAL, IDLE_TICK, QUIET_DEFAULT]
    assert plugin.sink.sent == []
    plugin.finish(EOF)  # the end of the input closes it
    assert [n.fields["key"] for n in plugin.sink.sent] == ["k"]
    os.close(read_end)


def test_an_idle_plugin_with_the_answer_path_but_no_room_to_read_sleeps(tmp_path):
    """It looks at the mutes and re-announcements every CHECK_INTERVAL,
    not in a busy loop (a first version spun: its check never ran
    without a room to read)."""
    loop = Loop(tmp_path, answering=True)
    with pytest.raises(StopLoop):
        loop.plugin.run(0)
    assert loop.plugin.answering.next_due() >= loop.clock.now + CHECK_INTERVAL - 1
