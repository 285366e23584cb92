"""Names: a user id as auparse interprets it, from a record's own text.

A routine summary says who ran what ("ls run by alice"), and the name was
the one field of a counted event that made the plugin read the event
again, whole, with a parser of its own (events.py): a flood of ordinary
commands was read twice.  The name is one of two things, as auparse
(interpret.c, auparse_do_interpretation) gives it:

* in an ENRICHED record, what auditd wrote after the 0x1d separator
  (``AUID="alice"``), the names of the host that recorded it;
* otherwise this host's: ``print_uid``, that is "unset" for -1, "root"
  for 0, the passwd name, or "unknown(N)" (N as a C int).

Only the plain cases are answered here; anything else (a value auparse
would unescape, a name it would cut at 63 bytes, an enrichment it would
look up again) is None, and the caller reads the event whole as before.
The passwd lookups are kept in a small cache, dropped when it fills or
when /etc/passwd changes (looked at once a second): a lookup through NSS
costs 30-200 us, the same for every event of a flood.
"""

from __future__ import annotations

import os
import pwd
import re
import time
from typing import Callable, Dict, Optional, Tuple

# An enriched value auparse returns as it stands but for its quotes.
_PLAIN = re.compile(r'"([A-Za-z0-9_.@$()+-]*)"(?: |$)')
MAX_NAMES = 256
PASSWD = "/etc/passwd"
CHECK_EVERY = 1.0  # seconds between looks at whether /etc/passwd changed


class UserNames:
    """uid -> the name auparse's lookup gives it, looked up once."""

    def __init__(self, passwd: str = PASSWD, limit: int = MAX_NAMES, clock: Callable[[], float] = time.monotonic,
                 look_up: Optional[Callable[[int], Optional[str]]] = None):
        self.passwd = passwd
        self.limit = limit
        self.clock = clock
        self.look_up = look_up or _look_up
        self._names: Dict[int, Optional[str]] = {}
        self._version: Optional[Tuple[int, int, int]] = None
        self._checked = float("-inf")

    def name(self, uid: int) -> Optional[str]:
        """"root", the passwd name or "unknown(N)"; None for a name that
        auparse would cut (longer than 63 bytes)."""
        if uid == 0:
            return "root"
        now = self.clock()
        if now >= self._checked + CHECK_EVERY:  # (a stat per event costs more than the rest)
            self._checked = now
            try:
                info = os.stat(self.passwd)
                version: Optional[Tuple[int, int, int]] = (info.st_mtime_ns, info.st_ino, info.st_size)
            except OSError:
                version = None
            if version != self._version:
                self._names.clear()
                self._version = version
        names = self._names
        if uid not in names:
            if len(names) >= self.limit:
                names.clear()
            names[uid] = self.look_up(uid)
        return names[uid]


def _look_up(uid: int) -> Optional[str]:
    """auparse's print_uid for a uid other than 0 and -1."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return "unknown(%d)" % (uid - (1 << 32) if uid >= 1 << 31 else uid)
    return name if len(name.encode("utf-8", "surrogateescape")) < 64 else None


USER_NAMES = UserNames()


def user_field(lines: str, name: str, raw: str, names: Optional[UserNames] = None) -> Optional[str]:
    """The interpreted value of the user id field ``name`` whose raw value
    in the first of ``lines`` (an event's, a record a line) is ``raw`` (the
    record's first such field), or None where only auparse can tell."""
    end = lines.find("\n")
    if end < 0:
        end = len(lines)
    cut = lines.find("\x1d", 0, end)
    if cut >= 0:
        label = name.upper()
        at = lines.find(" %s=" % label, cut, end)
        if at < 0 and lines.startswith("%s=" % label, cut + 1):
            at = cut
        if at >= 0:
            value = _PLAIN.match(lines, at + len(name) + 2, end)
            if value is None or value.group(1).startswith("unknown-"):
                return None
            return value.group(1)
    if not raw.isdigit() or len(raw) > 10 or int(raw) >= 1 << 32:
        return None
    uid = int(raw)
    return "unset" if uid == (1 << 32) - 1 else (names or USER_NAMES).name(uid)
