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

from dataclasses import dataclass, field
from typing import Dict, List, Optional

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


@dataclass(eq=False)
class Incident:
    """Events folded into one action.  ``key`` identifies its message for
    edits; ``pieces`` are its notable events, worst first when shown."""

    key: str
    kind: str           # login, failed-login, sudo, su, package, rules, cron, command, event
    node: str
    first: float
    last: float
    severity: str = INFO
    events: List[Event] = field(default_factory=list)
    serials: List[str] = field(default_factory=list)
    count: int = 0
    pieces: List[Piece] = field(default_factory=list)
    session: Optional[Session] = None
    anchor: Optional[Event] = None   # the event that says what the action is
    facts: Dict[str, str] = field(default_factory=dict)  # kind-specific: command, packages, counts...
    absorbs_until: float = 0.0
    held_open: bool = False          # a login with a terminal: open until its session ends
    critical_at: Optional[float] = None
    closed: bool = False
    emitted: int = 0                 # how many versions were handed to emit
    emitted_at: float = 0.0
    changed: bool = True
    routine: bool = False            # a session the schedulers run: never more than info
    capped: str = ""                 # a package run: its pieces count as warnings at most
    fate: str = ""                   # what notify.py made of it: routine, alone, repeat
    new_text: bool = True            # whether this version of its message says anything new
    accounted: int = 0               # of its events, how many the counters have
    sent_gist: tuple = ()            # what its last message said, but for the event count
    pids: set = field(default_factory=set)  # the processes the Grouper maps to it (a few, bounded)

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
        the same failed login source; the same person running the same
        command line; the same program doing the same things to the same
        files.  Two different actions never share one."""
        anchor = self.anchor
        values = anchor.facts.values if anchor is not None else {}
        if self.kind == "failed-login":
            source = values.get("addr") or values.get("hostname", "")
            return "\x1f".join((self.node, self.kind, self.severity, self.facts.get("service", ""), source))
        session = self.session
        facts = self.facts.get
        parts = [self.node, self.kind, self.severity,
                 session.user if session is not None and session.user else values.get("auid", ""),
                 session.addr if session is not None and self.kind == "login" else "",
                 str(facts("cmd", "")), str(facts("invocation", "")), str(facts("command", "")),
                 str(facts("package_command", "")), str(facts("target", "")), str(facts("failed", ""))]
        if anchor is not None:
            parts += (anchor.get("type"), values.get("key", ""), values.get("exe", ""), values.get("op", ""),
                      values.get("acct") or values.get("id", ""), anchor.facts.command)
        for piece in self.worst_pieces():
            seen = piece.event.facts.values
            parts += (piece.why, seen.get("acct") or seen.get("id", ""), seen.get("syscall", ""))
            parts += piece.event.facts.written_paths()
        return "\x1f".join(parts)
