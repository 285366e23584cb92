"""Format: an incident, a count of repeats or the routine, as a message.

The headline comes first and says the worst thing in few words: a mark
for the severity (then one for a failure), what happened, by whom, from
where, on which host.  The details follow: the session, the commands run,
what was touched, the events folded.  Every audit value is a ``V``
(message.py): cleaned and delimited in the plain body a lock screen shows,
escaped in <code> in the HTML a client renders.  Critical messages mention
the people the config names (and nobody else, whatever the text says).
"""

from __future__ import annotations

import html
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from .events import Event
from .headlines import _known, details, headline
from .incidents import Incident
from .programs import command_words
from .message import MAX_BODY_BYTES, MAX_COMMAND_CHARS, MAX_HTML_BYTES, L, Line, Notification, V, fit
from .repeats import Period, Window, top
from .severity import CRITICAL, INFO, RANK, WARNING, Verdict, classify, odd_place

MARKS = {CRITICAL: "🚨", WARNING: "⚠️", INFO: "ℹ️"}
FAILED_MARK = "❌"
# Commands and effects listed in a message at most (the rest are counted).
MAX_LISTED = 12
UNSET = ("4294967295", "-1", "unset", "")


def mark(severity: str, failed: bool = False) -> str:
    """Severity first, failure second: a backdoor user added never looks
    as calm as a routine command."""
    return MARKS.get(severity, MARKS[INFO]) + (FAILED_MARK if failed else "") + " "


