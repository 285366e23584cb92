"""Severity: how much one event matters, from how audit data works.

Three levels: ``critical`` (look now: persistence, privilege, credentials,
tampering with auditing, the kernel), ``warning`` (a person should see it:
logins, admin actions, denials, failures) and ``info`` (routine: counted
into a summary, no message of its own).

The verdict comes from what the event *is*, in this order:

1. its record type (an account added, auditd stopped, a login failed...);
2. what a syscall did: which file it changed (the system's places that
   decide who may log in, what runs at boot or for everyone, what the
   kernel loads), setuid bits, module loads, ptrace, programs run from
   temporary directories;
3. the rule's key, for the rule sets people run (keymap.py);
4. a default: a syscall rule the admin keyed but nobody knows is a
   warning, anything else routine.

Context (a package manager's run, a daemon reading its own files) is
weighed later, where events meet (incidents.py).  The admin overrides all
of it with severity lines in the rule files (rules.py).
"""

from __future__ import annotations

import os
from typing import Dict, List, NamedTuple, Optional, Tuple

from . import evidence
from .events import Event
from .keymap import KEY_SEVERITY
from .places import place
from .programs import ELEVATORS, argv_of, argv_paths, command_words

CRITICAL, WARNING, INFO = "critical", "warning", "info"
LEVELS = (CRITICAL, WARNING, INFO)
RANK = {CRITICAL: 0, WARNING: 1, INFO: 2}


class Verdict(NamedTuple):
    """An event's severity and why (one or two made for every event: a
    tuple, not a frozen dataclass, whose making costs four times as much)."""

    severity: str
    why: str  # a few words for the message: "sudoers changed", "user added"


def worst(one: str, other: str) -> str:
    """The worse of two severities (this runs for every event: no min())."""
    return one if RANK[one] <= RANK[other] else other


# -- 1. record types ----------------------------------------------------------

