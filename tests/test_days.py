"""Recorded days (tests/data/days): three minutes of ordinary work and an
intrusion under the rule sets people run (Neo23x0's, audit-userspace's
STIG building blocks), read by the plugin as shipped (default config,
blacklist.example).  The manifest beside each log says, action by
action, what happened and how much it matters; this checks what the room
would show against it.

An action's events are found as the manifest's notes say (see
tests/days.py, shared with tests/data/days/score.py).  Actions the rule set leaves no trace of are not held against the plugin,
but each day must show most of them.
"""

import os
import re

import pytest
from days import DAYS, Day

from audit_notify.severity import RANK

NAMES = ("neo23x0", "stig", "neo23x0-enriched")
MAX_MESSAGES = 50  # the bound for such a day (it measured ~940 before)


@pytest.fixture(scope="module", params=NAMES)
def day(request):
    if not os.path.exists(os.path.join(DAYS, request.param + ".log")):
        pytest.skip("day %s not recorded" % request.param)
    return Day(request.param)


def _actions(day, kind=None, severity=None):
    return day.actions(kind, severity)


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
    loaded = [h for h in heads if re.search(r"\d+ audit rules loaded by root", h)]
    deleted = [h for h in heads if re.search(r"all \d+ audit rules deleted", h, re.I)]
    rules = day.manifest["stats"]["rules_added"]
    assert loaded == ["⚠️ %d audit rules loaded by root on vm" % rules], heads
    assert len(deleted) == 1 and "all %d audit rules deleted" % rules in deleted[0].lower(), deleted
