"""Answers from the room: reactions to our messages, and what they decide.

Pure: no I/O and no clock of its own (time is passed in), so each rule is
tested alone.  room.py fetches the events, ledger.py keeps what was
decided, the daemon applies it::

    /messages (room.py) ─> parse_reaction / parse_redaction ─> decide()
        ─> "ack":  the message edited, "acknowledged by NAME at HH:MM";
                   no re-announcement
        ─> "mute": Mutes: the message's shape held back for `mute` seconds,
                   counted; the message edited, "muted by NAME until HH:MM"
        ─> "":     someone not allowed, an emoji we do not read, a message
                   that is not ours: logged, nothing changes

A reaction's ``m.relates_to`` (rel_type m.annotation, event_id, key) is in
the clear even in an encrypted room (the spec keeps it outside the
ciphertext), so nothing here decrypts: plain ``m.reaction`` events (Element
Web, matrix-nio) and ``m.room.encrypted`` ones with a clear annotation
(clients on matrix-rust-sdk) are read alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

ACK, MUTE = "ack", "mute"
# Emoji that acknowledge, and the one that mutes (without the variation
# selector and skin tones a keyboard may add).
ACK_KEYS = frozenset(("✅", "👍", "👀", "✔", "☑"))
MUTE_KEYS = frozenset(("🔕",))
_MODIFIERS = dict.fromkeys(map(ord, "\ufe0e\ufe0f\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff"))
# The watcher's messages and the routine summary: never muted (a muted
# tampering alarm or heartbeat would hide that the watcher is blind).
UNMUTABLE_KINDS = frozenset(("notice", "heartbeat", "routine"))
# A mute that ended is remembered this long, so that the first occurrence
# after it can say it was muted and how often it happened meanwhile.
ENDED_KEPT = 7 * 86400.0
# How much of a headline a mute's label keeps.
LABEL_CHARS = 120


@dataclass(frozen=True)
class Reaction:
    """One reaction: ``event_id`` is the reaction's own (its redaction
    names it), ``target`` the message it is on."""

    event_id: str
    target: str
    key: str
    sender: str
    at: float  # the homeserver's time, seconds


def parse_reaction(event: dict) -> Optional[Reaction]:
    """A Reaction from a client-server event, or None.  Both wire forms:
    ``m.reaction``, and ``m.room.encrypted`` whose clear m.relates_to is
    an annotation.  A redacted reaction has no content: None."""
    if not isinstance(event, dict) or event.get("type") not in ("m.reaction", "m.room.encrypted"):
        return None
    content = event.get("content")
    relates = content.get("m.relates_to") if isinstance(content, dict) else None
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
        return None
    values = (event.get("event_id"), relates.get("event_id"), relates.get("key"), event.get("sender"))
    if not all(isinstance(value, str) and value for value in values):
        return None
    stamp = event.get("origin_server_ts")
    return Reaction(*values, at=stamp / 1000.0 if isinstance(stamp, (int, float)) else 0.0)


def parse_redaction(event: dict) -> Optional[str]:
    """The id of the event a redaction removes (top level before room
    version 11, in the content since), or None."""
    if not isinstance(event, dict) or event.get("type") != "m.room.redaction":
        return None
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    redacts = content.get("redacts") or event.get("redacts")
    return redacts if isinstance(redacts, str) and redacts else None


def action_of(key: str) -> str:
    """ACK, MUTE, or "" for an emoji we do not read."""
    bare = key.translate(_MODIFIERS)
    return ACK if bare in ACK_KEYS else MUTE if bare in MUTE_KEYS else ""


def who_may_answer(responders: Sequence[str], mention: Sequence[str]) -> Tuple[str, ...]:
    """``responders``, or when that is empty the people in ``mention``;
    empty when both are: then nobody can answer."""
    return tuple(responders) or tuple(mention)


def mute_shape(fingerprint: str) -> str:
    """A message's shape: its repeat fingerprint (incidents.fingerprint_of:
    node, kind, severity, ...) without the severity, so that the same
    action on the same object by the same person on the same host is
    muted whatever severity it gets."""
    parts = fingerprint.split("\x1f")
    return "\x1f".join(parts[:2] + parts[3:]) if len(parts) > 2 else fingerprint


@dataclass(frozen=True)
class Message:
    """What we know of one of our messages in the room (ledger.py)."""

    key: str
    event_id: str
    room: str
    kind: str
    severity: str
    shape: str = ""
    node: str = ""
    label: str = ""


def decide(reaction: Reaction, message: Optional[Message], allowed: Sequence[str]) -> Tuple[str, str]:
    """(action, why): ACK or MUTE to apply, or "" and why nothing is done."""
    action = action_of(reaction.key)
    if not action:
        return "", "not an answer we read (%s)" % reaction.key
    if message is None:
        return "", "not on a message of ours we still know"
    if reaction.sender not in allowed:
        return "", ("%s may not answer (responders: %s)" % (reaction.sender, ", ".join(allowed))
                    if allowed else "nobody may answer: responders and mention are empty")
    if action == MUTE and (message.kind in UNMUTABLE_KINDS or not message.shape):
        return "", "the watcher's own messages are never muted"
    return action, ""


def clock_text(when: float) -> str:
    return time.strftime("%H:%M", time.localtime(when))


def ack_line(who: str, when: float) -> str:
    return "✅ acknowledged by %s at %s" % (who, clock_text(when))


@dataclass
class Mute:
    """One shape held back: since ``since`` until ``until`` (or ``ended``
    earlier), ``count`` occurrences meanwhile."""

    id: int
    shape: str
    node: str
    label: str
    severity: str
    by: str
    since: float
    until: float
    key: str = ""          # the message that was answered, for its edits
    reaction: str = ""     # the 🔕's event id: its redaction ends the mute
    count: int = 0
    ended: float = 0.0
    told: bool = False     # the first occurrence after it has said so

    def line(self) -> str:
        """The edit's line on the answered message."""
        if self.ended and self.ended < self.until:
            return "🔕 muted by %s, ended at %s (%d since)" % (self.by, clock_text(self.ended), self.count)
        return "🔕 muted by %s until %s" % (self.by, clock_text(self.until))

    def summary(self) -> str:
        """The line in the routine summary and the heartbeat."""
        return "🔕 muted until %s%s: %s, %d time%s since %s" % (
            clock_text(self.until), " (critical)" if self.severity == "critical" else "", self.label,
            self.count, "" if self.count == 1 else "s", clock_text(self.since))

    def after(self) -> str:
        """The line the first occurrence after the mute carries."""
        return "🔕 was muted by %s from %s to %s: happened %d time%s meanwhile" % (
            self.by, clock_text(self.since), clock_text(min(self.ended or self.until, self.until)), self.count,
            "" if self.count == 1 else "s")


