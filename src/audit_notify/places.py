"""Places: which class of a table of path patterns a path falls under.

Severity's tables (severity.py: CRITICAL_PLACES, WARNING_PLACES...) say,
pattern by pattern and in order, what a path is: "/etc/sudoers.d/" is
sudoers, "*/.ssh/id_*" a private key.  Every event that writes a file is
looked up in several of them; matched pattern by pattern with fnmatch that
was fifty calls a path.  Here each table is one regular expression per
first directory, of the patterns that can match a path in it.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Dict, Optional, Tuple


def place(path: str, table: Tuple[Tuple[str, str], ...]) -> Optional[str]:
    """The class of the first pattern in ``table`` that ``path`` falls
    under: a glob (fnmatch's, "*" crossing "/"), a directory ("/etc/": the
    directory and all under it), or the path itself."""
    matcher = _matcher(table)
    cut = path.find("/", 1)
    head = path[:cut] if cut > 0 else path
    if head not in matcher.heads:
        head = ""
    expression = matcher.compiled.get(head) or matcher.compile(head)
    found = expression.match(path)
    return table[int(found.lastgroup[1:])][1] if found else None


class _Matcher:
    """A table's patterns as regular expressions, one per first directory
    ("/etc") of the patterns that begin with it, with the patterns that
    begin with a glob; and one of the latter alone for other paths.  Each
    pattern is an alternative of its own, in the table's order (the first
    that matches the whole path wins, as the table is read), named by its
    place in the table.  Each expression is made when first asked for (a
    host's paths ask for a few)."""

    def __init__(self, table: Tuple[Tuple[str, str], ...]):
        self.table = table
        self.alternatives = []  # (first directory, or "" for any, the alternative)
        for i, (pattern, _) in enumerate(table):
            if pattern.endswith("/"):
                body = "%s|%s\\Z" % (fnmatch.translate(pattern + "*"), re.escape(pattern[:-1]))
            else:
                body = fnmatch.translate(pattern)
            literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
            cut = literal.find("/", 1)
            # A pattern without a glob before its first directory's end can
            # only match paths in that directory ("/etc/" matches "/etc" too).
            head = literal[:cut] if cut > 0 else literal.rstrip("/") if literal == pattern else ""
            self.alternatives.append((head if head.startswith("/") else "", "(?P<p%d>%s)" % (i, body)))
        self.heads = frozenset(head for head, _ in self.alternatives if head)
        self.compiled: Dict[str, "re.Pattern[str]"] = {}

    def compile(self, head: str) -> "re.Pattern[str]":
        chosen = [body for first, body in self.alternatives if first in ("", head)]
        expression = self.compiled[head] = re.compile("|".join(chosen) or "(?!)")
        return expression


# id(table) -> its _Matcher: a written path is looked up in several tables
# for every event that writes (fifty fnmatch calls), in one regex match
# each instead, of the few patterns that could match it.
_MATCHERS: Dict[int, _Matcher] = {}


def _matcher(table: Tuple[Tuple[str, str], ...]) -> _Matcher:
    matcher = _MATCHERS.get(id(table))
    if matcher is None or matcher.table is not table:
        if len(_MATCHERS) >= 64:  # (the tables are constants: a few)
            _MATCHERS.clear()
        matcher = _MATCHERS[id(table)] = _Matcher(table)
    return matcher
