"""Masking: a password typed on a command line never reaches the room.

Each form of the issue (#17, "No secrets in the room") is a case below,
read both as shell text (sudo's cmd, sh -c's string, a proctitle) and as
an argv; the options that only look alike (ssh -p 2222, mkdir -p) stay as
they are.  Then the plugin's own dry run over the recorded days, the
sample logs and a log made of typed passwords: no message shows one."""

import glob
import json
import os
import random
import re
import sys

import pytest
from corpus import DATA

from audit_notify.masking import MASK, mask_command, mask_fields, mask_words, secrets, secrets_in
from audit_notify.message import LONG_TOKEN, Line, V, cut_long_tokens, decode_urls, shown

sys.path.insert(0, DATA)
import make_golden  # noqa: E402

# -- the forms, as shell text -------------------------------------------------

# (typed, shown, the secrets found): one line per form the issue names.
FORMS = [
    # echo X | sudo -S, printf X | sudo -S, sudo -S <<< X
    ("echo 'Hunter-2' | sudo -S id", "echo '***' | sudo -S id", ["Hunter-2"]),
    ("echo Hunter-2 | sudo -S apt-get update", "echo *** | sudo -S apt-get update", ["Hunter-2"]),
    ("echo -n Hunter-2 | sudo --stdin id", "echo -n *** | sudo --stdin id", ["Hunter-2"]),
    ("printf 'Hunter-2\\n' | sudo -S id", "printf '***' | sudo -S id", ["Hunter-2\\n"]),
    ("printf '%s\\n' Hunter-2 | sudo -S -u bob id", "printf '%s\\n' *** | sudo -S -u bob id", ["Hunter-2"]),
    ("sudo -S id <<< Hunter-2", "sudo -S id <<< ***", ["Hunter-2"]),
    ("sudo -S <<< 'Hunter-2' id", "sudo -S <<< '***' id", ["Hunter-2"]),
    ("sudo -kS -u root id <<< Hunter-2", "sudo -kS -u root id <<< ***", ["Hunter-2"]),
    ("(echo Hunter-2; echo y) | sudo -S apt purge x", "(echo ***; echo ***) | sudo -S apt purge x",
     ["Hunter-2", "y"]),
    ("cd /tmp && echo Hunter-2 | sudo -S id; echo done", "cd /tmp && echo *** | sudo -S id; echo done",
     ["Hunter-2"]),
    # programs known to take a password as an option
    ("sshpass -p Hunter-2 ssh -p 2222 bob@host", "sshpass -p *** ssh -p 2222 bob@host", ["Hunter-2"]),
    ("sshpass -pHunter-2 scp -P 22 f host:", "sshpass -p*** scp -P 22 f host:", ["Hunter-2"]),
    ("mysql -uroot -pHunter-2 shop", "mysql -uroot -p*** shop", ["Hunter-2"]),
    ("mysql --password=Hunter-2 shop", "mysql --password=*** shop", ["Hunter-2"]),
    ("mysqldump -u root -pHunter-2 --all-databases", "mysqldump -u root -p*** --all-databases", ["Hunter-2"]),
    ("/usr/bin/mariadb -pHunter-2", "/usr/bin/mariadb -p***", ["Hunter-2"]),
    ("backup-tool --password Hunter-2 /srv", "backup-tool --password *** /srv", ["Hunter-2"]),
    ("backup-tool --password=Hunter-2 /srv", "backup-tool --password=*** /srv", ["Hunter-2"]),
    ("backup-tool --passwd Hunter-2", "backup-tool --passwd ***", ["Hunter-2"]),
    ("htpasswd -b /etc/nginx/htpasswd bob Hunter-2", "htpasswd -b /etc/nginx/htpasswd bob ***", ["Hunter-2"]),
    ("htpasswd -nbB bob Hunter-2", "htpasswd -nbB bob ***", ["Hunter-2"]),
    ("smbclient -U bob%Hunter-2 //fs/share", "smbclient -U bob%*** //fs/share", ["Hunter-2"]),
    ("psql postgresql://bob:Hunter-2@db:5432/shop", "psql postgresql://bob:***@db:5432/shop", ["Hunter-2"]),
    ("PGPASSWORD=Hunter-2 psql -h db shop", "PGPASSWORD=*** psql -h db shop", ["Hunter-2"]),
    ("redis-cli -a Hunter-2 info", "redis-cli -a *** info", ["Hunter-2"]),
    ("docker login -u bob -p Hunter-2 registry.example", "docker login -u bob -p *** registry.example",
     ["Hunter-2"]),
    ("ldapsearch -x -D cn=admin -w Hunter-2 -b dc=x", "ldapsearch -x -D cn=admin -w *** -b dc=x", ["Hunter-2"]),
    ("mount -t cifs -o user=bob,password=Hunter-2 //fs/s /mnt", "mount -t cifs -o user=bob,password=*** //fs/s /mnt",
     ["Hunter-2"]),
    ("keytool -list -storepass Hunter-2", "keytool -list -storepass ***", ["Hunter-2"]),
    ("xfreerdp /u:bob /p:Hunter-2 /v:win", "xfreerdp /u:bob /p:*** /v:win", ["Hunter-2"]),
    # user:password@ in any URL
    ("curl https://bob:Hunter-2@example.org/", "curl https://bob:***@example.org/", ["Hunter-2"]),
    ("wget http://bob:Hunter-2@example.org/f", "wget http://bob:***@example.org/f", ["Hunter-2"]),
    ("lftp ftp://bob:Hunter-2@ftp.example/pub", "lftp ftp://bob:***@ftp.example/pub", ["Hunter-2"]),
    ("mysqlsh mysql://root:Hunter-2@db:3306", "mysqlsh mysql://root:***@db:3306", ["Hunter-2"]),
    ("app --db postgres://app:Hunter-2@db/app", "app --db postgres://app:***@db/app", ["Hunter-2"]),
    ("redis-cli -u redis://:Hunter-2@cache:6379", "redis-cli -u redis://:***@cache:6379", ["Hunter-2"]),
    ("celery -b amqp://guest:Hunter-2@rabbit//", "celery -b amqp://guest:***@rabbit//", ["Hunter-2"]),
    ("git clone https://bob:ghp_Hunter2@github.com/x/y", "git clone https://bob:***@github.com/x/y",
     ["ghp_Hunter2"]),
    # chpasswd input
    ("echo 'svc:Hunter-2' | chpasswd", "echo 'svc:***' | chpasswd", ["Hunter-2"]),
    ("echo 'svc:Hunter-2' | sudo chpasswd", "echo 'svc:***' | sudo chpasswd", ["Hunter-2"]),
    ("chpasswd <<< 'svc:Hunter-2'", "chpasswd <<< 'svc:***'", ["Hunter-2"]),
    ("printf 'a:Hunter-2\\nb:Other-3\\n' | /usr/sbin/chpasswd", "printf 'a:***\\nb:***\\n' | /usr/sbin/chpasswd",
     ["Hunter-2", "Other-3"]),
    ("sudo chpasswd <<EOF\nsvc:Hunter-2\nEOF\nid", "sudo chpasswd <<EOF\nsvc:***\nEOF\nid", ["Hunter-2"]),
    ("echo -e 'Hunter-2\\nHunter-2' | passwd bob", "echo -e '***' | passwd bob", ["Hunter-2\\nHunter-2"]),
    # curl, wget, openssl
    ("curl -u bob:Hunter-2 https://api.example/", "curl -u bob:*** https://api.example/", ["Hunter-2"]),
    ("curl --user bob:Hunter-2 https://api.example/", "curl --user bob:*** https://api.example/", ["Hunter-2"]),
    ("curl -ubob:Hunter-2 https://api.example/", "curl -ubob:*** https://api.example/", ["Hunter-2"]),
    ("curl -H 'Authorization: Bearer Hunter-2' https://api/", "curl -H 'Authorization: Bearer ***' https://api/",
     ["Hunter-2"]),
    ("wget --password=Hunter-2 https://example.org/f", "wget --password=*** https://example.org/f", ["Hunter-2"]),
    ("wget --http-password=Hunter-2 https://example.org/f", "wget --http-password=*** https://example.org/f",
     ["Hunter-2"]),
    ("wget --ftp-password Hunter-2 ftp://h/f", "wget --ftp-password *** ftp://h/f", ["Hunter-2"]),
    ("openssl enc -aes-256-cbc -pass pass:Hunter-2 -in f", "openssl enc -aes-256-cbc -pass pass:*** -in f",
     ["Hunter-2"]),
    ("openssl rsa -in k.pem -passin pass:Hunter-2", "openssl rsa -in k.pem -passin pass:***", ["Hunter-2"]),
    ("openssl pkcs12 -export -passout pass:Hunter-2", "openssl pkcs12 -export -passout pass:***", ["Hunter-2"]),
    ("openssl enc -d -aes256 -k Hunter-2 -in f", "openssl enc -d -aes256 -k *** -in f", ["Hunter-2"]),
    ("openssl passwd -6 -salt xyz Hunter-2", "openssl passwd -6 -salt xyz ***", ["Hunter-2"]),
    # a command inside a command: sh -c, sudo sh -c, ssh's remote command
    ("sh -c 'echo Hunter-2 | sudo -S id'", "sh -c 'echo *** | sudo -S id'", ["Hunter-2"]),
    ("sudo sh -c \"echo 'svc:Hunter-2' | chpasswd\"", "sudo sh -c \"echo 'svc:***' | chpasswd\"", ["Hunter-2"]),
    ("ssh db 'mysql -pHunter-2 -e \"show databases\"'", "ssh db 'mysql -p*** -e \"show databases\"'",
     ["Hunter-2"]),
    # a proctitle as auparse shows it: the argv joined with spaces, quotes gone
    ("bash -c echo Hunter-2 | sudo -S id", "bash -c echo *** | sudo -S id", ["Hunter-2"]),
    # the reader after programs that run it: sudo, env, timeout, ssh host, sh -c
    ("echo 'svc:Hunter-2' | ssh -p 22 host chpasswd", "echo 'svc:***' | ssh -p 22 host chpasswd", ["Hunter-2"]),
    ("echo Hunter-2 | env LANG=C timeout 5 sudo -S id", "echo *** | env LANG=C timeout 5 sudo -S id",
     ["Hunter-2"]),
    ("echo 'svc:Hunter-2' | sudo sh -c chpasswd", "echo 'svc:***' | sudo sh -c chpasswd", ["Hunter-2"]),
]

