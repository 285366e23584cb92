"""The answers' memory: in the spool's sqlite database, beside the spool.

What we sent that can be answered (its key, kind, severity, shape and
newest content), who answered what, the mutes, the reactions already
read, and how often each critical was announced again.  The spool's
``sent`` table says which event id each key has in the room.  Every
change is committed at once: an answer survives SIGKILL and restarts.
``audit-notify mutes`` and ``--status`` read and clear the mutes here
while the plugin runs (WAL: readers never block the writer).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Dict, Iterable, List, Optional, Tuple

from .answers import LABEL_CHARS, Message, Mute, Mutes, Reaction
from .message import Notification

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS answerable (   -- our messages that can be answered, by key
    key TEXT PRIMARY KEY, original TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, shape TEXT NOT NULL, node TEXT NOT NULL,
    label TEXT NOT NULL, content TEXT NOT NULL, room TEXT NOT NULL, noted REAL NOT NULL,
    answer TEXT NOT NULL DEFAULT '', answered_by TEXT NOT NULL DEFAULT '', answered_at REAL NOT NULL DEFAULT 0,
    reannounced INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS mutes (
    id INTEGER PRIMARY KEY, shape TEXT NOT NULL, node TEXT NOT NULL, label TEXT NOT NULL, severity TEXT NOT NULL,
    by TEXT NOT NULL, since REAL NOT NULL, until REAL NOT NULL, key TEXT NOT NULL, reaction TEXT NOT NULL,
    count INTEGER NOT NULL, ended REAL NOT NULL, told INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reactions (    -- reactions read, so that none is applied twice
    event_id TEXT PRIMARY KEY, target TEXT NOT NULL, sender TEXT NOT NULL, action TEXT NOT NULL, at REAL NOT NULL);
"""
# What is forgotten after this long (as the spool forgets event ids).
KEPT = 7 * 86400.0
_MUTE_COLUMNS = "id, shape, node, label, severity, by, since, until, key, reaction, count, ended, told"


