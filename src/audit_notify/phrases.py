"""Phrases: the parts an incident's sentences are made of (format.py
puts them together): who did it and from where, what it did ("wrote
/etc/sudoers.d/zz (sudoers)", "user added: bob"), what ran, for how long.
Every audit value in them is a ``V`` (message.py)."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from .events import Event
from .headlines import _known
from .incidents import Incident
from .message import V, span
from .programs import argv_of, argv_paths, command_words
from .evidence import PREFIX as EVIDENCE_PREFIX
from .severity import EVIDENCE_PLACES, RANK, command_finding, odd_place, place

UNSET = ("4294967295", "-1", "unset", "")


def _name(event: Event, field: str) -> str:
    """An id field as a name (interpreted: enriched, or this host's
    passwd), "" when unset.  Read from an event's summary where it tells
    (Event.who): a routine event is counted without being read again."""
    value = event.who(field)
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
DEEDS = frozenset([verb.split(" ")[0] for _, verb in _FILE_VERBS] +
                   ["read", "was", "ran", "set", "changed", "made", "downloaded", "erased"])


def file_verb(event: Event) -> str:
    syscall = event.facts.get("syscall")
    for prefix, verb in _FILE_VERBS:
        if syscall.startswith(prefix):
            return verb
    return "changed"


def effect(why: str, event: Event, company: Sequence[Event] = ()) -> Tuple[str, ...]:
    """A notable piece in a few words: "wrote /etc/sudoers.d/zz (sudoers)",
    "user added: svc-backup" (``company``: the incident's other events,
    where a record that names an account by a number not yet in passwd
    finds its name)."""
    facts = event.facts
    names = facts.written_paths()
    rtype = event.get("type")
    if why.startswith(EVIDENCE_PREFIX):
        found = command_finding(event)
        if found is None or found.why != why:
            return (why[len(EVIDENCE_PREFIX):],)
        return tuple(V(part) if i % 2 else part for i, part in enumerate(found.deed) if part)
    if why.startswith("made executable in "):
        return ("made ", V(chosen_path(names) or "?"), " executable (%s)" % why[len("made executable in "):])
    if why.startswith("download to ") or (why.endswith(" erased") and facts.get("syscall").startswith("execve")):
        # Said by the command line (the rule logs the exec or a connect,
        # not the write).
        words = argv_of(event)
        target = next((path for path in argv_paths(words) if place(path, EVIDENCE_PLACES) or odd_place(path)), "?")
        if why.startswith("download to "):
            return ("downloaded to ", V(target), " (%s)" % why[len("download to "):])
        return ("erased ", V(target), " (%s)" % why.rsplit(" ", 1)[0])
    if names and rtype == "SYSCALL" and why.endswith((" changed", " read", " erased", "access denied")):
        label = why.rsplit(" ", 1)[0]
        verb = "read" if why.endswith(" read") else "was denied" if why == "access denied" else file_verb(event)
        target = chosen_path(names)
        return (verb + " ", V(target)) + ((" (%s)" % label,) if label and why != "access denied" else ())
    if why.startswith("program run from"):
        ran = next((path for path in [facts.get("exe")] + names[:1] if odd_place(path) or
                    path.startswith("/memfd:")), facts.get("exe"))
        return ("ran ", V(ran), " (%s)" % why.split(" from ", 1)[1])
    if why in ("audit rules deleted", "audit rules added"):
        return ()  # counted once for the incident (_rules_effect)
    if why == "setuid/setgid bit set":
        return ("set a setuid/setgid bit on ", V(chosen_path(names) or "?"))
    if rtype == "ADD_USER" and facts.get("id") == "0":
        return ("user added with uid 0 (a second root)",)
    # An account record's id is read through this host's passwd, which may
    # not have it yet (or, for another host's log, has someone else): the
    # name the same process logged is the truth.
    named = account_named(event, company) if rtype in _ACCOUNT_RECORDS and not event.facts.get("acct") else ""
    target = (named or event.get("acct") or event.get("grp") or event.get("id") or event.get("name")
              or event.get("unit") or "")
    if rtype in ("KERN_MODULE",) or why.startswith("kernel module"):
        target = event.get("name") or chosen_path(names)
    if _known(target) and target not in ("(invalid user)",):
        return (why + ": ", V(target))
    return (why,)


# Records of shadow-utils that name an account by its id (useradd's ADD_USER
# "id=1001", before the name resolves anywhere).
_ACCOUNT_RECORDS = frozenset(("ADD_USER", "DEL_USER", "USER_MGMT", "CHUSER_ID", "ACCT_LOCK", "ACCT_UNLOCK"))


def account_named(event: Event, company: Sequence[Event]) -> str:
    """The account name the same process's records give (useradd logs
    ADD_GROUP acct="carol" beside ADD_USER id=1001), or ""."""
    pid = event.facts.get("pid")
    for other in company:
        name = other.facts.get("acct")
        if other.facts.get("pid") == pid and _known(name) and not name.startswith("unknown("):
            return name
    return ""


def chosen_path(names: Sequence[str]) -> str:
    return names[-1] if names else ""


def commands_run(incident: Incident, since: float = 0.0, persons: bool = False) -> List[str]:
    """The command lines run in an incident (from ``since``), in order,
    without the failed tries of an execvp search along $PATH; with
    ``persons``, only those run as the person whose login it is (root's
    helpers that PAM runs at a user's login are not theirs)."""
    found, seen = [], set()
    for event in incident.events:
        if not event.facts.command or event.timestamp < since:
            continue
        if persons and event.facts.get("uid") != event.facts.get("auid") and event.facts.get("auid") != "0":
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


def effects_of(incident: Incident, limit: int) -> List[Tuple[str, ...]]:
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
        parts = effect(piece.why, event, incident.events) or rules_effect(incident)
        text = "".join(parts)
        if parts and text not in seen:
            seen.add(text)
            out.append(parts)
    written = {name for names in files.values() for name in names}
    shown: List[Tuple[str, ...]] = []
    for parts in out:
        if len(parts) > 1 and isinstance(parts[1], V) and parts[1] in written:
            continue  # a command line's deed that its syscalls show too
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


def persons_action(incident: Incident) -> bool:
    """An event incident of a person's login session with a notable effect."""
    session = incident.session
    return incident.kind == "event" and session is not None and bool(session.user) and \
        bool(incident.pieces) and bool(effects_of(incident, 1))


def as_root(incident: Incident) -> Tuple[str, ...]:
    """" as root" when a person's action ran as root (sudo, su, a setuid
    program): their name alone would read as their own rights."""
    anchor = incident.anchor
    if anchor is None or anchor.facts.get("euid") != "0" or actor(incident) == "root":
        return ()
    return (" as root",)


def arrow(incident: Incident, skip_first: bool = False) -> Tuple[str, ...]:
    effects = effects_of(incident, 3 + skip_first)[skip_first:]
    if not effects:
        return ()
    parts: Tuple[str, ...] = (" → ",)
    for i, one in enumerate(effects[:2]):
        parts += ((", " if i else ""),) + one
    if len(effects) > 2:
        parts += (" …",)
    return parts


def rule_count(n: int, what: str, everything: bool = False, growing: bool = False) -> str:
    """ "1 audit rule deleted", "all 352 audit rules deleted"; while the
    burst is still coming (its first message goes out within the critical
    hold, before auditctl is done), "audit rules being deleted (78 so
    far)": never a count that is wrong."""
    if growing:
        return "audit rules being %s (%d so far)" % (what, n)
    if n == 1:
        return "1 audit rule %s" % what
    return "%s%d audit rules %s" % ("all " if everything else "", n, what)


def rule_keys(incident: Incident) -> Tuple[str, ...]:
    """The keys of a few changed rules (which watch went): more than three
    is a rule file, said by its count alone."""
    keys = incident.facts.get("rule_keys", [])
    if not keys or len(keys) > 3:
        return ()
    return (" (rule%s " % ("s" if len(keys) > 1 else ""), V(", ".join(keys)), ")")


def rule_changes(incident: Incident) -> Tuple[int, int]:
    """How many audit rules an incident added and removed (auditd spells
    the op with an underscore or a space, by version)."""
    ops = incident.facts.get("ops", {})
    return ops.get("add_rule", 0) + ops.get("add rule", 0), ops.get("remove_rule", 0) + ops.get("remove rule", 0)


def rules_effect(incident: Incident) -> Tuple[str, ...]:
    """The audit rules an incident (a sudo auditctl -D, say) deleted or added."""
    added, removed = rule_changes(incident)
    parts: Tuple[str, ...] = ()
    growing = not incident.closed
    if removed:
        parts += (rule_count(removed, "deleted", everything=not added, growing=growing),)
    if added:
        parts += ((", " if parts else "") + rule_count(added, "loaded", growing=growing),)
    return parts + rule_keys(incident) if parts else ()


def duration(seconds: float) -> str:
    return "ended after " + span(seconds)