# Options that look like a password's but are not: as they are.
UNTOUCHED = [
    "ssh -p 2222 bob@host", "scp -P 22 f host:/tmp", "mkdir -p /srv/a/b", "cp -p a b", "grep -p x f",
    "sudo -p 'Password please: ' id", "docker run -p 8080:80 nginx", "mysql -p shop", "curl -u bob https://h/",
    "echo 'opsadm ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/zz", "echo hello | sudo tee /etc/motd",
    "echo x; cat f | sudo -S id", "openssl rsa -in k.pem -passin env:KEYPASS", "htpasswd -c /etc/htpasswd bob",
    "cd $PWD && ls", "env PWD=/root ls", "git hash-object --stdin", "ansible-playbook --ask-become-pass site.yml",
    "psql --no-password shop", "ls -la /etc/passwd", "ssh-keygen -t ed25519 -f k", "wget https://example.org/x",
    # a file named like a reader is not one: what is written there is evidence
    "echo 'x:0:0::/root:/bin/bash' | tee -a /etc/passwd", "echo 'svc:x' | sudo tee -a /etc/chpasswd.log",
    "echo root | grep passwd", "printf 'a:b' | cat - /etc/passwd",
]


@pytest.mark.parametrize("typed, expected, found", FORMS)
def test_each_form_is_masked_in_shell_text(typed, expected, found):
    assert mask_command(typed) == expected
    assert secrets_in(typed) == found


