"""The spool: accepted notifications on disk until the homeserver has them.

A notification is *accepted* once its batch is committed here; from then
on a SIGKILL, a crash, a reboot or a homeserver down for days only delays
it.  The daemon hands every notification to a *sink*: the Spool when it
runs for real, the Printer for ``--dry-run``.  Both offer the same calls
(``add``, ``commit``, ``depth``, ``enforce_bounds``, ``close``), so the
daemon never asks which one it has.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .config import Config, Error
from .counters import Counters
from .message import Notification

# sqlite3 in WAL mode rather than a Maildir: ordering, per-item refusals,
# updates in place, size and age bounds, the repeat windows and the counters
# all live in one file that changes in one transaction per batch of input
# (one fsync, not one per notification), and --status can read it while the
# plugin writes.
SPOOL_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,          -- wall clock when accepted
    event_time REAL NOT NULL,
    priority INTEGER NOT NULL,      -- 1: what matters: kept first when the spool is full
    attempts INTEGER NOT NULL DEFAULT 0,  -- times the homeserver refused it outright
    content TEXT NOT NULL,          -- the Matrix event content, JSON
    kind TEXT NOT NULL DEFAULT 'event'    -- incident, repeat, routine, or notice (the plugin's own)
);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY, created REAL, buried REAL, reason TEXT, content TEXT);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sent (   -- the first message of each key, for its edits
    key TEXT NOT NULL, room TEXT NOT NULL, event_id TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (key, room));
"""
# Columns added since the first release: a spool an older version left is
# brought up to date when it is opened.
_ADDED_COLUMNS = (
    ("outbox", "kind", "TEXT NOT NULL DEFAULT 'event'"),
    ("outbox", "key", "TEXT NOT NULL DEFAULT ''"),        # a later version with the key replaces it
    ("outbox", "rank", "INTEGER NOT NULL DEFAULT 2"),     # 0 critical, 1 warning, 2 the rest: sent in that order
    ("outbox", "room", "TEXT NOT NULL DEFAULT ''"),       # '' is the configured room
    ("outbox", "version", "INTEGER NOT NULL DEFAULT 0"),  # bumped by each replacement
)
_INDEXES = ("CREATE UNIQUE INDEX IF NOT EXISTS outbox_key ON outbox (key) WHERE key != ''",
            "CREATE INDEX IF NOT EXISTS outbox_order ON outbox (rank, id)")
# Edits of messages sent longer ago than this are sent as new messages
# (the event ids of older ones are forgotten).
SENT_KEPT = 7 * 86400.0
# Notifications accepted but not yet on disk (the disk is full) are kept
# in memory up to this many; past it the least important go, counted.
MAX_UNWRITTEN = 10000
RANKS = {"critical": 0, "warning": 1}
# A notification of this priority ranks with the critical ones (message.py).
URGENT = 2


class SpoolError(Exception):
    """The spool could not be written (disk full, I/O error).  What was
    accepted before is safe; what was not yet written is kept in memory
    and written by the next commit."""


@dataclass(frozen=True)
class Item:
    id: int
    content: dict
    attempts: int
    created: float
    kind: str = "event"
    key: str = ""
    rank: int = 2
    room: str = ""
    version: int = 0