# Changes to who exists and who may do what.
_ACCOUNT_TYPES = {
    "ADD_USER": "user added", "DEL_USER": "user deleted", "ADD_GROUP": "group added", "DEL_GROUP": "group deleted",
    "USER_MGMT": "user changed", "GRP_MGMT": "group changed", "CHUSER_ID": "user id changed",
    "CHGRP_ID": "group id changed", "ACCT_LOCK": "account locked", "ACCT_UNLOCK": "account unlocked",
    "GRP_CHAUTHTOK": "group password changed", "ROLE_ASSIGN": "SELinux role assigned",
    "ROLE_REMOVE": "SELinux role removed", "ROLE_MODIFY": "SELinux role changed",
}
# Intrusion-detection records (audit's own IDS types): each names an attack.
_ANOMALY_CRITICAL = {
    "ANOM_ADD_ACCT": "account added (IDS)", "ANOM_DEL_ACCT": "account deleted (IDS)",
    "ANOM_MOD_ACCT": "account changed (IDS)", "ANOM_ROOT_TRANS": "became root (IDS)",
    "ANOM_EXEC": "suspicious program run (IDS)", "RESP_ANOMALY": "IDS response",
}
# The watcher itself: auditd going away or changing under us.
_DAEMON = {
    "DAEMON_END": (CRITICAL, "auditd stopped"), "DAEMON_ABORT": (CRITICAL, "auditd aborted"),
    "DAEMON_CONFIG": (CRITICAL, "auditd reconfigured"), "DAEMON_START": (WARNING, "auditd started"),
    "DAEMON_RESUME": (WARNING, "auditd resumed logging"), "DAEMON_ERR": (WARNING, "auditd error"),
    "DAEMON_ROTATE": (INFO, "audit log rotated by auditd"), "DAEMON_ACCEPT": (INFO, "remote auditd connected"),
    "DAEMON_CLOSE": (INFO, "remote auditd disconnected"), "DAEMON_RECONFIG": (CRITICAL, "auditd reconfigured"),
}
_SIMPLE = {
    "KERN_MODULE": (CRITICAL, "kernel module loaded"),
    "USER_CMD": (WARNING, "sudo"),
    "USER": (WARNING, "audit message"),
    "USYS_CONFIG": (WARNING, "system configuration changed"),
    "SYSTEM_BOOT": (WARNING, "system booted"), "SYSTEM_SHUTDOWN": (WARNING, "system shutting down"),
    "SYSTEM_RUNLEVEL": (WARNING, "runlevel changed"),
    "SOFTWARE_UPDATE": (WARNING, "software changed"),
    "MAC_POLICY_LOAD": (WARNING, "SELinux policy loaded"), "MAC_CONFIG_CHANGE": (WARNING, "SELinux boolean changed"),
    "SELINUX_ERR": (WARNING, "SELinux error"), "USER_SELINUX_ERR": (WARNING, "SELinux error"),
    "ANOM_ABEND": (WARNING, "process crashed"), "ANOM_PROMISCUOUS": (WARNING, "network sniffing mode"),
    "ANOM_LINK": (WARNING, "suspicious link followed"), "ANOM_CREAT": (WARNING, "suspicious file creation"),
    "ANOM_ACCESS_FS": (WARNING, "suspicious file access"), "ANOM_LOGIN_FAILURES": (WARNING, "too many login failures"),
    "ANOM_LOGIN_TIME": (WARNING, "login at a forbidden time"), "ANOM_LOGIN_SESSIONS": (WARNING, "too many sessions"),
    "ANOM_LOGIN_ACCT": (WARNING, "login to a forbidden account"),
    "ANOM_LOGIN_LOCATION": (WARNING, "login from a forbidden place"),
    "ANOM_MAX_DAC": (WARNING, "too many DAC failures"), "ANOM_MAX_MAC": (WARNING, "too many MAC failures"),
    "ANOM_AMTU_FAIL": (WARNING, "AMTU failure"), "ANOM_RBAC_FAIL": (WARNING, "RBAC failure"),
    "ANOM_RBAC_INTEGRITY_FAIL": (WARNING, "RBAC integrity failure"), "ANOM_CRYPTO_FAIL": (WARNING, "crypto failure"),
    "ANOM_LOGIN_SERVICE": (WARNING, "login to a forbidden service"),
    "INTEGRITY_DATA": (WARNING, "file integrity"), "INTEGRITY_METADATA": (WARNING, "file integrity"),
    "INTEGRITY_STATUS": (WARNING, "integrity status"), "INTEGRITY_HASH": (WARNING, "file integrity"),
    "INTEGRITY_PCR": (WARNING, "integrity measurement"), "INTEGRITY_RULE": (WARNING, "file integrity"),
    "USER_DEVICE": (WARNING, "device changed"),
    # What happens many times a day on any host.
    "SERVICE_START": (INFO, "service started"), "SERVICE_STOP": (INFO, "service stopped"),
    "USER_ROLE_CHANGE": (INFO, "role change"), "USER_TTY": (INFO, "terminal input"), "TTY": (INFO, "terminal input"),
    "NETFILTER_CFG": (INFO, "firewall changed"), "BPF": (INFO, "BPF program"), "TIME_ADJNTPVAL": (INFO, "clock"),
    "TIME_INJOFFSET": (INFO, "clock"), "CRYPTO_KEY_USER": (INFO, "key use"), "CRYPTO_SESSION": (INFO, "crypto session"),
    "SECCOMP": (INFO, "seccomp"), "FANOTIFY": (INFO, "fanotify"), "URINGOP": (INFO, "io_uring"),
    "DM_CTRL": (INFO, "device mapper"), "DM_EVENT": (INFO, "device mapper"), "MAC_UNLBL_ALLOW": (INFO, "MAC"),
    "LOGIN": (INFO, "login id set"), "USER_START": (INFO, "session opened"), "USER_END": (INFO, "session closed"),
    "CRED_ACQ": (INFO, "credentials"), "CRED_REFR": (INFO, "credentials"), "CRED_DISP": (INFO, "credentials"),
    "USER_ACCT": (INFO, "account checked"), "USER_LOGOUT": (INFO, "logout"), "USER_MAC_STATUS": (INFO, "MAC"),
}
# PAM and login records that say a login failed.
_LOGIN_FAILURES = ("USER_AUTH", "USER_LOGIN", "USER_ACCT", "USER_ERR", "USER_START", "CRED_ACQ")


def _failed(event: Event) -> bool:
    facts = event.facts
    res = (facts.get("res") or facts.get("success")).lower()
    return res in ("failed", "no", "0", "fail")


def _by_person(event: Event) -> bool:
    """An event done in someone's login session (auid set), not by the
    system (boot, daemons)."""
    return not event.facts.unset("auid")


