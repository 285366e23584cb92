"""Masking: a password typed on a command line never reaches the room.

Each form of the issue (#17, "No secrets in the room") is a case below,
read both as shell text (sudo's cmd, sh -c's string, a proctitle) and as
an argv; the options that only look alike (ssh -p 2222, mkdir -p) stay as
they are.  Odd input never makes it fail."""

import json
import random

import pytest

from audit_notify.masking import MASK, mask_command, mask_fields, mask_words, secrets, secrets_in

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
