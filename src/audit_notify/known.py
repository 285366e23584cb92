"""Known: what a host's people do every day, remembered, so that only the
new is a warning.

Every sudo and every login is a warning the first time; the tenth time the
same person does the same thing from the same place, it is routine.  Like
OSSEC/Wazuh's "first time user executed sudo" rule and Elastic's "new
terms" rules, the plugin remembers, per host, the *shape* of each ordinary
action it has seen (who, which program or kind of action, from where:
``shape_of`` in notify.py's terms) and speaks only of shapes it has not:
"new: opsadm ran sudo …".  Afterwards the same shape is counted into the
routine summary.  Critical is never lowered by what is known: the memory
is asked only about warnings.

The memory is bounded (``MAX_SHAPES``, the least recently seen go first)
and kept in an sqlite3 file in the state directory: a new shape is
committed at once (a SIGKILL loses none), the last-seen times of known
ones at most once a minute and at the end.  A dry run keeps its memory in
memory, learning as it reads, from empty or from a state directory's file
it never writes (``writable=False``).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import sqlite3
from typing import Dict, List, Optional, Tuple

log = logging.getLogger("audit-notify")

MAX_SHAPES = 20000       # per memory, all hosts together
SAVE_EVERY = 60.0        # seconds (of the events' time) between saves of last-seen times
FILE_NAME = "known.sqlite"

# (node, shape) -> [first seen, last seen, times, label]
_Entry = List


class Known:
    """See the module docstring.  ``path`` None: in memory only."""

    def __init__(self, path: Optional[str] = None, writable: bool = True, limit: int = MAX_SHAPES):
        self.path = path
        self.limit = limit
        self._shapes: Dict[Tuple[str, str], _Entry] = {}
        self._db: Optional[sqlite3.Connection] = None
        self._dirty: Dict[Tuple[str, str], _Entry] = {}
        self._saved_at = 0.0
        if path is not None and (writable or os.path.exists(path)):
            self._open(path, writable)

    def _open(self, path: str, writable: bool):
        uri = "file:%s?mode=%s" % (path, "rwc" if writable else "ro")
        if not writable and not os.path.exists(path + "-wal"):
            # A reader of a WAL database creates its -wal and -shm files (a
            # dry run as root would leave them, root's, in the plugin's
            # state directory); with no -wal there is nothing in one to read.
            uri += "&immutable=1"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        if writable:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS known (node TEXT, shape TEXT, label TEXT, first REAL, "
                       "last REAL, times INTEGER, PRIMARY KEY (node, shape))")
        for node, shape, label, first, last, times in db.execute(
                "SELECT node, shape, label, first, last, times FROM known ORDER BY last"):
            self._shapes[(node, shape)] = [first, last, times, label]
        if writable:
            self._db = db
        else:
            db.close()

    def knows(self, node: str, shape: str) -> bool:
        """Whether this shape was seen on this host (nothing remembered)."""
        return (node, shape) in self._shapes

    def seen(self, node: str, shape: str, label: str, when: float) -> bool:
        """Whether this shape was seen on this host before now; it is
        remembered either way."""
        entry = self._shapes.pop((node, shape), None)  # popped and put back: the dict stays in last-seen order
        if entry is not None:
            entry[1] = max(entry[1], when)
            entry[2] += 1
            self._shapes[(node, shape)] = entry
            if self._db is not None:
                self._dirty[(node, shape)] = entry
                if when >= self._saved_at + SAVE_EVERY:
                    self.save(when)
            return True
        entry = self._shapes[(node, shape)] = [when, when, 1, label]
        while len(self._shapes) > self.limit:
            old = next(iter(self._shapes))
            del self._shapes[old]
            self._dirty.pop(old, None)
            self._write("DELETE FROM known WHERE node = ? AND shape = ?", old)
        self._write("INSERT OR REPLACE INTO known VALUES (?, ?, ?, ?, ?, ?)", (node, shape, label, when, when, 1))
        return False

    def _write(self, sql: str, values: tuple):
        if self._db is None:
            return
        try:
            self._db.execute(sql, values)
        except sqlite3.Error as exc:  # a full disk must not stop the plugin: it forgets, and says so
            log.warning("could not save what is known in %s: %s", self.path, exc)

    def save(self, when: float = 0.0):
        """The last-seen times of known shapes, to disk."""
        self._saved_at = when
        if self._db is None or not self._dirty:
            return
        rows = [(entry[1], entry[2], node, shape) for (node, shape), entry in self._dirty.items()]
        self._dirty.clear()
        try:
            with self._db:
                self._db.executemany("UPDATE known SET last = ?, times = ? WHERE node = ? AND shape = ?", rows)
        except sqlite3.Error as exc:
            log.warning("could not save what is known in %s: %s", self.path, exc)

    def entries(self) -> List[Tuple[str, str, float, float, int]]:
        """(node, label, first, last, times), oldest first."""
        return [(node, entry[3], entry[0], entry[1], entry[2]) for (node, _), entry in self._shapes.items()]

    def forget(self, pattern: str = "*") -> int:
        """Forget the shapes whose label (or host) matches a glob; how many."""
        gone = [key for key, entry in self._shapes.items()
                if fnmatch.fnmatchcase(entry[3], pattern) or fnmatch.fnmatchcase(key[0], pattern)]
        for key in gone:
            del self._shapes[key]
            self._dirty.pop(key, None)
            self._write("DELETE FROM known WHERE node = ? AND shape = ?", key)
        return len(gone)

    def close(self):
        if self._db is not None:
            self.save()
            self._db.close()
            self._db = None


def known_path(state_dir: str) -> str:
    return os.path.join(state_dir, FILE_NAME)


# -- the shape of an action ---------------------------------------------------------

def shape_of(incident) -> Optional[Tuple[str, str]]:
    """An action's shape and its label ("sudo by opsadm as root from
    127.0.0.1"), or None for what is never learned (a failed login, the
    watcher's own words).  Who, what and from where; never when, which
    file of a kind, or which pid, so that tomorrow's same work matches."""
    from .phrases import actor  # (phrases is above this module in the tower)
    from .programs import PACKAGE_MANAGERS

    kind = incident.kind
    # What it did beyond being what it is: a known login that was denied
    # /etc/shadow this time is not the login known.
    # Not a rule's key (the rule set refines, never decides alone), nor
    # what a package manager's run writes (its business, whatever it is).
    did = () if incident.capped or kind == "package" else tuple(sorted({
        piece.why for piece in incident.pieces
        if piece.severity != "info" and piece.why not in _PLAIN and not piece.why.startswith("rule ")
        and os.path.basename(piece.event.facts.get("exe")) not in PACKAGE_MANAGERS}))
    session = incident.session
    where = session.addr if session is not None and session.addr not in ("?", "UNKNOWN") else ""
    service = session.service if session is not None else ""
    who = actor(incident)
    facts = incident.facts
    if kind == "failed-login" or incident.failed():
        return None
    if kind == "login":
        parts = (kind, facts.get("service") or service, who, where) + did
        label = "%s login by %s from %s%s" % (parts[1] or "a", who, where or "here", _also(did))
    elif kind in ("sudo", "su"):
        # What kind of elevation: a root shell, a look at one's rights, or a
        # command (which command is the person's business; what it did is in
        # ``did``).
        invocation = facts.get("invocation", "").split()
        how = "shell" if facts.get("interactive") else "list" if not facts.get("cmd") and (
            "-l" in invocation or "--list" in invocation) else "command"
        parts = (kind, who, _target(facts), where, how) + did
        label = "%s by %s as %s from %s%s" % (facts.get("elevator", kind), who, parts[2] or "?", where or "here",
                                              _also(did))
    elif kind == "package":
        program = os.path.basename(facts.get("command", "").split(" ")[0])
        parts = (kind, who, program, where) + did
        label = "%s run by %s from %s%s" % (program, who, where or "here", _also(did))
    elif kind in ("rules", "auditd"):
        parts = (kind, who) + did
        label = "%s by %s%s" % (kind, who, _also(did))
    else:
        anchor = incident.anchor
        command = facts.get("command") or ""
        program = os.path.basename(command.split(" ")[0]) if command else (
            os.path.basename(anchor.facts.get("exe")) if anchor is not None else "")
        parts = ("action", who, program, where) + did
        label = "%s by %s from %s%s" % (program or kind, who, where or "here", _also(did))
    return "\x1f".join(parts), label


def _target(facts) -> str:
    """Whom a sudo or su ran as: PAM's session says, else su's command line
    (su - bob -c id), else root (what both default to)."""
    if facts.get("target"):
        return facts["target"]
    words = facts.get("invocation", "").split()
    if words and os.path.basename(words[0]) in ("su", "runuser"):
        takes = False
        for word in words[1:]:
            if takes:
                takes = False
            elif word in ("-c", "--command", "-s", "--shell", "-g", "--group", "-G"):
                takes = True
            elif not word.startswith("-"):
                return word
    return "root"


# What every action of its kind is (the login's own records, sudo's): no
# part of a shape.
_PLAIN = frozenset(("login", "sudo", "session opened", "authenticated", "credentials", "account checked"))


def _also(did: Tuple[str, ...]) -> str:
    return ": " + ", ".join(did) if did else ""