def by_type(event: Event) -> Optional[Verdict]:
    rtype = event.get("type")
    facts = event.facts
    if rtype == "SYSCALL" and "apparmor" not in facts.values:
        return None  # (most events: none of the types below, and no AppArmor record in it)
    if rtype in _ACCOUNT_TYPES:
        return Verdict(CRITICAL, _ACCOUNT_TYPES[rtype])
    if rtype in _ANOMALY_CRITICAL:
        return Verdict(CRITICAL, _ANOMALY_CRITICAL[rtype])
    if rtype == "USER_CHAUTHTOK":
        op = facts.get("op")
        if "group" in op:
            return Verdict(CRITICAL, "group membership changed")
        # A person changing their own password is routine security; root
        # setting someone's (passwd USER, chpasswd) is an account change.
        return Verdict(CRITICAL if facts.get("uid") == "0" else WARNING, "password changed")
    if rtype == "CONFIG_CHANGE":
        return _config_change(event)
    if rtype in _DAEMON:
        return Verdict(*_DAEMON[rtype])
    if rtype == "MAC_STATUS":
        enforcing = facts.get("enforcing") or event.get("enforcing")
        return Verdict(CRITICAL if enforcing == "0" else WARNING, "SELinux mode changed")
    if rtype in ("AVC", "USER_AVC") or facts.get("apparmor") or rtype.startswith("APPARMOR"):
        verdict = (facts.get("apparmor") or facts.get("seresult") or event.get("seresult")).lower()
        if "denied" in verdict or rtype == "APPARMOR_DENIED":
            return Verdict(WARNING, "access denied by %s" % ("AppArmor" if "APPARMOR" in rtype or
                                                             facts.get("apparmor") else "SELinux"))
        return Verdict(INFO, "MAC event")
    if rtype in _LOGIN_FAILURES and _failed(event):
        return Verdict(WARNING, "login failed")
    if rtype == "USER_LOGIN":
        return Verdict(WARNING, "login")
    if rtype == "USER_AUTH":
        return Verdict(INFO, "authenticated")
    if rtype == "USER_CMD":
        said = _by_command_line(event, facts.get("cmd"), None)
        if said is not None and _failed(event):
            return Verdict(WARNING, said.why)  # sudo refused it: an attempt, nothing done
        return said or Verdict(WARNING, "sudo")
    if rtype in _SIMPLE:
        severity, why = _SIMPLE[rtype]
        if severity == INFO and _failed(event) and rtype.startswith("SERVICE"):
            return Verdict(WARNING, "service failed")
        return Verdict(severity, why)
    return None


def _config_change(event: Event) -> Verdict:
    """Audit rules and settings.  Deleting rules or switching auditing off
    blinds the watcher: critical.  Loading rules is what every start of
    auditd does.  A burst is judged as a whole where events meet (a reload
    deletes, then adds)."""
    facts = event.facts
    op = facts.get("op")
    enabled = event.get("audit_enabled")
    if enabled in ("0", "2"):
        return Verdict(CRITICAL, "auditing disabled" if enabled == "0" else "audit rules made immutable")
    if op == "updated_rules":
        return Verdict(INFO, "watched file replaced")  # the change itself is judged on its own event
    if op in ("remove_rule", "remove rule"):
        return Verdict(CRITICAL, "audit rules deleted")
    if op in ("add_rule", "add rule"):
        return Verdict(WARNING, "audit rules added")
    if op == "set" or any(name.startswith("audit_") for name in event.fields):
        return Verdict(CRITICAL if _by_person(event) else WARNING, "audit settings changed")
    return Verdict(WARNING, "audit configuration changed")


# -- 2. what a syscall did ----------------------------------------------------

