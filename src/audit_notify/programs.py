"""What programs mean to someone reading audit records.

The kernel names a program by its path; a person knows that sshd logs people
in, that cron runs what was planned, that sudo runs a command as someone
else and that apt-get's children write system files as a matter of course.
These tables and the argv readers are that knowledge, kept apart from the
Grouper (incidents.py) that acts on it so both stay small enough to read.
"""

from __future__ import annotations

import re
from typing import List

from .events import Event

# Programs that log people in; a PAM chain of theirs is a login.
LOGIN_SERVICES = {
    "sshd": "SSH", "login": "console", "gdm-session-worker": "GDM", "lightdm": "LightDM", "sddm-helper": "SDDM",
    "cockpit-session": "Cockpit", "vsftpd": "FTP", "dovecot": "IMAP", "xrdp-sesman": "RDP", "systemd-logind": "login",
    "in.telnetd": "telnet", "rlogind": "rlogin", "proftpd": "FTP", "pure-ftpd": "FTP",
}
# Schedulers: their sessions are routine, the jobs they run are judged on
# their own.
SCHEDULERS = {"cron": "cron", "crond": "cron", "atd": "at", "anacron": "anacron", "systemd": "systemd"}
# Programs that run a command as another user, logging a PAM chain of
# their own (and sudo a USER_CMD).
ELEVATORS = {"sudo": "sudo", "su": "su", "pkexec": "pkexec", "doas": "doas", "run0": "run0", "sudo-rs": "sudo",
             "su-rs": "su", "runuser": "runuser", "sg": "sg", "newgrp": "newgrp"}
# Package managers: everything their children do is one install.
PACKAGE_MANAGERS = ("apt", "apt-get", "aptitude", "dpkg", "dnf", "yum", "rpm", "zypper", "pacman", "apk", "pip",
                    "pip3", "pipx", "snap", "flatpak", "unattended-upgrade", "unattended-upgrades", "microdnf",
                    "tdnf", "emerge", "xbps-install", "packagekitd")
_PACKAGE_VERBS = ("install", "reinstall", "remove", "purge", "upgrade", "dist-upgrade", "full-upgrade", "erase",
                  "update", "autoremove", "downgrade", "-i", "-U", "-e", "-r", "-P", "-S", "-R", "-Syu",
                  "--install", "--remove", "--purge", "--unpack", "--configure", "add", "del")
SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "tcsh", "csh", "ash", "busybox", "-bash",
                    "-sh", "-zsh"))


def basename(path: str) -> str:
    return path.strip('"').rpartition("/")[2]


_ARG = re.compile(r"a(\d+)=(\"[^\"]*\"|\S+)")


def command_words(event: Event) -> List[str]:
    """The argv of an exec, raw (from the EXECVE record's text); read once
    per event (grouping, severity and the message all ask)."""
    facts = event.facts
    if facts.words is None:
        words = []
        for _name, value in _ARG.findall(facts.command):
            if value.startswith('"'):
                words.append(value[1:-1])
            else:
                try:
                    words.append(bytes.fromhex(value).decode("utf-8", "surrogateescape"))
                except ValueError:
                    words.append(value)
        facts.words = words
    return facts.words  # shared: read, never changed


def argv_of(event: Event) -> List[str]:
    """The command line of the process behind an event: its exec's argv,
    or, for any other syscall, the PROCTITLE (the kernel's first 128 bytes
    of the process's argv)."""
    if event.facts.command:
        return command_words(event)
    title = event.facts.get("proctitle")
    return [word for word in title.split("\0") if word] if "\0" in title else []


def argv_paths(words: List[str]) -> List[str]:
    """The absolute paths a command line names (``--output=/x`` too)."""
    paths = []
    for word in words[1:]:
        path = word.split("=", 1)[-1] if word.startswith("--") else word
        if path.startswith("/"):
            paths.append(path)
    return paths


def is_package_manager(words: List[str]) -> bool:
    """Whether an argv runs a package manager (``python3 -m pip`` too)."""
    if not words:
        return False
    program = basename(words[0])
    return program in PACKAGE_MANAGERS or (
        len(words) > 1 and program.startswith("python") and basename(words[1]) in PACKAGE_MANAGERS)


def packages(words: List[str]) -> List[str]:
    """The packages a package manager's command line names."""
    names, started = [], False
    for word in words[1:]:
        if word in _PACKAGE_VERBS:
            started = True
            continue
        if started and not word.startswith("-"):
            names.append(basename(word) if word.endswith((".deb", ".rpm", ".whl")) else word)
    return names


# What a package manager does when it changes the system (the rest are
# queries: apt-get check, dpkg -l, rpm -q... run by cron every day).
_CHANGING_VERBS = frozenset(("install", "reinstall", "remove", "purge", "upgrade", "dist-upgrade", "full-upgrade",
                             "erase", "autoremove", "downgrade", "localinstall", "add", "del", "-i", "--install",
                             "-r", "--remove", "-P", "--purge", "--unpack", "--configure", "-U", "-e", "-S", "-R",
                             "-Syu", "-Sy", "-Rs"))


def changes_packages(words: List[str]) -> bool:
    return any(word in _CHANGING_VERBS for word in words[1:])
