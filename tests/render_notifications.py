#!/usr/bin/env python3
"""Look at audit-notify's notifications as a person would.

Builds one self-contained HTML page that shows a sample of notifications the
way a Matrix client's timeline does: each ``formatted_body`` is cut down to
the Matrix HTML subset by a small allow-list sanitizer (the spec's tags and
attributes; everything else is removed, its text kept), URLs in plain text
are linkified as clients do (not inside ``<code>``/``<pre>``), and each
message has the sender ``audit-bot`` and a time.  Below each message is its
plain ``body`` as a phone's lock screen shows it: the first two lines,
clamped.

The samples are real: one notification per kind of event found in
tests/data/corpora and tests/data (chosen by headline), digests (a real one
from the Debian 12 sample and a replayed SSH brute force), a very long
command, and hostile ones built here as the programs would log them.

Then headless Chromium (Debian's ``chromium``) screenshots the page at a
phone's 390 px and a desktop's 1280 px:

    python3 tests/render_notifications.py                # tests/screenshots/{phone,desktop}.png + .html
    python3 tests/render_notifications.py --facts        # also print the layout facts the page measured
    python3 tests/render_notifications.py --list-kinds   # which kinds were found where, and what matched none

Standard library only (plus the plugin and the system's auparse bindings).
tests/test_rendering.py imports the helpers.
"""

import argparse
import dataclasses
import glob
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "src"))

from audit_notify.config import Config, Error  # noqa: E402
from audit_notify.counters import Counters  # noqa: E402
from audit_notify.notify import Notifier  # noqa: E402
from audit_notify.events import Event  # noqa: E402
from audit_notify.format import format_event  # noqa: E402
from audit_notify.message import Notification  # noqa: E402
from audit_notify.reader import EventReader, import_auparse  # noqa: E402
from audit_notify.rules import RuleSet, load_rules  # noqa: E402

DATA = os.path.join(HERE, "data")
CORPORA = os.environ.get("AUDIT_NOTIFY_CORPORA", os.path.join(DATA, "corpora"))
SCREENSHOTS = os.path.join(HERE, "screenshots")
BLACKLIST = os.path.join(ROOT, "blacklist.example")
NODE = "web1"  # the host name shown for records that carry no node=

PHONE_WIDTH = 390
DESKTOP_WIDTH = 1280

# ---------------------------------------------------------------------------
# The Matrix HTML subset (client-server spec, m.room.message, "m.text" with
# format org.matrix.custom.html): what a client keeps of formatted_body.
# ---------------------------------------------------------------------------

ALLOWED_TAGS = frozenset((
    "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub",
    "li", "b", "i", "u", "strong", "em", "strike", "code", "hr", "br", "div", "table", "thead", "tbody",
    "tr", "th", "td", "caption", "pre", "span", "img", "details", "summary",
))
ALLOWED_ATTRIBUTES = {
    "font": frozenset(("data-mx-bg-color", "data-mx-color", "color")),
    "span": frozenset(("data-mx-bg-color", "data-mx-color", "data-mx-spoiler", "data-mx-maths")),
    "div": frozenset(("data-mx-maths",)),
    "a": frozenset(("name", "target", "href")),
    "img": frozenset(("width", "height", "alt", "title", "src")),
    "ol": frozenset(("start",)),
    "code": frozenset(("class",)),
}
SAFE_URL_SCHEMES = frozenset(("https", "http", "ftp", "mailto", "magnet"))
VOID_TAGS = frozenset(("br", "hr", "img"))
# Removed with everything inside them (mx-reply: the spec says clients strip
# reply fallbacks; the others are never text a reader should see).
DROP_WITH_CONTENT = frozenset(("script", "style", "mx-reply", "head", "title", "template", "noscript",
                               "iframe", "object", "textarea", "select", "svg", "math"))
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9_+-]+")
_DIGITS = re.compile(r"[0-9]{1,5}")
# What clients turn into links in plain text: URLs, www. hosts, domain names
# with a common TLD, and Matrix ids (@user:server, #room:server).
_LINKABLE = re.compile(
    r"(?:https?://|ftp://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]"
    r"|(?<![\w@.-])[@#][A-Za-z0-9._=/+-]+:[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
    r"|(?<![\w@./-])(?:[A-Za-z0-9-]+\.)+(?:com|org|net|io|dev|app|info|de|uk|fr|nl|eu|me|xyz)\b(?![\w-])")


