"""Headlines: one event in words, for a lock screen and a client.

A headline says what happened, to or by whom, from where; the details are
the useful facts the headline does not show.  format.py builds messages
from them.  Every audit value goes in as a ``V`` (message.py), so it is
escaped for both renderers.
"""

from __future__ import annotations

import os
import re
import time
from typing import List, Optional, Tuple

from .events import Event
from .message import MAX_COMMAND_CHARS, MAX_VALUE_CHARS, L, Line, V


def _failed(event: Event) -> Optional[bool]:
    res = event.get("res") or event.get("result")
    if res:
        return res.lower() not in ("success", "yes", "1")
    success = event.get("success")
    if success:
        return success != "yes"
    return None


def _known(value: str) -> bool:
    return value not in ("", "?", "(none)", "(null)", "unset", "n/a")


def _who(event: Event) -> Tuple[str, ...]:
    """The person behind an event: login uid, and the uid it acted as."""
    auid, uid = event.get("auid"), event.get("uid")
    if _known(auid) and auid not in ("-1", "4294967295"):
        return (V(auid), " as ", V(uid)) if _known(uid) and uid != auid else (V(auid),)
    return (V(uid or event.get("acct") or "system"),)


def _from(event: Event) -> Tuple[str, ...]:
    addr, host = event.get("addr"), event.get("hostname")
    parts: Tuple[str, ...] = (" from ", V(addr)) if _known(addr) else ()
    if _known(host) and host != addr:
        parts += (" (", V(host), ")") if parts else (" from ", V(host))
    return parts


def _program(event: Event) -> str:
    return V(event.get("comm") or event.get("exe") or "?")


_SERVICES = {
    "sshd": "SSH", "login": "console", "sudo": "sudo", "su": "su", "gdm-session-worker": "GDM",
    "lightdm": "LightDM", "sddm-helper": "SDDM", "cron": "cron", "crond": "cron", "polkit-agent-helper-1": "polkit",
    "vsftpd": "FTP", "dovecot": "IMAP", "cockpit-session": "Cockpit",
}


def _service(event: Event) -> str:
    """"SSH", "sudo", ... for programs we know; else the program's name,
    which is the attacker's to choose (a V)."""
    name = os.path.basename(event.get("exe") or event.get("how") or event.get("comm"))
    return _SERVICES.get(name) or V(name or "login")


_LOGIN_TYPES = {
    "USER_LOGIN": ("login", "Failed %s login"),
    "USER_AUTH": ("authentication", "Failed %s authentication"),
    "USER_ERR": ("account error", "%s account error"),
    "USER_ACCT": ("account check", "%s account check refused"),
    "USER_LOGOUT": ("logout", "Failed %s logout"),
    "USER_START": ("session opened", "%s session failed to open"),
    "USER_END": ("session closed", "%s session failed to close"),
    "CRED_ACQ": ("credentials acquired", "%s credentials refused"),
    "CRED_REFR": ("credentials refreshed", "%s credentials refresh failed"),
    "CRED_DISP": ("credentials disposed", "%s credentials disposal failed"),
    "USER_ROLE_CHANGE": ("role changed", "%s role change failed"),
    "ANOM_LOGIN_FAILURES": ("too many login failures", "%s: too many login failures"),
    "ANOM_LOGIN_SESSIONS": ("too many sessions", "%s: too many sessions"),
    "ANOM_LOGIN_TIME": ("login at a forbidden time", "%s login at a forbidden time"),
    "ANOM_LOGIN_LOCATION": ("login from a forbidden place", "%s login from a forbidden place"),
}

_ACCOUNT_TYPES = {
    "ADD_USER": "User added", "DEL_USER": "User deleted", "ADD_GROUP": "Group added",
    "DEL_GROUP": "Group deleted", "USER_MGMT": "User changed", "GRP_MGMT": "Group changed",
    "USER_CHAUTHTOK": "Password changed", "GRP_CHAUTHTOK": "Group password changed",
    "ACCT_LOCK": "Account locked", "ACCT_UNLOCK": "Account unlocked", "CHUSER_ID": "User id changed",
    "CHGRP_ID": "Group id changed",
}