class Spool:
    """A durable queue of notifications: the most severe first, then the
    oldest.

    ``add`` collects notifications in memory and ``commit`` writes them in
    one transaction, with the plugin's state (the daemon commits after each
    burst of input).  If that fails (disk full), they stay in memory and
    the next commit tries again.  A notification with a ``key`` replaces an
    unsent one with the same key, in its place (the newest text of an
    incident is what goes out); once one has been sent, the next is an
    edit (``sent_id``).  ``delivered`` removes an item only once the
    homeserver has confirmed it, and only the version that was sent.  The
    spool is bounded in bytes and age; past a bound it drops the oldest of
    the least important items and returns how many, for the daemon to report.
    """

    def __init__(self, path: str, max_bytes: int, max_age: float, clock=time.time):
        self.path = path
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SPOOL_SCHEMA)
        self._migrate()
        self.bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(content)), 0) FROM outbox").fetchone()[0]
        self._unwritten: Dict[object, tuple] = {}  # key (or a number) -> row, not yet committed
        self._numbered = 0
        self._state: Dict[str, str] = {}   # state not yet committed
        self._gone: Dict[int, int] = {}    # delivered id -> its version, the DELETE not on disk yet
        self._freeing = 0                  # bytes those DELETEs free
        self.lost = 0                      # unwritten notifications dropped past MAX_UNWRITTEN

    def _migrate(self):
        for table, column, declaration in _ADDED_COLUMNS:
            if column not in {row[1] for row in self._db.execute("PRAGMA table_info(%s)" % table)}:
                self._db.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, column, declaration))
        for statement in _INDEXES:
            self._db.execute(statement)

    def configure(self, config: Config):
        """SIGHUP: new size and age bounds."""
        self.max_bytes, self.max_age = config.spool_max_mb << 20, config.spool_max_age_hours * 3600

    def add(self, notification: Notification):
        content = json.dumps(notification.content(), ensure_ascii=False)
        row = (self._clock(), notification.timestamp, notification.priority, content, notification.kind,
               notification.key, 0 if notification.priority >= URGENT else RANKS.get(notification.severity, 2),
               notification.room)
        if notification.key:
            self._unwritten.pop(notification.key, None)  # the newest version only, at the end
            self._unwritten[notification.key] = row
        else:
            self._numbered += 1
            self._unwritten[self._numbered] = row
        if len(self._unwritten) > MAX_UNWRITTEN:
            least = min(self._unwritten, key=lambda k: (self._unwritten[k][2], -self._unwritten[k][6]))
            del self._unwritten[least]
            self.lost += 1

    def unwritten(self) -> int:
        return len(self._unwritten)

    def state(self, name: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return row[0] if row else default

    def commit(self, state: Optional[Dict[str, str]] = None):
        """Write what was added (and ``state``) in one transaction; raise
        SpoolError, keeping it all for the next try, if that fails."""
        self._state.update(state or {})
        if not self._unwritten and not self._state and not self._gone:
            return
        rows = list(self._unwritten.values())
        added = 0
        try:
            with self._transaction():
                for row in rows:
                    added += self._insert(row)
                self._db.executemany("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)",
                                     self._state.items())
        except sqlite3.Error as exc:
            raise SpoolError("cannot write the spool %s: %s" % (self.path, exc)) from None
        self.bytes += added
        self._unwritten, self._state = {}, {}

    def _insert(self, row: tuple) -> int:
        """Add a row, or replace the unsent one with its key (keeping its
        place, its rank if higher, and its creation time); the byte change."""
        key = row[5]
        if key:
            # "key != ''" lets sqlite use the partial index (a scan per add
            # made a flood quadratic).
            old = self._db.execute("SELECT id, LENGTH(content) FROM outbox WHERE key = ? AND key != ''",
                                   (key,)).fetchone()
            if old is not None:
                self._db.execute("UPDATE outbox SET content = ?, event_time = ?, priority = MAX(priority, ?), "
                                 "rank = MIN(rank, ?), room = ?, kind = ?, version = version + 1 WHERE id = ?",
                                 (row[3], row[1], row[2], row[6], row[7], row[4], old[0]))
                return len(row[3]) - old[1]
        self._db.execute("INSERT INTO outbox (created, event_time, priority, content, kind, key, rank, room) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        return len(row[3])

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN ... COMMIT, or ROLLBACK and raise; what was delivered is
        forgotten only once its DELETE is on disk."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._delete_gone()
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self.bytes -= self._freeing
        self._freeing, self._gone = 0, {}

    def peek(self) -> Optional[Item]:
        """The next item to send: the most severe, then the oldest."""
        gone = ",".join(str(i) for i in self._gone) or "0"
        row = self._db.execute("SELECT id, content, attempts, created, kind, key, rank, room, version FROM outbox "
                               "WHERE id NOT IN (%s) ORDER BY rank, id LIMIT 1" % gone).fetchone()
        return Item(row[0], json.loads(row[1]), *row[2:]) if row else None

    def delivered(self, item: Item, event_id: str = "", room: str = ""):
        """The homeserver has it: remove it (unless a newer version has
        replaced it meanwhile: that one is sent as an edit), and remember
        the event id of a keyed first message for the edits to come.  If
        the disk is full, the item is not offered again, and removed at
        the next commit."""
        self._gone[item.id] = item.version
        try:
            with self._transaction():
                if item.key and event_id:  # the first message's id stays: edits replace that one
                    self._db.execute("INSERT OR IGNORE INTO sent (key, room, event_id, at) VALUES (?, ?, ?, ?)",
                                     (item.key, room, event_id, self._clock()))
        except sqlite3.Error as exc:
            raise SpoolError("cannot remove a delivered notification from %s: %s" % (self.path, exc)) from None

    def sent_id(self, key: str, room: str) -> Optional[str]:
        """The event id of the first message sent with ``key`` to ``room``."""
        row = self._db.execute("SELECT event_id FROM sent WHERE key = ? AND room = ?", (key, room)).fetchone()
        return row[0] if row else None

    def _delete_gone(self):
        if self._gone:
            pairs = list(self._gone.items())
            self._freeing = 0
            for item_id, version in pairs:
                row = self._db.execute("SELECT LENGTH(content) FROM outbox WHERE id = ? AND version = ?",
                                       (item_id, version)).fetchone()
                if row is not None:
                    self._freeing += row[0]
                    self._db.execute("DELETE FROM outbox WHERE id = ? AND version = ?", (item_id, version))

    def refused(self, item_id: int) -> int:
        """The homeserver refused the item outright; how many times now."""
        with self._transaction():
            self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (item_id,))
        row = self._db.execute("SELECT attempts FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return row[0] if row else 0

    def bury(self, item: Item, reason: str):
        """Move an item that can never be sent to the dead-letter table."""
        with self._transaction():
            self._db.execute("INSERT INTO dead (id, created, buried, reason, content) "
                             "SELECT id, created, ?, ?, content FROM outbox WHERE id = ?",
                             (self._clock(), reason, item.id))
            self._gone[item.id] = item.version

    def depth(self) -> Tuple[int, Optional[float]]:
        """How many notifications wait, and when the oldest was accepted."""
        count, oldest = self._db.execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
        return count + len(self._unwritten) - len(self._gone), oldest

    def enforce_bounds(self) -> int:
        """Drop what is past the age bound, then the oldest of the least
        important until the size bound holds; forget event ids too old to
        edit; return how many notifications went."""
        with self._transaction():
            now = self._clock()
            dropped = self._db.execute("DELETE FROM outbox WHERE created < ?", (now - self.max_age,)).rowcount
            self._db.execute("DELETE FROM sent WHERE at < ?", (now - SENT_KEPT,))
            if self.bytes > self.max_bytes:
                victims, freed = [], 0
                for item_id, size in self._db.execute("SELECT id, LENGTH(content) FROM outbox "
                                                      "ORDER BY priority, rank DESC, id"):
                    if self.bytes - freed <= self.max_bytes:
                        break
                    victims.append((item_id,))
                    freed += size
                self._db.executemany("DELETE FROM outbox WHERE id = ?", victims)
                dropped += len(victims)
        if dropped:
            self.bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(content)), 0) FROM outbox").fetchone()[0]
        return dropped

    def close(self):
        self._db.close()