class MatrixSanitizer(HTMLParser):
    """Allow-list sanitizer: keeps the Matrix subset's tags and attributes,
    removes every other tag but keeps its text (except DROP_WITH_CONTENT),
    escapes all text, balances tags, and linkifies URLs in text outside
    <a>, <code> and <pre>.  ``removed`` counts what it took out."""

    def __init__(self, linkify: bool = True):
        super().__init__(convert_charrefs=True)
        self.linkify = linkify
        self.out: List[str] = []
        self.open: List[str] = []
        self.dropping: Optional[str] = None
        self.drop_depth = 0
        self.removed: Dict[str, int] = {}

    def _removed(self, what: str):
        self.removed[what] = self.removed.get(what, 0) + 1

    def handle_starttag(self, tag, attrs):
        if self.dropping:
            if tag == self.dropping:
                self.drop_depth += 1
            return
        if tag in DROP_WITH_CONTENT:
            self._removed(tag)
            self.dropping, self.drop_depth = tag, 1
            return
        if tag not in ALLOWED_TAGS:
            self._removed(tag)
            return
        if tag == "img" and not any(n == "src" and (v or "").startswith("mxc://") for n, v in attrs):
            self._removed("img")  # clients show only images from the homeserver's media repository
            return
        self.out.append("<%s%s>" % (tag, "".join(' %s="%s"' % (name, html.escape(value, quote=True))
                                                 for name, value in self._attributes(tag, attrs))))
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if self.dropping:
            if tag == self.dropping:
                self.drop_depth -= 1
                if self.drop_depth == 0:
                    self.dropping = None
            return
        if tag in VOID_TAGS or tag not in self.open:
            return
        while self.open:
            name = self.open.pop()
            self.out.append("</%s>" % name)
            if name == tag:
                break

    def handle_data(self, data):
        if self.dropping:
            return
        if not self.linkify or any(t in self.open for t in ("a", "code", "pre")):
            self.out.append(html.escape(data, quote=False))
            return
        at = 0
        for match in _LINKABLE.finditer(data):
            self.out.append(html.escape(data[at:match.start()], quote=False))
            text = match.group(0)
            if text[0] in "@#":
                href = "https://matrix.to/#/" + text
            elif "://" in text:
                href = text
            else:
                href = "http://" + text
            self.out.append('<a href="%s" class="linkified" rel="noreferrer noopener" target="_blank">%s</a>'
                            % (html.escape(href, quote=True), html.escape(text, quote=False)))
            at = match.end()
        self.out.append(html.escape(data[at:], quote=False))

    def handle_comment(self, data):
        self._removed("comment")

    def handle_decl(self, decl):
        self._removed("declaration")

    def handle_pi(self, data):
        self._removed("processing instruction")

    def unknown_decl(self, data):
        self._removed("declaration")

    def _attributes(self, tag: str, attrs) -> List[Tuple[str, str]]:
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset())
        kept: List[Tuple[str, str]] = []
        style = []
        for name, value in attrs:
            value = value or ""
            if name not in allowed:
                self._removed("%s@%s" % (tag, name))
                continue
            if name in ("color", "data-mx-color", "data-mx-bg-color"):
                if not _COLOR.fullmatch(value):
                    self._removed("%s@%s" % (tag, name))
                    continue
                style.append("%s:%s" % ("background-color" if name == "data-mx-bg-color" else "color", value))
            elif name == "href":
                scheme = value.split(":", 1)[0].strip().lower() if ":" in value else ""
                if scheme not in SAFE_URL_SCHEMES:
                    self._removed("a@href")
                    continue
            elif name == "src":
                if not value.startswith("mxc://"):
                    self._removed("img@src")
                    continue
                name = "data-mx-src"  # a client fetches it from its homeserver; this page fetches nothing
            elif name in ("width", "height", "start"):
                if not _DIGITS.fullmatch(value):
                    continue
            elif name == "class":
                value = " ".join(c for c in value.split() if _LANGUAGE_CLASS.fullmatch(c))
                if not value:
                    continue
            elif name == "target":
                continue  # set below for every link
            kept.append((name, value))
        if tag == "a":
            kept += [("rel", "noreferrer noopener"), ("target", "_blank")]
        if style:
            kept.append(("style", ";".join(style)))
        return kept

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join("</%s>" % t for t in reversed(self.open))


