"""What a message is: our words, untrusted values, and the Matrix event.

Every value that came from an audit record is a ``V`` inside a ``Line``:
cleaned for the plain body a lock screen shows, escaped and put in
``<code>`` for the HTML a client renders.  Nothing else in the plugin
builds message text by hand.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Dict, List, Sequence, Tuple


# Synapse rejects events over 65,536 bytes; after Megolm encryption and JSON
# framing the largest plain ASCII message that got through was 48,336 bytes
# (measured, MATRIX-TESTING.md).  body and formatted_body travel together.
MAX_BODY_BYTES = 16000
MAX_HTML_BYTES = 28000
# One untrusted value never takes more than this many characters: in the
# headline (a lock screen shows ~2 lines), in a detail line, in a command.
HEADLINE_VALUE_CHARS = 80
MAX_VALUE_CHARS = 500
MAX_COMMAND_CHARS = 2000
# Characters that must never reach a reader raw: C0/C1 controls, format
# characters (bidi overrides such as U+202E, zero-width joiners), line and
# paragraph separators, surrogates.  They are shown as visible escapes.
_INVISIBLE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def _show(char: str) -> str:
    if char == "\\":
        return "\\\\"  # so that an escape below is never confused with text that looks like one
    if char == "@":
        return "\uff20"
    if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        if "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8 (kept by surrogateescape)
            return "\\x%02x" % (ord(char) - 0xDC00)
        return _escape_char(char)
    return char


def clean(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Make untrusted audit text safe to show as plain text.

    Invisible and control characters become visible escapes, a byte that
    is not UTF-8 becomes ``\\xNN`` and a literal backslash ``\\\\`` (so the
    two never look alike), ``@`` becomes a full-width ``＠`` so that
    neither ``@room`` nor ``@user:server`` can mention anyone, and the
    length is capped.
    """
    result = text[:limit]
    if not result.isprintable() or "@" in result or "\\" in result:  # else nothing to do: fast
        result = "".join(_show(c) for c in result)
    if len(text) > limit:
        result += "… (%d more characters)" % (len(text) - limit)
    return result


# A value that reads as one word on a lock screen; any other is put in
# quotes, so that a user name "root from 1.2.3.4" cannot pass for a second
# address (the HTML twin has every value in <code>).
_PLAIN = re.compile(r"[\w./:@＠+%,=~\[\]\\-]+")
_OPEN, _CLOSE = "\u201c", "\u201d"


def delimit(shown: str) -> str:
    """A cleaned value as it stands in a plain body."""
    if _PLAIN.fullmatch(shown) and not shown.startswith("-"):
        return shown
    return _OPEN + shown.replace(_OPEN, "\\u201c").replace(_CLOSE, "\\u201d") + _CLOSE


class V(str):
    """An untrusted value (anything that came from the audit record) inside
    a Line: cleaned for the plain body, escaped and put in <code> in HTML,
    so that no tag, link, Markdown or linkified URL of an attacker's can
    come alive.  Everything that is not a V is our own words."""


@dataclass(frozen=True)
class Line:
    """A line of a notification: our words and untrusted values (V), each
    value cut to ``limit`` characters."""

    parts: Tuple[str, ...]
    limit: int = MAX_VALUE_CHARS

    def text(self) -> str:
        return "".join(delimit(clean(p, self.limit)) if isinstance(p, V) else p for p in self.parts)

    def html(self) -> str:
        return "".join("<code>%s</code>" % html.escape(clean(p, self.limit)) if isinstance(p, V) else html.escape(p)
                       for p in self.parts)

    def __add__(self, parts: Tuple[str, ...]) -> "Line":
        return replace(self, parts=self.parts + tuple(parts))


def L(*parts: str) -> Line:  # noqa: N802 - reads like a template
    return Line(tuple(parts), HEADLINE_VALUE_CHARS)


@dataclass(frozen=True)
class Notification:
    """One message for the room, ready for delivery.  With a ``key``, a
    later notification with the same key replaces it: in the spool if it
    has not been sent yet, else as an edit of the sent message."""

    body: str
    html: str
    fields: Dict[str, str]
    timestamp: float
    priority: int = 0    # 1 for what matters: kept first when the spool is full; 2 also goes out
    #                      first, with the critical, even as auditd stops the plugin (auditd's own stop)
    kind: str = "event"  # incident, repeat, routine, or notice: the plugin's own words about itself
    severity: str = ""   # critical, warning, info
    key: str = ""        # for edits
    serials: Tuple[str, ...] = ()  # the events it folds
    mentions: Tuple[str, ...] = ()  # Matrix ids to notify loudly (from the config, never audit text)
    room: str = ""       # another room than the configured one (critical_room...)

    def content(self) -> dict:
        """The Matrix event content: a plain-text body, its HTML twin, and
        m.mentions naming exactly the configured people (or nobody), so that
        no text in the message can ping anyone."""
        return {
            "msgtype": "m.text",
            "body": self.body,
            "format": "org.matrix.custom.html",
            "formatted_body": self.html,
            "m.mentions": {"user_ids": list(self.mentions)} if self.mentions else {},
        }


def fit(lines: List[str], limit: int, joiner: str) -> str:
    """Join lines, dropping whole detail lines from the end until the text
    fits the homeserver's size limit (HTML is never cut inside a tag)."""
    text = joiner.join(lines)
    while len(text.encode("utf-8")) > limit and len(lines) > 1:
        lines = lines[:-1]
        text = joiner.join(lines + ["(details cut to fit Matrix's size limit)"])
    if len(text.encode("utf-8")) > limit:
        text = text.encode("utf-8")[:limit].decode("utf-8", "ignore")
    return text


def span(seconds: float) -> str:
    """A length of time as a person reads it on a phone: seconds, minutes
    or hours, whichever keeps the number short."""
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min" % (seconds // 60)
    return "%.1f h" % (seconds / 3600)


def mention_line(mentions: Sequence[str]) -> Tuple[str, str]:
    """The line that names the configured people (plain, HTML with pills):
    their ids come from the config, never from audit text."""
    pills = ", ".join('<a href="https://matrix.to/#/%s">%s</a>' % (html.escape(m, True), html.escape(m))
                      for m in mentions)
    return "for " + ", ".join(mentions), "for " + pills


def notice(text: str, timestamp: float, **fields: str) -> Notification:
    """A message of the plugin's own about itself (no audit text in it)."""
    return Notification(body="⚠️ " + text, html="⚠️ <b>%s</b>" % html.escape(text), fields=dict(fields),
                        timestamp=timestamp, priority=1, kind="notice", severity="warning")
