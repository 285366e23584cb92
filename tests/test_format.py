"""Format: one readable notification per event (severity mark first,
failure second), and hostile text made harmless."""

import html
import re

import pytest
from corpus import corpus, events_of, read

from audit_notify.events import Event
from audit_notify.format import format_event
from audit_notify.message import MAX_BODY_BYTES, MAX_HTML_BYTES, clean


def _first(parts, predicate=lambda e: True):
    events = [e for e in events_of(read(corpus(*parts)), node="web1") if predicate(e)]
    assert events, parts
    return format_event(events[0])


def _headline(notification):
    return notification.body.split("\n", 1)[0]


def test_failed_ssh_login_reads_clearly():
    n = _first(("fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh"),
               lambda e: e.get("type") == "USER_LOGIN" and e.get("acct") == "root")
    assert _headline(n) == "⚠️❌ web1: Failed SSH login for root from 173.242.116.187"
    assert "<b><code>web1</code>: Failed SSH login for <code>root</code> from <code>173.242.116.187</code></b>" \
        in n.html


def test_successful_ssh_login_reads_clearly():
    n = _first(("linux-audit-parser-rs", "src", "testdata", "line-user-login.txt"))
    assert _headline(n) == "⚠️ web1: SSH login for ec2-user from 10.10.10.10 (other-host.invalid)"


def test_sudo_command_is_decoded():
    n = _first(("go-libaudit", "auparse", "testdata", "audit-rhel7.log"), lambda e: e.get("type") == "USER_CMD")
    assert re.match(r"⚠️ web1: sudo: \S+ ran “./metricbeat -c mb.dev.yml” as \S+$", _headline(n)), _headline(n)
    assert "directory: /home/andrew_kroh" in n.body


def test_watched_file_change_names_path_and_rule_key():
    n = _first(("laurel", "src", "testdata", "record-nscd.txt"))
    assert "Watched file" in _headline(n)
    assert "/var/run/nscd/socket" in _headline(n)


def test_executed_command_shows_the_command_line():
    n = _first(("laurel", "src", "testdata", "record-perl-reverse-shell.txt"))
    # No rule key, nothing written: on its own a command is routine (info).
    assert _headline(n).startswith("ℹ️ web1: Command: “perl -e 'use Socket;")
    assert "by user as root" in _headline(n)
    assert "command: “perl -e 'use Socket;$i=\"10.0.0.1\"" in n.body


def test_user_and_group_management():
    assert _headline(_first(("linux-audit-parser-rs", "src", "testdata", "line-del-group.txt"))) == \
        "🚨 web1: Group deleted: nfsnobody by root"
    assert _headline(_first(("linux-audit-parser-rs", "src", "testdata", "line-add-group.txt"))).startswith(
        "🚨 web1: Group added: gitlab-runner")
    assert "User added" in _headline(_first(("linux-audit-parser-rs", "src", "testdata", "line-add-user.txt")))


def test_selinux_and_apparmor_denials():
    avc = _first(("linux-audit-parser-rs", "src", "testdata", "line-avc-denied.txt"))
    assert _headline(avc).startswith("⚠️❌ web1: SELinux denied ")
    apparmor = _first(("go-libaudit", "auparse", "testdata", "audit-ubuntu16.log"), lambda e: e.get("apparmor"))
    assert _headline(apparmor) == "⚠️❌ web1: AppArmor denied metricbeat: ptrace (profile docker-default)"


def test_audit_configuration_change():
    n = _first(("selinux", "python", "sepolgen", "tests", "test_data", "audit.log"),
               lambda e: e.get("type") == "CONFIG_CHANGE")
    assert _headline(n) == "⚠️ web1: Audit rules changed by system"
    assert _headline(_first(("linux-audit-parser-rs", "src", "testdata", "line-daemon-start.txt"))).startswith(
        "⚠️ web1: auditd started")


def test_every_corpus_event_formats_within_limits():
    from corpus import all_corpus_files
    count = 0
    for path in all_corpus_files():
        for event in events_of(read(path)):
            n = format_event(event)
            assert n.body and n.html
            assert len(n.body.encode()) <= MAX_BODY_BYTES
            assert len(n.html.encode()) <= MAX_HTML_BYTES
            assert "\n" not in n.body.split("\n")[0]
            count += 1
    assert count > 9000


