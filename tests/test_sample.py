"""The Debian 12 sample (tests/data): what an admin would actually get.

One message per human action: a login, a sudo command with what it did
and where the user came from, the failed logins of one source folded into
one, the audit rules loaded and deleted each one message.  Names are
checked on the ENRICHED sample, which carries them (AUID="anadmin"); the
RAW sample holds numeric ids (the test users are gone from this machine's
passwd)."""

import os
import re

from corpus import DATA, ROOT, events_of, headlines, messages_of, read

from audit_notify.config import load_config
from audit_notify.counters import Counters
from audit_notify.rules import load_ruleset

SAMPLE = os.path.join(DATA, "debian12-sample.log")
ENRICHED = os.path.join(DATA, "debian12-enriched.log")
FROM = r" \(SSH from 127\.0\.0\.1(, pts/0)?\)"


def _config():
    return load_config(os.path.join(ROOT, "examples", "dry-run.conf"))


def _messages(path=ENRICHED, counters=None):
    config = _config()
    return messages_of(read(path), config, load_ruleset(config), counters=counters)


def _one(pattern, found):
    hits = [h for h in found if re.fullmatch(pattern, h)]
    assert len(hits) == 1, (pattern, found)
    return hits[0]


def test_messages_are_per_action_not_per_event_or_record():
    data = read(ENRICHED)
    serials = {m.group(0) for m in re.finditer(rb"msg=audit\(\d+\.\d+:\d+\)", data)}
    counters = Counters()
    messages = _messages(counters=counters)
    assert len(serials) > 300 and len(messages) < 40, len(messages)
    # Every event is accounted for: filtered, in a message, a repeat, or routine.
    events = len(events_of(data))
    assert counters.filtered + counters.notified + counters.digested + counters.routine == events


def test_an_ssh_login_is_one_message_with_or_without_a_terminal():
    found = headlines(_messages())
    # Each is the first login of its shape (who, from where) this memory
    # has seen (known.py): "new:".
    assert _one(r"⚠️ vm: new: SSH login: anadmin from 127\.0\.0\.1 \(pts/0\), ended after \d+ s", found)
    assert _one(r"⚠️ vm: new: SSH login: anuser from 127\.0\.0\.1 \(no terminal\).*", found)
    assert not any("session opened" in h or "credentials" in h for h in found)  # the PAM chain is folded


def test_failed_ssh_logins_of_one_source_are_one_message_naming_the_accounts():
    found = headlines(_messages())
    failed = [h for h in found if "Failed SSH login" in h]
    assert failed == [_one(r"⚠️❌ vm: Failed SSH login for anuser, root, admin, oracle from 127\.0\.0\.1 \(\d+ tries\)",
                            found)]


def test_a_sudo_command_names_the_command_what_it_touched_and_where_the_user_came_from():
    found = headlines(_messages())
    # What it did comes before where it came from; the headline is over
    # format.HEADLINE_BUDGET, so its command line is cut in the middle (the
    # body's "ran:" line has it whole).
    added = _one(r"🚨 vm: anadmin ran sudo “/usr/sbin/useradd -m…s /bin/bash anvictim” → .*%s" % FROM, found)
    assert "user added: " in added and "group added: anvictim" in added
    [message] = [m for m in _messages() if m.body.startswith(added + "\n")]
    assert "ran: “sudo -n /usr/sbin/useradd -m -s /bin/bash anvictim”" in message.body
    # Trying to read the password hashes, refused by sudo: an attempt, a
    # warning (what sudo's argv asks is no deed, severity._by_command_line).
    assert _one(r"⚠️❌ vm: sudo refused: anuser tried “/usr/bin/cat /etc/shadow”%s" % FROM, found)
    assert _one(r"🚨 vm: anadmin ran sudo “/usr/sbin/usermod -aG sudo anvictim” → group membership changed: anvictim.*%s"
                % FROM, found)


def test_a_critical_message_lists_the_commands_and_the_events_it_folds():
    [message] = [m for m in _messages() if "useradd -m" in m.body.split("\n")[0]]
    assert message.severity == "critical" and len(message.serials) > 5
    assert "session: SSH from 127.0.0.1, pts/0" in message.body
    assert "ran: /usr/sbin/nscd" not in message.body  # an execvp search's failed tries are not listed


def test_rules_loaded_and_deleted_in_bulk_are_one_message_each():
    found = headlines(_messages())
    assert _one(r"⚠️ vm: auditd started: 9 rules loaded", found)  # the start and its rules (lifecycle.py)
    # Its last version: the burst closed, the total is known.
    assert _one(r"🚨 vm: All 9 audit rules deleted by root", found)
    assert _one(r"🚨 vm: auditd stopped by root", found)  # at the end of the file: not started again


def test_raw_sample_gives_the_same_messages_with_numeric_ids():
    assert b"\x1d" in read(ENRICHED) and b"\x1d" not in read(SAMPLE)
    raw, enriched = headlines(_messages(SAMPLE)), headlines(_messages())
    assert len(raw) == len(enriched)
    assert sum(h.startswith("🚨") for h in raw) == sum(h.startswith("🚨") for h in enriched)