@pytest.mark.parametrize("typed", UNTOUCHED)
def test_lookalike_options_stay_as_they_are(typed):
    assert mask_command(typed) == typed
    assert secrets_in(typed) == []


# (argv, shown): the same forms as EXECVE or a NUL-split proctitle give them.
ARGVS = [
    (["sshpass", "-p", "Hunter-2", "ssh", "-p", "2222", "host"], ["sshpass", "-p", MASK, "ssh", "-p", "2222", "host"]),
    (["mysql", "-uroot", "-pHunter-2"], ["mysql", "-uroot", "-p***"]),
    (["curl", "-u", "bob:Hunter-2", "https://h/"], ["curl", "-u", "bob:***", "https://h/"]),
    (["curl", "--user=bob:Hunter-2", "https://h/"], ["curl", "--user=bob:***", "https://h/"]),
    (["wget", "--password", "Hunter-2", "https://h/"], ["wget", "--password", MASK, "https://h/"]),
    (["htpasswd", "-b", "/etc/htpasswd", "bob", "Hunter-2"], ["htpasswd", "-b", "/etc/htpasswd", "bob", MASK]),
    (["smbclient", "-U", "bob%Hunter-2", "//fs/s"], ["smbclient", "-U", "bob%***", "//fs/s"]),
    (["psql", "postgresql://bob:Hunter-2@db/x"], ["psql", "postgresql://bob:***@db/x"]),
    (["openssl", "enc", "-aes-256-cbc", "-k", "Hunter-2"], ["openssl", "enc", "-aes-256-cbc", "-k", MASK]),
    (["openssl", "rsa", "-passin", "pass:Hunter-2"], ["openssl", "rsa", "-passin", "pass:***"]),
    (["bash", "-c", "echo Hunter-2 | sudo -S id"], ["bash", "-c", "echo *** | sudo -S id"]),
    (["sh", "-c", "echo 'svc:Hunter-2' | chpasswd"], ["sh", "-c", "echo 'svc:***' | chpasswd"]),
    (["ssh", "-p", "2222", "host", "mysql -pHunter-2"], ["ssh", "-p", "2222", "host", "mysql -p***"]),
]