# --- hostile text -----------------------------------------------------------

def _login_as(name_bytes):
    """A failed SSH login whose username is exactly these bytes (hex-encoded
    in the record, as sshd/PAM log a name with unusual characters)."""
    record = (b"type=USER_LOGIN msg=audit(1700000000.100:42): pid=6 uid=0 auid=4294967295 ses=4294967295 "
              b"msg='op=login acct=" + name_bytes.hex().upper().encode() +
              b" exe=\"/usr/sbin/sshd\" hostname=? addr=203.0.113.7 terminal=ssh res=failed'\n")
    [event] = events_of(record, node="web1")
    return format_event(event)


VECTORS = [
    "<img src=x onerror=alert(1)>", '<a href="https://evil.example">click</a>', "[click](https://evil.example)",
    "**bold** _em_ `code`", "@room", "@admin:localhost", "ab\u202ecd", "zero\u200bwidth\u2060joiner",
    "--room=#other:localhost", "-x", "--help", "-", "_", "line1\nline2\r\x1b[31m", "\u2028sep",
]


@pytest.mark.parametrize("name", VECTORS)
def test_hostile_username_is_inert_and_visible(name):
    n = _login_as(name.encode())
    # No markup of the attacker's survives in the HTML: every < is ours.
    tags = re.findall(r"<(/?\w+)", n.html)
    assert set(tags) <= {"b", "/b", "code", "/code", "br"}, n.html
    # Nothing invisible or line-breaking from the attacker reaches the headline.
    headline = n.body.split("\n", 1)[0]
    assert not any(ch in headline for ch in "\u202e\u200b\u2060\u2028\r\x1b")
    assert "@" not in n.body and "@" not in n.html
    # The name is still shown, escaped but recognisable.
    visible = clean(name)
    assert visible in headline
    assert html.escape(visible) in n.html
    assert n.content()["m.mentions"] == {}


def test_invalid_utf8_username_is_shown_escaped():
    n = _login_as(b"r\xffoot\xc3")
    assert "Failed SSH login for r\\xffoot\\xc3 from" in n.body


def test_very_long_values_are_cut_with_a_note():
    n = _login_as(b"many words " * 10000)
    headline = n.body.split("\n", 1)[0]
    assert len(headline) < 300
    assert "…" in headline  # cut to fit the headline (format.within), or to a value's limit
    assert len(n.body.encode()) <= MAX_BODY_BYTES


def test_one_huge_word_is_cut_in_the_middle():
    n = _login_as(b"a" * 1000 + b"Z")
    assert _headline(n) == "⚠️❌ web1: Failed SSH login for aaaaaaaa…aaaZ from 203.0.113.7"
    # Past what a message can show, the rest is counted.
    n = _login_as(b"a" * 30000)  # (hex, under reader.MAX_LINE_BYTES: a longer line is cut before parsing)
    assert _headline(n) == "⚠️❌ web1: Failed SSH login for aaaaaaaa…aaaa from 203.0.113.7"


def test_content_fits_the_homeserver_limit_even_for_huge_commands():
    import json
    events = events_of(read(corpus("laurel", "src", "testdata", "record-execve-long.txt")))
    content = format_event(events[0]).content()
    assert len(json.dumps(content).encode()) < 48000


def test_clean_escapes_each_kind_of_invisible_character():
    assert clean("a\tb\nc\x00d\x7f\u200e\u202e\ufeff") == "a\\tb\\nc\\x00d\\x7f\\u200e\\u202e\\ufeff"
    assert clean("ünïcödé ✓ 名前") == "ünïcödé ✓ 名前"


def test_every_value_from_a_record_is_inside_code_in_the_html():
    """Replace every field value of real events with a token: no token may
    appear in the HTML outside <code>, nor raw in our own words."""
    from corpus import all_corpus_files
    checked = 0
    for path in all_corpus_files():
        for event in events_of(read(path))[:20]:
            tokens = {}

            def mark(value, tokens=tokens):
                return tokens.setdefault(value, "zq%dq" % len(tokens))

            fields = {k: (v if k in ("type", "syscall", "success", "res", "result", "apparmor", "seresult",
                                      "nametype", "a1", "a2") else mark(v)) for k, v in event.fields.items()}
            records = [(t, {k: fields.get(k, mark(v)) if k not in ("type", "nametype", "a1", "a2") else v
                            for k, v in f.items()}) for t, f in event.records]
            marked = Event(fields=fields, records=records, timestamp=event.timestamp)
            outside = re.sub(r"<code>.*?</code>", "", format_event(marked).html)
            assert not re.search(r"zq\d+q", outside), (path, outside)
            checked += 1
    assert checked > 200