def sanitize(fragment: str, linkify: bool = True) -> str:
    """``fragment`` as a Matrix client would render it (see MatrixSanitizer)."""
    parser = MatrixSanitizer(linkify)
    parser.feed(fragment)
    return parser.result()


def tags_in(fragment: str) -> List[str]:
    """The distinct tag names of an HTML fragment, sorted."""
    found = set()

    class _Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.add(tag)

    parser = _Tags()
    parser.feed(fragment)
    parser.close()
    return sorted(found)


def lock_screen_text(body: str, lines: int = 2) -> str:
    """What a collapsed phone notification has to show: the body's first
    ``lines`` lines (the page clamps them to ``lines`` rendered lines)."""
    return "\n".join(body.split("\n")[:lines])


# ---------------------------------------------------------------------------
# Samples: one notification per kind of event in the corpora and tests/data
# ---------------------------------------------------------------------------

# (kind, pattern over the headline without its marker); the first match wins.
KINDS: Tuple[Tuple[str, str], ...] = (
    ("failed SSH login", r"Failed SSH login\b"),
    ("SSH login", r"SSH login\b"),
    ("failed authentication (sudo, su, GDM...)", r"Failed \S+ (login|authentication)\b"),
    ("SSH session opened/closed", r"SSH session (opened|closed)\b"),
    ("SSH logout", r"SSH logout\b"),
    ("login via another service (GDM, console...)", r"\S+ login for\b"),
    ("PAM step (account check, credentials, session)",
     r"\S+ (account check|account error|credentials \w+|session (opened|closed)|authentication|role changed)\b"),
    ("sudo refused", r"sudo refused:"),
    ("sudo", r"sudo:"),
    ("command failed", r"Command failed:"),
    ("command", r"Command:"),
    ("watched file written", r"Watched file (opened for writing|replaced|created|changed)"),
    ("watched file deleted", r"Watched file deleted"),
    ("watched file permissions", r"Watched file (permissions|owner|attributes)"),
    ("user added", r"User added"),
    ("user deleted", r"User deleted"),
    ("user changed", r"User changed"),
    ("group added", r"Group added"),
    ("group deleted", r"Group deleted"),
    ("group changed", r"Group (changed|id changed)"),
    ("password changed", r"Password changed"),
    ("account locked", r"Account (un)?locked"),
    ("SELinux denial", r"SELinux denied"),
    ("SELinux granted", r"SELinux granted"),
    ("SELinux USER_AVC / error", r"SELinux event"),
    ("SELinux policy loaded", r"SELinux policy"),
    ("AppArmor denial", r"AppArmor denied"),
    ("AppArmor audit/status", r"AppArmor "),
    ("audit rules changed", r"Audit rules changed"),
    ("auditd started", r"auditd started"),
    ("auditd stopped", r"auditd stopped"),
    ("auditd other", r"auditd "),
    ("process crash", r"Process crashed"),
    ("promiscuous mode", r"Network device .* promiscuous"),
    ("service started", r"Service started"),
    ("service stopped", r"Service stopped"),
    ("login id set", r"Login id set"),
    ("audit message (auditctl -m)", r"Audit message:"),
    ("firewall rules changed", r"Firewall rules changed"),
    ("system clock adjusted", r"System clock adjusted"),
    ("system configuration changed", r"System configuration changed"),
    ("system boot / runlevel", r"(System booted|System shutting down|Runlevel changed)"),
    ("software / BPF / kernel module", r"(Software updated|BPF program|Kernel module)"),
    ("syscall rule hit", r"[a-z_0-9]+(\(\w+\))?( failed)? by "),
    ("generic fallback (TYPE event)", r"[A-Z][A-Z0-9_]+ event\b"),
)
_KIND_PATTERNS = tuple((kind, re.compile(pattern)) for kind, pattern in KINDS)
_MARKER = re.compile(r"^(🚨|⚠️|ℹ️)(❌)?\s*(🔁\s*)?")
# The host comes first ("web1: ", format.on_host), then "new: " for an
# action of a shape the host had not seen (known.py).
_HOST = re.compile(r"^(“[^”]*”|\S+?): (new: )?")


def headline_text(body: str) -> str:
    """A headline without its marks, host and "new:": what it says happened."""
    return _HOST.sub("", _MARKER.sub("", body.split("\n", 1)[0]), count=1)


