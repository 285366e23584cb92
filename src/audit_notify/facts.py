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

_PREFIX = re.compile(r"(?:node=\S* )?type=\S+ msg=audit\([^)]*\): ")
# Fields the kernel writes as hex when they hold a space, a quote or a
# byte outside printable ASCII (audit_log_n_untrustedstring).
_MAYBE_HEX = frozenset(("comm", "exe", "acct", "cmd", "cwd", "name", "proctitle", "unit", "grp"))
_HEX = re.compile(r"(?:[0-9A-F]{2})+")
# What grouping and severity read; the first record that has one wins, the
# SYSCALL record first.
WANTED = frozenset((
    "arch", "pid", "ppid", "ses", "auid", "uid", "euid", "gid", "tty", "comm", "exe", "syscall", "success", "exit",
    "items", "a0", "a1", "a2", "a3", "key", "op", "acct", "id", "hostname", "addr", "terminal", "res", "cmd",
    "cwd", "unit", "old-ses", "old-auid", "audit_enabled", "old", "list", "grp", "sig", "prom", "dev",
    "apparmor", "seresult", "name", "operation", "proctitle",
))
UNSET = frozenset(("4294967295", "-1", "(none)", "?", "(null)", ""))


def _value(name: str, raw: str) -> str:
    if raw[:1] == '"':
        return raw[1:-1]
    if name in _MAYBE_HEX and _HEX.fullmatch(raw):
        return bytes.fromhex(raw).decode("utf-8", "surrogateescape")
    return raw


# shadow-utils and PAM log op= unquoted, spaces and all ("op=adding user
# to group acct=..."): it runs to the next name=.
_OP = re.compile(r"(?:^| |')op=(.*?)(?= [a-z][a-z0-9_-]*=|'|$)")


def pairs(text: str) -> List[Tuple[str, str]]:
    """The WANTED name=value pairs of one record's text, values unquoted
    and unhexed (the enrichment after 0x1d is not read)."""
    body = text.split("\x1d", 1)[0]
    prefix = _PREFIX.match(body)
    if prefix:
        body = body[prefix.end():]
    found = [(name, raw[1:-1] if raw[:1] == '"' else _value(name, raw) if name in _MAYBE_HEX else raw)
             for name, raw in _WANTED_PAIR.findall(body)]
    if " op=" in body or "'op=" in body or body.startswith("op="):
        op = _OP.search(body)
        if op:
            found = [("op", op.group(1).strip('"')) if name == "op" else (name, value) for name, value in found]
    return found


_SKIPPED = frozenset(("SOCKADDR", "BPRM_FCAPS", "MMAP", "OBJ_PID", "NETFILTER_PKT", "EOE"))


# A SYSCALL record as the kernel writes it (audit_log_task_info), fields in
# this order, each group named for its field (groupdict() is the values);
# anything else goes the generic way.
_SYSCALL = re.compile(
    r"arch=(?P<arch>\S+) syscall=(?P<syscall>\S+) (?:success=(?P<success>\S+) exit=(?P<exit>\S+) )?"
    r"a0=(?P<a0>\S+) a1=(?P<a1>\S+) a2=(?P<a2>\S+) a3=(?P<a3>\S+) items=(?P<items>\S+) "
    r"ppid=(?P<ppid>\S+) pid=(?P<pid>\S+) auid=(?P<auid>\S+) "
    r"uid=(?P<uid>\S+) gid=(?P<gid>\S+) euid=(?P<euid>\S+) suid=\S+ fsuid=\S+ egid=\S+ sgid=\S+ fsgid=\S+ "
    r"tty=(?P<tty>\S+) ses=(?P<ses>\S+) comm=(?P<comm>\"[^\"]*\"|\S+) exe=(?P<exe>\"[^\"]*\"|\S+)(?: subj=\S+)? "
    r"key=(?P<key>\"[^\"]*\"|\S+)")
_PATH = re.compile(r"(?: |')name=(\"[^\"]*\"|[^ '\x1d]*)")
_NAMETYPE = re.compile(r" nametype=([^ '\x1d]*)")  # the first after the name (one lazy .*? cost as much as the rest)
_CWD = re.compile(r"(?: |')cwd=(\"[^\"]*\"|[^ '\x1d]*)")
_PROCTITLE = re.compile(r"proctitle=(\"[^\"]*\"|[^ \x1d]*)")


