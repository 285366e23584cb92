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
when /etc/passwd changes: a lookup through NSS costs 30-200 us, the same
for every event of a flood.
"""

from __future__ import annotations

import os
import pwd
import re
from typing import Dict, Optional, Tuple

# An enriched value auparse returns as it stands but for its quotes.
_PLAIN = re.compile(r'"([A-Za-z0-9_.@$()+-]*)"(?: |$)')
MAX_NAMES = 256
PASSWD = "/etc/passwd"


class UserNames:
    """uid -> the name auparse's lookup gives it, looked up once."""

    def __init__(self, passwd: str = PASSWD, limit: int = MAX_NAMES):
        self.passwd = passwd
        self.limit = limit
        self._names: Dict[int, Optional[str]] = {}
        self._version: Optional[Tuple[int, int, int]] = None

    def name(self, uid: int) -> Optional[str]:
        """"root", the passwd name or "unknown(N)"; None for a name that
        auparse would cut (longer than 63 bytes)."""
        if uid == 0:
            return "root"
        try:
            info = os.stat(self.passwd)
            version = (info.st_mtime_ns, info.st_ino, info.st_size)
        except OSError:
            version = None
        if version != self._version or len(self._names) >= self.limit:
            self._names.clear()
            self._version = version
        if uid not in self._names:
            self._names[uid] = self._look_up(uid)
        return self._names[uid]

    @staticmethod
    def _look_up(uid: int) -> Optional[str]:
        try:
            name = pwd.getpwuid(uid).pw_name
        except (KeyError, OverflowError):
            return "unknown(%d)" % (uid - (1 << 32) if uid >= 1 << 31 else uid)
        return name if len(name.encode("utf-8", "surrogateescape")) < 64 else None


USER_NAMES = UserNames()


def user_field(line: str, name: str, raw: str, names: UserNames = USER_NAMES) -> Optional[str]:
    """The interpreted value of the user id field ``name`` whose raw value
    in the record ``line`` is ``raw`` (the record's first such field), or
    None where only auparse can tell."""
    cut = line.find("\x1d")
    if cut >= 0:
        at = line.find(" %s=" % name.upper(), cut)
        if at < 0 and line.startswith("%s=" % name.upper(), cut + 1):
            at = cut
        if at >= 0:
            value = _PLAIN.match(line, at + len(name) + 2)
            if value is None or value.group(1).startswith("unknown-"):
                return None
            return value.group(1)
    if not raw.isdigit() or len(raw) > 10 or int(raw) >= 1 << 32:
        return None
    uid = int(raw)
    return "unset" if uid == (1 << 32) - 1 else names.name(uid)