@pytest.mark.parametrize("argv, expected", ARGVS)
def test_each_form_is_masked_in_an_argv(argv, expected):
    assert mask_words(argv) == expected
    assert [s for s in secrets(argv) if "Hunter-2" in s]


@pytest.mark.parametrize("typed", UNTOUCHED)
def test_lookalike_options_stay_as_they_are_in_an_argv(typed):
    argv = typed.split()
    assert mask_words(argv) == argv


def test_nothing_to_mask_returns_the_text_itself():
    """The fast way out: a command line with none of the trigger words is
    not lexed at all (the same object comes back)."""
    for text in ("ls -la /var/log", "run-parts --report /etc/cron.daily", "/usr/sbin/sshd -D", ""):
        assert mask_command(text) is text


# Odd input: unbalanced quotes, lone operators, bytes that are not UTF-8
# (kept by surrogateescape), deep nesting.
ODD = [
    "echo 'Hunter-2 | sudo -S id", 'echo "Hunter-2 | sudo -S id', "echo Hunter-2 | sudo -S id 'unclosed",
    "sudo -S <<<", "<<<", "| sudo -S", "sudo -S id <<EOF", "sudo -S id <<EOF\nHunter-2", "\\", "'", '"', "$'",
    "sshpass -p", "mysql -p", "curl -u", "htpasswd -b", "echo \udcff\udcfe | sudo -S id",
    "sh -c " + "'sh -c " * 30 + "echo x | sudo -S id", "https://:@", "a=b=c --password=", "((((((",
]


@pytest.mark.parametrize("text", ODD)
def test_odd_input_never_raises(text):
    assert isinstance(mask_command(text), str)
    assert isinstance(mask_words(text.split(" ")), list)
    assert isinstance(shown(text), str)


