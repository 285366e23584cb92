"""Incidents: what one human action looks like once its events are folded.

A person thinks in actions ("alice logged in", "alice ran sudo ..."); the
kernel writes events (a login is a dozen).  An Incident is one action: the
session behind it (who, from where, on which terminal), the event that says
what it is (its anchor), the notable pieces that set its severity, and the
kind-specific facts its message needs.  grouper.py decides which events make
one incident; format.py says it; repeats.py counts incidents alike by their
fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set

from .events import Event
from .severity import CRITICAL, INFO, RANK, Verdict, worst

# Events an incident keeps for its message (the rest are counted).
KEEP_EVENTS = 40


def safe_key(*parts: str) -> str:
    """A key for the spool from parts that may hold any bytes (a node name
    is the sender's to choose): escaped to text sqlite can store."""
    key = "|".join(parts)
    if key.isascii():
        return key
    return "|".join(part.encode("utf-8", "backslashreplace").decode("utf-8") for part in parts)


@dataclass
class Session:
    """A login session (the kernel's ``ses``): who, from where, how."""

    node: str
    ses: str
    service: str = ""
    user: str = ""       # the account name PAM logged in
    addr: str = ""
    hostname: str = ""
    terminal: str = ""
    login: Optional["Incident"] = None
    named_by: Optional[Event] = None  # a PAM record of the login, for the user's name


@dataclass
class Piece:
    """A notable thing an incident did, for its message."""

    severity: str
    why: str
    event: Event


class Incident:
    """Events folded into one action.  ``key`` identifies its message for
    edits; ``pieces`` are its notable events, worst first when shown.

    A plain class with slots, not a dataclass: a flood makes one per event,
    and the slots keep each small (no per-instance dict of 28 entries)."""

    __slots__ = ("key", "kind", "node", "first", "last", "severity", "events", "serials", "count", "pieces",
                 "session", "anchor", "facts", "absorbs_until", "held_open", "critical_at", "closed", "emitted",
                 "emitted_at", "changed", "routine", "capped", "fate", "new_text", "accounted", "sent_gist", "pids",
                 "counted_as", "novelty", "number")

    def __init__(self, key: str, kind: str, node: str, first: float, last: float):
        self.key = key
        self.kind = kind             # login, failed-login, sudo, su, package, rules, cron, command, event
        self.node = node
        self.first = first
        self.last = last
        self.severity = INFO
        self.events: List[Event] = []
        self.serials: List[str] = []
        self.count = 0
        self.pieces: List[Piece] = []
        self.session: Optional[Session] = None
        self.anchor: Optional[Event] = None   # the event that says what the action is
        self.facts: Dict[str, Any] = {}       # kind-specific: command, packages, counts...
        self.absorbs_until = 0.0
        self.held_open = False           # a login with a terminal: open until its session ends
        self.critical_at: Optional[float] = None
        self.closed = False
        self.emitted = 0                 # how many versions were handed to emit
        self.emitted_at = 0.0
        self.changed = True
        self.routine = False             # a session the schedulers run: never more than info
        self.capped = ""                 # a package run: its pieces count as warnings at most
        self.fate = ""                   # what notify.py made of it: routine, alone, repeat
        self.new_text = True             # whether this version of its message says anything new
        self.accounted = 0               # of its events, how many the counters have
        self.sent_gist: tuple = ()       # what its last message said, but for the event count
        self.pids: Set[str] = set()      # the processes the Grouper maps to it (a few, bounded)
        self.counted_as: tuple = ()      # a repeat: the fingerprint it was counted with, and its pieces then
        self.novelty = ""                # a warning's shape: "new" (said so), "known" (routine), or not asked
        self.number = 0                  # the Grouper's count of actions when it was made (its key's last part)

    def add(self, event: Event, verdict: Verdict, quiet: float):
        self.count += 1
        self.serials.append(event.get("serial"))
        if len(self.events) < KEEP_EVENTS:
            self.events.append(event)
        self.last = max(self.last, event.timestamp)
        self.absorbs_until = max(self.absorbs_until, event.timestamp + quiet)
        severity = verdict.severity
        if self.capped and RANK[severity] < RANK[self.capped]:
            severity = self.capped
        if severity != INFO:
            if len(self.pieces) < KEEP_EVENTS or severity == CRITICAL and len(self.pieces) < 4 * KEEP_EVENTS:
                self.pieces.append(Piece(severity, verdict.why, event))  # the rest only raise it
            self.raise_to(severity, event.timestamp)
        self.changed = True

    def raise_to(self, severity: str, when: float):
        self.severity = worst(self.severity, severity)
        if self.severity == CRITICAL and self.critical_at is None:
            self.critical_at = when

    def worst_pieces(self) -> List[Piece]:
        """The pieces, worst first (most incidents have one: no sort)."""
        if len(self.pieces) < 2:
            return list(self.pieces)
        return sorted(self.pieces, key=lambda piece: RANK[piece.severity])

    def failed(self) -> bool:
        return bool(self.facts.get("failed"))

    def fingerprint(self) -> str:
        """What makes two incidents the same action on the same object, so
        that the second can be counted as a repeat of the first (repeats.py):
        see fingerprint_of()."""
        return fingerprint_of(self.node, self.kind, self.severity, self.session, self.anchor, self.facts,
                              self.worst_pieces())


def fingerprint_of(node: str, kind: str, severity: str, session: Optional[Session], anchor: Optional[Event],
                   facts: Dict[str, Any], pieces: List[Piece]) -> str:
    """An incident's fingerprint from its parts (pieces worst first): the
    same failed login source; the same person running the same command
    line; the same program doing the same things to the same files.  Two
    different actions never share one.  A function of the parts, so that
    the Grouper can tell whether a new one-event action repeats one being
    counted without making it an incident (grouper.py, the fast lane)."""
    values = anchor.facts.values if anchor is not None else {}
    if kind == "failed-login":
        source = values.get("addr") or values.get("hostname", "")
        return "\x1f".join((node, kind, severity, facts.get("service", ""), source))
    get = facts.get  # these facts are text (grouper.py sets them)
    parts = [node, kind, severity,
             session.user if session is not None and session.user else values.get("auid", ""),
             session.addr if session is not None and kind == "login" else "",
             get("cmd", ""), get("invocation", ""), get("command", ""), get("package_command", ""),
             get("target", ""), get("failed", "")]
    if anchor is not None:
        parts += (anchor.get("type"), values.get("key", ""), values.get("exe", ""), values.get("op", ""),
                  values.get("acct") or values.get("id", ""), anchor.facts.command)
    for piece in pieces:
        seen = piece.event.facts.values
        parts += (piece.why, seen.get("acct") or seen.get("id", ""), seen.get("syscall", ""))
        parts += piece.event.facts.written_paths()
    return "\x1f".join(parts)
