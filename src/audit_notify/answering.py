"""The answer path in the daemon's thread: reactions read by room.py become
acknowledgements, mutes and edits; unanswered criticals are announced
again.

    RoomReader (its own thread) ─ pipe ─> Answering.step ─> answers.decide
        ─> ledger (committed at once) ─> accept(edit)   (the spool, as any message)
    Notifier ─> Mutes.hit (answers.py): a muted shape is counted, not sent
    Answering.accepting: every message on its way to the spool is noted
        (ledger) and carries its answer's line in each later version

Nothing here waits on the homeserver: the thread does the reading, and
what we say goes through the spool like every other message.
"""

from __future__ import annotations

import html
import logging
import time
from typing import Callable, Optional

from .answers import (
    ACK,
    MUTE,
    Mute,
    Reaction,
    ack_line,
    action_of,
    clock_text,
    decide,
    parse_reaction,
    parse_redaction,
    who_may_answer,
)
from .config import Config
from .ledger import Ledger
from .message import Notification
from .room import RoomReader

log = logging.getLogger("audit-notify")

# Mutes ended from the shell, mutes over and re-announcements due are
# looked for this often (and at each of their exact times).
CHECK_INTERVAL = 15.0
PRUNE_INTERVAL = 3600.0
ANSWERABLE = ("critical", "warning")