class Ledger:
    """See the module docstring.  ``note`` collects the newest version of
    each answerable message in memory; ``commit`` writes them with the
    mutes' changes, in one transaction."""

    def __init__(self, path: str, clock=time.time, readonly: bool = False):
        self.path = path
        self._clock = clock
        if readonly:
            self._db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, isolation_level=None)
        else:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(LEDGER_SCHEMA)
        self._noted: Dict[str, tuple] = {}

    # -- what we sent --------------------------------------------------------

    def note(self, notification: Notification, label: str, original: str = ""):
        """The newest version of a keyed message, before any answer's line;
        ``original``: the message a re-announcement repeats (an answer to
        it answers that one)."""
        if not original:
            earlier = self._noted.get(notification.key)
            original = earlier[1] if earlier else notification.key
        self._noted[notification.key] = (
            notification.key, original, notification.kind, notification.severity, notification.shape,
            notification.fields.get("node", ""), label[:LABEL_CHARS],
            json.dumps(notification.content(), ensure_ascii=False), notification.room, self._clock())

    def commit(self, mutes: Optional[Mutes] = None):
        rows, self._noted = list(self._noted.values()), {}
        changed = mutes.take_changes() if mutes is not None else []
        if not rows and not changed:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO answerable (key, original, kind, severity, shape, node, label, content, room, noted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, "
                "severity = excluded.severity, shape = excluded.shape, node = excluded.node, label = excluded.label, "
                "content = excluded.content, room = excluded.room", rows)
            self._db.executemany("INSERT OR REPLACE INTO mutes (%s) VALUES (%s)" % (_MUTE_COLUMNS, ", ".join("?" * 13)),
                                 [_mute_row(m) for m in changed])

    def message(self, event_id: str) -> Optional[Message]:
        """Our message with this event id in the room, if we know it."""
        row = self._db.execute(
            "SELECT a.original, s.event_id, s.room, a.kind, a.severity, a.shape, a.node, a.label FROM sent s "
            "JOIN answerable a ON a.key = s.key WHERE s.event_id = ?", (event_id,)).fetchone()
        return Message(*row) if row else None

    def content(self, key: str) -> Optional[dict]:
        row = self._db.execute("SELECT content FROM answerable WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def kind_of(self, key: str) -> Optional[Tuple[str, str, str]]:
        """(kind, severity, shape) of a noted message."""
        row = self._db.execute("SELECT kind, severity, shape FROM answerable WHERE key = ?", (key,)).fetchone()
        return tuple(row) if row else None

    def answered(self, key: str, answer: str, who: str, when: float):
        """A message answered (ACK or MUTE): no re-announcement any more;
        the first answer stays."""
        with self._db:
            self._db.execute("UPDATE answerable SET answer = ?, answered_by = ?, answered_at = ? "
                             "WHERE key = ? AND answer = ''", (answer, who, when, key))

    def acknowledgements(self) -> Dict[str, Tuple[str, float]]:
        """key -> (who, when) of the messages acknowledged."""
        rows = self._db.execute("SELECT key, answered_by, answered_at FROM answerable WHERE answer = 'ack'")
        return {key: (who, when) for key, who, when in rows}

    # -- reactions -----------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM reactions WHERE event_id = ?", (event_id,)).fetchone() is not None

    def remember(self, reaction: Reaction, action: str):
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO reactions (event_id, target, sender, action, at) "
                             "VALUES (?, ?, ?, ?, ?)", (reaction.event_id, reaction.target, reaction.sender,
                                                        action, reaction.at))

    # -- mutes ---------------------------------------------------------------

    def mutes(self) -> Mutes:
        """The mutes as the plugin starts: those still active, and those
        ended whose first occurrence after has not been told."""
        mutes = Mutes()
        for row in self._db.execute("SELECT %s FROM mutes WHERE ended = 0 OR told = 0 ORDER BY id" % _MUTE_COLUMNS):
            mute = _mute(row)
            (mutes.ended if mute.ended else mutes.active)[mute.shape] = mute
        return mutes

    def new_mute_id(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM mutes").fetchone()[0]

    def listed(self, everything: bool = False) -> List[Mute]:
        where = "" if everything else "WHERE ended = 0 AND until > %r" % self._clock()
        return [_mute(row) for row in self._db.execute("SELECT %s FROM mutes %s ORDER BY id" % (_MUTE_COLUMNS, where))]

    def ended_elsewhere(self, ids: Iterable[int]) -> List[int]:
        """Which of these active mutes were ended from the shell."""
        ids = list(ids)
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        return [row[0] for row in self._db.execute("SELECT id FROM mutes WHERE ended != 0 AND id IN (%s)" % marks, ids)]

    def clear(self, mute_id: Optional[int] = None) -> int:
        """End one mute (or all) now: audit-notify mutes --clear."""
        now = self._clock()
        with self._db:
            if mute_id is None:
                return self._db.execute("UPDATE mutes SET ended = ? WHERE ended = 0 AND until > ?", (now, now)).rowcount
            return self._db.execute("UPDATE mutes SET ended = ? WHERE ended = 0 AND until > ? AND id = ?",
                                    (now, now, mute_id)).rowcount

    # -- escalation ----------------------------------------------------------

    def unanswered(self, after: float, times: int) -> List[Tuple[str, str, str, float, int]]:
        """Criticals not answered that have a re-announcement to come:
        (key, event id, room, when due, announced again so far)."""
        if after <= 0 or times <= 0:
            return []
        rows = self._db.execute(
            "SELECT a.key, s.event_id, s.room, s.at + (a.reannounced + 1) * ?, a.reannounced FROM answerable a "
            "JOIN sent s ON s.key = a.key WHERE a.severity = 'critical' AND a.answer = '' AND a.original = a.key "
            "AND a.reannounced < ? AND s.at > ?", (after, times, self._clock() - KEPT))
        return [tuple(row) for row in rows]

    def reannounced(self, key: str):
        with self._db:
            self._db.execute("UPDATE answerable SET reannounced = reannounced + 1 WHERE key = ?", (key,))

    def prune(self):
        """Forget what is older than KEPT (and mutes long over)."""
        cut = self._clock() - KEPT
        with self._db:
            self._db.execute("DELETE FROM answerable WHERE noted < ?", (cut,))
            self._db.execute("DELETE FROM reactions WHERE at < ?", (cut,))
            self._db.execute("DELETE FROM mutes WHERE ended != 0 AND ended < ?", (cut,))

    def close(self):
        self._db.close()


def _mute_row(mute: Mute) -> tuple:
    return (mute.id, mute.shape, mute.node, mute.label, mute.severity, mute.by, mute.since, mute.until, mute.key,
            mute.reaction, mute.count, mute.ended, int(mute.told))


def _mute(row: tuple) -> Mute:
    return Mute(*row[:12], told=bool(row[12]))


def ledger_path(spool_dir: str) -> str:
    """The spool's database (spool.spool_path), without importing the spool."""
    return os.path.join(spool_dir, "spool.sqlite3")