def kind_of(body: str) -> Optional[str]:
    text = headline_text(body)
    for kind, pattern in _KIND_PATTERNS:
        if pattern.match(text):
            return kind
    return None


@dataclasses.dataclass
class Sample:
    kind: str
    source: str                     # where the records came from
    notification: Notification
    note: str = ""                  # shown beside the kind, e.g. "dropped by blacklist.example"
    tag: str = "sample"             # data-kind in the page: sample, digest, hostile, ...


_AUPARSE = None


def _auparse():
    global _AUPARSE
    if _AUPARSE is None:
        _AUPARSE = import_auparse()
    return _AUPARSE


def events_of(data: bytes, node: str = NODE) -> List[Event]:
    """The plugin's own reading of raw audit records (auparse feed)."""
    events: List[Event] = []
    reader = EventReader(_auparse(), events.append, Counters(), node)
    for start in range(0, len(data), 65536):
        reader.feed(data[start:start + 65536])
    reader.flush()
    return events


def input_files() -> List[str]:
    """tests/data's logs first (real Debian 12), then every corpus file."""
    corpus = []
    for top, _dirs, names in os.walk(CORPORA):
        for name in names:
            if name.endswith((".txt", ".log")) or name == "selinux-ssh":
                corpus.append(os.path.join(top, name))
    return sorted(glob.glob(os.path.join(DATA, "*.log"))) + sorted(corpus)


def source_name(path: str) -> str:
    # The corpora first: they lie inside tests/data, and keep their own label.
    for base, label in ((CORPORA, "corpora"), (DATA, "tests/data")):
        rel = os.path.relpath(path, base)
        if not rel.startswith(".."):
            return "%s/%s" % (label, rel)
    return path


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def blacklist_rules() -> RuleSet:
    try:
        return RuleSet(tuple(load_rules(BLACKLIST)))
    except Error:
        return RuleSet()


def collect_kinds(files: Optional[Sequence[str]] = None) -> Tuple[List[Sample], Dict[str, str]]:
    """One sample per kind (the first met, tests/data first), and the
    headlines that matched no kind, with where each was first seen."""
    rules = blacklist_rules()
    chosen: Dict[str, Sample] = {}
    unmatched: Dict[str, str] = {}
    for path in files if files is not None else input_files():
        for event in events_of(_read(path)):
            notification = format_event(event)
            kind = kind_of(notification.body)
            if kind is None:
                unmatched.setdefault(headline_text(notification.body)[:100], source_name(path))
                continue
            if kind not in chosen:
                note = "" if rules.wanted(event) else "dropped by blacklist.example"
                chosen[kind] = Sample(kind, source_name(path), notification, note)
    order = [kind for kind, _ in KINDS]
    return sorted(chosen.values(), key=lambda s: order.index(s.kind)), unmatched


def notifications_of(events, config: Config = Config()) -> List[Notification]:
    """What the plugin would send for these events: incidents, repeats and
    the routine summary, each message in its last version (an edit
    replaces the text of the message it edits)."""
    sent: Dict[str, Notification] = {}
    order: List[str] = []
    notifier = Notifier(config, blacklist_rules(), lambda n: (order.append(n.key) if n.key not in sent else None,
                                                               sent.__setitem__(n.key, n)), Counters())
    for event in events:
        notifier.on_event(event)
    notifier.close_all()
    return [sent[key] for key in order]


def incident_samples() -> List[Sample]:
    """Messages for incidents from the Debian 12 sample (a login, a sudo
    that added a user, failed logins folded, rules loaded and deleted), and
    a replayed SSH brute force of 1,500 attempts as one climbing count."""
    samples = []
    path = os.path.join(DATA, "debian12-enriched.log")
    if os.path.exists(path):
        wanted = (("incident: SSH login", r"SSH login: "), ("incident: sudo adding a user", r".* ran sudo .*useradd"),
                  ("incident: failed SSH logins folded", r"Failed SSH login for .*,"),
                  ("incident: audit rules deleted", r"All \d+ audit rules deleted"),
                  ("incident: routine summary", r"Routine, "))
        found = notifications_of(events_of(_read(path)))
        for kind, pattern in wanted:
            for notification in found:
                if re.match(pattern, headline_text(notification.body)):
                    samples.append(Sample(kind, source_name(path), notification, tag="incident"))
                    break
    path = os.path.join(CORPORA, "fail2ban", "fail2ban", "tests", "files", "logs", "selinux-ssh")
    if os.path.exists(path):
        failed = [e for e in events_of(_read(path)) if e.get("type") == "USER_LOGIN" and e.get("res") == "failed"]
        if failed:
            start, replay = failed[0].timestamp, []
            for i in range(1500):
                event = Event(dict(failed[0].fields, serial=str(i)), failed[0].records, timestamp=start + i * 40.0,
                              facts=failed[0].facts)
                replay.append(event)
            repeats = [n for n in notifications_of(replay) if n.kind == "repeat"]
            samples += [Sample("repeat count (SSH brute force, 1,500 attempts)", source_name(path) + ", replayed",
                               n, tag="repeat") for n in repeats[:1]]
    return samples