# The places that decide who may log in, with what rights, what runs at
# boot, at login or in every process, and what the kernel loads: a change
# to any is how persistence and privilege are gained.  (pattern, class).
# Patterns: "dir/" is everything under dir, "*" matches within one name.
CRITICAL_PLACES: Tuple[Tuple[str, str], ...] = (
    ("/etc/passwd", "accounts"), ("/etc/shadow", "accounts"), ("/etc/group", "accounts"),
    ("/etc/gshadow", "accounts"), ("/etc/security/opasswd", "accounts"), ("/etc/subuid", "accounts"),
    ("/etc/subgid", "accounts"), ("/etc/login.defs", "accounts"), ("/etc/securetty", "accounts"),
    ("/etc/sudoers", "sudoers"), ("/etc/sudoers.d/", "sudoers"), ("/etc/doas.conf", "sudoers"),
    ("/etc/polkit-1/", "polkit"), ("/usr/share/polkit-1/rules.d/", "polkit"),
    ("/etc/pam.d/", "PAM"), ("/etc/pam.conf", "PAM"), ("/etc/security/", "PAM"),
    ("/lib/security/", "PAM module"), ("/lib64/security/", "PAM module"), ("/usr/lib/security/", "PAM module"),
    ("/usr/lib64/security/", "PAM module"), ("/lib/*/security/", "PAM module"),
    ("/usr/lib/*/security/", "PAM module"),
    ("/etc/ssh/sshd_config", "sshd config"), ("/etc/ssh/sshd_config.d/", "sshd config"),
    ("*/.ssh/authorized_keys*", "authorized_keys"), ("/etc/ssh/authorized_keys*", "authorized_keys"),
    ("/root/.ssh/", "root's ssh"),
    ("/etc/crontab", "cron"), ("/etc/cron.d/", "cron"), ("/etc/cron.hourly/", "cron"),
    ("/etc/cron.daily/", "cron"), ("/etc/cron.weekly/", "cron"), ("/etc/cron.monthly/", "cron"),
    ("/etc/anacrontab", "cron"), ("/var/spool/cron/", "cron"), ("/var/spool/at/", "at"),
    ("/var/spool/cron/atjobs/", "at"), ("/etc/at.allow", "at"), ("/etc/cron.allow", "cron"),
    ("/etc/systemd/", "systemd"), ("/lib/systemd/system/", "systemd"), ("/usr/lib/systemd/system/", "systemd"),
    ("/lib/systemd/system-generators/", "systemd generator"), ("/usr/lib/systemd/system-generators/",
                                                                 "systemd generator"),
    ("/run/systemd/system/", "systemd"), ("*/.config/systemd/", "systemd (user)"),
    ("/etc/init.d/", "init script"), ("/etc/rc.local", "init script"), ("/etc/rc*.d/", "init script"),
    ("/etc/inittab", "init script"), ("/etc/xdg/autostart/", "autostart"), ("*/.config/autostart/", "autostart"),
    ("/etc/ld.so.preload", "ld.so.preload"), ("/etc/ld.so.conf", "linker config"),
    ("/etc/ld.so.conf.d/", "linker config"),
    ("/etc/profile", "login scripts"), ("/etc/profile.d/", "login scripts"), ("/etc/bash.bashrc", "login scripts"),
    ("/etc/bashrc", "login scripts"), ("/etc/environment", "login scripts"), ("/etc/zsh/", "login scripts"),
    ("/root/.bashrc", "root's login scripts"), ("/root/.profile", "root's login scripts"),
    ("/root/.bash_profile", "root's login scripts"), ("/etc/update-motd.d/", "login scripts (run as root)"),
    ("/etc/audit/", "audit config"), ("/etc/audisp/", "audit config"), ("/var/log/audit/", "audit log"),
    ("/etc/libaudit.conf", "audit config"),
    ("/etc/modprobe.d/", "kernel modules"), ("/etc/modules", "kernel modules"), ("/etc/modules-load.d/",
                                                                                 "kernel modules"),
    ("/lib/modules/", "kernel modules"), ("/usr/lib/modules/", "kernel modules"),
    ("/boot/", "boot"), ("/etc/default/grub", "boot"), ("/etc/grub.d/", "boot"),
    ("/etc/selinux/", "SELinux config"), ("/etc/apparmor.d/", "AppArmor config"), ("/etc/apparmor/", "AppArmor config"),
    ("/etc/nsswitch.conf", "name service"), ("/etc/hosts", "name resolution"),
    ("/bin/", "system programs"), ("/sbin/", "system programs"), ("/usr/bin/", "system programs"),
    ("/usr/sbin/", "system programs"), ("/usr/local/bin/", "system programs"), ("/usr/local/sbin/",
                                                                               "system programs"),
    ("/lib/", "system libraries"), ("/lib64/", "system libraries"), ("/usr/lib/", "system libraries"),
    ("/usr/lib64/", "system libraries"), ("/usr/libexec/", "system programs"),
)
# Changes worth seeing, not alarming.
WARNING_PLACES: Tuple[Tuple[str, str], ...] = (
    ("/etc/resolv.conf", "DNS"), ("/etc/fstab", "mounts"), ("/etc/sysctl.conf", "sysctl"),
    ("/etc/sysctl.d/", "sysctl"), ("/etc/hostname", "host name"), ("/etc/network/", "network config"),
    ("/etc/netplan/", "network config"), ("/etc/NetworkManager/", "network config"), ("/etc/iptables/", "firewall"),
    ("/etc/nftables.conf", "firewall"), ("/etc/ssh/", "ssh config"), ("*/.ssh/", "ssh config"),
    ("*/.bashrc", "login scripts"), ("*/.profile", "login scripts"), ("*/.bash_profile", "login scripts"),
    ("*/.zshrc", "login scripts"), ("/etc/", "system config"),
)
# Where deleting, truncating or replacing a file hides what happened:
# logs (appending to them is what logging is), shell histories.
EVIDENCE_PLACES: Tuple[Tuple[str, str], ...] = (
    ("/var/log/", "logs"), ("*/.bash_history", "shell history"), ("*/.zsh_history", "shell history"),
    ("*/.history", "shell history"), ("*/.sh_history", "shell history"), ("*/.python_history", "shell history"),
    ("*/.mysql_history", "shell history"), ("*/.lesshst", "shell history"),
)
# Files whose mere reading by a person is a secret taken.
SECRET_PLACES: Tuple[Tuple[str, str], ...] = (
    ("/etc/shadow", "password hashes"), ("/etc/gshadow", "password hashes"),
    ("/etc/security/opasswd", "password hashes"), ("/etc/ssh/ssh_host_*_key", "host keys"),
    ("*/.ssh/id_*", "private keys"), ("/etc/sudoers", "sudoers"), ("/etc/sudoers.d/", "sudoers"),
)
# Where nothing should be run from: the world-writable scratch places.
TEMP_PLACES = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/user/", "/var/lib/php/sessions/")
_TIME_SYSCALLS = ("settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "stime")
_MODULE_SYSCALLS = {"init_module": "kernel module loaded", "finit_module": "kernel module loaded",
                    "delete_module": "kernel module unloaded"}
# ptrace requests that write into or take control of another process:
# PTRACE_POKETEXT (4), POKEDATA (5), POKEUSER (6), ATTACH (0x10),
# SETREGS (0xd), SEIZE (0x4206).
_PTRACE_WRITES = frozenset(("4", "5", "6", "d", "10", "4206"))
# Syscalls that change a file (or its name, owner, mode, attributes).
_CHANGING = ("open", "creat", "truncate", "ftruncate", "rename", "unlink", "rmdir", "mkdir", "mknod", "link",
             "symlink", "chmod", "fchmod", "chown", "fchown", "lchown", "setxattr", "lsetxattr", "fsetxattr",
             "removexattr", "lremovexattr", "fremovexattr", "utime", "utimes", "futimesat", "utimensat",
             "write", "pwrite", "writev", "sendfile", "copy_file_range", "fallocate")
# O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND as the kernel writes them (hex).
_WRITE_FLAGS = 0x1 | 0x2 | 0x40 | 0x200 | 0x400


def _hex(value: str) -> int:
    try:
        return int(value, 16)
    except ValueError:
        return 0


def _changes_files(event: Event) -> bool:
    facts = event.facts
    syscall = facts.get("syscall")
    if syscall in ("open", "openat", "openat2"):
        flags = facts.get("a2" if syscall == "openat" else "a1")
        return bool(_hex(flags) & _WRITE_FLAGS)
    if syscall.startswith(_CHANGING):
        return True
    return any(nametype in ("CREATE", "DELETE") for _, nametype in facts.paths)


def _erases(event: Event) -> bool:
    """Deleting, truncating or replacing a file (not appending to it)."""
    facts = event.facts
    syscall = facts.get("syscall")
    if syscall.startswith(("unlink", "rename", "truncate", "ftruncate")):
        return True
    if syscall in ("open", "openat", "openat2", "creat"):
        return syscall == "creat" or bool(_hex(facts.get("a2" if syscall == "openat" else "a1")) & 0x200)  # O_TRUNC
    return any(nametype == "DELETE" for _, nametype in facts.paths)


def _mode_argument(event: Event) -> int:
    """The mode a chmod-like syscall sets."""
    facts = event.facts
    syscall = facts.get("syscall")
    return _hex(facts.get("a2" if syscall in ("fchmodat", "fchmodat2") else "a1"))


def by_syscall(event: Event) -> Optional[Verdict]:
    facts = event.facts
    syscall = facts.get("syscall")
    if not syscall:
        return None
    if syscall in _MODULE_SYSCALLS:
        why = _MODULE_SYSCALLS[syscall]
        return Verdict(CRITICAL, why.replace("loaded", "load tried").replace("unloaded", "unload tried")
                       if _failed(event) else why)
    if syscall == "kexec_load" or syscall == "kexec_file_load":
        return Verdict(CRITICAL, "new kernel loaded")
    if syscall == "ptrace":
        request = facts.get("a0").lstrip("0") or "0"
        return Verdict(CRITICAL if request in _PTRACE_WRITES else WARNING, "process traced (ptrace)")
    if syscall.startswith(("chmod", "fchmod")) and _mode_argument(event) & 0o6000:
        return Verdict(CRITICAL, "setuid/setgid bit set")
    if syscall.startswith(("chmod", "fchmod")) and _mode_argument(event) & 0o111:
        # A file made executable where programs do not belong: the step
        # before running something fetched (Wazuh's ANOM_MK_EXEC).
        for path in facts.written_paths():
            where = odd_place(path)
            if where:
                return Verdict(CRITICAL if where.startswith("a hidden file") else WARNING,
                               "made executable in " + where)
    if syscall in ("execve", "execveat"):
        return _by_exec(event)
    if syscall.startswith(("mount", "umount", "fsmount", "move_mount")):
        return Verdict(WARNING, "file system mounted" if syscall.startswith(("mount", "fsmount", "move"))
                       else "file system unmounted")
    if syscall in _TIME_SYSCALLS:
        return Verdict(WARNING if _by_person(event) else INFO, "clock set")
    if syscall in ("sethostname", "setdomainname"):
        return Verdict(WARNING, "host name changed")
    return _root_from_odd_place(event) or _by_path(event) or _by_argv(argv_of(event))


def _root_from_odd_place(event: Event) -> Optional[Verdict]:
    """A person's program from a scratch place or a hidden file acting as
    root (a copy of python given cap_setuid, a setuid shell in /tmp): the
    exec may have gone unrecorded, its first root syscall is enough."""
    facts = event.facts
    if facts.get("euid") != "0" or facts.unset("auid") or facts.get("auid") == "0" or _failed(event):
        return None
    where = odd_place(facts.get("exe"))
    if where and where != "a hidden directory":
        return Verdict(CRITICAL, "root from a program in " + where)
    return None


# Where the system's own setuid programs live: one elsewhere was planted.
SYSTEM_PROGRAMS = ("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/", "/usr/lib/", "/usr/lib64/", "/usr/libexec/",
                   "/lib/", "/lib64/", "/usr/local/bin/", "/usr/local/sbin/", "/opt/", "/snap/")


def odd_place(path: str) -> str:
    """Where a program should not be: a world-writable scratch place, a
    hidden name (/tmp/.x, ~/.cache/.miner), or a hidden directory that is no
    install's bin (~/.local/bin, ~/.cargo/bin, ~/.nvm/.../bin are).  Every
    exec asks, of the few programs a host runs: each path is looked at once
    (while the memory of them, MAX_PLACES, lasts)."""
    where = _ODD_PLACES.get(path)
    if where is None:
        where = _odd_place(path)
        if len(path) < 4096:
            if len(_ODD_PLACES) >= MAX_PLACES:
                _ODD_PLACES.clear()
            _ODD_PLACES[path] = where
    return where


_ODD_PLACES: Dict[str, str] = {}
MAX_PLACES = 4096


def _odd_place(path: str) -> str:
    hidden_name = os.path.basename(path).startswith(".")
    if path.startswith(TEMP_PLACES):
        return "a hidden file in a temporary place" if hidden_name else "a temporary place"
    if hidden_name:
        return "a hidden file"
    parts = path.split("/")[:-1]
    if any(part.startswith(".") and part not in (".", "..") for part in parts) and \
            not any(part in ("bin", "sbin", "libexec") for part in parts):
        return "a hidden directory"
    return ""


def _by_exec(event: Event) -> Optional[Verdict]:
    """A program run from where nothing should run, from memory, or
    setuid-root from outside the system's own directories."""
    facts = event.facts
    if facts.get("success") == "no":
        return None
    exe = facts.get("exe") or (facts.written_paths() or [""])[0]
    if exe.startswith("/memfd:") or exe.endswith(" (deleted)"):
        return Verdict(CRITICAL, "program run from memory")
    # The file run is the first PATH (a script, whose interpreter is exe).
    for path in [exe] + facts.written_paths()[:1]:
        where = odd_place(path)
        if where:
            return Verdict(CRITICAL if where != "a hidden directory" else WARNING, "program run from " + where)
    if facts.get("euid") == "0" and facts.get("uid") not in ("0", "") and not exe.startswith(SYSTEM_PROGRAMS):
        return Verdict(CRITICAL, "setuid-root program run from outside the system's directories")
    if exe.endswith("/pkexec") and facts.command.startswith("argc=0"):
        return Verdict(CRITICAL, "pkexec run without arguments (CVE-2021-4034)")
    words = command_words(event)
    return _web_shell(event, exe, words) or _by_command_line(event, "", words) or _by_argv(words)


# Programs a server has no business starting: a shell, or the commands an
# intruder runs first to see where they are.  (Elastic's "Potential Shell
# via Web Server", Sigma's "Shells Spawned by Web Servers": server programs
# usually don't run shell programs.)
RECON = frozenset(("id", "whoami", "uname", "hostname", "w", "who", "groups", "netstat", "ss", "ifconfig", "ip",
                   "ps", "lsb_release", "nproc", "getent", "arp", "route"))
# The highest uid of the system's own accounts (Debian's and Fedora's
# login.defs: SYS_UID_MAX 999), and nobody.
SYS_UID_MAX = 999
NOBODY = "65534"


def _web_shell(event: Event, exe: str, words: List[str]) -> Optional[Verdict]:
    """A service account (a system uid, no login session) whose program
    starts a shell or reconnaissance tools: a web shell, or a service
    taken over.  Its own start by init (ppid 1) is not."""
    facts = event.facts
    uid = facts.get("uid")
    if not facts.unset("auid") or facts.get("ppid") in ("1", "") or not (uid == NOBODY or uid.isdigit() and
                                                                         0 < int(uid) <= SYS_UID_MAX):
        return None
    program = os.path.basename(exe)
    if program in evidence.SHELLS or program in RECON or (words and os.path.basename(words[0]) in RECON):
        return Verdict(CRITICAL, "shell started by a service account")
    return None


def _by_command_line(event: Event, text: str, words: Optional[List[str]]) -> Optional[Verdict]:
    """What a command line says it does (evidence.py): sudo's cmd (text) or
    an exec's argv (words), judged whatever rule recorded it."""
    if words is not None and (not evidence.worth_reading(words) or os.path.basename(words[0]) in ELEVATORS):
        return None  # (sudo's own argv is a request: its USER_CMD says whether it ran, the child's exec what)
    found = _judge(event, text, words)
    if found is None:
        return None
    if found.why.endswith(" read") and words is not None and event.facts.get("euid") not in ("0", ""):
        # Hashes and private keys are their owner's and root's alone: an
        # ordinary user's cat of them fails (sudo's cmd runs as root).
        return Verdict(WARNING, found.why)
    return Verdict(found.severity, found.why)


def _judge(event: Event, text: str, words: Optional[List[str]]) -> Optional[evidence.Finding]:
    actor = _actor(event) if "/.ssh/" in (text or " ".join(words or ())) else ""
    return evidence.judge_text(text, actor) if words is None else evidence.judge_words(words, actor)


def command_finding(event: Event) -> Optional[evidence.Finding]:
    """The deed a command-line verdict stands for, in words (for the
    message; made again, as only a message's few events need it)."""
    if event.get("type") == "USER_CMD":
        return _judge(event, event.facts.get("cmd"), None)
    return _judge(event, "", command_words(event))


def _actor(event: Event) -> str:
    """The name of the person behind an event (for "their own key"): the
    login's auid, as a name."""
    return event.get("auid") if not event.facts.unset("auid") else ""


# Programs whose arguments say what they do to a file: erase it, or fetch
# something from the network into it.
_ERASERS = frozenset(("rm", "shred", "truncate", "unlink", "wipe", "srm"))
_DOWNLOADERS = frozenset(("wget", "curl", "aria2c", "fetch", "tftp", "lwp-download"))


def _by_argv(words: List[str]) -> Optional[Verdict]:
    """What a command line says it will do, for rule sets that log execs
    but not the writes (truncate -s 0 /var/log/x; wget -O /tmp/.x URL)."""
    if not words:
        return None
    program = os.path.basename(words[0])
    if program not in _ERASERS and program not in _DOWNLOADERS:
        return None
    for path in argv_paths(words):
        if program in _ERASERS:
            label = place(path, EVIDENCE_PLACES)
            if label:
                return Verdict(WARNING, label + " erased")
        else:
            where = odd_place(path)
            if where:
                return Verdict(WARNING, "download to " + where)
    return None


def _reads_only(event: Event) -> bool:
    facts = event.facts
    syscall = facts.get("syscall")
    if syscall in ("open", "openat", "openat2", "open_by_handle_at"):
        flags = facts.get("a2" if syscall in ("openat", "openat2") else "a1")
        return not _hex(flags) & _WRITE_FLAGS
    return syscall in ("read", "readlink", "readlinkat", "stat", "lstat", "newfstatat", "access", "faccessat",
                       "faccessat2", "getxattr", "lgetxattr", "listxattr", "statx")


def _by_path(event: Event) -> Optional[Verdict]:
    facts = event.facts
    names = facts.written_paths()
    if not names:
        return None
    if _failed(event):
        # Nothing changed, but someone tried (the STIG "access" rules): worth
        # a message when a person was refused (EACCES, EPERM; not "no such
        # file") one of the places that matter.
        refused = facts.get("exit") in ("-13", "-1")
        matters = any(place(name, CRITICAL_PLACES) or place(name, SECRET_PLACES) for name in names)
        return Verdict(WARNING if refused and matters and _by_person(event) else INFO, "access denied")
    if _changes_files(event):
        for name in names:
            label = place(name, CRITICAL_PLACES)
            if label == "audit log" and facts.get("exe").endswith("/auditd"):
                continue  # auditd writing and rotating its own log
            if label:
                return Verdict(CRITICAL, label + " changed")
        for name in names:
            label = place(name, WARNING_PLACES)
            if label:
                return Verdict(WARNING, label + " changed")
        if _erases(event):
            for name in names:
                label = place(name, EVIDENCE_PLACES)
                if label:
                    return Verdict(WARNING, label + " erased")
        return None
    for name in names:
        label = place(name, SECRET_PLACES)
        if label:
            # Read by a person who is not root, or by a program root did
            # not start from a login (sshd, sudo, cron read shadow all day).
            secret = _by_person(event) and facts.get("uid") != "0" and facts.get("euid") != "0"
            return Verdict(WARNING if secret else INFO, label + " read")
    return None


# -- 3. rule keys -------------------------------------------------------------

# Audit's own tools: every change they make to the kernel's audit setup is
# a CONFIG_CHANGE record the kernel writes whatever the rules (judged on its
# own); running one says nothing more.
AUDIT_TOOLS = frozenset(("auditctl", "augenrules"))


def by_key(event: Event) -> Optional[Verdict]:
    key = event.facts.get("key") or event.get("key")
    if not key or key in ("(null)", "(none)"):
        return None
    if event.facts.command and os.path.basename(event.facts.get("exe")) in AUDIT_TOOLS:
        return Verdict(INFO, "audit tool run")
    keys = [one.strip('"') for one in key.split("\x01")]  # several keys on one rule arrive joined by 0x01
    known = [one for one in keys if one in KEY_SEVERITY]
    if known:
        one = min(known, key=lambda k: RANK[KEY_SEVERITY[k]])
        severity = KEY_SEVERITY[one]
        if severity == CRITICAL and _reads_only(event):
            # A watch without -p wa fires on reads too: the rule exists for
            # the writes (pam_unix reads /etc/shadow at every login).
            severity = INFO
        elif severity == CRITICAL and event.facts.command:
            severity = WARNING  # a tool was run; what it did (a module load, a write) is judged on its own
        return Verdict(severity, "rule %s" % one)
    # A key nobody here knows: an admin's own watch is worth a message; a
    # rule that logs every exec is telemetry (what the exec did is judged
    # above, and what its session did where events meet).
    watch = "SYSCALL" in event.types() and not event.facts.get("syscall").startswith("execve")
    return Verdict(WARNING if watch else INFO, "rule %s" % key.split("\x01")[0])


def classify(event: Event) -> Verdict:
    """The severity of one event on its own (see the module docstring)."""
    return by_type(event) or by_syscall(event) or by_key(event) or Verdict(INFO, "event")