_AUDIT_TYPES = {
    "CONFIG_CHANGE": "Audit rules changed", "DAEMON_START": "auditd started", "DAEMON_END": "auditd stopped",
    "DAEMON_ABORT": "auditd aborted", "DAEMON_CONFIG": "auditd config changed",
    "DAEMON_RECONFIG": "auditd reconfigured", "DAEMON_ROTATE": "audit log rotated",
    "DAEMON_RESUME": "auditd resumed", "DAEMON_ACCEPT": "auditd accepted a remote connection",
    "DAEMON_CLOSE": "auditd closed a remote connection", "DAEMON_ERR": "auditd error",
    "USYS_CONFIG": "System configuration changed", "MAC_POLICY_LOAD": "SELinux policy loaded",
    "MAC_STATUS": "SELinux mode changed", "MAC_CONFIG_CHANGE": "SELinux boolean changed",
    "SERVICE_START": "Service started", "SERVICE_STOP": "Service stopped", "SYSTEM_BOOT": "System booted",
    "SYSTEM_SHUTDOWN": "System shutting down", "SYSTEM_RUNLEVEL": "Runlevel changed",
    "SOFTWARE_UPDATE": "Software updated", "NETFILTER_CFG": "Firewall rules changed", "BPF": "BPF program changed",
    "KERN_MODULE": "Kernel module loaded", "TIME_ADJNTPVAL": "System clock adjusted",
    "TIME_INJOFFSET": "System clock adjusted",
}
# Events done by someone, worth saying who.
_AUDIT_BY_WHOM = ("CONFIG_CHANGE", "USYS_CONFIG", "MAC_STATUS", "MAC_CONFIG_CHANGE", "NETFILTER_CFG", "KERN_MODULE")


def _headline_login(event: Event, failed: bool) -> Line:
    ok, bad = _LOGIN_TYPES[event.get("type")]
    service = _service(event)
    if failed:
        before, _, after = bad.partition("%s")
        what: Tuple[str, ...] = (before, service, after)
    else:
        what = (service, " " + ok)
    # An empty acct is shown as "" (sshd logs a client's empty user name so).
    account = event.get("acct") if "acct" in event.fields else event.get("id") or event.get("auid") or "?"
    return L(*what + (" for ", V(account or '""')) + _from(event))


def _headline_sudo(event: Event, failed: bool) -> Line:
    who = V(event.get("auid") or event.get("uid") or "?")
    command = V(event.get("cmd") or "?")
    if failed:
        return L("sudo refused: ", who, " tried ", command)
    return L("sudo: ", who, " ran ", command, " as ", V(event.get("acct") or "root"))


def _headline_account(event: Event, failed: bool) -> Line:
    what = _ACCOUNT_TYPES[event.get("type")] + (" (FAILED)" if failed else "")
    target = event.get("acct") or event.get("grp") or event.get("id") or "?"
    line: Tuple[str, ...] = (what + ": ", V(target))
    op = event.get("op")
    if _known(op) and event.get("type") in ("USER_MGMT", "GRP_MGMT") and op != target:
        line += (" (", V(op), ")")
    return L(*line + (" by ",) + _who(event))


def _mac_verdict(event: Event) -> str:
    verdict = (event.get("apparmor") or event.get("seresult")).lower()
    return verdict if verdict in ("denied", "granted", "allowed", "audit", "status") else "event"


def _headline_mac(event: Event, failed: bool) -> Line:
    verdict = _mac_verdict(event)
    line: Tuple[str, ...]
    if event.get("apparmor"):
        line = ("AppArmor %s " % verdict, _program(event), ": ", V(event.get("operation") or "?"))
        if _known(event.get("name")):
            line += (" on ", V(event.get("name")))
        return L(*line + (" (profile ", V(event.get("profile") or "?"), ")"))
    perms = (event.get("seperms") or event.get("perm") or "").strip("{} ")
    target = event.get("name") or event.get("path") or event.get("tclass")
    line = ("SELinux %s " % verdict, V(event.get("comm") or event.get("exe") or "?"))
    if _known(perms):
        line += (": ", V(perms))
    if _known(target):
        line += (" on ", V(target))
    scontext, tcontext = event.get("scontext").split(":"), event.get("tcontext").split(":")
    if len(scontext) > 2 and len(tcontext) > 2:
        line += (" (", V("%s → %s %s" % (scontext[2], tcontext[2], event.get("tclass"))), ")")
    return L(*line)