HOSTILE_NAME = "mallory<img src=x onerror=alert(1)>@room\u202egnp.exe\nroot"


def hostile_records(name: str = HOSTILE_NAME, when: float = 1795645653.079, serial: int = 11640) -> bytes:
    """A failed SSH login as Debian 12's sshd (via libaudit's
    audit_log_acct_message) logs it for ``name``: acct is hex-encoded because
    the name has spaces, quotes or bytes outside printable ASCII."""
    acct = name.encode("utf-8").hex().upper()
    return ("type=USER_LOGIN msg=audit(%.3f:%d): pid=16918 uid=0 auid=4294967295 ses=4294967295 "
            "msg='op=login acct=%s exe=\"/usr/sbin/sshd\" hostname=? addr=203.0.113.7 terminal=sshd res=failed'\n"
            % (when, serial, acct)).encode()


def hostile_tty_records(text: str = "echo '<img src=x onerror=alert(1)>' @room\u202e",
                        when: float = 1795645660.5, serial: int = 11700) -> bytes:
    """Keystrokes that pam_tty_audit logs (TTY record, hex data): what a
    logged-in user types is theirs to choose."""
    data = (text + "\r").encode("utf-8").hex().upper()
    return ("type=TTY msg=audit(%.3f:%d): tty pid=17001 uid=0 auid=1001 ses=23 major=136 minor=0 "
            "comm=\"bash\" data=%s\n" % (when, serial, data)).encode()


def hostile_samples() -> List[Sample]:
    samples = []
    for event in events_of(hostile_records()):
        samples.append(Sample("hostile: SSH login with <img>, @room, U+202E and a newline in the user name",
                              "built here (sshd's USER_LOGIN, hex acct)", format_event(event), tag="hostile"))
    for event in events_of(hostile_tty_records()):
        samples.append(Sample("hostile: typed keystrokes (TTY) with <img>, @room, U+202E",
                              "built here (pam_tty_audit's TTY record, hex data)", format_event(event),
                              tag="hostile-tty"))
    return samples


def long_command_sample() -> List[Sample]:
    path = os.path.join(CORPORA, "laurel", "src", "testdata", "record-execve-long.txt")
    if not os.path.exists(path):
        return []
    return [Sample("command with a 16 KiB argument", source_name(path), format_event(e), tag="long")
            for e in events_of(_read(path))[:1]]


def all_samples(files: Optional[Sequence[str]] = None) -> List[Sample]:
    kinds, _ = collect_kinds(files)
    return kinds + long_command_sample() + incident_samples() + hostile_samples()


# The kinds in the README's screenshots (all samples make a 25,000 px page
# at phone width; the tests render and check them all).
SHOWCASE = (
    "failed SSH login", "SSH login", "sudo refused", "sudo", "command failed", "watched file written",
    "user added", "password changed", "SELinux denial", "AppArmor denial", "audit rules changed",
    "process crash", "service started", "generic fallback (TYPE event)",
)


def showcase(samples: Sequence[Sample]) -> List[Sample]:
    """The README's selection: SHOWCASE kinds, the digests, the hostile ones."""
    return [s for s in samples if s.kind in SHOWCASE or s.tag in ("incident", "repeat", "hostile", "hostile-tty")]


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------

