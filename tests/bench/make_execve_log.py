#!/usr/bin/env python3
"""Make real audit logs for the benchmarks: a private auditd with the
rules of one kind of flood, around a loop that makes it.

    tests/bench/make_execve_log.py [--kind tmp|ordinary|users] [--commands 20000]
                                   [--format RAW|ENRICHED] [--out FILE]
    tests/bench/make_execve_log.py --all [--dir /var/tmp/audit-notify-bench]

The kinds of flood, each a different road through the plugin:

  tmp       one program run again and again from /tmp (an execve rule on
            it): critical repeats, which the fast lane counts (execve.log)
  ordinary  ordinary programs (ls, cat, grep, sort, awk...) run by a logged-in
            user (auid 1000) under a rule that logs users' commands: routine,
            each exec an action of its own, counted into the routine summary
            (ordinary.log)
  users     20-odd users (uid 1000 and the system's named accounts, each in
            a login of its own) writing many files under an admin's keyed watch rules (-w DIR -p
            wa -k dataN): warnings of many shapes, each new shape once, then
            known (known.py) and routine (users.log)

--all records the three kinds in both formats (six logs, ENRICHED ones
named *-enriched.log) into --dir.  The log is what auditd's dispatcher
hands a plugin (format = string, in auditd's log_format: RAW, or ENRICHED
as Debian ships it): a recording plugin appends its stdin to OUT.  Only
processes forked after auditd is up make events.  ``--commands`` is about
how many events the loop makes (20,000: 140,000 to 160,000 records).
Needs root and auditd; each log takes about a minute, and waits for the
global auditd lock (tests/auditd_env.py) while others hold it.
"""

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from auditd_env import private_auditd  # noqa: E402

BENCH_DIR = "/var/tmp/audit-notify-bench"
# Where the users kind's watched files live, made and removed by the run:
# an admin's data, not a scratch place (/tmp, /var/tmp) that severity reads
# otherwise.
WATCHED_ROOT = "/srv/audit-notify-bench"
WATCHED_DIRS = 8
FILES_PER_USER = 40   # per user and directory: many different files
# The users of the users kind, each in a login of its own: uid 1000 (a
# host's first user) and the accounts every Debian has (base-passwd) or
# this host adds, by name, so that every uid has one.  (Named test users
# come and go on a shared machine; a bare uid costs every name lookup,
# ausearch -i's too, a trip through NSS for each field.)
USER_NAMES = ("daemon", "bin", "sys", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data", "backup",
              "list", "irc", "nobody", "_apt", "messagebus", "sshd", "systemd-network", "systemd-timesync",
              "polkitd", "postgres")