def test_a_huge_value_is_read_from_its_head_and_a_password_in_it_stays_hidden():
    """A 2 MB argv: only the head a line can show is masked; a password
    that runs past it does not come into view."""
    assert shown("sshpass -p " + "S" * 2000000) == "sshpass -p ***… (1968011 more characters)"
    line = Line(("ran: ", V("echo Hunter-2 | sudo -S id; " * 80000)), 2000).text()
    assert "Hunter-2" not in line and re.search(r"… \(\d{7} more characters\)”$", line)


def test_an_unclosed_here_document_is_still_masked():
    assert mask_command("sudo -S id <<EOF\nHunter-2") == "sudo -S id <<EOF\n***"


def test_surrogate_bytes_in_a_password_are_masked_too():
    assert mask_command("sshpass -p \udcffHunter ssh h") == "sshpass -p *** ssh h"


def test_random_text_never_raises():
    pieces = ["echo", "sudo", "-S", "|", "'", '"', "<<<", "<<", "EOF", "\n", "-p", "sshpass", "mysql", "-pX",
              "://", "a:b@", "chpasswd", "--password", "=", "\\", "(", ")", ";", "&&", "\udcff", "pass:", " "]
    rng = random.Random(17)
    for _ in range(2000):
        text = "".join(rng.choice(pieces) + rng.choice(("", " ")) for _ in range(rng.randint(0, 25)))
        masked = mask_command(text)
        assert isinstance(masked, str)
        assert mask_command(masked).count(MASK) >= masked.count(MASK)  # masking twice hides no less


def test_fields_beside_a_message_are_masked():
    """--json prints an event's fields: those that repeat a secret of its
    argv, and those that show one themselves, are masked."""
    fields = {"a0": "sshpass", "a1": "-p", "a2": "Hunter-2", "argv": "sshpass -p Hunter-2 ssh host",
              "proctitle": "sshpass -p Hunter-2 ssh host", "exe": "/usr/bin/sshpass", "pid": "42"}
    masked = mask_fields(fields, ["sshpass", "-p", "Hunter-2", "ssh", "host"])
    assert "Hunter-2" not in json.dumps(masked)
    assert masked["a2"] == MASK and masked["argv"] == "sshpass -p *** ssh host" and masked["pid"] == "42"


# -- display: long tokens and URL escapes ------------------------------------

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIE8xq2Vn7rT0mY3cL9pK1wZ4sD6fH8jB5gN2aQ7eR0uZk9q"


def test_a_long_key_is_cut_in_the_middle_and_what_follows_stays():
    text = "echo 'ssh-ed25519 %s kali@kali' >> /root/.ssh/authorized_keys" % KEY
    assert cut_long_tokens(text) == "echo 'ssh-ed25519 AAAAC3Nz…Zk9q kali@kali' >> /root/.ssh/authorized_keys"


def test_hashes_and_base64_with_slashes_are_cut_paths_are_not():
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    path = "/usr/share/doc/xserver-xorg-video-intel/changelog.Debian.gz"
    assert len(path) > LONG_TOKEN
    assert cut_long_tokens("sha256sum %s %s" % (sha, path)) == "sha256sum e3b0c442…b855 " + path
    blob = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmwIDAQAB"  # noqa: E501
    assert cut_long_tokens("key=%s --then /etc/x" % blob) == "key=MIIBIjAN…AQAB --then /etc/x"
    huge = "/var/lib/docker/overlay2/%s/merged/etc/passwd" % sha
    assert cut_long_tokens(huge) == "/var/lib/docker/overlay2/e3b0c442…b855/merged/etc/passwd"


def test_url_escapes_are_decoded_inside_urls_only():
    assert decode_urls("wget http://h:8000/a%2Fb%20c.sh") == "wget http://h:8000/a/b c.sh"
    assert decode_urls("curl 'http://h/?q=%0a%0d'") == "curl 'http://h/?q=%0a%0d'"  # controls stay encoded
    assert decode_urls("printf '%20s' x; date +%1d") == "printf '%20s' x; date +%1d"
    assert decode_urls("go http%3A%2F%2Fh%2Fx") == "go http://h/x"