# A WANTED name=value pair of a record, including those inside msg='...' of
# user-space records; values quoted, or running to a space or quote.  Only
# these names: the regex engine skips the rest of a record in C, not pair by
# pair in Python (longest names first, so that none stops at a prefix).
_WANTED_PAIR = re.compile(r"(?:^| |')(" + "|".join(re.escape(name) for name in sorted(WANTED, key=len, reverse=True))
                          + r")=(\"[^\"]*\"|[^ '\x1d]*)")


def kernel_layout(text: str) -> Optional[re.Match]:
    """A SYSCALL record's values, each in the group of its name, if the
    record is in the kernel's own layout (None otherwise: read pair by
    pair).  The enrichment after 0x1d is not read."""
    cut = text.find("\x1d")
    return _SYSCALL.search(text, 0, cut if cut >= 0 else len(text))


class Facts:
    """What grouping and severity read of one event.

    ``get(name)`` is a raw field of the event (SYSCALL record first, then
    the others in order; ``proctitle`` is not read after an EXECVE record
    gave the command line); ``paths`` the PATH records' (name, nametype),
    relative names joined to the CWD; ``command`` the EXECVE records' text,
    the same for the same command line; ``unset(name)`` whether an id
    field is absent or the kernel's "unset".
    """

    __slots__ = ("values", "paths", "command", "words", "_written")

    def __init__(self, values: Dict[str, str], paths: Tuple[Tuple[str, str], ...] = (), command: str = ""):
        self.values = values
        self.paths = paths
        self.command = command
        self.words: Optional[List[str]] = None  # the argv, once programs.command_words has read it
        self._written: Optional[List[str]] = None  # written_paths(), once asked

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
        self.words = self._written = None

    def written_paths(self) -> List[str]:
        """Names the event created, changed or deleted (not the parent
        directories it only looked through).  Severity and grouping ask
        three times an event: the same list each time, not to be changed."""
        if self._written is None:
            self._written = [name for name, nametype in self.paths if nametype != "PARENT"]
        return self._written


def facts_from(records: Iterable[Tuple[str, str]], syscall: Optional[str] = None,
               layout: Optional[re.Match] = None) -> Facts:
    """Facts of an event from its (type, raw text) records; ``syscall`` is
    the syscall's name where auparse has interpreted it already, ``layout``
    kernel_layout() of the first SYSCALL record where the caller has it."""
    values: Dict[str, str] = {}
    paths: List[Tuple[str, str]] = []
    command: List[str] = []
    cwd, relative = "", False
    records = list(records)
    if records and records[0][0] != "SYSCALL":  # the SYSCALL record first: its values win
        records.sort(key=lambda record: record[0] != "SYSCALL")
    for rtype, text in records:
        if rtype == "EXECVE":  # its text up to the enrichment, after the prefix
            cut = text.find("\x1d")
            if cut < 0:
                cut = len(text)
            prefix = _PREFIX.match(text, 0, cut)
            command.append(text[prefix.end() if prefix else 0:cut])
            continue
        if rtype in _SKIPPED:
            continue
        if rtype == "PATH":
            item = _PATH.search(text)
            if item:
                nametype = _NAMETYPE.search(text, item.end())
                name = _value("name", item.group(1))
                paths.append((name, nametype.group(1) if nametype else ""))
                relative = relative or not name.startswith("/")
            continue
        if rtype == "CWD":
            found = _CWD.search(text)
            cwd = _value("cwd", found.group(1)) if found else ""
            continue
        if rtype == "SYSCALL" and not values:
            fast = layout if layout is not None else kernel_layout(text)
            if fast:  # the kernel's fixed layout: one regex, no pair by pair
                values = fast.groupdict()
                for name in ("comm", "exe", "key"):  # the ones quoted, or hex when odd
                    raw = values[name]
                    values[name] = raw[1:-1] if raw[:1] == '"' else _value(name, raw)
                if values["success"] is None:
                    del values["success"], values["exit"]
                continue
        if rtype == "PROCTITLE":  # the command line where there is no EXECVE (programs.argv_of)
            title = _PROCTITLE.search(text) if not command else None
            if title and "proctitle" not in values:
                values["proctitle"] = _value("proctitle", title.group(1))
            continue
        for name, value in pairs(text):
            if name not in values or (name == "key" and values[name] in ("(null)", "(none)")):
                values[name] = value  # (a rule change's key is in its CONFIG_CHANGE, the SYSCALL's is null)
    if syscall:
        values["syscall"] = syscall
    if cwd and relative:
        paths = [(name if name.startswith("/") else cwd.rstrip("/") + "/" + name, nametype)
                 for name, nametype in paths]
    return Facts(values, tuple(paths), " ".join(command))