PAGE_CSS = """
:root { color-scheme: light; }
html { background: #ffffff; }
body { margin: 0; width: %(width)dpx; color: #17191c; background: #ffffff;
  font: 15px/1.45 "Inter", "Noto Sans", "DejaVu Sans", "Liberation Sans", sans-serif, "Noto Color Emoji"; }
.app { display: flex; }
.rooms { flex: 0 0 240px; background: #f3f5f8; border-right: 1px solid #e3e8f0; padding: 12px; font-size: 14px; }
.rooms .room { padding: 6px 8px; border-radius: 8px; background: #e3e8f0; font-weight: 600; }
.main { flex: 1 1 auto; min-width: 0; }
.roombar { display: flex; align-items: center; gap: 8px; padding: 10px 12px; border-bottom: 1px solid #e3e8f0;
  font-weight: 600; }
.roombar .room-avatar { width: 28px; height: 28px; border-radius: 50%%; background: #368bd6; color: #fff;
  display: inline-flex; align-items: center; justify-content: center; font-size: 14px; }
.roombar .sub { font-weight: 400; color: #737d8c; font-size: 12px; }
.intro { margin: 8px 12px; color: #737d8c; font-size: 12px; }
.timeline { padding: 4px 12px 16px; }
.sample { padding: 10px 0 12px; border-bottom: 1px dashed #d6dbe3; }
.label { font: 11px/1.3 "DejaVu Sans Mono", monospace; color: #8d97a5; margin: 0 0 6px 40px;
  overflow-wrap: anywhere; }
.label .note { color: #b15c00; }
.event { display: grid; grid-template-columns: 32px minmax(0, 1fr); column-gap: 8px; }
.avatar { width: 32px; height: 32px; border-radius: 50%%; background: #0dbd8b; color: #fff; font-weight: 700;
  display: flex; align-items: center; justify-content: center; }
.sender { font-size: 14px; }
.sender .name { color: #0dbd8b; font-weight: 600; }
.sender time { color: #737d8c; font-size: 12px; margin-left: 6px; }
.mx-body { min-width: 0; overflow-wrap: anywhere; white-space: normal; }
.mx-body code { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace, "Noto Color Emoji"; font-size: 0.88em;
  background: #f4f6fa; border: 1px solid #e3e8f0; border-radius: 4px; padding: 0 2px; white-space: break-spaces; }
.mx-body pre { overflow-x: auto; background: #f4f6fa; padding: 6px; border-radius: 6px; }
.mx-body pre code { border: 0; padding: 0; white-space: pre; }
.mx-body a { color: #0086e6; }
.mx-body span[data-mx-spoiler] { filter: blur(5px); }
.lockscreen { margin: 8px 0 0 40px; max-width: 360px; padding: 8px 12px 10px; border-radius: 16px; background: #2b2f36;
  color: #f2f4f7; font-size: 13px; line-height: 1.35; }
.lockscreen .ls-app { color: #aab2bd; font-size: 11px; margin-bottom: 2px; }
.lockscreen .ls-title { font-weight: 600; }
.lockscreen .ls-text { white-space: pre-line; overflow-wrap: anywhere; display: -webkit-box;
  -webkit-box-orient: vertical; -webkit-line-clamp: 2; line-clamp: 2; overflow: hidden; }
"""

# Measures the page as laid out and writes the facts into #layout-facts (a
# hidden <pre>), for --dump-dom: widths, overflow of each message, the tags
# left in each formatted body, the hostile message's text and images.
FACTS_SCRIPT = """
(function () {
  function measure() {
    var out = {viewport_width: window.innerWidth, body_width: document.body.getBoundingClientRect().width,
               page_height: Math.ceil(document.documentElement.scrollHeight),
               device_pixel_ratio: window.devicePixelRatio, messages: []};
    document.querySelectorAll('.sample').forEach(function (sample) {
      var body = sample.querySelector('.mx-body'), box = body.getBoundingClientRect();
      var tags = {}, overhang = 0;
      body.querySelectorAll('*').forEach(function (el) {
        tags[el.tagName.toLowerCase()] = 1;
        overhang = Math.max(overhang, el.getBoundingClientRect().right - box.right);
      });
      var tile = sample.querySelector('.event').getBoundingClientRect();
      var lock = sample.querySelector('.lockscreen').getBoundingClientRect();
      var lockText = sample.querySelector('.ls-text');
      out.messages.push({
        id: sample.id, top: Math.round(sample.getBoundingClientRect().top + window.scrollY), tag: sample.dataset.kind, kind: sample.dataset.label,
        scroll_width: body.scrollWidth, client_width: body.clientWidth, overhang: overhang,
        tile_right: tile.right, lock_right: lock.right, body_right: document.body.getBoundingClientRect().right,
        height: Math.round(box.height), lock_lines: Math.round(lockText.getBoundingClientRect().height /
                                                               parseFloat(getComputedStyle(lockText).lineHeight)),
        lock_clamped: lockText.scrollHeight > lockText.clientHeight + 1,
        tags: Object.keys(tags).sort(), images: body.querySelectorAll('img').length,
        links: Array.prototype.map.call(body.querySelectorAll('a'), function (a) { return a.textContent; }),
        text: body.textContent});
    });
    document.getElementById('layout-facts').textContent = JSON.stringify(out);
  }
  measure();
  window.addEventListener('load', measure);
  if (document.fonts && document.fonts.ready) { document.fonts.ready.then(measure); }
})();
"""