def test_an_encoded_password_in_a_url_is_masked_after_decoding():
    assert shown("curl http://bob:p%40ss%20word@h/") == "curl http://bob:***@h/"
    assert shown("open http%3A%2F%2Fbob%3AHunter-2%40h%2F") == "open http://bob:***@h/"


def test_a_line_shows_values_masked_in_both_renderings_and_html_stays_escaped():
    line = Line(("ran: ", V("curl -u bob:Hunter-2 'https://h/?a=1&b=<x>'")))
    assert line.text() == "ran: “curl -u bob:*** 'https://h/?a=1&b=<x>'”"
    assert line.html() == "ran: <code>curl -u bob:*** &#x27;https://h/?a=1&amp;b=&lt;x&gt;&#x27;</code>"


# -- the plugin over the recorded days and a log of typed passwords ---------

DAYS = sorted(glob.glob(os.path.join(DATA, "days", "*.log")))
# The passwords the days' manifests show typed (make_day.py: the backdoor's,
# given to chpasswd; the users', typed at prompts, must not show either).
KNOWN_TYPED = ("Svc-b4ckup!2026", "Al1ce-day-4711", "B0b-day-4711", "0psadm-day-4711")
_ARG = re.compile(r" a\d+(?:\[\d+\])?=(\"[^\"]*\"|[0-9A-F]+)(?= |$)")
_TEXT = {"USER_CMD": re.compile(r"\bcmd=(\"[^\"]*\"|[0-9A-F]+)"),
         "PROCTITLE": re.compile(r"\bproctitle=(\"[^\"]*\"|[0-9A-F]+)")}


def _value(raw):
    if raw.startswith('"'):
        return raw[1:-1]
    return bytes.fromhex(raw).decode("utf-8", "surrogateescape")


def typed_secrets(path):
    """The passwords a log's command lines show, found by the masking's own
    detector in its raw EXECVE, USER_CMD and PROCTITLE records."""
    found = set()
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8", "surrogateescape")
    for line in text.split("\n"):
        line = line.split("\x1d", 1)[0]  # ENRICHED: the raw record comes first
        if line.startswith("type=EXECVE "):
            found.update(secrets([_value(raw) for raw in _ARG.findall(line)]))
        elif line.startswith("type=USER_CMD "):
            match = _TEXT["USER_CMD"].search(line)
            found.update(secrets_in(_value(match.group(1))) if match else ())
        elif line.startswith("type=PROCTITLE "):
            match = _TEXT["PROCTITLE"].search(line)
            found.update(secrets([w for w in _value(match.group(1)).split("\0") if w]) if match else ())
    return {s for s in found if len(s) >= 3}  # "y" of yes(1) would match anything


def manifest_secrets():
    """The passwords the days' manifests show in their commands."""
    found = set()
    for path in glob.glob(os.path.join(DATA, "days", "*.manifest.json")):
        with open(path, encoding="utf-8") as handle:
            for action in json.load(handle)["actions"]:
                found.update(secrets_in(action.get("command", "")))
    return found


def leaks(path, wanted):
    """The secrets any message of the plugin's dry run over ``path`` shows,
    and the messages read."""
    out = make_golden.dry_run(path).decode("utf-8")
    messages = [json.loads(line) for line in out.splitlines()]
    shown_text = "\n".join(m["body"] + "\n" + m["formatted_body"] for m in messages)
    return sorted(s for s in wanted if s in shown_text), messages


def test_the_manifests_typed_password_is_one_the_detector_finds():
    if not DAYS:
        pytest.skip("no recorded days")
    assert "Svc-b4ckup!2026" in manifest_secrets()


@pytest.mark.parametrize("log", DAYS + sorted(glob.glob(os.path.join(DATA, "*.log"))), ids=os.path.basename)
def test_no_message_of_a_recorded_log_shows_a_typed_password(log):
    wanted = typed_secrets(log) | manifest_secrets() | set(KNOWN_TYPED)
    found, messages = leaks(log, wanted)
    assert messages and not found