class Answering:
    """See the module docstring.  ``accept`` is the daemon's: a message it
    takes goes to the spool (through ``accepting`` again)."""

    def __init__(self, config: Config, ledger: Ledger, reader: Optional[RoomReader],
                 accept: Callable[[Notification], None], wall=time.time):
        self.ledger = ledger
        self.reader = reader
        self._accept = accept
        self._wall = wall
        self.mutes = ledger.mutes()
        self.acks = ledger.acknowledgements()
        self._next_check = 0.0
        self._next_prune = 0.0
        self._due: Optional[float] = None  # the next re-announcement
        self._reading = False
        self.configure(config)

    def configure(self, config: Config):
        self.allowed = who_may_answer(config.responders, config.mention)
        self.mute_for = config.mute
        self.reannounce, self.times = config.reannounce, config.reannounce_times
        self._next_check = 0.0

    # -- what we send --------------------------------------------------------

    def accepting(self, notification: Notification) -> Notification:
        """Note a message that can be answered; give it its answer's line."""
        if not notification.key or notification.severity not in ANSWERABLE:
            return notification
        self.ledger.note(notification, notification.body.split("\n", 1)[0])
        line = self._line(notification.key)
        return notification.with_line(line) if line else notification

    def _line(self, key: str) -> str:
        answer = self.acks.get(key)
        if answer is not None:
            return ack_line(*answer)
        for mute in list(self.mutes.active.values()) + list(self.mutes.ended.values()):
            if mute.key == key:
                return mute.line()
        return ""

    def commit(self):
        """The noted messages and the mutes' counts, on disk."""
        self.ledger.commit(self.mutes)

    # -- the loop's view -------------------------------------------------------

    def start(self):
        """Start reading the room (the plugin that sends does)."""
        if self.reader is not None and not self._reading:
            self._reading = True
            self.reader.start()

    def fds(self):
        return [self.reader.fd()] if self._reading else []

    def next_due(self) -> float:
        times = [self._next_check]
        for when in (self.mutes.next_end(), self._due):
            if when is not None:
                times.append(when)
        return min(times)

    def step(self, now: float, ready=()):
        if self._reading and self.reader.fd() in ready:
            for _room, event in self.reader.take():
                self._on_event(event, now)
        if now >= self.next_due():
            self._check(now)

    def close(self):
        if self._reading:
            self.reader.stop()
        self.commit()
        self.ledger.close()

    # -- reactions -------------------------------------------------------------

    def _on_event(self, event: dict, now: float):
        redacted = parse_redaction(event)
        if redacted is not None:
            mute = self.mutes.by_reaction(redacted)
            if mute is not None:
                self.mutes.end(mute.id, now)
                log.info("mute %d (%s) ended: its 🔕 was removed", mute.id, mute.label)
                self._edit(mute.key, now)
            return
        reaction = parse_reaction(event)
        if reaction is None or self.ledger.seen(reaction.event_id):
            return
        message = self.ledger.message(reaction.target)
        action, why = decide(reaction, message, self.allowed)
        self.ledger.remember(reaction, action)
        if not action:
            if message is not None and action_of(reaction.key):
                log.warning("reaction %s by %s on %s ignored: %s", reaction.key, reaction.sender, message.key, why)
            return
        when = reaction.at or now
        self.ledger.answered(message.key, action, reaction.sender, when)
        if action == ACK:
            self.acks.setdefault(message.key, (reaction.sender, when))
            log.info("%s acknowledged by %s", message.key, reaction.sender)
        else:
            self._mute(reaction, message, when)
        self.commit()
        self._edit(message.key, now)
        self._due = None
        self._next_check = min(self._next_check, now)  # the schedule changed

    def _mute(self, reaction: Reaction, message, when: float):
        mute = Mute(id=self.ledger.new_mute_id(), shape=message.shape, node=message.shape.split("\x1f", 1)[0],
                    label=message.label, severity=message.severity, by=reaction.sender, since=when,
                    until=when + self.mute_for, key=message.key, reaction=reaction.event_id)
        self.mutes.add(mute)
        log.info("mute %d: %s muted by %s until %s", mute.id, mute.label, mute.by, clock_text(mute.until))

    def _edit(self, key: str, now: float):
        """A new version of the message with its answer's line (accepting()
        adds it): sent as an edit, which notifies nobody."""
        content = self.ledger.content(key)
        message = self.ledger.kind_of(key)
        if content is None or message is None:
            return
        kind, severity, shape = message
        self._accept(Notification(
            body=content.get("body", ""), html=content.get("formatted_body", ""), fields={}, timestamp=now,
            priority=1, kind=kind, severity=severity, key=key, shape=shape,
            mentions=tuple((content.get("m.mentions") or {}).get("user_ids", ()))))

    # -- time ------------------------------------------------------------------

    def _check(self, now: float):
        self._next_check = now + CHECK_INTERVAL
        for mute in self.mutes.expire(now):
            log.info("mute %d (%s) is over: %d held back", mute.id, mute.label, mute.count)
        for mute_id in self.ledger.ended_elsewhere(m.id for m in self.mutes.active.values()):
            mute = self.mutes.end(mute_id, now)
            if mute is not None:
                log.info("mute %d (%s) ended from the shell", mute.id, mute.label)
                self._edit(mute.key, now)
        self._reannounce(now)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL
            self.ledger.prune()
        self.commit()

    def _reannounce(self, now: float):
        """Criticals nobody answered within ``reannounce``: once more, as a
        reply to the first message, mentioning the people again."""
        self._due = None
        for key, event_id, room, due, times in self.ledger.unanswered(self.reannounce, self.times):
            if due > now:
                self._due = due if self._due is None else min(self._due, due)
                continue
            self.ledger.reannounced(key)
            content = self.ledger.content(key)
            message = self.ledger.kind_of(key)
            if content is None or message is None:
                continue
            again = "🔔 not acknowledged yet (%s, %d of %d): react ✅ to acknowledge, 🔕 to mute" % (
                clock_text(now), times + 1, self.times)
            mentions = tuple((content.get("m.mentions") or {}).get("user_ids", ()))
            body, formatted = content.get("body", ""), content.get("formatted_body", "")
            note = Notification(body=again + "\n" + body, html="%s<br>\n%s" % (html.escape(again), formatted), fields={},
                                timestamp=now, priority=1, kind=message[0], severity=message[1],
                                key="%s|again|%d" % (key, times + 1), shape=message[2], mentions=mentions,
                                room=room, reply_to=event_id)
            self.ledger.note(note, note.body.split("\n", 1)[0], original=key)
            log.info("%s not acknowledged: announced again (%d of %d)", key, times + 1, self.times)
            self._accept(note)
