"""What a message is: our words, untrusted values, and the Matrix event.

Every value that came from an audit record is a ``V`` inside a ``Line``:
shown without the passwords typed in it (masking.py), URL escapes decoded
and long tokens cut (``shown``), then cleaned for the plain body a lock
screen shows, escaped and put in ``<code>`` for the HTML a client renders.
Nothing else in the plugin builds message text by hand.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Dict, List, Sequence, Tuple

from .masking import mask_command


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


# -- how a value is shown: no secret, readable URLs, long tokens cut ---------

# A token longer than this (a key, base64, a hash) is cut in the middle,
# keeping its first and last characters, so that the path, host or port
# after it stays on the screen.
LONG_TOKEN = 48
_CUT_HEAD, _CUT_TAIL = 8, 4

_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*(?:://|%3a%2f%2f)[^\s'\"<>]+")
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _decode_escapes(match) -> str:
    raw = match.group()
    try:
        text = bytes.fromhex(raw.replace("%", "")).decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return text if text.isprintable() else raw  # a control character stays %0A: clean() would show it escaped


def decode_urls(text: str) -> str:
    """URL-encoded text inside URLs decoded for display (``%2F`` -> ``/``,
    ``%20`` -> a space); a control character or bytes that are not UTF-8
    stay encoded.  Text outside URLs is left alone (``printf %20s``)."""
    if "%" not in text:
        return text
    return _URL.sub(lambda m: _ESCAPES.sub(_decode_escapes, m.group()), text)


_LONG_RUN = re.compile(r"[^\s'\"`<>|;(){}\[\]]{%d,}" % (LONG_TOKEN + 1))
_KEY_PREFIX = re.compile(r"([\w.-]*[=:])?(.*)", re.S)
_BLOB = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_PIECES = re.compile(r"[^/=&?:@,;]{%d,}" % (LONG_TOKEN + 1))


def _cut(token: str) -> str:
    return token[:_CUT_HEAD] + "…" + token[-_CUT_TAIL:]


def _is_blob(text: str) -> bool:
    """Base64 (or hex) rather than a path: no leading /, and if it has
    slashes, the mix of cases and digits random text has."""
    if not _BLOB.fullmatch(text) or text.startswith("/"):
        return False
    if "/" not in text:
        return True
    upper, digits = sum(c.isupper() for c in text), sum(c.isdigit() for c in text)
    return upper * 6 >= len(text) and digits * 20 >= len(text)


_RANDOM_RUN = re.compile(r"[A-Za-z0-9+]{25,}")


def _random(text: str) -> bool:
    """Hex with digits and letters, or mixed-case letters with digits: a
    hash or a key, not a word."""
    digits = any(c.isdigit() for c in text)
    if re.fullmatch(r"[0-9A-Fa-f]+", text):
        return digits and any(c.isalpha() for c in text)
    return digits and any(c.isupper() for c in text) and any(c.islower() for c in text)


def _cut_piece(match) -> str:
    """One huge component of a path or URL: its hash cut if it has one
    (``lucene-387e9e52…4745-write.lock``), else its middle."""
    piece = _RANDOM_RUN.sub(lambda m: _cut(m.group()) if _random(m.group()) else m.group(), match.group())
    return piece if len(piece) <= LONG_TOKEN else piece[:24] + "…" + piece[-16:]  # a long word: more of it


def _cut_run(match) -> str:
    run = match.group()
    prefix, rest = _KEY_PREFIX.match(run).groups()
    if len(rest) > LONG_TOKEN and _is_blob(rest):
        return (prefix or "") + _cut(rest)
    return _PIECES.sub(_cut_piece, run)


def cut_long_tokens(text: str) -> str:
    """Every token longer than LONG_TOKEN characters (a key, base64, a
    hash) cut in the middle, ``AAAAC3Nz…Zk9q``; a path or URL only where
    one of its components is that long."""
    if len(text) <= LONG_TOKEN:
        return text
    return _LONG_RUN.sub(_cut_run, text)


# A Line is rendered twice (plain and HTML) and a value recurs in the
# edits of a message: the last few hundred short values are remembered.
_CACHED_CHARS = 4096
# Of a longer value only this much is masked and cut (a Line shows at most
# MAX_COMMAND_CHARS of a value; a 2 MB argv must not hold a message up).
_READ_CHARS = 16 * MAX_COMMAND_CHARS


def shown(text: str) -> str:
    """An audit value as a message shows it: passwords masked (masking.py),
    URL escapes decoded, long tokens cut.  Every V goes through here, in
    the plain body and in the HTML alike (so the two never differ)."""
    return _shown(text) if len(text) <= _CACHED_CHARS else _show_value(text)


@functools.lru_cache(maxsize=256)
def _shown(text: str) -> str:
    return _show_value(text)


def _show_value(text: str) -> str:
    head, tail = text[:_READ_CHARS], text[_READ_CHARS:]
    masked = mask_command(head)
    decoded = decode_urls(masked)
    if decoded != masked:
        masked = mask_command(decoded)  # a user:PW@ that was URL-encoded
    masked = cut_long_tokens(masked)
    # The rest is never shown, only counted by clean(); unless masking took
    # so much of the head that the rest would come into view: then it is
    # only counted here.
    if len(masked) >= MAX_COMMAND_CHARS or not tail:
        return masked + tail
    return masked + "… (%d more characters)" % len(tail)


# -- how a value stands in a line ---------------------------------------------

# A value that reads as one word on a lock screen; any other is put in
# quotes, so that a user name "root from 1.2.3.4" cannot pass for a second
# address (the HTML twin has every value in <code>).
_PLAIN = re.compile(r"[\w./:@＠+%,=~…\[\]\\-]+")  # "…": a long token cut in the middle
_OPEN, _CLOSE = "\u201c", "\u201d"


def delimit(shown: str) -> str:
    """A cleaned value as it stands in a plain body."""
    if _PLAIN.fullmatch(shown) and not shown.startswith("-"):
        return shown
    return _OPEN + shown.replace(_OPEN, "\\u201c").replace(_CLOSE, "\\u201d") + _CLOSE


class V(str):
    """An untrusted value (anything that came from the audit record) inside
    a Line: shown() (no password, long tokens cut), then cleaned for the
    plain body, escaped and put in <code> in HTML, so that no secret, tag,
    link, Markdown or linkified URL of an attacker's can come alive.
    Everything that is not a V is our own words."""


@dataclass(frozen=True)
class Line:
    """A line of a notification: our words and untrusted values (V), each
    value cut to ``limit`` characters."""

    parts: Tuple[str, ...]
    limit: int = MAX_VALUE_CHARS

    def text(self) -> str:
        return "".join(delimit(clean(shown(p), self.limit)) if isinstance(p, V) else p for p in self.parts)

    def html(self) -> str:
        return "".join("<code>%s</code>" % html.escape(clean(shown(p), self.limit)) if isinstance(p, V)
                       else html.escape(p) for p in self.parts)

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
    shape: str = ""      # what a 🔕 on it mutes (answers.mute_shape); "" for what cannot be muted
    reply_to: str = ""   # the event id it answers (a re-announcement replies to the first message)

    def content(self) -> dict:
        """The Matrix event content: a plain-text body, its HTML twin, and
        m.mentions naming exactly the configured people (or nobody), so that
        no text in the message can ping anyone."""
        content = {
            "msgtype": "m.text",
            "body": self.body,
            "format": "org.matrix.custom.html",
            "formatted_body": self.html,
            "m.mentions": {"user_ids": list(self.mentions)} if self.mentions else {},
        }
        if self.reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": self.reply_to}}
        return content

    def with_line(self, text: str) -> "Notification":
        """The same message with one more line of our own words."""
        return replace(self, body=self.body + "\n" + text, html=self.html + "<br>\n" + html.escape(text))


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
