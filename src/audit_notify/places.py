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
    buckets, floating = _matcher(table)
    cut = path.find("/", 1)
    found = buckets.get(path[:cut] if cut > 0 else path, floating).match(path)
    return table[int(found.lastgroup[1:])][1] if found else None


# id(table) -> (table, its patterns as regular expressions by the first
# directory of the paths they can match, and one for any other path): a
# written path is looked up in several tables for every event that writes
# (fifty fnmatch calls), in one regex match each instead, of the few
# patterns that could match it.
_MATCHERS: Dict[int, Tuple[tuple, Dict[str, "re.Pattern[str]"], "re.Pattern[str]"]] = {}


def _matcher(table: Tuple[Tuple[str, str], ...]) -> Tuple[Dict[str, "re.Pattern[str]"], "re.Pattern[str]"]:
    """Each pattern of ``table`` an alternative of its own, in order (the
    first that matches the whole path wins, as the table is read), named
    by its place in the table; one expression per first directory ("/etc")
    of the patterns that begin with it, the patterns that begin with a
    glob in all of them and in the one for other paths."""
    entry = _MATCHERS.get(id(table))
    if entry is None or entry[0] is not table:
        alternatives = []  # (first directory or "" for any, the alternative)
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
            alternatives.append((head if head.startswith("/") else "", "(?P<p%d>%s)" % (i, body)))

        def joined(head: str) -> "re.Pattern[str]":
            chosen = [body for first, body in alternatives if first in ("", head)]
            return re.compile("|".join(chosen) or "(?!)")
        buckets = {head: joined(head) for head, _ in alternatives if head}
        if len(_MATCHERS) >= 64:  # (the tables are constants: a few)
            _MATCHERS.clear()
        entry = _MATCHERS[id(table)] = (table, buckets, joined(""))
    return entry[1], entry[2]