# --- no secrets in the room (masking.py), long tokens cut -----------------------

def _exec_event(argv, key="rootcmd"):
    """One exec as the kernel logs it: a word with a space or a quote
    hex-encoded, the proctitle NUL-joined in hex."""
    from records import syscall
    text = syscall("execve", exe="/usr/bin/" + argv[0], argv=("X",) * len(argv), key=key)
    words = " ".join("a%d=%s" % (i, w.encode().hex().upper() if re.search(r"[\s\"']", w) else '"%s"' % w)
                     for i, w in enumerate(argv))
    text = re.sub(r"argc=\d+ .*", "argc=%d %s" % (len(argv), words), text)
    text = text.replace("type=EOE", "type=PROCTITLE msg=audit(1700000000.000:77): proctitle=%s\ntype=EOE"
                        % "\0".join(argv).encode()[:128].hex().upper())
    [event] = events_of(text.encode(), node="web1")
    return event


def test_a_password_on_a_command_line_is_masked_in_headline_details_and_html():
    n = format_event(_exec_event(["sshpass", "-p", "Hunter-2", "ssh", "-p", "2222", "bob@db"]))
    assert _headline(n).startswith("ℹ️ web1: Command: “sshpass -p *** ssh -p 2222 bob＠db” by ")
    assert "Hunter-2" not in n.body and "Hunter-2" not in n.html
    assert "<code>sshpass -p *** ssh -p 2222 bob＠db</code>" in n.html
    assert "Hunter-2" not in str(n.fields)


def test_a_password_piped_to_sudo_in_sh_c_is_masked():
    n = format_event(_exec_event(["bash", "-c", "echo 'Hunter-2' | sudo -S id"]))
    # The argv as we quote it, and the proctitle as auparse joins it.
    assert _headline(n).startswith("ℹ️ web1: Command: “bash -c 'echo '\"'\"'***'\"'\"' | sudo -S id'” by ")
    assert "\ntitle: “bash -c echo '***' | sudo -S id”\n" in n.body
    assert "Hunter-2" not in n.body + n.html + str(n.fields)


def test_sudos_command_with_chpasswd_input_is_masked():
    from records import event
    cmd = "sh -c echo 'svc-backup:Hunter-2' | chpasswd".encode().hex().upper()
    n = format_event(event("type=USER_CMD msg=audit(1700000000.000:77): pid=7 uid=1000 auid=1000 ses=3 "
                           "msg='cwd=\"/root\" cmd=%s exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'\n" % cmd))
    assert "“sh -c echo 'svc-backup:***' | chpasswd”" in _headline(n)
    assert "Hunter-2" not in n.body + n.html + str(n.fields)


def test_a_long_key_is_cut_so_the_path_it_is_written_to_shows_in_the_headline():
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIE8xq2Vn7rT0mY3cL9pK1wZ4sD6fH8jB5gN2aQ7eR0uZk9q"
    n = format_event(_exec_event(["bash", "-c", "echo 'ssh-ed25519 %s kali@kali' >> /root/.ssh/authorized_keys"
                                  % key]))
    # The key is cut in the middle, then the command line as much as the
    # headline's budget needs (format.within): the path stays in sight.
    assert "authorized_keys'”" in _headline(n) and "AAAAC3Nz…Zk9q" in n.body
    assert key not in n.body


def test_the_routine_label_of_a_command_never_shows_a_password():
    from audit_notify.format import routine_label
    from audit_notify.incidents import Incident
    incident = Incident(key="k", kind="command", node="web1", first=0.0, last=0.0)
    incident.facts["command"] = "MYSQL_PWD=Hun/ter-2 mysql shop"
    assert "ter-2" not in routine_label(incident)