# A log of one person's typing: each record holds a password as the kernel
# or sudo writes it (words with a space or a quote hex-encoded).
TYPED = [
    ["bash", "-c", "echo 'Sudo-Pw-4711' | sudo -S id"],
    ["sshpass", "-p", "Sshp4ss-Pw", "ssh", "-p", "2222", "bob@db"],
    ["mysql", "-uroot", "-pMy5ql-Pw", "shop"],
    ["curl", "-u", "bob:Cu7l-Pw", "https://bob:Ur1-Pw@example.org/x"],
    ["htpasswd", "-b", "/etc/htpasswd", "bob", "Htp4sswd-Pw"],
    ["openssl", "enc", "-aes-256-cbc", "-pass", "pass:Op3nssl-Pw", "-in", "f"],
]
SUDO_CMDS = ["sh -c echo 'svc-backup:Chp4sswd-Pw' | chpasswd", "smbclient -U bob%Smb-Pw-4711 //fs/share"]


def _word(word):
    if re.search(r"[\s\"\x00-\x20\x7f-\uffff]", word):
        return word.encode("utf-8", "surrogateescape").hex().upper()
    return '"%s"' % word


def typed_log(path):
    lines, serial, now = [], 500, 1800000000.0
    for argv in TYPED:
        serial, now = serial + 1, now + 1
        stamp = "%.3f:%d" % (now, serial)
        lines += ["type=SYSCALL msg=audit(%s): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 "
                  "items=1 ppid=900 pid=%d auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 "
                  'tty=pts0 ses=3 comm="%s" exe="/usr/bin/%s" key="rootcmd"' % (stamp, serial, argv[0], argv[0]),
                  "type=EXECVE msg=audit(%s): argc=%d %s" % (stamp, len(argv), " ".join(
                      "a%d=%s" % (i, _word(w)) for i, w in enumerate(argv))),
                  'type=PATH msg=audit(%s): item=0 name="/usr/bin/%s" inode=9 dev=fe:00 mode=0100755 ouid=0 ogid=0 '
                  "rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0" % (stamp, argv[0]),
                  "type=PROCTITLE msg=audit(%s): proctitle=%s" % (
                      stamp, "\0".join(argv).encode()[:128].hex().upper()),
                  "type=EOE msg=audit(%s): " % stamp]
    # A person and a session each: a message each (one person's second sudo
    # would be known, and routine: known.py).
    for ses, cmd in enumerate(SUDO_CMDS, 4):
        serial, now = serial + 1, now + 1
        lines.append("type=USER_CMD msg=audit(%.3f:%d): pid=%d uid=%d auid=%d ses=%d msg='cwd=\"/home/bob\" "
                     "cmd=%s exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'" % (now, serial, serial, 2000 + ses,
                                                                                   2000 + ses, ses, _word(cmd)))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def test_a_log_of_typed_passwords_shows_none_and_the_check_can_fail(tmp_path):
    log = str(tmp_path / "typed.log")
    typed_log(log)
    wanted = typed_secrets(log)
    # The detector finds every password in the raw records...
    assert wanted >= {"Sudo-Pw-4711", "Sshp4ss-Pw", "My5ql-Pw", "Cu7l-Pw", "Ur1-Pw", "Htp4sswd-Pw", "Op3nssl-Pw",
                      "Chp4sswd-Pw", "Smb-Pw-4711"}
    with open(log, encoding="utf-8") as handle:
        raw = handle.read()
    assert "Sshp4ss-Pw" in raw  # (what the check looks for is there to be found)
    found, messages = leaks(log, wanted)
    # ...the room sees the commands, masked, and none of them.
    assert found == []
    bodies = "\n".join(m["body"] for m in messages)
    assert "smbclient -U bob%*** //fs/share" in bodies and "svc-backup:***" in bodies
    assert all(s not in json.dumps(m["fields"]) for m in messages for s in wanted)
