"""Rules: the original blacklist format, the extended forms, the allow-list."""

import os

import pytest
from corpus import DATA, ROOT, all_corpus_files, corpus, events_of, read

from audit_notify.config import Error
from audit_notify.rules import RuleSet, load_rules, parse_rules

# The rule lines of the original project's blacklist.example, as the issue
# quotes them: they must work unchanged.
ORIGINAL_BLACKLIST = """\
# Blacklist message types for audit-notify.py to skip
#
### Possible values for the first column:
# 'type' 'time' 'error' 'kind' 'session' 'primary_subject'

type SERVICE_START
type SERVICE_STOP
type BPF
type CONFIG_CHANGE
type DAEMON_START
type DAEMON_END
how /usr/sbin/crond
action changed-login-id-to
"""


def _events(*parts):
    return events_of(read(corpus(*parts)))


def _every_event():
    events = []
    for path in all_corpus_files():
        events += events_of(read(path))
    for name in sorted(os.listdir(DATA)) if os.path.isdir(DATA) else []:
        if name.endswith(".log"):
            events += events_of(read(os.path.join(DATA, name)))
    return events


@pytest.fixture(scope="module")
def every_event():
    return _every_event()


def test_original_blacklist_filters_exactly_its_events(every_event):
    rules = RuleSet(tuple(parse_rules(ORIGINAL_BLACKLIST, "blacklist")))
    dropped = [e for e in every_event if not rules.wanted(e)]
    kept = [e for e in every_event if rules.wanted(e)]
    listed = {"SERVICE_START", "SERVICE_STOP", "BPF", "CONFIG_CHANGE", "DAEMON_START", "DAEMON_END"}
    for event in dropped:
        assert (event.get("type") in listed or event.get("how") == "/usr/sbin/crond"
                or event.get("action") == "changed-login-id-to"), event.fields
    for event in kept:
        assert event.get("type") not in listed
        assert event.get("how") != "/usr/sbin/crond" and event.get("action") != "changed-login-id-to"
    # Each of the eight lines did drop something real.
    for rtype in listed:
        assert any(e.get("type") == rtype for e in dropped), rtype
    assert any(e.get("how") == "/usr/sbin/crond" for e in dropped)
    assert any(e.get("action") == "changed-login-id-to" for e in dropped)


def test_original_blacklist_on_auparse_test_log():
    rules = RuleSet(tuple(parse_rules(ORIGINAL_BLACKLIST, "blacklist")))
    events = _events("audit-userspace", "auparse", "test", "test.log")
    kept = [e.get("type") for e in events if rules.wanted(e)]
    # Six of seven events are crond's PAM records or the LOGIN record.
    assert kept == ["AVC"]


def test_original_form_value_is_the_rest_of_the_line():
    [rule] = parse_rules("primary_subject user = auid\n", "b")
    event = _events("laurel", "src", "testdata", "record-execve.txt")[0]
    assert rule.matches(event)
    [other] = parse_rules("primary_subject root = auid\n", "b")
    assert not other.matches(event)


def test_conditions_on_one_line_must_all_match():
    events = _events("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")
    [rule] = parse_rules("type=USER_LOGIN acct=root", "b")
    assert [e.get("acct") for e in events if rule.matches(e)] == ["root"]
    [wider] = parse_rules("type=USER_LOGIN", "b")
    assert sum(wider.matches(e) for e in events) == 6


def test_lines_are_alternatives():
    events = _events("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")
    rules = RuleSet(tuple(parse_rules("type=USER_ERR\ntype=USER_AUTH\n", "b")))
    assert sorted({e.get("type") for e in events if rules.wanted(e)}) == ["USER_LOGIN"]


def test_glob_regex_and_negation():
    events = _events("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")
    glob = [e for e in events if parse_rules("acct~(*user)", "b")[0].matches(e)]
    assert sorted(e.get("acct") for e in glob) == ["(invalid user)", "(invalid user)", "(unknown user)"]
    regex = [e for e in events if parse_rules(r"addr=~^113\.240\.", "b")[0].matches(e)]
    assert len(regex) == 3 and all(e.get("addr") == "113.240.248.18" for e in regex)
    negated = [e for e in events if parse_rules("type=USER_LOGIN acct!~(*user)", "b")[0].matches(e)]
    assert sorted(e.get("acct") for e in negated) == ["dan", "root", "sshd"]
    not_equal = [e for e in events if parse_rules("type!=USER_LOGIN", "b")[0].matches(e)]
    assert len(not_equal) == len(events) - 6
    no_regex = [e for e in events if parse_rules(r"addr!=~\.", "b")[0].matches(e)]
    assert no_regex == []