@dataclass
class Mutes:
    """The active mutes by shape, and those ended not long ago.  ``hit``
    counts an occurrence in an active mute; ``expire`` ends those past
    their time.  Changes are listed in ``changed`` for the ledger to save."""

    active: Dict[str, Mute] = field(default_factory=dict)
    ended: Dict[str, Mute] = field(default_factory=dict)
    changed: Dict[int, Mute] = field(default_factory=dict)

    def add(self, mute: Mute):
        old = self.active.get(mute.shape)
        if old is not None:  # muted again: the new one replaces it, its count carried on
            mute.count += old.count
            old.ended = mute.since
            self.changed[old.id] = old
        self.active[mute.shape] = mute
        self.ended.pop(mute.shape, None)
        self.changed[mute.id] = mute

    def hit(self, shape: str, now: float) -> Optional[Mute]:
        """The active mute of ``shape`` at ``now``, counted once more."""
        mute = self.active.get(shape)
        if mute is None or not shape:
            return None
        if now >= mute.until:
            self.expire(now)
            return None
        mute.count += 1
        self.changed[mute.id] = mute
        return mute

    def end(self, mute_id: int, now: float) -> Optional[Mute]:
        """End one early (its 🔕 removed, or cleared from the shell)."""
        for shape, mute in list(self.active.items()):
            if mute.id == mute_id:
                mute.ended = now
                self._retire(shape)
                return mute
        return None

    def by_reaction(self, reaction_id: str) -> Optional[Mute]:
        return next((m for m in self.active.values() if m.reaction == reaction_id), None)

    def expire(self, now: float) -> List[Mute]:
        """End the mutes whose time is up; the ended ones."""
        done = [shape for shape, mute in self.active.items() if now >= mute.until]
        out = []
        for shape in done:
            mute = self.active[shape]
            mute.ended = mute.until
            out.append(self._retire(shape))
        for shape in [s for s, m in self.ended.items() if now - m.ended > ENDED_KEPT]:
            del self.ended[shape]
        return out

    def _retire(self, shape: str) -> Mute:
        mute = self.active.pop(shape)
        self.ended[shape] = mute
        self.changed[mute.id] = mute
        return mute

    def after(self, shape: str) -> Optional[Mute]:
        """The mute of ``shape`` that ended, the first time it is asked
        (the first occurrence after it says it was muted)."""
        mute = self.ended.pop(shape, None)
        if mute is None:
            return None
        mute.told = True
        self.changed[mute.id] = mute
        return mute

    def next_end(self) -> Optional[float]:
        return min((m.until for m in self.active.values()), default=None)

    def summary(self) -> List[str]:
        """The lines every routine summary and heartbeat shows while mutes
        last: each with occurrences, and each critical one always."""
        return [m.summary() for m in sorted(self.active.values(), key=lambda m: m.since)
                if m.count or m.severity == "critical"]

    def take_changes(self) -> List[Mute]:
        changed, self.changed = list(self.changed.values()), {}
        return changed
