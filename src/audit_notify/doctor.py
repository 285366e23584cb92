"""The doctor (``--check``): everything the plugin needs, one line each.

Each line is ``ok``, ``warn`` or ``FAIL`` with what to change; the exit
code says whether anything failed.  It reuses the checks the plugin itself
makes at start (config, rules, trusted files, private files), so the two
never disagree.  The plugin's own run path never imports this module.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import sqlite3
import subprocess
import time
from typing import Optional

from . import host
from .answers import who_may_answer
from .config import DEFAULT_CONFIG, Config, Error, load_config
from .matrix import matrix_api, send_once, test_content
from .message import span
from .privileges import Account, check_config_files, lookup_user, secure_private
from .reader import import_auparse
from .rules import load_ruleset
from .kernel import FAILURE_MODES
from .kernel import status as kernel_status
from .spool import spool_path, spool_status

# A matrix-commander store past this size makes every start slow (the
# original's stopped sending at 13 MB).
STORE_WARN_BYTES = 5 << 20


class Doctor:
    """--check: everything the plugin needs, one line each (ok, warn or
    FAIL) with the fix.  The exit code is the number of failures."""

    def __init__(self, out, root: str = "/", run=subprocess.run, proc: str = "/proc", kernel=kernel_status,
                 clock=time.time):
        self.out, self.root, self.run = out, root, run
        self.proc, self.kernel, self.clock = proc, kernel, clock
        self.failures = 0

    def say(self, level: str, text: str):
        self.failures += level == "FAIL"
        self.out.write("%-4s %s\n" % (level, text))

    def check(self, config_path: Optional[str], send_test: bool = False) -> int:
        try:
            config = load_config(config_path, self.root)
            check_config_files(config)
            self.say("ok", "config: %s" % config.source)
            rules = load_ruleset(config)
            self.say("ok", "rules: %d blacklist, %d allow-list" % (len(rules.deny), len(rules.allow)))
        except Error as exc:
            self.say("FAIL", str(exc))
            return self.failures
        account = self._guard(lambda: lookup_user(config.user))
        if config.user == "root":
            self.say("warn", "user = root: matrix-commander runs as root (set user = audit-notify, run setup)")
        elif account:
            self.say("ok", "user: %s (uid %d)" % (account.name, account.uid))
        auparse = self._guard(import_auparse)
        if auparse:
            self.say("ok", "auparse: %s" % auparse.__file__)
        self._matrix_commander(config)
        for path, what in ((config.credentials, "credentials"), (config.store, "store")):
            self._private(path, what, account)
        self._store_size(config.store)
        self._room(config)
        self._answers(config)
        self._spool(config)
        entries = self._plugins_d(config_path or DEFAULT_CONFIG)
        running = self._running(config, entries)
        self._sending(config, running)
        self._kernel()
        self._auditd_conf()
        self._audit_context()
        self._selinux()
        if send_test:
            ok, detail = send_once(config, test_content("--check --send-test"), account, self.run)
            self.say("ok" if ok else "FAIL", "test notification: %s" % (
                "accepted by the homeserver as %s" % detail if ok else "not sent: %s" % detail))
        return self.failures

    def _guard(self, call):
        try:
            return call()
        except Error as exc:
            self.say("FAIL", str(exc))
            return None

    def _matrix_commander(self, config: Config):
        path = config.matrix_commander
        if not os.access(path, os.X_OK):
            self.say("FAIL", "matrix-commander: %s is not executable: pipx install matrix-commander "
                             "(README, Install), or set matrix_commander" % path)
            return
        try:
            result = self.run([path, "--version"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            text = (result.stdout + result.stderr).decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.say("FAIL", "matrix-commander: %s does not run: %s" % (path, exc))
            return
        found = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
        if not found:
            self.say("FAIL", "matrix-commander: %s --version says %r" % (path, text.strip()[:100]))
        elif int(found.group(1)) < 8:
            self.say("warn", "matrix-commander %s: tested with 8.0.6; upgrade: pipx upgrade matrix-commander"
                     % found.group(0))
        else:
            self.say("ok", "matrix-commander %s: %s" % (found.group(0), path))

    def _private(self, path: str, what: str, account: Optional[Account]):
        if account is None:
            return
        try:
            problems = secure_private(path, account, what, fix=False)
        except Error as exc:
            self.say("FAIL", "%s: %s" % (what, exc))
            return
        if problems:
            self.say("warn", "%s: %s; the plugin fixes this at its start" % (what, "; ".join(problems[:3])))
        else:
            self.say("ok", "%s: %s" % (what, path))

    def _store_size(self, store: str):
        size = sum(os.path.getsize(os.path.join(top, f)) for top, _d, files in os.walk(store) for f in files)
        sessions = 0
        for path in glob.glob(os.path.join(store, "*.db")):
            with contextlib.suppress(sqlite3.Error):
                db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE "
                                           "'%session%'").fetchall():
                    sessions += db.execute('SELECT COUNT(*) FROM "%s"' % table).fetchone()[0]
                db.close()
        level = "warn" if size > STORE_WARN_BYTES else "ok"
        self.say(level, "store size: %d KB, %d encryption sessions%s" % (
            size >> 10, sessions, "; every matrix-commander start loads them all: log the bot in again with a "
                                  "new store (README, Troubleshooting)" if level == "warn" else ""))

    def _room(self, config: Config):
        try:
            with open(config.credentials) as handle:
                creds = json.load(handle)
            server, token, mxid = creds["homeserver"], creds["access_token"], creds["user_id"]
        except (OSError, ValueError, KeyError) as exc:
            self.say("FAIL", "room: cannot read the bot's credentials: %s" % exc)
            return
        room = config.room or creds.get("room_id", "")
        try:
            if room.startswith("#"):
                from urllib.parse import quote

                status, answer = matrix_api(server, "/_matrix/client/v3/directory/room/" + quote(room), token)
                if status != 200:
                    self.say("FAIL", "room: alias %s does not resolve on %s (HTTP %d)" % (room, server, status))
                    return
                room_id = answer["room_id"]
            else:
                room_id = room
            status, members = matrix_api(server, "/_matrix/client/v3/rooms/%s/joined_members" % room_id, token)
            enc_status, encryption = matrix_api(
                server, "/_matrix/client/v3/rooms/%s/state/m.room.encryption/" % room_id, token)
            limit_status, limits = matrix_api(
                server, "/_synapse/admin/v1/users/%s/override_ratelimit" % mxid, token)
        except (OSError, ValueError) as exc:
            self.say("FAIL", "room: homeserver %s unreachable: %s" % (server, exc))
            return
        if status != 200 or mxid not in members.get("joined", {}):
            self.say("FAIL", "room: %s is not joined by %s: matrix-commander --room-join '%s'" % (room, mxid, room))
        elif enc_status != 200:
            self.say("FAIL", "room: %s is not end-to-end encrypted: enable encryption in its settings" % room)
        else:
            self.say("ok", "room: %s joined, encrypted (%s)" % (room, encryption.get("algorithm", "?")))
        if limit_status == 200 and limits.get("messages_per_second") == 0:
            self.say("ok", "rate limit: lifted for %s" % mxid)
        elif limit_status == 200 and limits:
            self.say("warn", "rate limit for %s: %s" % (mxid, limits))
        else:
            cap = config.max_messages_per_minute
            self.say("ok" if 0 < cap <= 12 else "warn",
                     "rate limit: cannot read it as %s; Synapse's default allows 12 messages a minute (burst 10) "
                     "and max_messages_per_minute is %s: %s" % (mxid, cap or "no cap",
                     "within it" if 0 < cap <= 12 else "ask the server admin to lift it (README, Matrix setup)"))

    def _answers(self, config: Config):
        """Who can answer alerts from the room (README, "Answering from the room")."""
        allowed = who_may_answer(config.responders, config.mention)
        again = ("a critical nobody acknowledges is announced again after %s, at most %d times"
                 % (span(config.reannounce), config.reannounce_times) if config.reannounce > 0 and
                 config.reannounce_times > 0 else "no re-announcement (reannounce = 0)")
        if not allowed:
            self.say("warn", "answers: nobody can answer from the room (responders and mention are empty): "
                             "reactions are not read; %s" % again)
        else:
            self.say("ok", "answers: %s may acknowledge (✅) or mute (🔕, for %s); %s" % (
                ", ".join(allowed), span(config.mute), again))

    def _spool(self, config: Config):
        path = spool_path(config)
        if not os.path.exists(path):
            self.say("ok", "spool: none yet at %s" % path)
            return
        status = spool_status(path)
        age = self.clock() - status["oldest"] if status["oldest"] else 0
        counters = json.loads(status["state"].get("counters", "{}"))
        level = "warn" if age > 3600 or status["dead"] or counters.get("rate_limited") else "ok"
        self.say(level, "spool: %d waiting, oldest %.0f s, %d dead letters, %d sends refused for rate limit"
                 % (status["depth"], age, status["dead"], counters.get("rate_limited", 0)))

    def _plugins_d(self, config_path: str):
        entries = []
        for path in sorted(glob.glob(os.path.join(self.root, "etc/audit/plugins.d/*.conf"))):
            with contextlib.suppress(OSError):
                with open(path) as handle:
                    entry = host.parse_entry(handle.read())
                if "audit-notify" in entry.get("path", "") or "audit_notify" in entry.get("path", ""):
                    entries.append((path, entry))
        if not entries:
            self.say("FAIL", "plugins.d: no entry runs audit-notify: run audit-notify setup")
            return []
        for path, entry in entries:
            problems = ["%s is %r" % (k, entry.get(k)) for k, v in (("active", "yes"), ("direction", "out"),
                                                                    ("format", "string")) if entry.get(k) != v]
            if host.entry_config(entry) != config_path:
                problems.append("args is %r, not '--config %s'" % (entry.get("args"), config_path))
            st = os.stat(path)
            if st.st_uid != 0 or st.st_mode & 0o022:
                problems.append("the file must be root's and not writable by others")
            exe = entry.get("path", "")
            if not os.path.isfile(exe) or os.stat(exe).st_uid != 0 or os.stat(exe).st_mode & 0o022:
                problems.append("path %s must be a root-owned executable nobody else can write" % exe)
            self.say("FAIL" if problems else "ok", "plugins.d: %s%s" % (path, ": " + "; ".join(problems)
                                                                           if problems else ""))
        return [entry for _, entry in entries]

    def _running(self, config: Config, entries) -> Optional[int]:
        """Whether auditd runs the plugin now (it gives up after
        max_restarts failed starts and never tries again): the plugin's pid."""
        paths = [entry.get("path", "") for entry in entries if entry.get("path")]
        seen = host.processes(self.proc)
        daemons = {pid for pid, _ppid, comm, _cmd in seen if comm == "auditd"}
        if not daemons:
            self.say("FAIL", "auditd is not running: nothing is audited or sent (service auditd start)")
            return None
        mine = [(pid, ppid) for pid, ppid, _comm, cmd in seen
                if ppid in daemons and any(path and path in cmd for path in paths)]
        if mine:
            pid, ppid = mine[0]
            self.say("ok", "plugin: running, pid %d, started by auditd (pid %d)" % (pid, ppid))
            return pid
        self.say("FAIL", "plugin: auditd (pid %s) is not running it now. auditd stops restarting a plugin after "
                         "max_restarts failures; its log says why (journalctl -u auditd | grep -i plugin%s); "
                         "fix that, then: service auditd restart"
                 % (", ".join(map(str, sorted(daemons))), self._auditd_said(paths)))
        return None

    def _auditd_said(self, paths) -> str:
        """auditd's last word about the plugin, from the journal, if any."""
        try:
            result = self.run(["journalctl", "-u", "auditd", "-n", "300", "-o", "cat", "--no-pager"],
                              capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        lines = [line for line in result.stdout.decode("utf-8", "replace").splitlines()
                 if "plugin" in line.lower() and any(path in line for path in paths)]
        return "; last: %r" % lines[-1][:200] if lines else ""

    def _sending(self, config: Config, running: Optional[int]):
        """A plugin that runs but does not send shows in its spool: the
        owner it names, and how old the oldest waiting message is."""
        path = spool_path(config)
        if running is None or not os.path.exists(path):
            return
        status = spool_status(path)
        owner = status["state"].get("pid", "")
        age = self.clock() - status["oldest"] if status["oldest"] else 0.0
        if owner and owner != str(running) and os.path.exists(os.path.join(self.proc, owner)):
            self.say("warn", "spool: another audit-notify (pid %s) holds it; pid %d waits to take over" %
                     (owner, running))
        elif age > 600:
            self.say("FAIL", "sending: the plugin runs but its oldest message has waited %d min: the homeserver "
                             "or matrix-commander fails (its log says why; --check --send-test)" % (age // 60))
        else:
            self.say("ok", "sending: %d waiting, the oldest %.0f s" % (status["depth"], age))
        try:
            disk = os.statvfs(os.path.dirname(path))
        except OSError:
            return
        free = disk.f_bavail * disk.f_frsize
        if free < 2 * (config.spool_max_mb << 20):
            self.say("warn", "spool disk: %d MB free under %s, less than twice spool_max_mb (%d): a full disk "
                             "holds new notifications in memory only" % (free >> 20, path, config.spool_max_mb))
        else:
            self.say("ok", "spool disk: %d MB free" % (free >> 20))

    def _kernel(self):
        """The kernel's side: on, attached to an auditd, and what it lost."""
        try:
            state = self.kernel()
        except OSError as exc:
            self.say("warn", "kernel audit status: not readable (%s): run the doctor as root" % exc)
            return
        summary = "enabled %d, failure mode %d (%s), auditd pid %d, backlog %d of %d, lost %d since boot" % (
            state.enabled, state.failure, FAILURE_MODES.get(state.failure, "?"), state.pid, state.backlog,
            state.backlog_limit, state.lost)
        if not state.enabled:
            self.say("FAIL", "kernel: auditing is off (%s): auditctl -e 1; look for -e 0 in "
                             "/etc/audit/rules.d" % summary)
        elif not state.pid:
            self.say("FAIL", "kernel: no auditd receives its events (%s)" % summary)
        elif state.lost:
            self.say("warn", "kernel: %s. Lost events are events nobody sees: raise the backlog (-b 8192 in "
                             "/etc/audit/rules.d/*.rules) and keep --backlog_wait_time; audit-notify tells the "
                             "room when it sees the kernel say so (README, Lost events)" % summary)
        else:
            self.say("ok", "kernel: %s" % summary)
        if state.failure == 0:
            self.say("warn", "kernel: failure mode 0 loses events silently: -f 1 in the rules logs each loss, "
                             "which audit-notify reads")

    def _auditd_conf(self):
        """auditd's settings that decide whether events reach the plugin."""
        path = os.path.join(self.root, "etc/audit/auditd.conf")
        try:
            with open(path) as handle:
                conf = host.parse_entry(handle.read())
        except OSError:
            self.say("warn", "auditd.conf: cannot read %s" % path)
            return
        raw = conf.get("q_depth", "2000")
        depth = int(raw) if raw.isdigit() else 2000
        action = conf.get("overflow_action", "syslog").lower()
        restarts = conf.get("max_restarts", "10")
        notes = ["q_depth %d, overflow_action %s, max_restarts %s" % (depth, action, restarts)]
        level = "ok"
        if depth < 2000:
            level = "warn"
            notes.append("a burst overflows a queue this short and the plugin misses events: q_depth = 8000")
        if action in ("suspend", "single", "halt"):
            level = "warn"
            notes.append("overflow_action %s stops auditing (or the host) when the plugin falls behind: "
                         "syslog keeps going and audit-notify counts the gap" % action)
        self.say(level, "auditd.conf: " + "; ".join(notes))
        if conf.get("tcp_listen_port") and conf.get("distribute_network", "no").lower() != "yes":
            self.say("FAIL", "auditd.conf: this host receives remote events (tcp_listen_port %s) but "
                             "distribute_network is not yes: no remote event reaches any plugin"
                     % conf["tcp_listen_port"])

    def _audit_context(self):
        """The kernel gives a process an audit context at fork only once
        audit has been enabled since boot: without audit=1 on the kernel
        command line, whatever started before auditd (sshd, cron, a
        shell left running) is never audited by syscall rules."""
        try:
            cmdline = host.kernel_cmdline(os.path.join(self.root, "proc/cmdline"))
        except OSError:
            return
        if "audit=1" in cmdline:
            self.say("ok", "kernel command line: audit=1")
        else:
            self.say("warn", "kernel command line lacks audit=1: processes started before auditd (sshd, cron, "
                             "daemons, open shells) are never audited by syscall and watch rules, whatever the "
                             "rules say. Add audit=1 to GRUB_CMDLINE_LINUX in /etc/default/grub, run "
                             "update-grub (or grub2-mkconfig -o /boot/grub2/grub.cfg) and reboot "
                             "(README, Troubleshooting)")

    def _selinux(self):
        if not host.selinux_enabled():
            self.say("ok", "SELinux: not enabled")
            return
        modules = self.run(["semodule", "-l"], capture_output=True).stdout.decode()
        if re.search(r"^audit_notify\b", modules, re.M):
            self.say("ok", "SELinux: module audit_notify loaded")
        else:
            self.say("FAIL", "SELinux is on but the audit_notify module is not loaded: see selinux/README.md")
