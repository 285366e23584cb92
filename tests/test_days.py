"""Recorded days (tests/data/days): three minutes of ordinary work and an
intrusion, under the rule sets people run (Neo23x0's, audit-userspace's
STIG building blocks, bfuzzy's ATT&CK-keyed set) and under an admin's own
hand-written rules whose keys mean nothing to anyone else; read by the
plugin as shipped (default config, blacklist.example).  The manifest beside
each log says, action by action, what happened and how much it matters;
this checks what the room would show against it, as issue 17 asks:

* every successful attack step the rule set recorded is a critical message
  (a step that left no record is not held against the plugin);
* from an empty memory, ordinary work is at most MAX_WARNINGS warnings and
  MAX_CRITICAL critical messages;
* the same day fed again a day later (the plugin remembers what is
  ordinary: known.py) is at most MAX_LOUD_AGAIN loud messages for ordinary
  work, with every attack still critical.

An action's events are found as the manifest's notes say (tests/days.py,
shared with tests/data/days/score.py, which prints these figures).
"""

import os
import re

import pytest
from days import DAYS, Day

from audit_notify.severity import RANK

NAMES = ("neo23x0", "stig", "neo23x0-enriched", "admin", "bfuzzy", "admin-enriched")
MAX_MESSAGES = 50      # such a day was ~940 messages before incidents
MAX_WARNINGS = 8       # ordinary work, from an empty memory (issue 17)
MAX_CRITICAL = 2
MAX_LOUD_AGAIN = 2     # ordinary work, the same day again a day later
# Attack steps whose recorded evidence does not show the deed, each with
# why: the plugin cannot be held to what the records do not say.
NOT_SHOWN = {
    # bfuzzy's rules log base64's exec (T1219) but not the shell it fed:
    # "base64 -d" alone decodes, it runs nothing.
    ("bfuzzy", "base64-decoded payload piped to a shell by opsadm (from 127.0.0.66)"),
}


def _exists(name):
    return os.path.exists(os.path.join(DAYS, name + ".log"))


@pytest.fixture(scope="module", params=[name for name in NAMES if _exists(name)])
def day(request):
    return Day(request.param, passes=2)


def _loud(notes):
    return [n for n in notes if n.kind == "incident" and n.severity in ("critical", "warning")]


def _attack_serials(day, second=False):
    serials = set()
    for action in day.actions("attack"):
        serials |= day.evidence(action, second=second)
    return serials


def _first(day):
    """The messages first sent in the first pass (in their last version)."""
    return [n for n in day.messages() if n.key not in day.second_keys]


def _ordinary_only(day, second=False):
    """The loud messages of a pass that hold none of the attack's events."""
    attack = _attack_serials(day, second)
    return [n for n in _loud(day.messages(second=True) if second else _first(day)) if not set(n.serials) & attack]


def _critical_steps(day, second=False):
    for action in day.actions("attack", "critical"):
        if (day.name.replace("-enriched", ""), action["label"]) in NOT_SHOWN:
            continue
        serials = day.evidence(action, second=second)
        if serials:
            yield action, serials


def test_every_recorded_attack_step_is_a_critical_message(day):
    steps = list(_critical_steps(day))
    for action, serials in steps:
        holding = day.where(serials)
        assert any(n.severity == "critical" and n.kind == "incident" for n in holding), \
            (action["label"], [n.body.split("\n")[0] for n in holding])
    # Each rule set records most of the day's attack (STIG logs no execs).
    assert len(steps) >= (8 if day.name == "stig" else 12), len(steps)


def test_the_same_attack_a_day_later_is_still_critical(day):
    for action, serials in _critical_steps(day, second=True):
        holding = [n for n in day.where(serials)]
        assert any(n.severity == "critical" and n.kind == "incident" for n in holding), \
            (action["label"], [n.body.split("\n")[0] for n in holding])


def test_every_attack_that_changes_something_is_at_least_a_warning_headline(day):
    """Read-only discovery inside a session (whoami, ss -tlnp) is routine by
    design: the session's login, from a new address, is the message.
    Anything that changes the system or elevates is a message."""
    for action in day.actions("attack", "warning"):
        if action["label"].startswith("recon") and "sudo" not in action["label"]:
            continue
        serials = day.evidence(action)
        if not serials or _only_a_login(day, serials):
            continue  # a login changes nothing: known.py says a person's first from a place, once
        holding = day.where(serials)
        assert any(RANK[n.severity] <= RANK["warning"] and n.kind == "incident" for n in holding), \
            (action["label"], [(n.severity, n.body.split("\n")[0]) for n in holding])


