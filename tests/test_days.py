"""Recorded days (tests/data/days): three minutes of ordinary work and an
intrusion under the rule sets people run (Neo23x0's, audit-userspace's
STIG building blocks), read by the plugin as shipped (default config,
blacklist.example).  The manifest beside each log says, action by
action, what happened and how much it matters; this checks what the room
would show against it.

An action's events are found as the manifest's notes say: within its time
window, carrying its user (auid, the acct of PAM records, or the
attacker's address), and holding one of its needles or record types.
Actions the rule set leaves no trace of are not held against the plugin,
but each day must show most of them.
"""

import json
import os
import re

import pytest
from corpus import DATA, ROOT, events_of, read

from audit_notify.config import Config
from audit_notify.counters import Counters
from audit_notify.notify import Notifier
from audit_notify.rules import load_ruleset
from audit_notify.severity import RANK

DAYS = os.path.join(DATA, "days")
NAMES = ("neo23x0", "stig", "neo23x0-enriched")
MAX_MESSAGES = 50  # the bound for such a day (it measured ~940 before)


def _config():
    return Config(blacklist=os.path.join(ROOT, "blacklist.example"))


class Day:
    """A recorded day: its manifest, its events, and the room the plugin
    makes of it (each message in its last version)."""

    def __init__(self, name):
        self.name = name
        with open(os.path.join(DAYS, name + ".manifest.json"), encoding="utf-8") as handle:
            self.manifest = json.load(handle)
        self.log = os.path.join(DAYS, name + ".log")
        data = read(self.log)
        self.events = events_of(data, node="vm")
        self.lines = {}  # serial -> the raw lines of its event
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            found = re.search(r"msg=audit\((\d+\.\d+):(\d+)\)", line)
            if found:
                self.lines.setdefault(found.group(2), []).append((float(found.group(1)), line))
        self.counters = Counters()
        self.sent, self.versions = {}, {}
        config = _config()
        notifier = Notifier(config, load_ruleset(config), self._accept, self.counters)
        for event in self.events:
            notifier.on_event(event)
        notifier.close_all()
        self.notifier = notifier

    def _accept(self, note):
        self.sent[note.key] = note
        self.versions[note.key] = self.versions.get(note.key, 0) + 1

    def messages(self, kind=None):
        return [n for n in self.sent.values() if kind is None or n.kind == kind]

    def evidence(self, action):
        """The serials of the events that show an action."""
        match = action["match"]
        low, high = action["epoch"] - 0.5, action["epoch_end"] + 1.5
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


@pytest.fixture(scope="module", params=NAMES)
def day(request):
    if not os.path.exists(os.path.join(DAYS, request.param + ".log")):
        pytest.skip("day %s not recorded" % request.param)
    return Day(request.param)


def _actions(day, kind=None, severity=None):
    return [a for a in day.manifest["actions"] if (kind is None or a["kind"] == kind) and
            (severity is None or a["severity"] == severity)]


def test_every_critical_attack_is_a_critical_message_of_its_own(day):
    seen = 0
    for action in _actions(day, "attack", "critical"):
        serials = day.evidence(action)
        if not serials:
            continue  # this rule set leaves no trace of it
        seen += 1
        holding = day.where(serials)
        assert any(n.severity == "critical" and n.kind == "incident" for n in holding), \
            (action["label"], [n.body.split("\n")[0] for n in holding])
    # Each rule set sees most of the day's attacks (STIG has no exec rules).
    assert seen >= (12 if day.name.startswith("neo") else 8), seen


def test_every_attack_that_changes_something_is_at_least_a_warning_headline(day):
    """Read-only discovery inside a session (whoami, ss -tlnp) is routine by
    design: the session's login, from a new address, is the message.
    Anything that changes the system or elevates is a message."""
    for action in _actions(day, "attack", "warning"):
        if action["label"].startswith("recon") and "sudo" not in action["label"]:
            continue
        serials = day.evidence(action)
        if not serials:
            continue
        holding = day.where(serials)
        assert any(RANK[n.severity] <= RANK["warning"] and n.kind == "incident" for n in holding), \
            (action["label"], [(n.severity, n.body.split("\n")[0]) for n in holding])


def test_ordinary_work_never_pages_and_never_has_a_message_of_its_own(day):
    for action in _actions(day, "routine", "none"):
        for note in day.where(day.evidence(action)):
            assert note.severity != "critical", (action["label"], note.body.split("\n")[0])
            # At most the login it happened in says so (its commands, its end).
            assert note.kind == "routine" or note.body.split("\n")[0].startswith(("⚠️ SSH login", "ℹ️")), \
                (action["label"], note.body.split("\n")[0])


def test_routine_actions_are_never_critical(day):
    for action in _actions(day, "routine"):
        for note in day.where(day.evidence(action)):
            assert note.severity != "critical", (action["label"], note.body.split("\n")[0])


def test_a_day_is_a_few_dozen_messages_and_every_event_is_accounted_for(day):
    messages = day.messages()
    assert len(messages) <= MAX_MESSAGES, len(messages)
    assert len(day.messages("routine")) == 1  # one summary, edited as it grew
    assert sum(day.notifier.accounted()) == len(day.events)


def test_each_ssh_session_is_one_message(day):
    """A login with or without a terminal (interactive, ssh host cmd, sftp)
    is one message: sshd's successful sessions, counted in the log by their
    USER_START records."""
    sessions = set()
    for lines in day.lines.values():
        for _, line in lines:
            if "type=USER_START " in line and '/usr/sbin/sshd"' in line and "res=success" in line:
                sessions.add(re.search(r" ses=(\d+)", line).group(1))
    logins = [n for n in day.messages("incident") if re.match(r"⚠️❌? SSH login: ", n.body)]
    assert len(logins) == len(sessions) >= 5, [n.body.split("\n")[0] for n in logins]


def test_rules_loaded_and_deleted_in_bulk_are_one_message_each(day):
    heads = [n.body.split("\n")[0] for n in day.messages()]
    loaded = [h for h in heads if re.search(r"\d+ (audit )?rules loaded", h)]
    deleted = [h for h in heads if re.search(r"all \d+ audit rules deleted", h, re.I)]
    rules = day.manifest["stats"]["rules_added"]
    # auditd's start and the rules loaded with it (lifecycle.py): one message.
    assert loaded == ["⚠️ auditd started: %d rules loaded on vm" % rules], heads
    assert len(deleted) == 1 and "all %d audit rules deleted" % rules in deleted[0].lower(), deleted
