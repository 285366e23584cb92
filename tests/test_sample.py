"""The Debian 12 sample (tests/data): what an admin would actually get.

The RAW sample holds numeric ids; the test users are gone from this
machine's passwd, so auparse shows them as unknown(1001).  Names are checked
on the ENRICHED sample, which carries them (AUID="anadmin")."""

import os
import re

from corpus import DATA, ROOT, events_of, read

from audit_notify.config import load_config
from audit_notify.format import format_event
from audit_notify.rules import load_ruleset

SAMPLE = os.path.join(DATA, "debian12-sample.log")
ENRICHED = os.path.join(DATA, "debian12-enriched.log")
USER = r"(?:\S+|unknown\(\d+\))"


def _record_count(data):
    return sum(1 for line in data.split(b"\n") if line.startswith(b"type=") and not line.startswith(b"type=EOE"))


def _rules():
    return load_ruleset(load_config(os.path.join(ROOT, "examples", "dry-run.conf")))


def test_one_notification_per_event_not_per_record():
    data = read(SAMPLE)
    serials = {m.group(0) for m in re.finditer(rb"msg=audit\(\d+\.\d+:\d+\)", data)}
    events = events_of(data)
    records = _record_count(data)
    # The original sent one message per record line.
    assert records > 3 * len(serials)
    assert len(events) <= len(serials)
    kept = [e for e in events if _rules().wanted(e)]
    assert len(kept) < len(events)


def _headlines(predicate=lambda e: True, path=ENRICHED):
    return [format_event(e).body.split("\n")[0] for e in events_of(read(path), node="vm")
            if _rules().wanted(e) and predicate(e)]


def test_an_ssh_login_is_one_clear_message():
    logins = _headlines(lambda e: e.get("type") == "USER_LOGIN" and e.get("res") == "success")
    assert logins == ["✅ SSH login for anadmin from 127.0.0.1 on vm", "✅ SSH login for anvictim from 127.0.0.1 on vm"]
    raw = _headlines(lambda e: e.get("type") == "USER_LOGIN" and e.get("res") == "success", SAMPLE)
    assert raw and all(re.fullmatch(r"✅ SSH login for %s from 127\.0\.0\.1 on vm" % USER, h) for h in raw)
    # The PAM records around it (USER_ACCT, CRED_*, USER_START/END) are dropped
    # by the shipped blacklist: a login is one message, not 4+.
    pam = _headlines(lambda e: e.get("exe") == "/usr/sbin/sshd" and e.get("res") == "success"
                     and e.get("type") != "USER_LOGIN")
    assert pam == []


def test_failed_ssh_logins_name_the_account_and_source():
    failed = _headlines(lambda e: e.get("type") in ("USER_AUTH", "USER_LOGIN") and e.get("res") == "failed")
    assert any(h == "❌ Failed SSH authentication for root from 127.0.0.1 on vm" for h in failed)
    assert any(h == "❌ Failed SSH login for (invalid user) from 127.0.0.1 on vm" for h in failed)


def test_a_sudo_command_is_decoded():
    assert "✅ sudo: anadmin ran /usr/sbin/useradd -m -s /bin/bash anvictim as root on vm" in _headlines()
    assert any(h.startswith("❌ sudo refused: anuser tried /usr/bin/cat /etc/shadow") for h in _headlines())


def test_a_watched_file_change_names_path_and_key():
    hits = _headlines(lambda e: e.get("key") == "identity" and e.get("syscall") == "rename")
    assert "✅ Watched file replaced: /etc/passwd by anadmin as root via /usr/sbin/useradd (rule identity) on vm" in hits


def test_user_and_group_changes():
    headlines = _headlines()
    for expected in ("✅ User added: anvictim by anadmin as root on vm",
                     "✅ Group added: anteam by anadmin as root on vm",
                     "✅ Password changed: anvictim by anadmin as root on vm",
                     "✅ User deleted: anvictim by anadmin as root on vm"):
        assert expected in headlines


def test_raw_sample_reads_the_same_way_with_numeric_ids():
    assert b"\x1d" in read(ENRICHED) and b"\x1d" not in read(SAMPLE)
    raw = _headlines(path=SAMPLE)
    assert any(re.fullmatch(r"✅ User added: %s by %s as root on vm" % (USER, USER), h) for h in raw)
    assert any(re.fullmatch(r"✅ sudo: %s ran /usr/sbin/groupadd anteam as root on vm" % USER, h) for h in raw)
