"""Facts: the few raw fields that severity and grouping need, read from
the records' own text.

Every event is classified and grouped, but few are ever formatted: most
are counted as routine.  Reading fields through auparse's bindings costs
a call per field; one regular expression over a record's text costs about
as much as one such call.  So the facts come straight from the text, raw
(uids as numbers, as the kernel wrote them), the same whichever way the
event was read; what a person reads is formatted later from the whole,
interpreted event.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Tuple

# name=value pairs of a record, including those inside msg='...' of
# user-space records; values quoted, or running to a space or quote.
_PAIR = re.compile(r"(?:^| |')([a-z][a-z0-9_-]*)=(\"[^\"]*\"|[^ '\x1d]*)")
_PREFIX = re.compile(r"(?:node=\S* )?type=\S+ msg=audit\([^)]*\): ")
# Fields the kernel writes as hex when they hold a space, a quote or a
# byte outside printable ASCII (audit_log_n_untrustedstring).
_MAYBE_HEX = frozenset(("comm", "exe", "acct", "cmd", "cwd", "name", "proctitle", "unit", "grp"))
_HEX = re.compile(r"(?:[0-9A-F]{2})+")
# What grouping and severity read; the first record that has one wins, the
# SYSCALL record first.
WANTED = frozenset((
    "pid", "ppid", "ses", "auid", "uid", "euid", "gid", "tty", "comm", "exe", "syscall", "success", "exit",
    "items", "a0", "a1", "a2", "a3", "key", "op", "acct", "id", "hostname", "addr", "terminal", "res", "cmd",
    "cwd", "unit", "old-ses", "old-auid", "audit_enabled", "old", "list", "grp", "sig", "prom", "dev",
    "apparmor", "seresult", "name", "operation", "proctitle",
))
UNSET = frozenset(("4294967295", "-1", "(none)", "?", "(null)", ""))


def _value(name: str, raw: str) -> str:
    if raw.startswith('"'):
        return raw[1:-1]
    if name in _MAYBE_HEX and _HEX.fullmatch(raw):
        return bytes.fromhex(raw).decode("utf-8", "surrogateescape")
    return raw


# shadow-utils and PAM log op= unquoted, spaces and all ("op=adding user
# to group acct=..."): it runs to the next name=.
_OP = re.compile(r"(?:^| |')op=(.*?)(?= [a-z][a-z0-9_-]*=|'|$)")


def pairs(text: str) -> List[Tuple[str, str]]:
    """The name=value pairs of one record's text, values unquoted and
    unhexed (the enrichment after 0x1d is not read)."""
    body = text.split("\x1d", 1)[0]
    prefix = _PREFIX.match(body)
    if prefix:
        body = body[prefix.end():]
    found = [(name, _value(name, raw)) for name, raw in _PAIR.findall(body)]
    if " op=" in body or "'op=" in body or body.startswith("op="):
        op = _OP.search(body)
        if op:
            found = [("op", op.group(1).strip('"')) if name == "op" else (name, value) for name, value in found]
    return found


class Facts:
    """What grouping and severity read of one event.

    ``get(name)`` is a raw field of the event (SYSCALL record first, then
    the others in order); ``paths`` the PATH records' (name, nametype),
    relative names joined to the CWD; ``command`` the EXECVE records' text,
    the same for the same command line; ``unset(name)`` whether an id
    field is absent or the kernel's "unset".
    """

    __slots__ = ("values", "paths", "command", "cwd")

    def __init__(self, values: Dict[str, str], paths: Tuple[Tuple[str, str], ...] = (), command: str = "",
                 cwd: str = ""):
        self.values = values
        self.paths = paths
        self.command = command
        self.cwd = cwd

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def unset(self, name: str) -> bool:
        return self.values.get(name, "") in UNSET

    def merge(self, other: "Facts"):
        """Another piece of the same event (see EventReader)."""
        for name, value in other.values.items():
            self.values.setdefault(name, value)
        self.paths += other.paths
        self.command = self.command or other.command
        self.cwd = self.cwd or other.cwd

    def written_paths(self) -> List[str]:
        """Names the event created, changed or deleted (not the parent
        directories it only looked through)."""
        return [name for name, nametype in self.paths if nametype != "PARENT"]


def facts_from(records: Iterable[Tuple[str, str]], syscall: Optional[str] = None) -> Facts:
    """Facts of an event from its (type, raw text) records; ``syscall`` is
    the syscall's name where auparse has interpreted it already."""
    values: Dict[str, str] = {}
    paths: List[Tuple[str, str]] = []
    command: List[str] = []
    cwd = ""
    ordered = sorted(records, key=lambda record: record[0] != "SYSCALL")
    for rtype, text in ordered:
        if rtype == "EXECVE":
            command.append(_PREFIX.sub("", text.split("\x1d", 1)[0]))
            continue
        found = pairs(text)
        if rtype == "PATH":
            item = dict(found)
            if "name" in item:
                paths.append((item["name"], item.get("nametype", "")))
            continue
        if rtype == "CWD":
            cwd = dict(found).get("cwd", "")
            continue
        for name, value in found:
            if name in WANTED and name not in values:
                values[name] = value
    if syscall:
        values["syscall"] = syscall
    if cwd:
        paths = [(name if name.startswith("/") else cwd.rstrip("/") + "/" + name, nametype)
                 for name, nametype in paths]
    return Facts(values, tuple(paths), " ".join(command), cwd)