def _clock(timestamp: float) -> str:
    return time.strftime("%H:%M", time.localtime(timestamp))


def render_sample(sample: Sample, index: int) -> str:
    content = sample.notification.content()
    label = html.escape(sample.kind) + " · " + html.escape(sample.source)
    if sample.note:
        label += ' · <span class="note">%s</span>' % html.escape(sample.note)
    return """
<section class="sample" id="m%(index)d" data-kind="%(tag)s" data-label="%(kind)s">
  <div class="label">%(label)s</div>
  <article class="event">
    <div class="avatar" aria-hidden="true">A</div>
    <div class="content">
      <div class="sender"><span class="name">audit-bot</span><time>%(time)s</time></div>
      <div class="mx-body">%(body)s</div>
    </div>
  </article>
  <aside class="lockscreen">
    <div class="ls-app">Matrix client · now</div>
    <div class="ls-title">audit-bot (#audit)</div>
    <div class="ls-text">%(lock)s</div>
  </aside>
</section>""" % {
        "index": index, "tag": html.escape(sample.tag, quote=True), "kind": html.escape(sample.kind, quote=True),
        "label": label, "time": _clock(sample.notification.timestamp),
        "body": sanitize(content["formatted_body"]) if content.get("format") == "org.matrix.custom.html"
        else html.escape(content["body"]).replace("\n", "<br>"),
        "lock": html.escape(lock_screen_text(content["body"]), quote=False),
    }


def build_page(samples: Sequence[Sample], width: int = PHONE_WIDTH) -> str:
    """A self-contained page: no script or style from outside, no fetch."""
    desktop = width >= 900
    rooms = ('<nav class="rooms"><div>Rooms</div><br><div class="room"># audit</div></nav>' if desktop else "")
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>audit-notify notifications as a Matrix client shows them (%(width)d px)</title>
<style>%(css)s</style></head>
<body class="%(mode)s"><div class="app">%(rooms)s<div class="main">
<header class="roombar"><span class="room-avatar">#</span><span>audit <span class="sub">🔒 encrypted ·
 %(count)d notifications</span></span></header>