def _only_a_login(day, serials):
    """Whether these events are a login's PAM and LOGIN records only."""
    return all(re.match(r"type=(USER_|CRED_|LOGIN)", line) for serial in serials
               for _, line in day.lines[serial])


def test_ordinary_work_from_an_empty_memory_is_a_few_warnings(day):
    loud = _ordinary_only(day)
    heads = [n.body.split("\n")[0] for n in loud]
    assert len([n for n in loud if n.severity == "warning"]) <= MAX_WARNINGS, heads
    assert len([n for n in loud if n.severity == "critical"]) <= MAX_CRITICAL, heads
    # What it does say is new, and says so (but auditd's own start: lifecycle.py).
    assert all(": new: " in head for n, head in zip(loud, heads)
               if n.severity == "warning" and not n.key.startswith("auditd|")), heads




def test_the_same_ordinary_work_a_day_later_is_routine(day):
    loud = _ordinary_only(day, second=True)
    assert len(loud) <= MAX_LOUD_AGAIN, [n.body.split("\n")[0] for n in loud]
    assert not [n for n in loud if n.severity == "warning"], [n.body.split("\n")[0] for n in loud]


def test_ordinary_commands_never_page_and_never_have_a_message_of_their_own(day):
    for action in day.actions("routine", "none"):
        for note in day.where(day.evidence(action)):
            assert note.severity != "critical", (action["label"], note.body.split("\n")[0])
            # At most the login it happened in says so (its commands, its end).
            assert note.kind == "routine" or re.match(r"(⚠️|ℹ️) vm: (new: )?SSH login", note.body), \
                (action["label"], note.body.split("\n")[0])


def test_a_day_is_a_few_dozen_messages_and_every_event_is_accounted_for(day):
    first = _first(day)
    assert len(first) <= MAX_MESSAGES, len(first)
    assert len([n for n in first if n.kind == "routine"]) == 1  # one summary, edited as it grew
    assert sum(day.notifier.accounted()) == len(day.events)


def test_ssh_sessions_are_never_merged_and_each_new_one_is_a_message(day):
    """A login with or without a terminal (interactive, ssh host cmd, sftp)
    is an incident of its own: no message holds two sessions; a user's first
    session from an address is a message, later alike ones are routine."""
    starts = {}  # serial of an sshd USER_START -> (session, user, address)
    for serial, lines in day.lines.items():
        for _, line in lines:
            if "type=USER_START " in line and '/usr/sbin/sshd"' in line and "res=success" in line:
                found = re.search(r" ses=(\d+) .*acct=\"([^\"]*)\".* addr=(\S+)", line)
                starts[serial] = found.groups()
    first_pass = [n for n in _first(day) if n.kind == "incident"]
    for note in first_pass:
        sessions = {starts[s][0] for s in note.serials if s in starts}
        assert len(sessions) <= 1, (note.body.split("\n")[0], sessions)
    seen = set()
    shown = {starts[s][0] for n in first_pass for s in n.serials if s in starts}
    for serial in sorted(starts, key=int):
        session, user, addr = starts[serial]
        if int(serial) >= 10_000_000:
            continue  # the second pass
        if (user, addr) not in seen:
            assert session in shown, (user, addr, session)
        seen.add((user, addr))
    assert len(seen) >= 4


def test_rules_loaded_and_deleted_in_bulk_are_one_message_each(day):
    heads = [n.body.split("\n")[0] for n in _first(day)]
    loaded = [h for h in heads if re.search(r"\d+ (audit )?rules loaded", h)]
    deleted = [h for h in heads if re.search(r"all \d+ audit rules deleted", h, re.I)]
    rules = day.manifest["stats"]["rules_added"]
    # auditd's start and the rules loaded with it (lifecycle.py): one message.
    assert loaded == ["⚠️ vm: auditd started: %d rules loaded" % rules], heads
    if any("auditctl -D" in a["label"] for a in day.actions("attack")):
        assert len(deleted) == 1 and "all %d audit rules deleted" % rules in deleted[0].lower(), deleted
