"""The Grouper: which events make one human action (an incident, see
incidents.py), decided from what the kernel and PAM give every record:

* the process: ``pid`` and ``ppid`` link an event to the incident of its
  process or of its parent (a sudo's command, what a package manager's
  children write, the failed execs of an ``execvp`` search);
* the program that anchors an action: a login service's PAM chain (sshd,
  login...) keyed by its pid until the kernel hands it a session; sudo, su,
  pkexec keyed by their pid until they close their PAM session; a package
  manager; auditctl's burst of rule changes;
* the session (``ses``): who is behind it, from where, on which terminal,
  so that every later message says so;
* time: an incident takes new pieces while they keep coming and closes
  after a quiet spell (of its host's own time, the events', so that a file
  read with --dry-run gives what the live plugin sends).

When each incident goes out, is edited and closes is the Agenda's
business (agenda.py); a flood's repeats take the fast lane (lane.py).  The
Grouper extends both.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

from .events import Event
from .incidents import Incident, Piece, Session, safe_key
from .lane import FastLane, RepeatCounts
from .programs import (ELEVATORS, LOGIN_SERVICES, PACKAGE_MANAGERS, SCHEDULERS, SHELLS, argv_of, basename,
                       changes_packages, command_words, is_package_manager, packages)
from .severity import INFO, RANK, WARNING, Verdict

# An incident closes once no piece has joined it for this long (seconds of
# the events' own time); some kinds wait longer (QUIET).
QUIET_DEFAULT = 2.0
# (A failed login waits for the right password: sshd's own delay is 2-3 s.)
QUIET = {"login": 5.0, "sudo": 10.0, "su": 10.0, "package": 15.0, "session-command": 10.0, "failed-login": 10.0}
# At most this many incidents are open at once, processes and sessions
# remembered; past it the oldest go (a bound on memory, not a setting).
MAX_PROCESSES = 50000
MAX_SESSIONS = 5000
# Commands typed in a session that its login's message lists.
MAX_TYPED = 30
# Sessions whose commands are what the schedulers run every day: the
# services _session_facts names a scheduler's session by.
SCHEDULED = frozenset(SCHEDULERS.values())


class Grouper(FastLane):
    """Folds events into incidents; see the module docstring.  ``emit``
    gets an incident each time a version of its message is due; with
    ``repeats``, a repeat of an action being counted takes the fast lane
    (lane.py)."""

    def __init__(self, emit: Callable[[Incident], None], grouping: bool = True,
                 repeats: Optional[RepeatCounts] = None):
        super().__init__(emit, repeats)
        self.grouping = grouping
        self._procs: "OrderedDict[Tuple[str, str], Incident]" = OrderedDict()
        self._sessions: "OrderedDict[Tuple[str, str], Session]" = OrderedDict()
        self._anchors: Dict[Tuple[str, str, str], Incident] = {}  # (node, kind, anchor id) -> open incident
        self._elevations: Dict[Tuple[str, str], List[Incident]] = {}  # (node, ses) -> open sudo/su
        self._shells: "OrderedDict[Tuple[str, str], str]" = OrderedDict()  # interactive shells: what opened them

    # -- the way in -----------------------------------------------------------

    def offer(self, event: Event, verdict: Verdict):
        node = event.get("node")
        self.due(node, event.timestamp)  # what went quiet on its host before it takes no part in it
        if not self.grouping:
            incident = self._new("event", event, event.get("serial"))
            incident.anchor = event
            incident.add(event, verdict, 0.0)
            self._schedule(incident)
        else:
            if self._counted:
                self._company(event)
            self._session_facts(event)
            incident = self._attribute(event, verdict)
        # A DAEMON record's pid is whoever signalled auditd; a shell's own
        # actions must not become its children's.  (None: the fast lane
        # kept it out.)
        if incident is not None and incident.kind not in ("auditd", "shell"):
            self._remember_process(event, incident)
        # A critical incident may be due at once; one whose time is past
        # already (the input's clock went back) closes at once.
        self.due(node, self.now)

    # -- sessions -------------------------------------------------------------

    def session(self, node: str, ses: str) -> Optional[Session]:
        return self._sessions.get((node, ses))

    def _session_facts(self, event: Event):
        """What PAM and LOGIN records say about a session."""
        facts = event.facts
        if facts.unset("ses"):
            return
        rtype = event.get("type")
        node, ses = event.get("node"), facts.get("ses")
        session = self._sessions.get((node, ses))
        if session is None:
            session = self._sessions[(node, ses)] = Session(node, ses)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        program = basename(facts.get("exe"))
        if rtype in ("USER_START", "USER_LOGIN", "CRED_ACQ") and (program in LOGIN_SERVICES or
                                                                  program in SCHEDULERS):
            session.service = LOGIN_SERVICES.get(program) or SCHEDULERS.get(program, "")
            # acct is a name; id (USER_LOGIN) a number in raw logs: kept as
            # the event, to be read as a name when a message says who.
            session.user = session.user or facts.get("acct")
            session.named_by = session.named_by or event
            for name in ("addr", "hostname"):
                if not facts.unset(name) and not getattr(session, name):
                    setattr(session, name, facts.get(name))
            terminal = facts.get("terminal")
            if terminal.startswith("/dev/") or terminal.startswith(("pts", "tty")):
                session.terminal = terminal.replace("/dev/", "")

    # -- attribution ----------------------------------------------------------

    def _attribute(self, event: Event, verdict: Verdict) -> Optional[Incident]:
        """The incident this event joins or starts; None if the fast lane
        kept it out (a repeat of an action being counted, lane.py)."""
        facts = event.facts
        values = facts.values  # (read directly: this runs for every event)
        node = event.get("node")
        program = basename(values.get("exe") or values.get("comm", ""))
        rtype = event.get("type")
        pid, ppid = values.get("pid", ""), values.get("ppid", "")
        own = self._open_process(node, pid)
        if rtype == "CONFIG_CHANGE" or (own is not None and own.kind == "rules"):
            return self._rules(event, verdict, own)
        if rtype.startswith("DAEMON_"):
            # auditd itself: its own message, whoever sent the signal (pid).
            return self._join(self._new("auditd", event, event.get("serial")), event, verdict)
        pam = rtype.startswith(("USER_", "CRED_", "LOGIN"))
        if program in LOGIN_SERVICES and pam:
            return self._login(event, verdict, LOGIN_SERVICES[program])
        if program in SCHEDULERS and pam:
            return self._scheduled(event, verdict, SCHEDULERS[program])
        elevator = ELEVATORS.get(program)
        if elevator and rtype == "SYSCALL" and own is None and not facts.command:
            parent = self._open_process(node, ppid)
            if parent is not None and parent.kind in ("sudo", "su"):
                # su's child setting its ids before it runs the command: the su's.
                return self._join(parent, event, verdict)
        if elevator and (pam or (rtype == "SYSCALL" and (own is None or own.kind not in ("sudo", "su")))):
            return self._elevation(event, verdict, elevator)
        shell = self._shells.get((node, pid))
        if shell is not None and not facts.command:
            return self._shell_action(shell, event, verdict)
        if own is not None and (own.kind != "login" or self._login_takes(own, event)):
            return self._join(own, event, verdict)
        parent = self._open_process(node, ppid) if (node, ppid) not in self._shells else None
        if parent is None or not self._takes_children(parent, event):
            parent = self._elevated_context(event)
            if parent is not None and not self._takes_children(parent, event):
                parent = None
        if parent is not None:
            self._join(parent, event, verdict)
            if parent.facts.get("shell") == pid:
                # A root shell opened: the elevation's message goes now (what
                # is typed in it is judged command by command).
                parent.absorbs_until = event.timestamp
                self._schedule(parent)
            return parent
        words = command_words(event) if facts.command else []
        # A package manager seen first by a syscall of its own (the rule
        # set logs its writes, not its exec): its command line is its title.
        run = words or (argv_of(event) if program in PACKAGE_MANAGERS else [])
        if run and is_package_manager(run):
            words = run
            incident = self._new("package", event, pid)
            incident.capped = WARNING if changes_packages(words) else INFO
            incident.facts["command"] = " ".join(words)
            incident.facts["packages"] = " ".join(packages(words))
            return self._join(incident, event, verdict)
        kind = "command" if facts.command else "event"
        session = self.session(node, facts.get("ses"))
        routine = session is not None and session.service in SCHEDULED
        # An interactive shell: what is typed in it is judged command by command.
        interactive = bool(words) and basename(words[0]) in SHELLS and \
            all(word.startswith("-") for word in words[1:]) and not facts.unset("tty")
        # A new one-event action may take the fast lane: a routine one, or
        # one that repeats an action being counted (but for a scheduler's
        # session, whose warnings are routine); shells are watched.
        if self._repeats is not None and not interactive and (verdict.severity == INFO or not routine) and \
                (node, ppid) not in self._shells and \
                self._keep_out(kind, event, verdict, words, session, QUIET.get(kind, QUIET_DEFAULT), node, routine):
            return None
        incident = self._new(kind, event, pid or event.get("serial"))
        if words:
            incident.facts["command"] = " ".join(words)
            if interactive:
                incident.facts["interactive"] = "1"  # no script, no -c: a person types in it
                self._shell(event, "")
            if (node, ppid) in self._shells and self._shells[(node, ppid)]:
                incident.facts["shell_of"] = self._shells[(node, ppid)]
            if (node, ppid) in self._shells:
                self._typed(node, facts.get("ses"), " ".join(words))
        incident.routine = routine
        return self._join(incident, event, verdict)

    def _open_process(self, node: str, pid: str) -> Optional[Incident]:
        if not pid:
            return None
        incident = self._procs.get((node, pid))
        if incident is None or incident.closed:
            return None
        return incident

    def _remember_process(self, event: Event, incident: Incident):
        pid = event.facts.get("pid")
        if pid:
            self._procs[(event.get("node"), pid)] = incident
            if len(incident.pids) < 1000:
                incident.pids.add(pid)
            self._procs.move_to_end((event.get("node"), pid))
            while len(self._procs) > MAX_PROCESSES:
                self._procs.popitem(last=False)

    def _forget_process(self, process: Tuple[str, str]):
        self._procs.pop(process, None)

    def _takes_children(self, parent: Incident, event: Event) -> bool:
        """Whether a child of a process of ``parent`` is part of it."""
        if parent.kind == "login":
            return self._login_takes(parent, event)
        if parent.facts.get("interactive"):
            if parent.kind in ("sudo", "su") and not parent.facts.get("shell") and event.facts.command:
                parent.facts["shell"] = event.facts.get("pid")  # the root shell itself
                self._shell(event, "%s %s" % (parent.facts.get("elevator", parent.kind),
                                              parent.facts.get("cmd") or parent.facts.get("invocation", "")))
                return True
            return False  # a shell a person types in: each command is an action of its own
        return parent.kind not in ("failed-login",)

    def _login_takes(self, login: Incident, event: Event) -> bool:
        """A login takes its PAM chain, the scripts run at login (motd), and,
        without a terminal, the remote command (ssh host cmd, scp, sftp); an
        interactive shell's commands are the user's own actions.  Never what
        another login's is: see _another_login()."""
        if self._another_login(login, event):
            return False
        if event.get("type") != "SYSCALL" or event.timestamp <= login.facts.get("logged_in", 1e18):
            return True  # PAM and LOGIN records; what runs before the login is done
        if login.session is None or not login.session.terminal:
            return True  # ssh host cmd, scp, sftp: the command is the login's action
        # A terminal session: what runs in it is the person's own doing, apart
        # from the login service's own processes (sshd writing utmp at logout).
        return basename(event.facts.get("exe")) in LOGIN_SERVICES

    @staticmethod
    def _another_login(login: Incident, event: Event) -> bool:
        """Whether ``event`` is another login's, whatever the timing: of
        another session (``ses``), or of a login service's process outside
        this login's connection (the processes its PAM records came from,
        and their children) and in no session yet: a new connection, or
        the listener that forks them (sshd).  Without this, a listener's
        event shortly before made every connection its child, and five
        SSH sessions of one user within seconds were one message."""
        facts = event.facts
        if not facts.unset("ses"):
            return login.session is not None and facts.get("ses") != login.session.ses
        connection = login.facts.get("login_pids")
        return bool(connection) and facts.get("pid") not in connection and facts.get("ppid") not in connection \
            and basename(facts.get("exe")) in LOGIN_SERVICES

    def _elevated_context(self, event: Event) -> Optional[Incident]:
        """The sudo or su whose command this is, when its parent is not in
        sight (sudo's monitor process when it allocates a pty): an open
        elevation in the same session, running as another user than this
        event's, started just before it (pids are handed out in order)."""
        facts = event.facts
        if facts.unset("ses"):
            return None
        for incident in reversed(self._elevations.get((event.get("node"), facts.get("ses")), ())):
            if incident.closed or (incident.facts.get("interactive") and incident.facts.get("shell")):
                continue  # a root shell's commands are actions of their own
            try:
                close = 0 < int(facts.get("ppid") or 0) - int(incident.facts.get("pid", "0")) < 64
            except ValueError:
                close = False
            if close and facts.get("uid") != incident.facts.get("auid_uid"):
                return incident
        return None

    # -- kinds ----------------------------------------------------------------

    def _login(self, event: Event, verdict: Verdict, service: str) -> Incident:
        facts = event.facts
        node, rtype = event.get("node"), event.get("type")
        failed = verdict.why == "login failed"
        anchor = "%s|%s" % (service, facts.get("addr") if not facts.unset("addr") else facts.get("hostname"))
        if failed:
            incident = self._anchored(node, "failed-login", anchor, event)
            incident.facts.setdefault("accounts", "")
            account = facts.get("acct") or facts.get("id")
            # sshd's placeholders for a name that is no account here; the
            # connection's USER_AUTH, when there is one, has the name tried.
            placeholder = account in ("(invalid user)", "(unknown user)", "?")
            tried = incident.facts.setdefault("named_by", {})  # connection (pid) -> a real name seen
            if len(tried) < 1000:
                tried[facts.get("pid")] = tried.get(facts.get("pid"), False) or not placeholder
            incident.facts["unknown_user"] = "1" if not all(tried.values()) else ""
            if placeholder:
                account = ""
            if account and account not in incident.facts["accounts"].split("\x1f"):
                incident.facts["accounts"] = "\x1f".join(filter(None, (incident.facts["accounts"], account)))
            incident.facts["failed"] = "1"
            # One try is one USER_AUTH (a password typed); where PAM never
            # ran (a name sshd rejects, a key refused) one connection is one
            # try, and sshd gives each connection a process of its own.
            incident.facts["auths"] = incident.facts.get("auths", 0) + (rtype == "USER_AUTH")
            connections = incident.facts.setdefault("connections", set())
            if len(connections) < 1000:
                connections.add(facts.get("pid"))
            incident.facts["tries"] = incident.facts["auths"] or len(connections)
        else:
            if rtype in ("USER_END", "USER_LOGOUT", "CRED_DISP"):
                ended = self._session_ended(event, verdict)
                if ended is not None:
                    return ended
            incident = self._login_of(event)
            self._retried(node, anchor, event, incident)
            connection = incident.facts.setdefault("login_pids", set())  # the processes of its PAM records
            if len(connection) < 16:
                connection.add(facts.get("pid"))
        incident.facts["service"] = service
        if not facts.unset("ses"):
            session = self._sessions.get((node, facts.get("ses")))
            if session is not None:
                incident.session = session
                session.login = session.login or incident
        if rtype in ("USER_LOGIN", "USER_START") and not failed:
            incident.facts["logged_in"] = min(incident.facts.get("logged_in", event.timestamp), event.timestamp)
            incident.anchor = incident.anchor if incident.anchor and incident.anchor.get("type") == "USER_LOGIN" \
                else event
            incident.raise_to(WARNING, event.timestamp)
            if incident.session is not None and incident.session.terminal and not incident.facts.get("ended"):
                # Someone types in it: the message goes out once the login is
                # done, and is edited with what is typed until the session ends.
                incident.held_open = True
        if rtype in ("USER_END", "USER_LOGOUT") and incident.facts.get("logged_in"):
            incident.facts["ended"] = event.timestamp
            incident.held_open = False
        if failed:
            incident.anchor = incident.anchor or event
        joined = self._join(incident, event, verdict, QUIET[incident.kind])
        self._schedule(incident)  # held open or not, its next moment may have changed
        return joined

    def _retried(self, node: str, anchor: str, event: Event, login: Incident):
        """A password mistyped, then the right one in the same connection:
        part of the login ("after 1 failed try"), not an alarm of its own."""
        failed = self._anchors.get((node, "failed-login", anchor))
        if failed is None or failed.closed or failed.emitted or event.facts.get("pid") not in failed.facts.get(
                "connections", ()) or failed.facts.get("retried"):
            return
        failed.facts["retried"] = "1"
        login.facts["failed_tries"] = login.facts.get("failed_tries", 0) + failed.facts.get("tries", 1)
        failed.absorbs_until = event.timestamp
        self._schedule(failed)

    def _login_of(self, event: Event) -> Incident:
        """The login a successful PAM record belongs to: its session's (sshd
        forks a session child with a pid of its own), its process's, or a
        new one."""
        facts = event.facts
        node = event.get("node")
        if not facts.unset("ses"):
            session = self._sessions.get((node, facts.get("ses")))
            if session is not None and session.login is not None and not session.login.closed:
                return session.login
        own = self._open_process(node, facts.get("pid"))
        if own is not None and own.kind == "login" and not self._another_login(own, event):
            return own
        if own is not None and own.kind in ("event", "command") and not own.emitted:
            own.kind = "login"  # it began with a syscall of the login service's (a socket, a read)
            return own
        return self._new("login", event, facts.get("pid"))

    def _session_ended(self, event: Event, verdict: Verdict) -> Optional[Incident]:
        """A login whose session closes: its message says so (an edit: a
        session's end notifies nobody).  None if the login is not known."""
        facts = event.facts
        session = self._sessions.get((event.get("node"), facts.get("ses"))) if not facts.unset("ses") else None
        login = session.login if session is not None else None
        if login is None or not login.facts.get("logged_in"):
            return None
        if not login.closed:
            login.facts["ended"] = max(login.facts.get("ended", 0.0), event.timestamp)
            login.held_open = False
            joined = self._join(login, event, verdict, 0.0)
            self._schedule(login)
            return joined
        return self._late(login, event, verdict, ended=True, edit=True)

    def _late(self, incident: Incident, event: Event, verdict: Verdict, ended: bool, edit: bool) -> Incident:
        """A record of an incident already closed and sent: counted in it;
        its message edited if ``edit`` (an end worth saying: "ended after
        3 min") or if the record makes it worse (an edit notifies nobody,
        but the room shows the worse severity)."""
        before = incident.facts.get("ended")
        if ended:
            incident.facts["ended"] = max(before or 0.0, event.timestamp)
        incident.count += 1
        incident.serials.append(event.get("serial"))
        # PAM closes a session in several records (USER_END, CRED_DISP,
        # USER_LOGOUT): one edit, unless the length shown changes.
        incident.changed = edit and (before is None or int(before - incident.first) !=
                                     int(incident.facts["ended"] - incident.first))
        if RANK[verdict.severity] < RANK[incident.severity]:
            incident.pieces.append(Piece(verdict.severity, verdict.why, event))
            incident.raise_to(verdict.severity, event.timestamp)
            incident.changed = True
        self._hand_over(incident)
        return incident

    def _scheduled(self, event: Event, verdict: Verdict, scheduler: str) -> Incident:
        incident = self._open_process(event.get("node"), event.facts.get("pid")) or self._new(
            "cron", event, event.facts.get("pid"))
        incident.routine = True
        incident.facts["service"] = scheduler
        return self._join(incident, event, verdict)

    def _elevation(self, event: Event, verdict: Verdict, elevator: str) -> Incident:
        facts = event.facts
        node, rtype = event.get("node"), event.get("type")
        incident = self._open_process(node, facts.get("pid"))
        known = self._procs.get((node, facts.get("pid")))
        if incident is None and known is not None and known.kind in ("sudo", "su") and \
                not facts.get("syscall").startswith("execve"):
            # More of a sudo whose message is out (a root shell outlasts the
            # quiet spell): its end is worth an edit for a shell's length;
            # the rest is counted in it.
            ended = rtype in ("USER_END", "CRED_DISP")
            return self._late(known, event, verdict, ended, edit=ended and bool(known.facts.get("interactive")))
        if incident is None or incident.kind not in ("sudo", "su"):
            incident = self._new("su" if elevator in ("su", "runuser") else "sudo", event, facts.get("pid"))
            incident.facts.update(pid=facts.get("pid"), ses=facts.get("ses"), elevator=elevator,
                                  user=facts.get("auid"), auid_uid=facts.get("uid"))
            if not facts.unset("ses"):
                opened = self._elevations.setdefault((node, facts.get("ses")), [])
                opened[:] = [other for other in opened if not other.closed] + [incident]
        if rtype == "SYSCALL" and facts.command:
            words = command_words(event)
            if "invocation" not in incident.facts and (node, facts.get("ppid")) in self._shells:
                self._typed(node, facts.get("ses"), " ".join(words))
            incident.facts.setdefault("invocation", " ".join(words))
            if elevator in ("su", "runuser"):
                incident.facts["interactive"] = "1" if "-c" not in words and "--command" not in words else ""
        if rtype == "USER_CMD":
            incident.anchor = event
            incident.facts["cmd"] = facts.get("cmd")
            self._cap_packages(incident, facts.get("cmd").split())  # sudo apt-get ..., even unseen as an exec
            incident.facts["failed"] = "1" if verdict.why == "login failed" or facts.get("res") == "failed" else ""
            first = (facts.get("cmd").split() or [""])[0]
            incident.facts["interactive"] = "1" if basename(first) in SHELLS and "-c" not in facts.get(
                "cmd").split() else ""
        if rtype in ("USER_START", "CRED_ACQ", "CRED_REFR") and facts.get("acct"):
            incident.facts["target"] = facts.get("acct")
        if rtype in ("USER_AUTH", "USER_ACCT") and verdict.why == "login failed":
            incident.facts["failed"] = "1"
            incident.anchor = incident.anchor or event
        if rtype in ("USER_END", "CRED_DISP"):
            incident.absorbs_until = min(incident.absorbs_until, event.timestamp + QUIET_DEFAULT)
            return self._join(incident, event, verdict, 0.0)
        incident.raise_to(WARNING, event.timestamp)
        return self._join(incident, event, verdict, QUIET["sudo"])

    def _typed(self, node: str, ses: str, command: str):
        """A command typed in a session's shell: its login's message lists it
        (an edit, at most every UPDATE_INTERVAL), whatever the command's own
        fate (routine, or a message of its own)."""
        session = self._sessions.get((node, ses))
        login = session.login if session is not None else None
        if login is None or login.closed or not login.held_open:
            return
        typed = login.facts.setdefault("typed", [])
        if len(typed) < MAX_TYPED:
            typed.append(command)
        login.facts["typed_count"] = login.facts.get("typed_count", 0) + 1
        login.changed = True
        self._schedule(login)

    def _running(self, node: str, ses: str, programs: Tuple[str, ...]) -> Optional[Incident]:
        """The latest open sudo or su of session ``ses`` whose command is
        one of ``programs``."""
        for incident in reversed(self._elevations.get((node, ses), ())):
            words = (incident.facts.get("cmd") or "").split()
            if not incident.closed and words and basename(words[0]) in programs:
                return incident
        return None

    def _shell(self, event: Event, opened_by: str):
        """Remember an interactive shell (its pid), and what opened it."""
        self._shells[(event.get("node"), event.facts.get("pid"))] = opened_by.strip()
        while len(self._shells) > MAX_SESSIONS:
            self._shells.popitem(last=False)

    def _shell_action(self, opened_by: str, event: Event, verdict: Verdict) -> Incident:
        """What an interactive shell does itself (echo ... > file): an action
        of its own per burst, not a piece of the shell's incident."""
        incident = self._anchored(event.get("node"), "shell", event.facts.get("pid"), event)
        if opened_by:
            incident.facts.setdefault("shell_of", opened_by)
        return self._join(incident, event, verdict)

    def _rules(self, event: Event, verdict: Verdict, own: Optional[Incident]) -> Incident:
        """A burst of rule changes: one process (auditctl -R, augenrules),
        or one person's session within a few seconds."""
        facts = event.facts
        node = event.get("node")
        anchor = "%s|%s" % (facts.get("auid"), facts.get("ses"))  # one person's (or the boot's) burst
        if own is not None and own.kind == "command" and basename(own.facts.get("command", "").split(" ")[0]) in (
                "auditctl", "augenrules"):
            own.kind = "rules"  # auditctl's own exec came first
        if own is not None and own.kind in ("sudo", "su", "login", "command", "shell", "rules"):
            incident = own      # "alice ran sudo auditctl -D → all 352 audit rules deleted"
        else:
            # CONFIG_CHANGE carries no pid: without auditctl's exec in the
            # log, the open sudo of this session that runs it is the one.
            incident = self._running(node, facts.get("ses"), ("auditctl", "augenrules")) or \
                self._anchored(node, "rules", anchor, event)
        if event.get("type") == "CONFIG_CHANGE":
            op = facts.get("op") or "set"
            counts = incident.facts.setdefault("ops", {})
            counts[op] = counts.get(op, 0) + 1
            if facts.get("res") in ("0", "no", "failed"):
                incident.facts["failures"] = incident.facts.get("failures", 0) + 1
            incident.facts.setdefault("auid", facts.get("auid"))
            incident.facts.setdefault("ses", facts.get("ses"))
            key = facts.get("key")
            if not facts.unset("key") and key != "(null)":
                keys = incident.facts.setdefault("rule_keys", [])
                if key not in keys and len(keys) < 4:
                    keys.append(key)
        if facts.command:
            incident.facts.setdefault("command", " ".join(command_words(event)))
        return self._join(incident, event, verdict)

    # -- bookkeeping ----------------------------------------------------------

    def _new(self, kind: str, event: Event, anchor: str, number: Optional[int] = None) -> Incident:
        """A new open incident; ``number`` (its key's) is the one reserved
        for it when the fast lane kept it out, else the next."""
        if number is None:
            self._made += 1
            number = self._made
        node = event.get("node")
        key = safe_key(node, kind, anchor, "%.3f" % event.timestamp, str(number))
        incident = Incident(key=key, kind=kind, node=node, first=event.timestamp, last=event.timestamp)
        incident.number = number
        facts = event.facts
        if not facts.unset("ses"):
            incident.session = self.session(node, facts.get("ses"))
        self._opened(incident)
        return incident

    def _anchored(self, node: str, kind: str, anchor: str, event: Event) -> Incident:
        """The open incident of this kind and anchor, or a new one."""
        incident = self._anchors.get((node, kind, anchor))
        if incident is None or incident.closed:
            incident = self._anchors[(node, kind, anchor)] = self._new(kind, event, anchor)
            incident.facts["anchored"] = (node, kind, anchor)
        return incident

    def _join(self, incident: Incident, event: Event, verdict: Verdict, quiet: Optional[float] = None) -> Incident:
        if quiet is None:
            quiet = QUIET.get(incident.kind, QUIET_DEFAULT)
        if incident.anchor is None:
            incident.anchor = event
        if incident.routine and verdict.severity == WARNING:
            verdict = Verdict(INFO, verdict.why)  # what cron does every day; critical stays critical
        elif verdict.severity == WARNING and verdict.why.startswith("rule ") and \
                basename(event.facts.get("exe")) in LOGIN_SERVICES and incident.kind in ("login", "failed-login"):
            verdict = Verdict(INFO, verdict.why)  # sshd writing lastlog, wtmp, its pty: a login's bookkeeping
        elif incident.capped and verdict.why.endswith(" erased"):
            verdict = Verdict(INFO, verdict.why)  # a package manager rotating its own logs
        if event.facts.command and incident.count:  # a new one was judged as it was made (_attribute)
            self._cap_packages(incident, command_words(event))
        was_critical, was_changed = incident.critical_at is not None, incident.changed
        incident.add(event, verdict, quiet)
        if incident.session is None and not event.facts.unset("ses"):
            incident.session = self.session(event.get("node"), event.facts.get("ses"))
        if incident.count == 1 or quiet == 0.0 or (incident.critical_at is not None and not was_critical) or (
                incident.emitted and not was_changed):
            self._schedule(incident)
        return incident

    @staticmethod
    def _cap_packages(incident: Incident, words: List[str]):
        """A package manager run inside a sudo, a login...: its children
        write system files and add users as a matter of course, so what
        they do counts as a warning at most (a query: as routine)."""
        if incident.kind == "package" or incident.capped or not is_package_manager(words):
            return
        incident.capped = WARNING if changes_packages(words) else INFO
        incident.facts.setdefault("packages", " ".join(packages(words)))
        incident.facts.setdefault("package_command", " ".join(words))

    def _forget(self, incident: Incident):
        """A closed incident is no anchor and no open elevation any more,
        and its processes are forgotten (what they still do starts anew),
        but for a sudo's or a login's, whose end may still edit them."""
        if incident.kind not in ("sudo", "su", "login"):
            for pid in incident.pids:
                if self._procs.get((incident.node, pid)) is incident:
                    del self._procs[(incident.node, pid)]
        anchored = incident.facts.get("anchored")
        if anchored and self._anchors.get(anchored) is incident:
            del self._anchors[anchored]
        if incident.session is not None:
            opened = self._elevations.get((incident.node, incident.session.ses))
            if opened and incident in opened:
                opened.remove(incident)
