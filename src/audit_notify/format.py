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
from typing import List, Optional, Sequence, Tuple

from .events import Event
from .headlines import _known, details, headline
from .incidents import Incident
from .masking import mask_command, mask_fields
from .message import (MAX_BODY_BYTES, MAX_COMMAND_CHARS, MAX_HTML_BYTES, L, Line, Notification, V, fit, mention_line,
                      shown)
from .phrases import (
    DEEDS,
    actor,
    arrow,
    as_root,
    commands_run,
    duration,
    effects_of,
    origin,
    persons_action,
    rule_changes,
    rule_count,
    rule_keys,
)
from .programs import argv_of
from .repeats import Period, Window, top
from .severity import CRITICAL, INFO, WARNING, Verdict, classify

MARKS = {CRITICAL: "🚨", WARNING: "⚠️", INFO: "ℹ️"}
FAILED_MARK = "❌"
# Commands and effects listed in a message at most (the rest are counted).
MAX_LISTED = 12


def mark(severity: str, failed: bool = False) -> str:
    """Severity first, failure second: a backdoor user added never looks
    as calm as a routine command."""
    return MARKS.get(severity, MARKS[INFO]) + (FAILED_MARK if failed else "") + " "


def _stamp(when: float, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    return time.strftime(fmt, time.localtime(when))


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
        # What the person ran once the session was open (not PAM's login
        # scripts: motd's run-parts runs as root on a user's login).
        commands = commands_run(incident, since=facts.get("logged_in", 1e18), persons=True)
        if commands and not (session and session.terminal):
            if "sftp-server" in commands[0]:
                parts += (", file transfer (SFTP)",)
            else:
                parts += (", ran ", V(commands[0]))
        if facts.get("failed_tries"):
            tries = facts["failed_tries"]
            parts += (", after %d failed tr%s" % (tries, "y" if tries == 1 else "ies"),)
        if facts.get("ended"):
            parts += (", %s" % duration(facts["ended"] - incident.first),)
        return L(*parts + arrow(incident))
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
            return L(who, *became + arrow(incident) + origin(incident))
        if facts.get("interactive"):
            ended = (", %s" % duration(facts["ended"] - incident.first),) if facts.get("ended") else ()
            return L(who, " became ", V(target), " (%s)" % tool, *ended + arrow(incident) + origin(incident))
        parts = (who, " ran %s " % tool, V(command))
        if target != "root":
            parts += (" as ", V(target))
        return L(*parts + arrow(incident) + origin(incident))
    if kind == "rules":
        return L(*_rules_headline(incident, who))
    packages = facts.get("packages")
    if facts.get("package_command") or kind == "package":
        command = facts.get("package_command") or facts.get("command", "?")
        verb = _package_verb(command)
        what = (V(packages),) if packages else (V(command),)
        return L(who, " %s " % verb, *what + arrow(incident) + origin(incident))
    if kind in ("command", "cron") and facts.get("command"):
        parts = (who, " ran ", V(facts["command"])) + as_root(incident)
        if facts.get("shell_of"):
            parts += (" in a shell opened with ", V(facts["shell_of"]))
        return L(*parts + arrow(incident) + origin(incident))
    if kind == "shell":
        parts = (who,) + as_root(incident)
        if facts.get("shell_of"):
            parts += (" in a shell opened with ", V(facts["shell_of"]))
        effects = effects_of(incident, 3)
        if effects:
            parts += (": ",) + effects[0]
            for one in effects[1:2]:
                parts += (", ",) + one
            return L(*parts + ((" …",) if len(effects) > 2 else ()) + origin(incident))
    if persons_action(incident):
        # Something a person's session did outside any command we saw (no
        # exec rule): said as their action, as a shell's is.
        exe = incident.worst_pieces()[0].event.facts.get("exe")
        via = (" via ", V(exe)) if exe else ()
        done = effects_of(incident, 1)[0]
        if done[0].split(" ")[0] in DEEDS:  # "deleted /x (shell history)"
            return L(who, *as_root(incident) + (" ",) + done + via + origin(incident))
        return L(who, *as_root(incident) + via + (": ",) + done + origin(incident))  # "...: user added: bob"
    anchor = incident.worst_pieces()[0].event if incident.pieces else incident.anchor
    head, _failed = headline(anchor)
    if incident.count > 1 and len(incident.pieces) > 1:
        head = head + tuple(arrow(incident, skip_first=True))
    return head


def _rules_headline(incident: Incident, who: str) -> Tuple[str, ...]:
    added, removed = rule_changes(incident)
    failures = incident.facts.get("failures", 0)
    growing = not incident.closed  # the burst may go on: no total yet (rule_count)
    why = next((p.why for p in incident.pieces if p.why in ("auditing disabled", "audit rules made immutable")), "")
    if why:
        parts: Tuple[str, ...] = (why[0].upper() + why[1:] + " by ", who)
        if removed:  # the same burst blinded it twice over: say both
            parts += (", and " + rule_count(removed, "deleted", everything=not added, growing=growing),) + \
                rule_keys(incident)
    elif removed and added:
        parts = ("Audit rules reloaded by ", who, ": %d deleted, %d loaded%s" % (
            removed, added, " so far" if growing else ""))
    elif removed:
        what = rule_count(removed, "deleted", everything=True, growing=growing)
        parts = (what[0].upper() + what[1:],) + rule_keys(incident) + (" by ", who)
    elif added:
        what = rule_count(added, "loaded", growing=growing)
        parts = (what[0].upper() + what[1:] if growing else what,) + rule_keys(incident) + (" by ", who)
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


# -- messages -----------------------------------------------------------------

# A lock screen shows a notification's first hundred characters or so: what
# happened to what, and the host, must be in them.
HEADLINE_BUDGET = 100
_KEEP = 40  # a command line cut to fit keeps this much, its two ends


def on_host(head: Line, node: str) -> Line:
    """"web1: alice ran …": the host first, where a lock screen shows it."""
    return Line((V(node), ": ") + head.parts, head.limit) if node else head


def within(head: Line, budget: int) -> Line:
    """A headline over ``budget`` characters with its command lines cut in
    the middle, the longest first, no more than it takes to fit and never
    below _KEEP characters, so that what comes after them (the object:
    "→ wrote /etc/cron.d/x") is seen; a path or a name without a space is
    never cut (the session it came from comes last, and may run over)."""
    over = len(head.text()) - budget
    if over <= 0:
        return head
    parts = [V(shown(part)) if isinstance(part, V) else part for part in head.parts]  # cut what is shown
    for i in sorted((i for i, part in enumerate(parts) if isinstance(part, V) and " " in part and len(part) > _KEEP),
                    key=lambda i: -len(parts[i])):
        value = parts[i]
        keep = max(_KEEP, len(value) - over - 1)
        if keep >= len(value):
            break
        parts[i] = V(value[:keep - keep // 2] + "…" + value[len(value) - keep // 2:])
        over -= len(value) - len(parts[i])
        if over <= 0:
            break
    return Line(tuple(parts), head.limit)


def compose(severity: str, failed: bool, head: Line, node: str, lines: List[Line], mentions: Sequence[str]) \
        -> Tuple[str, str]:
    """The body and HTML of a message: the marks, the headline in bold, its
    lines, and for a critical one the mention line; each cut to fit."""
    head = on_host(within(head, HEADLINE_BUDGET), node)
    prefix = mark(severity, failed)
    body_lines = [prefix + head.text()] + [line.text() for line in lines]
    html_lines = ["%s<b>%s</b>" % (html.escape(prefix), head.html())] + [line.html() for line in lines]
    if severity == CRITICAL and mentions:
        plain, pills = mention_line(mentions)
        body_lines.append(plain)
        html_lines.append(pills)
    return fit(body_lines, MAX_BODY_BYTES, "\n"), fit(html_lines, MAX_HTML_BYTES, "<br>\n")


def format_incident(incident: Incident, mentions: Sequence[str] = ()) -> Notification:
    """One message for an incident (a first version, or the new text of
    an edit: the key is the incident's)."""
    if incident.kind == "event" and incident.count == 1 and incident.anchor is not None:
        # One event: its own detail lines; the headline says whose action
        # it was when a person's session did it.
        head, failed = headline(incident.anchor)
        if persons_action(incident):
            head = incident_headline(incident)
        lines = details(incident.anchor, head)
    else:
        head = incident_headline(incident)
        failed = incident.failed() or bool(incident.pieces and all(p.why in ("login failed", "access denied")
                                                                   for p in incident.pieces))
        lines = _incident_details(incident, head)
    if incident.novelty == "new":
        head = Line(("new: ",) + head.parts, head.limit)  # the first time this host sees it (known.py)
    body, formatted = compose(incident.severity, failed, head, incident.node, lines, mentions)
    # The event's own fields go beside the message (--json): without the
    # passwords its command line shows, as the text is.
    anchor = incident.anchor
    fields = mask_fields(anchor.fields, argv_of(anchor)) if anchor is not None else {}
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
    typed = incident.facts.get("typed", [])
    if typed:
        # A terminal session: what was typed in it, in order (the login
        # scripts' commands are not the person's).
        more = incident.facts.get("typed_count", len(typed)) - len(typed)
        parts = ("commands in the session: ",)
        for i, command in enumerate(typed):
            parts += ((", " if i else ""), V(command))
        lines.append(Line(parts + ((" and %d more" % more,) if more else ()), MAX_COMMAND_CHARS))
    shown = {p for p in head.parts if isinstance(p, V)}
    # A login's own scripts (motd, profile) ran before it was done: not listed.
    since = incident.facts.get("logged_in", 0.0) if incident.kind == "login" else 0.0
    commands = [c for c in commands_run(incident, since) if c not in shown]
    for command in commands[:MAX_LISTED]:
        lines.append(Line(("ran: ", V(command)), MAX_COMMAND_CHARS))
    if len(commands) > MAX_LISTED:
        lines.append(Line(("… and %d more commands" % (len(commands) - MAX_LISTED),)))
    effects = effects_of(incident, MAX_LISTED + 3)
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
        plain, pills = mention_line(mentions)
        body += "\n" + plain
        formatted += "<br>\n" + pills
    return Notification(body=fit(body.split("\n"), MAX_BODY_BYTES, "\n"),
                        html=fit(formatted.split("<br>\n"), MAX_HTML_BYTES, "<br>\n"),
                        fields={"digest": str(window.folded), "first": str(window.first), "last": str(window.last),
                                "node": window.node},
                        timestamp=window.last, priority=1, kind="repeat", severity=window.severity, key=window.key,
                        mentions=tuple(mentions) if window.severity == CRITICAL and window.folded == 1 else ())


def repeat_headline(incident: Incident) -> Tuple[str, str]:
    """The headline a repeat count shows (plain, HTML), with its node."""
    head = on_host(within(incident_headline(incident), HEADLINE_BUDGET), incident.node)
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
        program = os.path.basename(mask_command(incident.facts.get("command", "?")).split(" ")[0])
        return "%s run by %s" % (program, who)
    anchor = incident.anchor
    if anchor is not None and anchor.facts.get("key") and anchor.facts.get("key") not in ("(null)",):
        program = os.path.basename(anchor.facts.get("exe") or anchor.facts.get("comm") or "?")
        return "rule %s by %s" % (anchor.facts.get("key").split("\x01")[0], program)
    if anchor is not None:
        program = os.path.basename(anchor.facts.get("exe") or anchor.facts.get("comm") or "")
        return "%s%s" % (anchor.get("type").lower().replace("_", " "), " by %s" % program if program else "")
    return incident.kind


def format_routine(period: Period, muted: Sequence[str] = ()) -> Notification:
    """One summary of a period's routine, edited in place as it grows;
    ``muted``: a line per mute that lasts (answers.Mutes.summary)."""
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
    lines += [Line((text,)) for text in muted]
    head = "Routine, %s: %d actions, %d events%s" % (span, total, period.events, "" if period.closed else " so far")
    body = mark(INFO) + head + "\n" + "\n".join(line.text() for line in lines)
    formatted = "%s<b>%s</b><br>\n%s" % (html.escape(mark(INFO)), html.escape(head),
                                         "<br>\n".join(line.html() for line in lines))
    return Notification(body=fit(body.split("\n"), MAX_BODY_BYTES, "\n"), html=formatted[:MAX_HTML_BYTES],
                        fields={"routine": str(total), "events": str(period.events)}, timestamp=period.start,
                        priority=0, kind="routine", severity=INFO, key=period.key)