@pytest.mark.parametrize("lines", ["type~USER_*", "type~USER_* res=failed", "type~CRED_*\ntype~USER_*",
                                   "type~USER_?*", "type~*_START", "records~SYSCALL*"])
def test_a_glob_rule_filters_what_each_event_tested_alone_says(every_event, lines):
    """The blacklist tests a ``name~PREFIX*`` glob with startswith first
    (RuleSet's index); it must drop exactly what the rule's own test does."""
    rules = RuleSet(tuple(parse_rules(lines, "b")))
    for event in every_event:
        assert rules.wanted(event) == (not any(rule.matches(event) for rule in rules.deny)), event.fields
    assert any(not rules.wanted(event) for event in every_event)


def test_quoted_values_with_spaces():
    events = _events("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")
    [rule] = parse_rules('acct="(unknown user)" type=USER_LOGIN', "b")
    assert [e.get("acct") for e in events if rule.matches(e)] == ["(unknown user)"]
    [escaped] = parse_rules(r'comm="a \"quoted\" \\ name"', "b")
    assert escaped.conditions[0].value == 'a "quoted" \\ name'


def test_any_of_several_values_matches():
    # Two PATH records: the binary and the dynamic loader.
    event = _events("laurel", "src", "testdata", "record-execve.txt")[0]
    assert parse_rules("name~*/ld-linux*", "b")[0].matches(event)
    assert parse_rules("name=/usr/bin/whoami", "b")[0].matches(event)
    assert not parse_rules("name!=/usr/bin/whoami", "b")[0].matches(event)


def test_allow_list_minus_blacklist():
    events = _events("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")
    allow = tuple(parse_rules("type=USER_LOGIN\n", "allow"))
    deny = tuple(parse_rules("acct~(*\n", "deny"))
    kept = [e.get("acct") for e in events if RuleSet(deny, allow).wanted(e)]
    assert sorted(kept) == ["dan", "root", "sshd"]
    assert len([e for e in events if RuleSet((), allow).wanted(e)]) == 6


@pytest.mark.parametrize("line, expected", [
    ("type", "b:3: expected 'field value'"),
    ("type=", "b:3: expected field=value"),
    ("type=X junk", "b:3: expected field=value"),
    ("acct=~(unclosed", "b:3: bad regular expression '(unclosed'"),
    ('acct="open', "b:3: expected field=value"),
    ("=x", "b:3: expected field=value"),
])
def test_bad_rules_name_file_and_line(line, expected):
    with pytest.raises(Error) as caught:
        parse_rules("# comment\n\n" + line + "\n", "b")
    assert str(caught.value).startswith(expected)


def test_comments_blank_and_indented_lines():
    rules = parse_rules("# x\n\n   \n  type BPF\n\t# indented comment\n", "b")
    assert [(c.name, c.value) for r in rules for c in r.conditions] == [("type", "BPF")]


def test_no_blacklist_configured_is_no_rules_but_a_missing_file_is_an_error(tmp_path):
    assert load_rules("") == []
    with pytest.raises(Error, match="cannot read rule file .*absent"):
        load_rules(str(tmp_path / "absent"))


def test_every_shipped_rule_matches_a_real_record(every_event):
    path = os.path.join(ROOT, "blacklist.example")
    with open(path) as handle:
        rules = parse_rules(handle.read(), path)
    assert len(rules) >= 5
    for rule in rules:
        assert any(rule.matches(e) for e in every_event), "%s matches no real record" % rule.where


def test_shipped_blacklist_keeps_failures_and_every_pam_record(every_event):
    """Failures, and the PAM chains that make a login, a sudo, a session
    (without USER_START a login with no terminal would vanish)."""
    path = os.path.join(ROOT, "blacklist.example")
    with open(path) as handle:
        rules = RuleSet(tuple(parse_rules(handle.read(), path)))
    failures = [e for e in every_event if e.get("type").startswith(("USER_", "CRED_")) and e.get("res") == "failed"]
    assert failures and all(rules.wanted(e) for e in failures)
    pam = [e for e in every_event if e.get("type") in ("USER_LOGIN", "USER_START", "USER_END", "USER_ACCT",
                                                      "USER_AUTH", "CRED_ACQ", "CRED_DISP", "USER_CMD", "LOGIN")]
    assert len(pam) > 100 and all(rules.wanted(e) for e in pam)