<p class="intro">Each message: what it is and where its records came from (grey), the message as the
timeline shows its formatted_body (Matrix HTML subset), then its plain body as a lock screen shows it
(two lines).</p>
<main class="timeline">%(samples)s
</main></div></div>
<pre id="layout-facts" hidden></pre>
<script>%(script)s</script>
</body></html>
""" % {"width": width, "css": PAGE_CSS % {"width": width}, "mode": "desktop" if desktop else "phone",
       "rooms": rooms, "count": len(samples), "samples": "".join(render_sample(s, i) for i, s in enumerate(samples)),
       "script": FACTS_SCRIPT}


# ---------------------------------------------------------------------------
# Headless Chromium
# ---------------------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1", "--mute-audio",
                  "--disable-extensions", "--lang=en-US")


def chromium_path() -> Optional[str]:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def run_chromium(args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess:
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="render-chromium-")
    try:
        return subprocess.run([binary, *CHROMIUM_FLAGS, "--user-data-dir=" + profile, *args],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _url(path: str) -> str:
    return "file://" + os.path.abspath(path)


def layout_facts(page: str, width: int) -> dict:
    """Load the page at ``width`` and return what its script measured."""
    result = run_chromium(["--window-size=%d,1000" % width, "--dump-dom", _url(page)])
    found = re.search(r'<pre id="layout-facts" hidden="">(.*?)</pre>', result.stdout.decode("utf-8", "replace"),
                      re.S)
    if result.returncode != 0 or not found or not found.group(1):
        raise RuntimeError("chromium --dump-dom gave no layout facts (exit %d): %s"
                           % (result.returncode, result.stderr.decode("utf-8", "replace")[-2000:]))
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: str, png: str, width: int, height: int) -> None:
    """Screenshot ``width`` x ``height`` px of the page.  Headless Chromium
    lays a page out at least 500 px wide whatever --window-size says, so the
    page itself is ``width`` px wide (body width) and the shot is its left
    ``width`` px."""
    if os.path.exists(png):
        os.unlink(png)
    result = run_chromium(["--window-size=%d,%d" % (width, height), "--screenshot=" + os.path.abspath(png),
                           _url(page)])
    if result.returncode != 0 or not os.path.exists(png):
        raise RuntimeError("chromium --screenshot failed (exit %d): %s"
                           % (result.returncode, result.stderr.decode("utf-8", "replace")[-2000:]))


def png_size(path: str) -> Tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError("%s is not a PNG" % path)
    return struct.unpack(">II", head[16:24])


def render(samples: Sequence[Sample], out_dir: str, name: str, width: int, keep_html: bool = True) -> dict:
    """Write NAME.html, measure it, screenshot NAME.png; return the facts."""
    os.makedirs(out_dir, exist_ok=True)
    page = os.path.join(out_dir, name + ".html")
    with open(page, "w", encoding="utf-8") as handle:
        handle.write(build_page(samples, width))
    facts = layout_facts(page, width)
    screenshot(page, os.path.join(out_dir, name + ".png"), width, facts["page_height"])
    if not keep_html:
        os.unlink(page)
    return facts


def problems_in(facts: dict) -> List[str]:
    """What a reader would suffer from: boxes wider than the page or the
    message, tags outside the Matrix subset."""
    found = []
    if abs(facts["body_width"] - facts.get("expected_width", facts["body_width"])) > 0.5:
        found.append("page is %s px wide" % facts["body_width"])
    for m in facts["messages"]:
        where = "%s (%s)" % (m["id"], m["kind"])
        if m["scroll_width"] > m["client_width"]:
            found.append("%s: content %d px wide in a %d px message" % (where, m["scroll_width"], m["client_width"]))
        if m["overhang"] > 0.5:
            found.append("%s: an element sticks out %.1f px" % (where, m["overhang"]))
        if max(m["tile_right"], m["lock_right"]) > m["body_right"] + 0.5:
            found.append("%s: the message or its lock-screen box is wider than the page" % where)
        extra = set(m["tags"]) - ALLOWED_TAGS
        if extra:
            found.append("%s: tags outside the Matrix subset: %s" % (where, sorted(extra)))
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default=SCREENSHOTS, help="where phone/desktop .png and .html go")
    parser.add_argument("--no-html", action="store_true", help="do not keep the .html pages")
    parser.add_argument("--facts", action="store_true", help="print the layout facts")
    parser.add_argument("--list-kinds", action="store_true", help="list the kinds found, and what matched none")
    parser.add_argument("--all", action="store_true",
                        help="screenshot every sample (about 25,000 px tall at phone width), not the README's selection")
    args = parser.parse_args(argv)

    if args.list_kinds:
        kinds, unmatched = collect_kinds()
        for s in kinds:
            print("%-45s %-60s %s" % (s.kind, s.source, headline_text(s.notification.body)[:100]))
        for text, source in sorted(unmatched.items()):
            print("UNMATCHED %-60s %s" % (source, text))
        missing = [k for k, _ in KINDS if k not in {s.kind for s in kinds}]
        print("kinds not found: %s" % (", ".join(missing) or "none"))
        return 0

    samples = all_samples()
    if not args.all:
        samples = showcase(samples)
    status = 0
    for name, width in (("phone", PHONE_WIDTH), ("desktop", DESKTOP_WIDTH)):
        facts = render(samples, args.out_dir, name, width, keep_html=not args.no_html)
        facts["expected_width"] = width
        png = os.path.join(args.out_dir, name + ".png")
        w, h = png_size(png)
        print("%s: %s, %d x %d px, %d KB, %d notifications" % (name, png, w, h, os.path.getsize(png) >> 10,
                                                                len(samples)))
        for problem in problems_in(facts):
            print("  problem: " + problem)
            status = 1
        if args.facts:
            print(json.dumps(facts, indent=1, ensure_ascii=False))
    return status


if __name__ == "__main__":
    sys.exit(main())