def _stamp(when: float, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    return time.strftime(fmt, time.localtime(when))


def _name(event: Event, field: str) -> str:
    """An id field as a name (interpreted: enriched, or this host's
    passwd), "" when unset."""
    value = event.get(field)
    return "" if value in UNSET or not _known(value) else value


# -- who, and from where ------------------------------------------------------

def actor(incident: Incident) -> str:
    """The person (or program) behind an incident."""
    session = incident.session
    if session is not None and session.user:
        return session.user
    if session is not None and session.named_by is not None:
        named = session.named_by
        who = _name(named, "acct") or _name(named, "id") or _name(named, "auid")
        if who:
            return who
    anchor = incident.anchor
    if anchor is None:
        return "?"
    return _name(anchor, "auid") or _name(anchor, "acct") or _name(anchor, "uid") or "system"


def origin(incident: Incident) -> Tuple[str, ...]:
    """" (SSH from 203.0.113.7, pts/1)": the session an action came from."""
    session = incident.session
    if session is None or not (session.service or session.addr):
        return ()
    parts: Tuple[str, ...] = (" (", session.service or "session")
    if session.addr and session.addr not in ("?", "UNKNOWN"):
        parts += (" from ", V(session.addr))
    if session.terminal:
        parts += (", ", V(session.terminal))
    return parts + (")",)


# -- what it did -------------------------------------------------------------

# What a syscall did to a file, by the syscall's name (first prefix wins).
_FILE_VERBS = (
    ("rename", "replaced"), ("unlink", "deleted"), ("rmdir", "deleted"), ("mkdir", "created"), ("mknod", "created"),
    ("creat", "created"), ("symlink", "linked"), ("link", "linked"), ("chmod", "changed the mode of"),
    ("fchmod", "changed the mode of"), ("chown", "changed the owner of"), ("fchown", "changed the owner of"),
    ("lchown", "changed the owner of"), ("truncate", "truncated"), ("ftruncate", "truncated"),
    ("setxattr", "changed attributes of"), ("lsetxattr", "changed attributes of"),
    ("fsetxattr", "changed attributes of"), ("removexattr", "changed attributes of"), ("utime", "touched"),
    ("open", "wrote"),
)


# The first words of effects said as a deed ("wrote /etc/x"), not a fact
# ("user added: bob").
_DEEDS = frozenset([verb.split(" ")[0] for _, verb in _FILE_VERBS] + ["read", "was", "ran", "set", "changed"])


def file_verb(event: Event) -> str:
    syscall = event.facts.get("syscall")
    for prefix, verb in _FILE_VERBS:
        if syscall.startswith(prefix):
            return verb
    return "changed"


def effect(why: str, event: Event) -> Tuple[str, ...]:
    """A notable piece in a few words: "wrote /etc/sudoers.d/zz (sudoers)",
    "user added: svc-backup"."""
    facts = event.facts
    names = facts.written_paths()
    rtype = event.get("type")
    if names and rtype == "SYSCALL" and why.endswith((" changed", " read", " erased", "access denied")):
        label = why.rsplit(" ", 1)[0]
        verb = "read" if why.endswith(" read") else "was denied" if why == "access denied" else file_verb(event)
        target = _chosen_path(names)
        return (verb + " ", V(target)) + ((" (%s)" % label,) if label and why != "access denied" else ())
    if why.startswith("program run from"):
        ran = next((path for path in [facts.get("exe")] + names[:1] if odd_place(path) or
                    path.startswith("/memfd:")), facts.get("exe"))
        return ("ran ", V(ran), " (%s)" % why.split(" from ", 1)[1])
    if why in ("audit rules deleted", "audit rules added"):
        return ()  # counted once for the incident (_rules_effect)
    if why == "setuid/setgid bit set":
        return ("set a setuid/setgid bit on ", V(_chosen_path(names) or "?"))
    if rtype == "ADD_USER" and facts.get("id") == "0":
        return ("user added with uid 0 (a second root)",)
    target = (event.get("acct") or event.get("grp") or event.get("id") or event.get("name")
              or event.get("unit") or "")
    if rtype in ("KERN_MODULE",) or why.startswith("kernel module"):
        target = event.get("name") or _chosen_path(names)
    if _known(target) and target not in ("(invalid user)",):
        return (why + ": ", V(target))
    return (why,)


def _chosen_path(names: Sequence[str]) -> str:
    return names[-1] if names else ""


def _commands(incident: Incident, since: float = 0.0) -> List[str]:
    """The command lines run in an incident (from ``since``), in order,
    without the failed tries of an execvp search along $PATH."""
    found, seen = [], set()
    for event in incident.events:
        if not event.facts.command or event.timestamp < since:
            continue
        if event.facts.get("success") == "no" and event.facts.get("exit") in ("-2", "-13", "-20"):
            continue  # ENOENT/EACCES/ENOTDIR: a search, or a failed try shown as a piece
        line = " ".join(_shell(word) for word in command_words(event))
        if line and line not in seen:
            seen.add(line)
            found.append(line)
    return found


def _shell(word: str) -> str:
    from .events import _shell_word
    return _shell_word(word)


def _effects(incident: Incident, limit: int) -> List[Tuple[str, ...]]:
    """The incident's notable pieces in words, worst first; among equals,
    what a record names (a user added) before the files behind it, and the
    files of one class together ("changed /etc/passwd, /etc/shadow
    (accounts)")."""
    pieces = sorted(incident.pieces, key=lambda p: (RANK[p.severity], p.event.get("type") == "SYSCALL"))
    out: List[Tuple[str, ...]] = []
    seen = set()
    files: Dict[str, List[str]] = {}
    verbs: Dict[str, set] = {}
    for piece in pieces:
        event = piece.event
        if piece.why in ("login", "sudo", "session opened", "login failed", "authenticated") or (
                piece.why.startswith("rule ") and event.facts.command):
            continue  # the headline says it, or it is a command run (listed as such)
        names = event.facts.written_paths()
        if names and event.get("type") == "SYSCALL" and piece.why.endswith(" changed"):
            label = piece.why.rsplit(" ", 1)[0]
            if label not in files:
                files[label] = []
                out.append(("\x00files", label))  # a place held for the class, in order of severity
            for name in names[-1:]:
                if name not in files[label]:
                    files[label].append(name)
            verbs.setdefault(label, set()).add(file_verb(event))
            continue
        parts = effect(piece.why, event) or _rules_effect(incident)
        text = "".join(parts)
        if parts and text not in seen:
            seen.add(text)
            out.append(parts)
    shown: List[Tuple[str, ...]] = []
    for parts in out:
        if parts[0] == "\x00files":
            label = parts[1]
            names = files[label]
            verb = verbs[label].pop() if len(verbs[label]) == 1 else "changed"
            parts = (verb + " ",)
            for i, name in enumerate(names[:3]):
                parts += ((", " if i else ""), V(name))
            if len(names) > 3:
                parts += (" and %d more" % (len(names) - 3),)
            parts += (" (%s)" % label,)
        shown.append(parts)
        if len(shown) >= limit:
            break
    return shown


# -- headlines ----------------------------------------------------------------

def incident_headline(incident: Incident) -> Line:
    kind = incident.kind
    who = V(actor(incident))
    facts = incident.facts
    if kind == "failed-login":
        accounts = [a for a in facts.get("accounts", "").split("\x1f") if a]
        anchor = incident.anchor
        source = anchor.get("addr") if anchor is not None and _known(anchor.get("addr")) else \
            (anchor.get("hostname") if anchor is not None else "")
        tries = facts.get("tries", 1)
        parts: Tuple[str, ...] = ("Failed %s login for " % facts.get("service", "?"),)
        for i, account in enumerate(accounts[:5]):
            parts += ((", " if i else ""), V(account or '""'))
        if len(accounts) > 5:
            parts += (" and %d more accounts" % (len(accounts) - 5),)
        if not accounts or facts.get("unknown_user"):
            parts += ("%sa user unknown here" % (" and " if accounts else ""),)
        if _known(source):
            parts += (" from ", V(source))
        if tries > 1:
            parts += (" (%d tries)" % tries,)
        return L(*parts)
    if kind == "login":
        parts = ("%s login: " % facts.get("service", "?"), who)
        session = incident.session
        if session is not None and session.addr and session.addr not in ("?", "UNKNOWN"):
            parts += (" from ", V(session.addr))
        parts += (" (%s)" % ("no terminal" if not (session and session.terminal) else ""),) \
            if not (session and session.terminal) else (" (", V(session.terminal), ")")
        # What ran once the session was open (the login scripts run before).
        commands = _commands(incident, since=facts.get("logged_in", 1e18))
        if commands and not (session and session.terminal):
            parts += (", ran ", V(commands[0]))
        if facts.get("ended"):
            parts += (", %s" % _duration(facts["ended"] - incident.first),)
        return L(*parts + _arrow(incident))
    if kind in ("sudo", "su"):
        command = facts.get("cmd") or facts.get("invocation") or ""
        tool = facts.get("elevator", kind)
        target = facts.get("target") or ("root" if kind == "sudo" else "")
        if incident.failed():
            tried = (" tried ", V(command)) if command else ()
            return L("%s refused: " % tool, who, *tried + origin(incident))
        words = facts.get("invocation", "").split()
        if not facts.get("cmd") and kind == "sudo" and ("-l" in words or "--list" in words):
            # sudo -l runs nothing: it shows what the user may run (a first step
            # of anyone who found a password).
            return L(who, " listed their sudo rights (", V(facts["invocation"]), ")", *origin(incident))
        if not command:
            # No exec rule and no USER_CMD (su logs none; sudo -l runs nothing).
            target = facts.get("target", "")  # whom PAM opened a session for, if anyone
            became = (" switched to ", V(target), " (%s)" % tool) if target else (" used %s" % tool,)
            return L(who, *became + origin(incident) + _arrow(incident))
        if facts.get("interactive"):
            ended = (", %s" % _duration(facts["ended"] - incident.first),) if facts.get("ended") else ()
            return L(who, " became ", V(target), " (%s)" % tool, *origin(incident) + ended + _arrow(incident))
        parts = (who, " ran %s " % tool, V(command))
        if target != "root":
            parts += (" as ", V(target))
        return L(*parts + origin(incident) + _arrow(incident))
    if kind == "rules":
        return L(*_rules_headline(incident, who))
    packages = facts.get("packages")
    if facts.get("package_command") or kind == "package":
        command = facts.get("package_command") or facts.get("command", "?")
        verb = _package_verb(command)
        what = (V(packages),) if packages else (V(command),)
        return L(who, " %s " % verb, *what + origin(incident) + _arrow(incident))
    if kind in ("command", "cron") and facts.get("command"):
        parts = (who, " ran ", V(facts["command"])) + _as_root(incident)
        if facts.get("shell_of"):
            parts += (" in a shell opened with ", V(facts["shell_of"]))
        return L(*parts + origin(incident) + _arrow(incident))
    if kind == "shell":
        parts = (who,) + _as_root(incident)
        if facts.get("shell_of"):
            parts += (" in a shell opened with ", V(facts["shell_of"]))
        effects = _effects(incident, 3)
        if effects:
            parts += origin(incident) + (": ",) + effects[0]
            for one in effects[1:2]:
                parts += (", ",) + one
            return L(*parts + ((" …",) if len(effects) > 2 else ()))
    if _persons_action(incident):
        # Something a person's session did outside any command we saw (no
        # exec rule): said as their action, as a shell's is.
        exe = incident.worst_pieces()[0].event.facts.get("exe")
        via = (" via ", V(exe)) if exe else ()
        done = _effects(incident, 1)[0]
        if done[0].split(" ")[0] in _DEEDS:  # "deleted /x (shell history)"
            return L(who, *_as_root(incident) + (" ",) + done + via + origin(incident))
        return L(who, *_as_root(incident) + via + (": ",) + done + origin(incident))  # "...: user added: bob"
    anchor = incident.worst_pieces()[0].event if incident.pieces else incident.anchor
    head, _failed = headline(anchor)
    if incident.count > 1 and len(incident.pieces) > 1:
        head = head + tuple(_arrow(incident, skip_first=True))
    return head


def _persons_action(incident: Incident) -> bool:
    """An event incident of a person's login session with a notable effect."""
    session = incident.session
    return incident.kind == "event" and session is not None and bool(session.user) and \
        bool(incident.pieces) and bool(_effects(incident, 1))


def _as_root(incident: Incident) -> Tuple[str, ...]:
    """" as root" when a person's action ran as root (sudo, su, a setuid
    program): their name alone would read as their own rights."""
    anchor = incident.anchor
    if anchor is None or anchor.facts.get("euid") != "0" or actor(incident) == "root":
        return ()
    return (" as root",)


def _arrow(incident: Incident, skip_first: bool = False) -> Tuple[str, ...]:
    effects = _effects(incident, 3 + skip_first)[skip_first:]
    if not effects:
        return ()
    parts: Tuple[str, ...] = (" → ",)
    for i, one in enumerate(effects[:2]):
        parts += ((", " if i else ""),) + one
    if len(effects) > 2:
        parts += (" …",)
    return parts


def _rule_count(n: int, what: str, everything: bool = False) -> str:
    """ "1 audit rule deleted", "all 352 audit rules deleted"."""
    if n == 1:
        return "1 audit rule %s" % what
    return "%s%d audit rules %s" % ("all " if everything else "", n, what)


def _rule_keys(incident: Incident) -> Tuple[str, ...]:
    """The keys of a few changed rules (which watch went): more than three
    is a rule file, said by its count alone."""
    keys = incident.facts.get("rule_keys", [])
    if not keys or len(keys) > 3:
        return ()
    return (" (rule%s " % ("s" if len(keys) > 1 else ""), V(", ".join(keys)), ")")


def _rules_effect(incident: Incident) -> Tuple[str, ...]:
    """The audit rules an incident (a sudo auditctl -D, say) deleted or added."""
    ops = incident.facts.get("ops", {})
    added = ops.get("add_rule", 0) + ops.get("add rule", 0)
    removed = ops.get("remove_rule", 0) + ops.get("remove rule", 0)
    parts: Tuple[str, ...] = ()
    if removed:
        parts += (_rule_count(removed, "deleted", everything=not added),)
    if added:
        parts += ((", " if parts else "") + _rule_count(added, "loaded"),)
    return parts + _rule_keys(incident) if parts else ()


def _rules_headline(incident: Incident, who: str) -> Tuple[str, ...]:
    ops = incident.facts.get("ops", {})
    added = ops.get("add_rule", 0) + ops.get("add rule", 0)
    removed = ops.get("remove_rule", 0) + ops.get("remove rule", 0)
    failures = incident.facts.get("failures", 0)
    if any(p.why in ("auditing disabled", "audit rules made immutable") for p in incident.pieces):
        why = next(p.why for p in incident.pieces if p.why in ("auditing disabled", "audit rules made immutable"))
        parts: Tuple[str, ...] = (why[0].upper() + why[1:] + " by ", who)
    elif removed and added:
        parts = ("Audit rules reloaded by ", who, ": %d deleted, %d loaded" % (removed, added))
    elif removed:
        what = _rule_count(removed, "deleted", everything=True)
        parts = (what[0].upper() + what[1:],) + _rule_keys(incident) + (" by ", who)
    elif added:
        parts = (_rule_count(added, "loaded"),) + _rule_keys(incident) + (" by ", who)
    else:
        parts = ("Audit settings changed by ", who)
    if failures:
        parts += (", %d failed" % failures,)
    return parts + origin(incident)


def _package_verb(command: str) -> str:
    for word, verb in (("install", "installed"), ("remove", "removed"), ("purge", "purged"), ("erase", "removed"),
                       ("upgrade", "upgraded"), ("update", "updated"), ("-i", "installed"), ("-r", "removed"),
                       ("-P", "purged"), ("-U", "upgraded"), ("-e", "removed")):
        if word in command.split():
            return verb
    return "ran the package manager:"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return "ended after %d s" % seconds
    if seconds < 7200:
        return "ended after %d min" % (seconds // 60)
    return "ended after %.1f h" % (seconds / 3600)


# -- messages -----------------------------------------------------------------

def _finish(severity: str, failed: bool, head: Line, node: str, lines: List[Line], mentions: Sequence[str]) \
        -> Tuple[str, str]:
    if node:
        head = head + (" on ", V(node))
    prefix = mark(severity, failed)
    body_lines = [prefix + head.text()] + [line.text() for line in lines]
    html_lines = ["%s<b>%s</b>" % (html.escape(prefix), head.html())] + [line.html() for line in lines]
    if severity == CRITICAL and mentions:
        body_lines.append("for " + ", ".join(mentions))
        html_lines.append("for " + ", ".join('<a href="https://matrix.to/#/%s">%s</a>' % (html.escape(m, True),
                                                                                          html.escape(m))
                                             for m in mentions))
    return fit(body_lines, MAX_BODY_BYTES, "\n"), fit(html_lines, MAX_HTML_BYTES, "<br>\n")


def format_incident(incident: Incident, mentions: Sequence[str] = ()) -> Notification:
    """One message for an incident (a first version, or the new text of
    an edit: the key is the incident's)."""
    if incident.kind == "event" and incident.count == 1 and incident.anchor is not None:
        # One event: its own detail lines; the headline says whose action
        # it was when a person's session did it.
        head, failed = headline(incident.anchor)
        if _persons_action(incident):
            head = incident_headline(incident)
        lines = details(incident.anchor, head)
    else:
        head = incident_headline(incident)
        failed = incident.failed() or bool(incident.pieces and all(p.why in ("login failed", "access denied")
                                                                   for p in incident.pieces))
        lines = _incident_details(incident, head)
    body, formatted = _finish(incident.severity, failed, head, incident.node, lines, mentions)
    fields = dict(incident.anchor.fields) if incident.anchor is not None else {}
    return Notification(body=body, html=formatted, fields=fields, timestamp=incident.last,
                        priority=1 if incident.severity != INFO or failed else 0, kind="incident",
                        severity=incident.severity, key=incident.key, serials=tuple(incident.serials),
                        mentions=tuple(mentions) if incident.severity == CRITICAL else ())


def _incident_details(incident: Incident, head: Line) -> List[Line]:
    lines: List[Line] = []
    session = incident.session
    if session is not None and (session.addr or session.terminal):
        parts: Tuple[str, ...] = ("session: ", V(session.service or "?"))
        if session.addr:
            parts += (" from ", V(session.addr))
            if session.hostname and session.hostname not in (session.addr, "?"):
                parts += (" (", V(session.hostname), ")")
        if session.terminal:
            parts += (", ", V(session.terminal))
        parts += (", #", V(session.ses))
        lines.append(Line(parts))
    shown = {p for p in head.parts if isinstance(p, V)}
    commands = [c for c in _commands(incident) if c not in shown]
    for command in commands[:MAX_LISTED]:
        lines.append(Line(("ran: ", V(command)), MAX_COMMAND_CHARS))
    if len(commands) > MAX_LISTED:
        lines.append(Line(("… and %d more commands" % (len(commands) - MAX_LISTED),)))
    effects = _effects(incident, MAX_LISTED + 3)
    for one in effects[3:] if len(effects) > 3 else effects[2:] if len(effects) > 2 else ():
        lines.append(Line(("also: ",) + one))
    first, last = _stamp(incident.first, "%H:%M:%S"), _stamp(incident.last, "%H:%M:%S %Z")
    serials = incident.serials
    listed = ", ".join("#" + s for s in serials[:8]) + (", …" if len(serials) > 8 else "")
    lines.append(Line(("%d event%s (%s), %s%s" % (len(serials), "" if len(serials) == 1 else "s", listed,
                                                   first + "–" if first != last[:8] else "", last),)))
    return lines


def format_event(event: Event, verdict: Optional[Verdict] = None, mentions: Sequence[str] = ()) -> Notification:
    """One event on its own as a message (the plugin without grouping)."""
    verdict = verdict or classify(event)
    incident = Incident(key="event|%s|%s" % (event.get("node"), event.get("serial")), kind="event",
                         node=event.get("node"), first=event.timestamp, last=event.timestamp)
    incident.add(event, verdict, 0.0)
    incident.anchor = event
    return format_incident(incident, mentions)


def format_repeat(window: Window, length: float, mentions: Sequence[str] = ()) -> Notification:
    """The count of one action's repeats: climbing while they come (edits
    notify nobody), then "quiet again"."""
    count = "{:,} more time{}: ".format(window.folded, "" if window.folded == 1 else "s")
    span = _stamp(window.last, "%H:%M:%S %Z")
    if _stamp(window.first, "%H:%M:%S") != span[:8]:
        span = "%s–%s" % (_stamp(window.first, "%H:%M:%S"), span)
    when = "%s, %s" % (span, "quiet again" if window.closed else "still going")
    prefix = mark(window.severity) + "🔁 "
    body = prefix + count + window.sample + "\n" + when
    formatted = "%s<b>%s</b>%s<br>\n%s" % (html.escape(prefix), html.escape(count), window.sample_html,
                                         html.escape(when))
    if window.severity == CRITICAL and mentions:
        body += "\nfor " + ", ".join(mentions)
    return Notification(body=fit(body.split("\n"), MAX_BODY_BYTES, "\n"),
                        html=fit(formatted.split("<br>\n"), MAX_HTML_BYTES, "<br>\n"),
                        fields={"digest": str(window.folded), "first": str(window.first), "last": str(window.last),
                                "node": window.node},
                        timestamp=window.last, priority=1, kind="repeat", severity=window.severity, key=window.key,
                        mentions=tuple(mentions) if window.severity == CRITICAL and window.folded == 1 else ())


def repeat_headline(incident: Incident) -> Tuple[str, str]:
    """The headline a repeat count shows (plain, HTML), with its node."""
    head = incident_headline(incident)
    if incident.node:
        head = head + (" on ", V(incident.node))
    failed = FAILED_MARK + " " if incident.failed() else ""
    return failed + head.text(), "%s<b>%s</b>" % (failed, head.html())


def routine_label(incident: Incident) -> str:
    """What a routine incident is counted as: "commands by cron (root)"."""
    who = actor(incident)
    session = incident.session
    if incident.kind == "cron" or (session is not None and session.service in ("cron", "at", "anacron")):
        return "cron jobs of %s" % who
    if incident.kind in ("login",):
        return "logins of %s" % who
    if incident.kind in ("command",):
        program = os.path.basename(incident.facts.get("command", "?").split(" ")[0])
        return "%s run by %s" % (program, who)
    anchor = incident.anchor
    if anchor is not None and anchor.facts.get("key") and anchor.facts.get("key") not in ("(null)",):
        program = os.path.basename(anchor.facts.get("exe") or anchor.facts.get("comm") or "?")
        return "rule %s by %s" % (anchor.facts.get("key").split("\x01")[0], program)
    if anchor is not None:
        program = os.path.basename(anchor.facts.get("exe") or anchor.facts.get("comm") or "")
        return "%s%s" % (anchor.get("type").lower().replace("_", " "), " by %s" % program if program else "")
    return incident.kind


def format_routine(period: Period) -> Notification:
    """One summary of a period's routine, edited in place as it grows."""
    span = "%s–%s" % (_stamp(period.start, "%H:%M"), _stamp(period.end, "%H:%M %Z"))
    lines = []
    total = 0
    for node in sorted(period.counts):
        counter = period.counts[node]
        total += sum(counter.values())
        shown = top(counter, 8)
        text = ", ".join("%d %s" % (n, label) for label, n in shown)
        more = sum(counter.values()) - sum(n for _, n in shown)
        parts: Tuple[str, ...] = (V(node), ": ") if len(period.counts) > 1 else ()
        lines.append(Line(parts + ((V(text),) if text else ()) + ((" and %d more" % more,) if more else ())))
    head = "Routine, %s: %d actions, %d events%s" % (span, total, period.events, "" if period.closed else " so far")
    body = mark(INFO) + head + "\n" + "\n".join(line.text() for line in lines)
    formatted = "%s<b>%s</b><br>\n%s" % (html.escape(mark(INFO)), html.escape(head),
                                         "<br>\n".join(line.html() for line in lines))
    return Notification(body=fit(body.split("\n"), MAX_BODY_BYTES, "\n"), html=formatted[:MAX_HTML_BYTES],
                        fields={"routine": str(total), "events": str(period.events)}, timestamp=period.start,
                        priority=0, kind="routine", severity=INFO, key=period.key)
