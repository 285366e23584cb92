"""Recorded days (tests/data/days): a day's manifest, its events, and the
room the plugin makes of it.  Shared by tests/test_days.py (which checks
the room against the manifest) and tests/data/days/score.py (which prints
the figures).

An action's events are found as the manifest's notes say: within its time
window, carrying its user (auid, the acct of PAM records, or the
attacker's address), and holding one of its needles or record types.

A day can be read twice (``passes=2``): the same log again with every time
one day later and new serials, into the same plugin, as the plugin would
see the same work the next day.  Its second pass's events, evidence and
messages are then asked for with ``second=True``.
"""

import json
import os
import re

from corpus import DATA, ROOT, events_of, read

from audit_notify.clocks import ANY
from audit_notify.config import Config
from audit_notify.counters import Counters
from audit_notify.notify import Notifier
from audit_notify.rules import load_ruleset

DAYS = os.path.join(DATA, "days")
ONE_DAY = 86400.0
SERIAL_STEP = 10_000_000  # the second pass's serials: after any of the first's
PID_STEP = 1_000_000  # ... and its processes and sessions: others than the first's
_STAMP = re.compile(rb"msg=audit\((\d+)\.(\d+):(\d+)\)")
_IDS = re.compile(rb"(?<![\w-])(pid|ppid|ses)=(\d+)")
UNSET = b"4294967295"


def default_config():
    """The plugin as shipped: default settings, blacklist.example."""
    return Config(blacklist=os.path.join(ROOT, "blacklist.example"))


def next_day(data):
    """The log's bytes as the same work a day later: every stamp one day
    later, every serial SERIAL_STEP higher, every pid, ppid and session id
    PID_STEP higher (the next day's logins are other sessions, its
    commands other processes); the rest of each line as it was."""
    def move(found):
        seconds = int(found.group(1)) + int(ONE_DAY)
        serial = int(found.group(3)) + SERIAL_STEP
        return b"msg=audit(%d.%s:%d)" % (seconds, found.group(2), serial)

    def renumber(found):
        if found.group(2) == UNSET or found.group(2) == b"0":
            return found.group(0)
        return b"%s=%d" % (found.group(1), int(found.group(2)) + PID_STEP)
    return _IDS.sub(renumber, _STAMP.sub(move, data))


class Day:
    """A recorded day: its manifest, its events, and the room the plugin
    makes of it (each message in its last version)."""

    def __init__(self, name, passes=1):
        self.name = name
        with open(os.path.join(DAYS, name + ".manifest.json"), encoding="utf-8") as handle:
            self.manifest = json.load(handle)
        self.log = os.path.join(DAYS, name + ".log")
        data = read(self.log)
        self.events = events_of(data, node="vm")
        self.lines = {}  # serial -> the raw lines of its event (both passes)
        self._index(data)
        self.counters = Counters()
        self.sent, self.versions = {}, {}
        self.second_keys = set()  # messages first sent during the second pass
        self.second_edits = set()  # first-day messages edited during it
        self._in_second = False
        config = default_config()
        notifier = Notifier(config, load_ruleset(config), self._accept, self.counters)
        for event in self.events:
            notifier.on_event(event)
        if passes == 2:
            again = next_day(data)
            self._index(again)
            events = events_of(again, node="vm")
            # The night between: whatever the first day left open is due.
            for node in ("vm", ANY):
                notifier.due(node, events[0].timestamp - 1.0)
            self._in_second = True
            for event in events:
                notifier.on_event(event)
            self.events = self.events + events
        notifier.close_all()
        self.notifier = notifier

    def _index(self, data):
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            found = re.search(r"msg=audit\((\d+\.\d+):(\d+)\)", line)
            if found:
                self.lines.setdefault(found.group(2), []).append((float(found.group(1)), line))

    def _accept(self, note):
        if self._in_second:
            (self.second_edits if note.key in self.sent and note.key not in self.second_keys
             else self.second_keys).add(note.key)
        self.sent[note.key] = note
        self.versions[note.key] = self.versions.get(note.key, 0) + 1

    def messages(self, kind=None, second=False):
        return [n for key, n in self.sent.items() if (kind is None or n.kind == kind) and
                (not second or key in self.second_keys)]

    def actions(self, kind=None, severity=None):
        return [a for a in self.manifest["actions"] if (kind is None or a["kind"] == kind) and
                (severity is None or a["severity"] == severity)]

    def evidence(self, action, second=False):
        """The serials of the events that show an action (in the second
        pass: the same events a day later)."""
        match = action["match"]
        shift = ONE_DAY if second else 0.0
        low, high = action["epoch"] - 0.5 + shift, action["epoch_end"] + 1.5 + shift
        needles = [n for n in match.get("needles", []) if n]
        hexed = [n.strip('"').encode().hex().upper() for n in needles]
        user = str(match.get("uid", ""))
        serials = set()
        for serial, lines in self.lines.items():
            when = lines[0][0]
            if not low <= when <= high:
                continue
            text = "\n".join(line for _, line in lines)
            mine = (" auid=%s " % user in text or 'acct="%s"' % action.get("user", "") in text or
                    (action.get("source") not in (None, "", "-", "127.0.0.1") and action["source"] in text))
            if not mine:
                continue
            shown = any(n in text for n in needles) or any(h in text for h in hexed) or \
                any("type=%s " % t in text for t in match.get("types", []))
            if shown:
                serials.add(serial)
        return serials

    def where(self, serials):
        """The messages that hold any of these events."""
        return [n for n in self.sent.values() if set(n.serials) & serials]