def spool_path(config: Config) -> str:
    return os.path.join(config.spool_dir, "spool.sqlite3")


def spool_status(path: str) -> Dict[str, object]:
    """What --status and the doctor show: read-only, so the running plugin
    is not disturbed (WAL readers never block the writer)."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        count, oldest, size = db.execute(
            "SELECT COUNT(*), MIN(created), COALESCE(SUM(LENGTH(content)), 0) FROM outbox").fetchone()
        dead = db.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
        state = dict(db.execute("SELECT name, value FROM state").fetchall())
    finally:
        db.close()
    return {"depth": count, "oldest": oldest, "bytes": size, "dead": dead, "state": state}


class SendingRights:
    """The spool's lock: whoever holds it sends (two matrix-commanders on
    one store lose messages).  A plugin started while an older one still
    holds it (auditd restarted it while the old one finishes a send or
    drains) spools only, and keeps trying, so that it takes over as soon
    as the old one exits."""

    def __init__(self, path: str):
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.held = False

    def take(self) -> bool:
        """Try once, without waiting; the lock stays held until exit."""
        if not self.held:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.held = True
            except BlockingIOError:
                pass
        return self.held


def open_spool(config: Config) -> Tuple[Spool, SendingRights]:
    """Open the spool (directory 0700, files 0600) and its lock."""
    old = os.umask(0o077)
    try:
        os.makedirs(config.spool_dir, mode=0o700, exist_ok=True)
        spool = Spool(spool_path(config), 0, 0)
        spool.configure(config)
        rights = SendingRights(os.path.join(config.spool_dir, "lock"))
    except (OSError, sqlite3.Error) as exc:
        raise Error("cannot open the spool in %s: %s" % (config.spool_dir, exc)) from None
    finally:
        os.umask(old)
    return spool, rights


class Printer:
    """--dry-run: print each notification instead of spooling it.  A
    notification with a key already printed is an edit of that message:
    marked so (with --json: "edit": true)."""

    def __init__(self, stream, as_json: bool, counters: Counters):
        self._stream = stream
        self._json = as_json
        self._counters = counters
        self._keys: set = set()

    def add(self, notification: Notification):
        edit = bool(notification.key) and notification.key in self._keys
        self._keys.add(notification.key)
        self._counters.sent += 1
        if self._json:
            record = {"body": notification.body, "formatted_body": notification.html,
                      "severity": notification.severity, "kind": notification.kind, "key": notification.key,
                      "edit": edit, "serials": list(notification.serials), "fields": notification.fields}
            text = json.dumps(record, ensure_ascii=False)  # bytes that are not UTF-8 as \\udcNN escapes:
            self._stream.write(text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
        else:
            self._stream.write(("✏️ edit: " if edit else "") + notification.body + "\n\n")
        self._stream.flush()

    def commit(self, state: Optional[Dict[str, str]] = None):
        pass

    def configure(self, config: Config):
        pass

    def depth(self) -> Optional[Tuple[int, Optional[float]]]:
        return None  # nothing is spooled

    def enforce_bounds(self) -> int:
        return 0

    def close(self):
        self._stream.flush()