def _headline_user_message(event: Event, failed: bool) -> Line:
    """A free-text USER record (auditctl -m, audit_log_user_message)."""
    return L("Audit message: ", V(event.get("text")), " from ", V(event.get("exe") or event.get("comm") or "?"),
             " by ", *_who(event))


def _headline_login_id(event: Event, failed: bool) -> Line:
    line: Tuple[str, ...] = ("Login id set%s: " % (" FAILED" if failed else ""), V(event.get("auid") or "?"))
    if _known(event.get("ses")):
        line += (" (session ", V(event.get("ses")), ")")
    if _known(event.get("comm") or event.get("exe")):
        line += (" by ", _program(event))
    return L(*line)


def _headline_audit(event: Event, failed: bool) -> Line:
    rtype = event.get("type")
    line: Tuple[str, ...] = (_AUDIT_TYPES[rtype] + (" (FAILED)" if failed else ""),)
    detail = event.get("unit") or event.get("op") or event.get("dev")
    if _known(detail):
        line += (": ", V(detail.strip('"')))
    if event.get("key"):
        line += (" (rule ", V(event.get("key")), ")")
    if rtype in _AUDIT_BY_WHOM:
        line += (" by ",) + _who(event)
    return L(*line)


def _headline_anomaly(event: Event, failed: bool) -> Line:
    rtype = event.get("type")
    if rtype == "ANOM_ABEND":
        return L("Process crashed: ", _program(event), " (signal ", V(event.get("sig") or "?"), ") run by ",
                 *_who(event))
    if rtype == "ANOM_PROMISCUOUS":
        state = "on" if event.get("prom") not in ("0", "") else "off"
        return L("Network device ", V(event.get("dev") or "?"), " promiscuous mode %s by " % state, *_who(event))
    return L("Anomaly %s: " % rtype, _program(event), " by ", *_who(event))


def _headline_syscall(event: Event, failed: bool) -> Line:
    argv = event.get("argv")
    name = _watched_path(event)
    line: Tuple[str, ...]
    if event.get("syscall") in ("execve", "execveat") and (argv or name):
        line = ("Command%s: " % (" failed" if failed else ""), V(argv or name), " by ") + _who(event)
        error = re.sub(r"^[A-Z]+\((.*)\)$", r"\1", event.get("exit"))
        if failed and error:
            line += (" (", V(error), ")")
    elif name:
        line = ("Watched file %s%s: " % (_verb(event), " FAILED" if failed else ""), V(name), " by ") + \
            _who(event) + (" via ", V(event.get("exe") or "?"))
    else:
        line = ("%s%s by " % (event.get("syscall") or event.get("type"), " failed" if failed else ""),) + \
            _who(event) + (" via ", V(event.get("exe") or "?"))
    if event.get("key"):
        line += (" (rule ", V(event.get("key")), ")")
    return L(*line)


def _watched_path(event: Event) -> str:
    """The path a file-watch event is about: the PATH record that is not
    the parent directory, made absolute with the CWD when relative."""
    paths = [f for t, f in event.records if t == "PATH" and f.get("name") not in (None, "(null)")]
    chosen = [f for f in paths if f.get("nametype") != "PARENT"] or paths
    if not chosen:
        return ""
    name = chosen[-1]["name"]
    cwd = event.get("cwd")
    if not name.startswith("/") and cwd:
        name = os.path.join(cwd, name)
    return name


# What a file-watch hit did, by syscall name prefix (first match wins).
_SYSCALL_VERBS = (
    ("rename", "replaced"), ("unlink", "deleted"), ("rmdir", "deleted"), ("mkdir", "created"),
    ("mknod", "created"), ("creat", "created"), ("symlink", "linked"), ("link", "linked"),
    ("chmod", "permissions changed"), ("fchmod", "permissions changed"), ("chown", "owner changed"),
    ("fchown", "owner changed"), ("lchown", "owner changed"), ("truncate", "truncated"),
    ("ftruncate", "truncated"), ("setxattr", "attributes changed"), ("lsetxattr", "attributes changed"),
    ("fsetxattr", "attributes changed"), ("removexattr", "attributes changed"), ("utime", "timestamps changed"),
)
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")