def users_of_kind() -> list:
    uids = []
    for name in USER_NAMES:
        try:
            uids.append(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    return [1000] + uids


# The ordinary kind's user and its loop: 14 execs of ordinary programs,
# pipelines included, per turn.
ORDINARY_UID = 1000
ORDINARY_TURN = textwrap.dedent("""\
    ls -l /etc >/dev/null; cat /etc/hostname >/dev/null; date +%s >/dev/null; id -un >/dev/null
    grep -c root /etc/group >/dev/null; sed -n 1p /etc/os-release >/dev/null
    awk -F: '{print $1}' /etc/passwd | sort | head -3 >/dev/null
    tail -1 /etc/services >/dev/null; wc -l /etc/services >/dev/null; stat -c %s /etc/hosts >/dev/null
    uname -r >/dev/null; basename /usr/bin/env >/dev/null
    """)
ORDINARY_EXECS = 14

RECORDER = textwrap.dedent("""\
    #!/bin/sh
    exec /bin/cat >> "$1"
    """)



class Login:
    """A shell of UID's in a login of its own (its loginuid and session, as
    sshd and PAM set up for a person), started before auditd: its login
    is not in the log, as with a person who logged in before the log
    began.  It waits; ``run()`` lets it run SCRIPT (its children, forked
    after auditd is up, make the events) and waits for it to end."""

    def __init__(self, uid: int, script: str):
        def become():
            with open("/proc/self/loginuid", "w") as handle:
                handle.write(str(uid))
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        self.process = subprocess.Popen(["/bin/sh", "-c", "read go && eval \"$0\"", script],
                                        stdin=subprocess.PIPE, preexec_fn=become, cwd="/")

    def run(self):
        self.process.communicate(b"go\n")
        if self.process.returncode:
            raise SystemExit("a login's loop failed: %s" % self.process.returncode)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def tmp_flood(tmp: str, commands: int):
    """(rules, the logins to start before auditd, the work, the key and
    how many events of it to wait for)"""
    true = os.path.join(tmp, "an-true")
    subprocess.run(["cp", "/bin/true", true], check=True)
    rules = ["-a always,exit -F arch=b64 -S execve -F path=%s -k an-bench" % true]

    def work(_logins):
        subprocess.run(["/bin/sh", "-c", 'i=0; while [ $i -lt %d ]; do %s; i=$((i+1)); done' % (commands, true)],
                       check=True)
    return rules, [], work, "an-bench", commands


def _run_all(logins):
    for login in logins:
        login.run()


def ordinary_flood(_tmp: str, commands: int):
    rules = ["-a always,exit -F arch=b64 -S execve -F auid>=1000 -F auid!=unset -k user-commands"]
    turns = max(1, commands // ORDINARY_EXECS)
    script = 'i=0; while [ $i -lt %d ]; do\n%s i=$((i+1)); done' % (turns, ORDINARY_TURN)
    return rules, [(ORDINARY_UID, script)], _run_all, "user-commands", turns * ORDINARY_EXECS


def users_flood(_tmp: str, commands: int):
    dirs = [os.path.join(WATCHED_ROOT, "data%d" % n) for n in range(1, WATCHED_DIRS + 1)]
    for path in dirs:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o1777)
    rules = ["-w %s -p wa -k data%d" % (path, n) for n, path in enumerate(dirs, 1)]
    # Three writes a turn, each by a program of its own (a write of the
    # shell's own would make its children part of its action).
    uids = users_of_kind()
    turns = max(1, commands // (3 * len(uids)))
    script = textwrap.dedent("""\
        i=0; u=$(id -u); while [ $i -lt %d ]; do
          f=%s/data$((i %% %d + 1))/u$u-f$((i %% %d))
          touch "$f"; cp /etc/hostname "$f"; tee -a "$f" </etc/hostname >/dev/null
          i=$((i+1))
        done""") % (turns, WATCHED_ROOT, WATCHED_DIRS, FILES_PER_USER)
    return rules, [(uid, script) for uid in uids], _run_all, None, turns * 3 * len(uids)


KINDS = {"tmp": (tmp_flood, "execve"), "ordinary": (ordinary_flood, "ordinary"), "users": (users_flood, "users")}


def record(kind: str, log_format: str, out: str, commands: int):
    """One log: a private auditd with the kind's rules, the kind's loop,
    until every event made has reached the recording plugin."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out):
        os.unlink(out)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = os.path.join(tmp, "recorder.sh")
        with open(recorder, "w") as handle:
            handle.write(RECORDER)
        os.chmod(recorder, 0o755)
        rules, logins, work, key, events = KINDS[kind][0](tmp, commands)
        logins = [Login(uid, script) for uid, script in logins]
        try:
            with private_auditd(tmp, plugin_path=recorder, plugin_args=(out,), rules=rules, q_depth=65536,
                                log_format=log_format, lock_timeout=3600) as auditd:
                started = time.monotonic()
                work(logins)
                took = time.monotonic() - started
                _settle(auditd, key, events)
                report = auditd.state_report()
        finally:
            for login in logins:
                login.stop()
            if kind == "users":
                shutil.rmtree(WATCHED_ROOT, ignore_errors=True)
    with open(out, "rb") as handle:
        data = handle.read()
    records = data.count(b"\ntype=") + data.startswith(b"type=")
    print("%s %s: about %d events made in %.1f s; %s: %d records, %d bytes; plugin queue overflow: %s"
          % (kind, log_format, events, took, out, records, len(data), report.get("plugin queue overflow detected")))


def _settle(auditd, key, events: int):
    """Until the audit log holds the events made (by their key; every
    "key=" when they have several) and has stopped growing, then a moment
    for the dispatcher to hand the last records to the plugin."""
    needle = ' key="%s"' % key if key else " key="
    auditd.wait_for(lambda text: text.count(needle) >= events, timeout=300)
    size = -1
    while size != len(auditd.log_text()):
        size = len(auditd.log_text())
        time.sleep(1)
    time.sleep(2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=sorted(KINDS), default="tmp")
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--format", choices=("RAW", "ENRICHED"), default="RAW")
    parser.add_argument("--out", help="default: DIR/execve.log, ordinary.log, users.log (-enriched for ENRICHED)")
    parser.add_argument("--all", action="store_true", help="every kind in both formats, into --dir")
    parser.add_argument("--dir", default=BENCH_DIR)
    args = parser.parse_args(argv)
    jobs = [(kind, fmt) for kind in ("tmp", "ordinary", "users") for fmt in ("RAW", "ENRICHED")] if args.all \
        else [(args.kind, args.format)]
    for kind, fmt in jobs:
        out = args.out if args.out and not args.all else os.path.join(args.dir, log_name(kind, fmt))
        record(kind, fmt, out, args.commands)
    return 0


def log_name(kind: str, log_format: str) -> str:
    return KINDS[kind][1] + ("-enriched" if log_format == "ENRICHED" else "") + ".log"


if __name__ == "__main__":
    sys.exit(main())