def _verb(event: Event) -> str:
    syscall = event.get("syscall")
    for prefix, verb in _SYSCALL_VERBS:
        if syscall.startswith(prefix):
            return verb
    if syscall in ("open", "openat", "openat2"):
        flags = event.get("a2" if syscall == "openat" else "a1")
        return "opened for writing" if any(f in flags for f in _WRITE_FLAGS) else "opened"
    types = [f.get("nametype") for t, f in event.records if t == "PATH"]
    return "created" if "CREATE" in types else "deleted" if "DELETE" in types else "changed"


def _headline_generic(event: Event, failed: bool) -> Line:
    line: Tuple[str, ...] = ("%s event%s" % (event.get("type"), " (FAILED)" if failed else ""),)
    if _known(event.get("action")):
        line += (": ", V(event.get("action").replace("-", " ")))
    if event.get("primary_object"):
        line += (" ", V(event.get("primary_object")))
    line += (" by ",) + _who(event)
    if _known(event.get("how")):
        line += (" via ", V(event.get("how")))
    return L(*line)


def headline(event: Event) -> Tuple[Line, Optional[bool]]:
    """What happened, to/by whom, from where: one line for a lock screen,
    and whether it failed (None: neither)."""
    rtype = event.get("type")
    failed = _failed(event)
    if rtype == "USER_CMD":
        make = _headline_sudo
    elif rtype == "LOGIN":
        make = _headline_login_id
    elif rtype == "USER" and event.get("text"):
        make = _headline_user_message
    elif rtype in _LOGIN_TYPES:
        make = _headline_login
    elif rtype in _ACCOUNT_TYPES:
        make = _headline_account
    elif rtype in ("AVC", "USER_AVC", "SELINUX_ERR", "USER_SELINUX_ERR") or event.get("apparmor"):
        make = _headline_mac
        verdict = _mac_verdict(event)
        failed = True if verdict == "denied" or rtype.endswith("SELINUX_ERR") else \
            False if verdict in ("granted", "allowed") else None
    elif rtype in _AUDIT_TYPES:
        make = _headline_audit
    elif rtype.startswith("ANOM_"):
        make = _headline_anomaly
        failed = True  # a crash, a promiscuous interface: something to look at
    elif "SYSCALL" in event.types():
        make = _headline_syscall
    else:
        make = _headline_generic
    return make(event, bool(failed)), failed


_DETAIL_FIELDS = (
    ("user", ("acct",)), ("login user", ("auid",)), ("as", ("uid",)), ("from", ("addr",)),
    ("host name", ("hostname",)), ("terminal", ("terminal",)), ("program", ("exe",)), ("command", ("argv", "cmd")),
    ("title", ("proctitle",)), ("directory", ("cwd",)), ("path", ("name",)), ("rule", ("key",)),
    ("syscall", ("syscall",)), ("exit", ("exit",)), ("pid", ("pid",)), ("session", ("ses",)),
    ("unit", ("unit",)),
)


def details(event: Event, head: Line) -> List[Line]:
    """The useful raw facts the headline does not already show, one short
    line each, in a fixed order."""
    shown = {p for p in head.parts if isinstance(p, V) and len(p) <= head.limit}
    lines = []
    for label, names in _DETAIL_FIELDS:
        if label == "as" and event.get("type") in _LOGIN_TYPES:
            continue  # the uid of sshd, login, sudo...: not the person
        for name in names:
            value = event.get(name)
            if not _known(value) or value in shown or (name == "proctitle" and value == event.get("argv")):
                continue
            shown.add(value)
            limit = MAX_COMMAND_CHARS if name in ("argv", "cmd", "proctitle") else MAX_VALUE_CHARS
            lines.append(Line(("%s: " % label, V(value)), limit))
            break
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(event.timestamp))
    records = event.get("records")
    # Record type names are auparse's (or UNKNOWN[n]): words of ours, unless odd.
    shown = records if _TYPE_NAMES.fullmatch(records) else V(records)
    lines.append(Line(("event: ", shown, " #", V(event.get("serial")), " at " + stamp)))
    return lines


_TYPE_NAMES = re.compile(r"[A-Z0-9_\[\] ]*")
