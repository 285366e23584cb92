#!/usr/bin/python3
"""audit-notify: Linux audit events as end-to-end-encrypted Matrix notifications.

An auditd plugin (see auditd-plugins(5)).  The data flows one way::

    auditd (format = string) ─ stdin ─┐
    ausearch --raw ... | or FILE ... ─┴─> EventReader   auparse feed: records -> events
                                          RuleSet       allow-list / blacklist
                                          format_event  plain body + escaped HTML
                                          Courier       matrix-commander, one at a time
                                          Plugin        select() loop, signals, counters

Try it by hand, without any homeserver::

    ausearch --start today --raw | python3 audit_notify.py --dry-run
    python3 audit_notify.py --dry-run --json tests/data/debian12-sample.log

The module runs as root inside auditd, so it is kept to the standard library
plus the system's auparse bindings, does nothing at import time, and treats
every byte of audit data as hostile: it never reaches argv or a shell, and it
is escaped for every renderer it reaches.
"""

from __future__ import annotations

import argparse
import errno
import fnmatch
import glob
import html
import json
import logging
import logging.handlers
import os
import re
import select
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

log = logging.getLogger("audit-notify")

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

# Where a fresh install keeps things (see README, "Install").
DEFAULT_CONFIG = "/etc/audit-notify/audit-notify.conf"
# The original script's hard-coded files: used when no config exists, so an
# upgrade from krair/auditd-matrix-notify is a drop-in.
LEGACY_DIR = "/usr/local/share/matrix-commander"
LEGACY_MATRIX_COMMANDER = "/usr/sbin/matrix-commander.py"
# Where Debian, Fedora and RHEL put python3-audit when the plugin runs under
# another interpreter (the original README's PYTHONPATH troubleshooting).
SYSTEM_SITE_GLOBS = (
    "/usr/lib/python3/dist-packages",
    "/usr/lib64/python3*/site-packages",
    "/usr/lib/python3*/site-packages",
    "/usr/lib/python3*/dist-packages",
)
AUPARSE_PACKAGE_HINT = (
    "install the system package python3-audit (Debian/Ubuntu: apt-get install "
    "python3-audit; Fedora/RHEL: dnf install python3-audit)"
)
# Bytes read from stdin at a time: one pipe buffer.
READ_SIZE = 65536
# How long an idle plugin waits before asking auparse to emit events whose
# EOE never came; only used while auparse holds something back.
IDLE_TICK = 0.5
# Synapse rejects events over 65,536 bytes; after Megolm encryption and JSON
# framing the largest plain ASCII message that got through was 48,336 bytes
# (measured, MATRIX-TESTING.md).  body and formatted_body travel together.
MAX_BODY_BYTES = 16000
MAX_HTML_BYTES = 28000
# One untrusted value never takes more than this many characters: in the
# headline (a lock screen shows ~2 lines), in a detail line, in a command.
HEADLINE_VALUE_CHARS = 120
MAX_VALUE_CHARS = 2000
MAX_COMMAND_CHARS = 8000
# How often to look for the exit of a child that closed its output.
REAP_INTERVAL = 0.02
# A SIGTERM waits this long for the matrix-commander call in flight.
SHUTDOWN_GRACE = 10.0
# At EOF (someone piping ausearch by hand) queued notifications get this long.
EOF_DRAIN_SECONDS = 120.0


class Error(Exception):
    """A problem the user must fix: bad config, bad rule, missing package.

    The message is complete and names the file and line where there is one;
    only main() turns it into an exit code.
    """


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Every setting, with the default a fresh install uses.

    The file format is auditd's own (``key = value``, ``#`` comments); the
    shipped ``audit-notify.conf.example`` documents each key.
    """

    matrix_commander: str = "/usr/local/bin/matrix-commander"
    credentials: str = "/etc/audit-notify/credentials.json"
    store: str = "/var/lib/audit-notify/store"
    room: str = ""
    blacklist: str = ""
    allowlist: str = ""
    log_file: str = ""
    log_level: str = "info"
    hostname: str = ""
    send_timeout: float = 60.0
    eoe_timeout: int = 2
    state_dir: str = "/var/lib/audit-notify"
    source: str = "(built-in defaults)"


_PATH_KEYS = ("matrix_commander", "credentials", "store", "blacklist", "allowlist", "log_file", "state_dir")
_LOG_LEVELS = ("debug", "info", "warning", "error")


def _positive_number(kind):
    def convert(text):
        value = kind(text)
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    return convert


def _choice(choices):
    def convert(text):
        if text not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return text

    return convert


_CONVERTERS = {
    "send_timeout": _positive_number(float),
    "eoe_timeout": _positive_number(int),
    "log_level": _choice(_LOG_LEVELS),
}


def parse_config(text: str, path: str) -> Config:
    """Parse a config file strictly: unknown keys and bad values are errors.

    Relative paths are taken relative to the config file's directory, so a
    config next to its blacklist works from anywhere.
    """
    known = set(Config.__dataclass_fields__) - {"source"}
    values = {}
    base = os.path.dirname(os.path.abspath(path))
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = "%s:%d" % (path, number)
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise Error("%s: expected 'key = value', got %r" % (where, line))
        if key not in known:
            raise Error("%s: unknown key %r (known: %s)" % (where, key, ", ".join(sorted(known))))
        if key in values:
            raise Error("%s: %r is set twice" % (where, key))
        if key in _PATH_KEYS and value and not os.path.isabs(value):
            value = os.path.normpath(os.path.join(base, value))
        try:
            values[key] = _CONVERTERS.get(key, str)(value)
        except ValueError as exc:
            raise Error("%s: bad value for %s: %r (%s)" % (where, key, value, exc)) from None
    return Config(source=path, **values)


def legacy_config(root: str = "/") -> Optional[Config]:
    """The original script's layout, if its credentials are present."""
    legacy = os.path.join(root, LEGACY_DIR.lstrip("/"))
    if not os.path.isfile(os.path.join(legacy, "credentials.json")):
        return None
    values = dict(credentials=os.path.join(legacy, "credentials.json"), store=os.path.join(legacy, "store"),
                  state_dir=legacy)
    if os.path.isfile(os.path.join(legacy, "blacklist")):
        values["blacklist"] = os.path.join(legacy, "blacklist")
    old_mc = os.path.join(root, LEGACY_MATRIX_COMMANDER.lstrip("/"))
    if os.path.isfile(old_mc):
        values["matrix_commander"] = old_mc
    return Config(source="legacy files in %s" % legacy, **values)


def load_config(path: Optional[str], root: str = "/") -> Config:
    """The config named on the command line, else the default file, else the
    original script's files, else built-in defaults."""
    if path is None:
        default = os.path.join(root, DEFAULT_CONFIG.lstrip("/"))
        if os.path.exists(default):
            path = default
        else:
            return legacy_config(root) or Config()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise Error("cannot read config %s: %s" % (path, exc)) from None
    return parse_config(text, path)


# ---------------------------------------------------------------------------
# auparse
# ---------------------------------------------------------------------------


def import_auparse(search: Sequence[str] = SYSTEM_SITE_GLOBS):
    """Import the system's auparse bindings, looking in the system's
    site-packages when the running interpreter is not the system one."""
    try:
        import auparse  # type: ignore

        return auparse
    except ImportError:
        pass
    for pattern in search:
        for directory in sorted(glob.glob(pattern), reverse=True):
            if not glob.glob(os.path.join(directory, "auparse*")):
                continue
            sys.path.append(directory)
            try:
                import auparse  # type: ignore

                return auparse
            except ImportError:
                sys.path.remove(directory)
    raise Error(
        "cannot import auparse (Python %d.%d): %s" % (sys.version_info[0], sys.version_info[1], AUPARSE_PACKAGE_HINT)
    )


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------

# The original script's field names and meanings, kept so that existing
# blacklists keep working.  They come from auparse's normalizer.
NORMALIZED_FIELDS = (
    "type", "time", "error", "kind", "session", "primary_subject", "secondary_subject",
    "result", "action", "primary_object", "secondary_object", "object_kind", "how",
)
# Added by this plugin.
EXTRA_FIELDS = ("node", "serial", "key", "argv", "records")


@dataclass
class Event:
    """One audit event: all records sharing a serial (and node).

    ``fields`` is flat: the normalized fields above, then every raw field by
    its audit name, interpreted (hex decoded, ids to names); where several
    records carry a name the first wins.  ``records`` keeps each record's own
    fields for the formatter and for rules on repeated names (PATH ``name``).
    """

    fields: Dict[str, str]
    records: List[Tuple[str, Dict[str, str]]]
    timestamp: float

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def values(self, name: str) -> List[str]:
        """Every value of a field in the event, for rule matching."""
        found = [self.fields[name]] if name in self.fields else []
        for _, fields in self.records:
            value = fields.get(name)
            if value is not None and value not in found:
                found.append(value)
        return found

    def record(self, rtype: str) -> Optional[Dict[str, str]]:
        for name, fields in self.records:
            if name == rtype:
                return fields
        return None

    def types(self) -> List[str]:
        return [name for name, _ in self.records]


def _text(call, *args) -> str:
    """Call an auparse accessor; bytes that are not UTF-8 come back escaped
    instead of raising (an attacker chooses an SSH username's bytes)."""
    try:
        value = call(*args)
    except UnicodeDecodeError as exc:
        return exc.object.decode("utf-8", "backslashreplace")
    return "" if value is None else str(value)


def _interpret(au) -> str:
    try:
        return _text(au.interpret_field)
    except RuntimeError:
        return _text(au.get_field_str)


def _type_name(au) -> str:
    try:
        return _text(au.get_type_name)
    except LookupError:  # a type number this libauparse has no name for
        return "UNKNOWN[%d]" % au.get_type()


def _read_records(au) -> List[Tuple[str, Dict[str, str]]]:
    records = []
    au.first_record()
    while True:
        rtype = _type_name(au)
        fields: Dict[str, str] = {}
        if rtype != "EOE" and au.first_field():
            while True:
                name = _text(au.get_field_name)
                if name and name not in fields:
                    fields[name] = _interpret(au)
                if not au.next_field():
                    break
        if rtype != "EOE":
            records.append((rtype, fields))
        if not au.next_record():
            break
    return records


def _normalized(au, auparse) -> Dict[str, str]:
    """The original script's fields, computed the same way."""
    out: Dict[str, str] = {}
    if au.aup_normalize(auparse.NORM_OPT_NO_ATTRS):
        out["error"] = "Error normalizing"
        return out

    def attempt(name, call):
        try:
            out[name] = _text(call)
        except RuntimeError:
            out[name] = "n/a"

    def located(name, finder, subject):
        if finder():
            value, field_name = _interpret(au), _text(au.get_field_name)
            if subject:
                out[name] = "%s = %s" % ("system" if value == "unset" else value, field_name)
            else:
                out[name] = "%s = %s" % (field_name, value)

    attempt("kind", au.aup_normalize_get_event_kind)
    if au.aup_normalize_session():
        out["session"] = _interpret(au)
    located("primary_subject", au.aup_normalize_subject_primary, True)
    located("secondary_subject", au.aup_normalize_subject_secondary, True)
    attempt("action", au.aup_normalize_get_action)
    located("primary_object", au.aup_normalize_object_primary, False)
    located("secondary_object", au.aup_normalize_object_secondary, False)
    attempt("object_kind", au.aup_normalize_object_kind)
    attempt("how", au.aup_normalize_how)
    if out.get("secondary_subject", "").startswith("system = "):
        # The original only mapped "unset" to "system" for the primary.
        out["secondary_subject"] = "unset" + out["secondary_subject"][len("system"):]
    return out


def _argv(records) -> str:
    """The full command line of an execve, from its EXECVE records (long
    arguments arrive split as a1[0], a1[1], ... over several records)."""
    args: Dict[str, str] = {}
    for rtype, fields in records:
        if rtype == "EXECVE":
            args.update(fields)
    if not args:
        return ""
    try:
        argc = int(args.get("argc", "0"))
    except ValueError:
        argc = 0
    words = []
    for i in range(argc):
        if "a%d" % i in args:
            words.append(args["a%d" % i])
            continue
        parts, j = [], 0
        while "a%d[%d]" % (i, j) in args:
            parts.append(args["a%d[%d]" % (i, j)])
            j += 1
        words.append("".join(parts))
    return " ".join(_shell_word(w) for w in words)


def _shell_word(word: str) -> str:
    if word and re.fullmatch(r"[\w@%+=:,./-]+", word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


class Malformed(Exception):
    """auparse handed over something that is not an audit event."""


def event_from_parser(au, auparse, default_node: str) -> Event:
    """Build an Event from the parser's current event (inside its callback)."""
    stamp = au.get_timestamp()
    if stamp is None:
        raise Malformed("a record without type= and msg=audit(...)")
    records = _read_records(au)
    fields = {"type": records[0][0] if records else _type_name(au), "time": _text(str, stamp)}
    fields.update(_normalized(au, auparse))
    if "result" not in fields:
        res = next((f["res"] for _, f in records if "res" in f), None)
        if res is not None:
            fields["result"] = res
    fields["node"] = _text(lambda: stamp.host) or default_node
    fields["serial"] = str(stamp.serial)
    for _, record_fields in records:
        for name, value in record_fields.items():
            fields.setdefault(name, value)
    if fields.get("key") in ("(null)", "(none)"):
        del fields["key"]
    argv = _argv(records)
    if argv:
        fields["argv"] = argv
    fields["records"] = " ".join(name for name, _ in records)
    return Event(fields=fields, records=records, timestamp=stamp.sec + stamp.milli / 1000.0)


@dataclass
class Counters:
    """What the plugin did; logged periodically and at exit.  ``problems``
    counts each kind of bad input, which is logged once, not once per hit."""

    records: int = 0
    events: int = 0
    filtered: int = 0
    sent: int = 0
    failed: int = 0
    errors: int = 0
    problems: Dict[str, int] = field(default_factory=dict)

    def problem(self, kind: str, exc_info: bool = False):
        self.errors += 1
        seen = self.problems.get(kind, 0)
        self.problems[kind] = seen + 1
        if not seen:
            log.error("%s (logged once; counted at exit)", kind, exc_info=exc_info)

    def line(self) -> str:
        text = " ".join("%s=%d" % (k, v) for k, v in self.__dict__.items() if isinstance(v, int))
        return text + "".join("; %s: %d" % item for item in sorted(self.problems.items()))


class EventReader:
    """Turns a byte stream of audit records into Events, via auparse's feed.

    auparse groups records by serial and node, ends an event on its EOE,
    and on ``age()`` (called on idle ticks) or ``flush()`` (at the end)
    also emits events whose EOE never came.  Any chunking of the input gives
    the same events.

    auparse sometimes emits one serial as two events: it ends a LOGIN
    record's event at once although the kernel follows it with a SYSCALL
    record, and records that arrive out of order (a PROCTITLE before its
    SYSCALL) start a second event.  So the newest event is held until a
    different one arrives or the loop goes idle, and pieces with the same
    (node, serial, time) are joined; a lone LOGIN waits for its SYSCALL
    until the next idle tick.
    """

    def __init__(self, auparse, sink: Callable[[Event], None], counters: Counters,
                 default_node: str = "", eoe_timeout: int = 2):
        self._auparse = auparse
        self._sink = sink
        self._counters = counters
        self._node = default_node
        self._held: Dict[Tuple[str, str, float], Event] = {}
        self._parser = auparse.AuParser(auparse.AUSOURCE_FEED)
        self._parser.set_escape_mode(auparse.AUPARSE_ESC_RAW)
        self._parser.set_eoe_timeout(eoe_timeout)
        # add_callback() takes a plain function, not a bound method.
        self._parser.add_callback(lambda au, cbtype, user: self._ready(au, cbtype, user), None)

    def _ready(self, au, cbtype, _user):
        # An exception escaping into auparse's C code would surface later as
        # a SystemError from feed(); catch everything and count it instead.
        try:
            if cbtype != self._auparse.AUPARSE_CB_EVENT_READY:
                return
            event = event_from_parser(au, self._auparse, self._node)
            self._counters.records += len(event.records)
            self._hold(event)
        except Malformed as exc:
            self._counters.problem("malformed input skipped: %s" % exc)
        except Exception:  # noqa: BLE001 - a bad event must not stop the stream
            self._counters.problem("could not read an audit event", exc_info=True)

    def _hold(self, event: Event):
        key = (event.fields["node"], event.fields["serial"], event.timestamp)
        first = self._held.get(key)
        if first is not None:
            first.records.extend(event.records)
            for name, value in event.fields.items():
                first.fields.setdefault(name, value)
            first.fields["records"] = " ".join(first.types())
            return
        for other in [k for k, e in self._held.items() if e.types() != ["LOGIN"]]:
            self._emit(self._held.pop(other))
        self._held[key] = event

    def _emit(self, event: Event):
        self._counters.events += 1
        self._sink(event)

    def _emit_held(self):
        held, self._held = self._held, {}
        for event in held.values():
            self._emit(event)

    def feed(self, data: bytes):
        self._parser.feed(data)

    def pending(self) -> bool:
        return bool(self._held) or bool(self._parser.feed_has_data())

    def age(self):
        """Idle tick: emit what auparse held back, and held LOGIN events."""
        self._parser.feed_age_events()
        self._emit_held()

    def flush(self):
        self._parser.flush_feed()
        self._emit_held()


# ---------------------------------------------------------------------------
# Rules: the blacklist and the allow-list
# ---------------------------------------------------------------------------

_FIELD_NAME = r"[A-Za-z_][\w-]*(?:\[\d+\])?"
_CONDITION = re.compile(
    r'(?P<name>%s)(?P<op>!=~|=~|!=|!~|=|~)(?P<value>"(?:[^"\\]|\\.)*"|[^"\s]\S*)' % _FIELD_NAME)


@dataclass(frozen=True)
class Condition:
    """One ``field OP value`` test.  Ops: ``=`` exact, ``~`` glob, ``=~``
    regular expression (search); a leading ``!`` negates."""

    name: str
    op: str
    value: str
    pattern: Optional["re.Pattern"] = None

    def matches(self, event: Event) -> bool:
        negate = self.op.startswith("!")
        hit = any(self._test(v) for v in event.values(self.name))
        return hit != negate

    def _test(self, value: str) -> bool:
        op = self.op.lstrip("!")
        if op == "=":
            return value == self.value
        if op == "~":
            return fnmatch.fnmatchcase(value, self.value)
        return self.pattern.search(value) is not None


@dataclass(frozen=True)
class Rule:
    """All conditions must match (AND); a rule file's lines are OR-ed."""

    conditions: Tuple[Condition, ...]
    where: str

    def matches(self, event: Event) -> bool:
        return all(c.matches(event) for c in self.conditions)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_rule(line: str, where: str) -> Rule:
    """One line of a rule file.

    The original format is ``field value``: the value is the rest of the
    line, matched exactly (``primary_subject root = auid`` has spaces).  A
    line whose first word holds an operator is the extended form: one or more
    ``field OP value`` conditions separated by spaces, values with spaces in
    double quotes.
    """
    first = line.split(None, 1)
    if re.fullmatch(_FIELD_NAME, first[0]):
        if len(first) < 2:
            raise Error("%s: expected 'field value' or 'field=value ...', got %r" % (where, line))
        return Rule((Condition(first[0], "=", first[1].strip()),), where)
    conditions = []
    position = 0
    while position < len(line):
        if line[position].isspace():
            position += 1
            continue
        found = _CONDITION.match(line, position)
        if not found or (found.end() < len(line) and not line[found.end()].isspace()):
            raise Error("%s: expected field=value, field~glob or field=~regex (optionally with !) at %r"
                        % (where, line[position:]))
        (name, op), value = found.group("name", "op"), _unquote(found.group("value"))
        pattern = None
        if op.endswith("=~"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise Error("%s: bad regular expression %r: %s" % (where, value, exc)) from None
        conditions.append(Condition(name, op, value, pattern))
        position = found.end()
    return Rule(tuple(conditions), where)


def parse_rules(text: str, path: str) -> List[Rule]:
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append(parse_rule(line, "%s:%d" % (path, number)))
    return rules


def load_rules(path: str) -> List[Rule]:
    """Read a rule file; no path means no rules."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise Error("cannot read rule file %s: %s" % (path, exc)) from None
    return parse_rules(text, path)


@dataclass(frozen=True)
class RuleSet:
    """Notify what the allow-list matches (everything if it is empty),
    minus what the blacklist matches."""

    deny: Tuple[Rule, ...] = ()
    allow: Tuple[Rule, ...] = ()

    def wanted(self, event: Event) -> bool:
        if self.allow and not any(r.matches(event) for r in self.allow):
            return False
        return not any(r.matches(event) for r in self.deny)


def load_ruleset(config: Config) -> RuleSet:
    return RuleSet(tuple(load_rules(config.blacklist)), tuple(load_rules(config.allowlist)))


# ---------------------------------------------------------------------------
# Format: what a person reads on a lock screen, and what a client renders
# ---------------------------------------------------------------------------

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


def clean(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Make untrusted audit text safe to show as plain text.

    Invisible and control characters become visible escapes, ``@`` becomes
    a full-width ``＠`` so that neither ``@room`` nor ``@user:server`` can
    mention anyone, and the length is capped.
    """
    out = []
    for char in text[: limit + 1]:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            out.append(_escape_char(char))
        elif char == "@":
            out.append("\uff20")
        else:
            out.append(char)
    result = "".join(out)
    if len(text) > limit:
        result = result[:limit] + "… (%d more characters)" % (len(text) - limit)
    return result


@dataclass(frozen=True)
class Line:
    """A line of a notification: our own words with untrusted values in
    between.  ``parts`` alternate: even indexes are ours, odd are values,
    each cut to ``limit`` characters."""

    parts: Tuple[str, ...]
    limit: int = MAX_VALUE_CHARS

    def text(self) -> str:
        return "".join(p if i % 2 == 0 else clean(p, self.limit) for i, p in enumerate(self.parts))

    def html(self) -> str:
        # Untrusted values are escaped and put in <code>: no tag, link,
        # Markdown or linkified URL of an attacker's can come alive.
        return "".join(
            html.escape(p) if i % 2 == 0 else "<code>%s</code>" % html.escape(clean(p, self.limit))
            for i, p in enumerate(self.parts))

    def __add__(self, parts: Tuple[str, ...]) -> "Line":
        return replace(self, parts=self.parts + parts)


def L(*parts: str) -> Line:  # noqa: N802 - reads like a template
    return Line(tuple(parts), HEADLINE_VALUE_CHARS)


@dataclass(frozen=True)
class Notification:
    """One message for the room, ready for delivery."""

    body: str
    html: str
    fields: Dict[str, str]
    timestamp: float
    priority: int = 0  # 1 for failures and denials: kept first when the spool is full

    def content(self) -> dict:
        """The Matrix event content: a plain-text body, its HTML twin, and an
        empty m.mentions so that clients ping nobody, whatever the text."""
        return {
            "msgtype": "m.text",
            "body": self.body,
            "format": "org.matrix.custom.html",
            "formatted_body": self.html,
            "m.mentions": {},
        }


def _failed(event: Event) -> Optional[bool]:
    res = event.get("res") or event.get("result")
    if res:
        return res.lower() not in ("success", "yes", "1")
    success = event.get("success")
    if success:
        return success != "yes"
    return None


def _who(event: Event) -> str:
    """The person behind an event: login uid, and the uid it acted as."""
    auid, uid = event.get("auid"), event.get("uid")
    if auid and auid not in ("unset", "-1", "4294967295"):
        if uid and uid != auid:
            return "%s as %s" % (auid, uid)
        return auid
    return uid or event.get("acct") or "system"


def _where_from(event: Event) -> str:
    addr, host = event.get("addr"), event.get("hostname")
    addr = "" if addr in ("?", "") else addr
    host = "" if host in ("?", "", addr) else host
    if addr and host:
        return "%s (%s)" % (addr, host)
    return addr or host


_SERVICES = {
    "sshd": "SSH", "login": "console", "sudo": "sudo", "su": "su", "gdm-session-worker": "GDM",
    "lightdm": "LightDM", "sddm-helper": "SDDM", "cron": "cron", "crond": "cron", "polkit-agent-helper-1": "polkit",
    "vsftpd": "FTP", "dovecot": "IMAP", "cockpit-session": "Cockpit",
}


def _service(event: Event) -> str:
    exe = event.get("exe") or event.get("how") or event.get("comm")
    name = os.path.basename(exe)
    return _SERVICES.get(name, name or "login")


def _pam_account(event: Event) -> str:
    acct = event.get("acct")
    if acct:
        return acct
    return event.get("id") or event.get("auid") or "?"


_LOGIN_TYPES = {
    "USER_LOGIN": ("%s login", "Failed %s login"),
    "USER_AUTH": ("%s authentication", "Failed %s authentication"),
    "USER_ERR": ("%s account error", "%s account error"),
    "USER_ACCT": ("%s account check", "%s account check refused"),
    "USER_LOGOUT": ("%s logout", "Failed %s logout"),
    "USER_START": ("%s session opened", "%s session failed to open"),
    "USER_END": ("%s session closed", "%s session failed to close"),
    "CRED_ACQ": ("%s credentials acquired", "%s credentials refused"),
    "CRED_REFR": ("%s credentials refreshed", "%s credentials refresh failed"),
    "CRED_DISP": ("%s credentials disposed", "%s credentials disposal failed"),
    "USER_ROLE_CHANGE": ("%s role changed", "%s role change failed"),
    "ANOM_LOGIN_FAILURES": ("Too many %s login failures", "Too many %s login failures"),
    "ANOM_LOGIN_SESSIONS": ("Too many %s sessions", "Too many %s sessions"),
    "ANOM_LOGIN_TIME": ("%s login at a forbidden time", "%s login at a forbidden time"),
    "ANOM_LOGIN_LOCATION": ("%s login from a forbidden place", "%s login from a forbidden place"),
}

_ACCOUNT_TYPES = {
    "ADD_USER": "User added", "DEL_USER": "User deleted", "ADD_GROUP": "Group added",
    "DEL_GROUP": "Group deleted", "USER_MGMT": "User changed", "GRP_MGMT": "Group changed",
    "USER_CHAUTHTOK": "Password changed", "GRP_CHAUTHTOK": "Group password changed",
    "ACCT_LOCK": "Account locked", "ACCT_UNLOCK": "Account unlocked", "CHUSER_ID": "User id changed",
    "CHGRP_ID": "Group id changed",
}

_AUDIT_TYPES = {
    "CONFIG_CHANGE": "Audit rules changed", "DAEMON_START": "auditd started", "DAEMON_END": "auditd stopped",
    "DAEMON_ABORT": "auditd aborted", "DAEMON_CONFIG": "auditd config changed",
    "DAEMON_RECONFIG": "auditd reconfigured", "DAEMON_ROTATE": "audit log rotated",
    "DAEMON_RESUME": "auditd resumed", "DAEMON_ACCEPT": "auditd accepted a remote connection",
    "DAEMON_CLOSE": "auditd closed a remote connection", "DAEMON_ERR": "auditd error",
    "USYS_CONFIG": "System configuration changed", "MAC_POLICY_LOAD": "SELinux policy loaded",
    "MAC_STATUS": "SELinux mode changed", "MAC_CONFIG_CHANGE": "SELinux boolean changed",
    "SERVICE_START": "Service started", "SERVICE_STOP": "Service stopped", "SYSTEM_BOOT": "System booted",
    "SYSTEM_SHUTDOWN": "System shutting down", "SYSTEM_RUNLEVEL": "Runlevel changed",
    "SOFTWARE_UPDATE": "Software updated", "NETFILTER_CFG": "Firewall rules changed", "BPF": "BPF program changed",
    "KERN_MODULE": "Kernel module loaded", "TIME_ADJNTPVAL": "System clock adjusted",
    "TIME_INJOFFSET": "System clock adjusted",
}


def _headline_login(event: Event, failed: bool) -> Line:
    rtype = event.get("type")
    template = _LOGIN_TYPES[rtype][1 if failed else 0]
    what = template % _service(event)
    what = what[0].upper() + what[1:]
    source = _where_from(event)
    line = [what + " for ", _pam_account(event)]
    if source:
        line += [" from ", source]
    return L(*line)


def _headline_sudo(event: Event, failed: bool) -> Line:
    who = event.get("auid") or event.get("uid") or "?"
    command = event.get("cmd") or "?"
    target = event.get("acct") or "root"
    if failed:
        return L("sudo refused: ", who, " tried ", command)
    return L("sudo: ", who, " ran ", command, " as ", target)


def _headline_account(event: Event, failed: bool) -> Line:
    what = _ACCOUNT_TYPES[event.get("type")]
    target = event.get("acct") or event.get("grp") or event.get("id") or "?"
    line = [("%s (FAILED)" % what if failed else what) + ": ", target]
    op = event.get("op")
    if op and event.get("type") in ("USER_MGMT", "GRP_MGMT") and op not in ("?", target):
        line += [" (", op, ")"]
    return L(*line + [" by ", _who(event)])


def _mac_verdict(event: Event) -> str:
    verdict = (event.get("apparmor") or event.get("seresult")).lower()
    return verdict if verdict in ("denied", "granted", "allowed", "audit", "status") else "event"


def _headline_mac(event: Event, failed: bool) -> Line:
    verdict = _mac_verdict(event)
    program = event.get("comm") or event.get("exe") or "?"
    if event.get("apparmor"):
        return L("AppArmor %s " % verdict, program, ": ", event.get("operation") or "?", " on ",
                 event.get("name") or "?", " (profile ", event.get("profile") or "?", ")")
    perms = (event.get("seperms") or event.get("perm") or "").strip("{} ") or "?"
    target = event.get("name") or event.get("path") or event.get("tclass") or "?"
    line = ["SELinux %s " % verdict, program, ": ", perms, " on ", target]
    scontext, tcontext = event.get("scontext").split(":"), event.get("tcontext").split(":")
    if len(scontext) > 2 and len(tcontext) > 2:
        line += [" (", "%s → %s %s" % (scontext[2], tcontext[2], event.get("tclass")), ")"]
    return L(*line)


def _headline_user_message(event: Event, failed: bool) -> Line:
    """A free-text USER record (auditctl -m, audit_log_user_message)."""
    return L("Audit message: ", event.get("text"), " from ", event.get("exe") or event.get("comm") or "?",
             " by ", _who(event))


def _headline_login_id(event: Event, failed: bool) -> Line:
    return L("Login id set%s: " % (" FAILED" if failed else ""), event.get("auid") or "?",
             " (session ", event.get("ses") or "?", ") by ", event.get("comm") or event.get("exe") or "?")


def _headline_audit(event: Event, failed: bool) -> Line:
    rtype = event.get("type")
    what = _AUDIT_TYPES[rtype] + (" (FAILED)" if failed else "")
    detail = event.get("unit") or event.get("op") or event.get("dev") or ""
    line = [what]
    if detail and detail != "?":
        line += [": ", detail]
    if event.get("key"):
        line += [" (rule ", event.get("key"), ")"]
    if rtype in ("CONFIG_CHANGE", "USYS_CONFIG", "MAC_STATUS", "MAC_CONFIG_CHANGE", "NETFILTER_CFG", "KERN_MODULE"):
        line += [" by ", _who(event)]
    return L(*line)


def _headline_anomaly(event: Event, failed: bool) -> Line:
    rtype = event.get("type")
    if rtype == "ANOM_ABEND":
        return L("Process crashed: ", event.get("comm") or event.get("exe") or "?",
                 " (signal ", event.get("sig") or "?", ") run by ", _who(event))
    if rtype == "ANOM_PROMISCUOUS":
        return L("Network device ", event.get("dev") or "?", " promiscuous mode %s by "
                 % ("on" if event.get("prom") not in ("0", "") else "off"), _who(event))
    return L("Anomaly %s: " % rtype, event.get("comm") or event.get("exe") or "?", " by ", _who(event))


def _headline_syscall(event: Event, failed: bool) -> Line:
    key = event.get("key")
    argv = event.get("argv")
    name = _watched_path(event)
    if event.get("syscall") in ("execve", "execveat") and (argv or name):
        line = ["Command%s: " % (" failed" if failed else ""), argv or name, " by ", _who(event)]
        if failed and event.get("exit"):
            line += [" (", event.get("exit"), ")"]
    elif name:
        line = ["Watched file %s%s: " % (_verb(event), " FAILED" if failed else ""), name,
                " by ", _who(event), " via ", event.get("exe") or "?"]
    else:
        line = ["%s%s by " % (event.get("syscall") or event.get("type"), " failed" if failed else ""),
                _who(event), " via ", event.get("exe") or "?"]
    if key:
        line += [" (rule ", key, ")"]
    return L(*line)


def _watched_path(event: Event) -> str:
    """The path a file-watch event is about: the PATH record that is not
    the parent directory, made absolute with the CWD when relative."""
    paths = [f for t, f in event.records if t == "PATH" and f.get("name") not in (None, "(null)")]
    chosen = [f for f in paths if f.get("nametype") != "PARENT"] or paths
    if not chosen:
        return ""
    name = chosen[-1]["name"]
    cwd = event.get("cwd")
    if not name.startswith("/") and cwd:
        name = os.path.join(cwd, name)
    return name


# What a file-watch hit did, by syscall name prefix (first match wins).
_SYSCALL_VERBS = (
    ("rename", "replaced"), ("unlink", "deleted"), ("rmdir", "deleted"), ("mkdir", "created"),
    ("mknod", "created"), ("creat", "created"), ("symlink", "linked"), ("link", "linked"),
    ("chmod", "permissions changed"), ("fchmod", "permissions changed"), ("chown", "owner changed"),
    ("fchown", "owner changed"), ("lchown", "owner changed"), ("truncate", "truncated"),
    ("ftruncate", "truncated"), ("setxattr", "attributes changed"), ("lsetxattr", "attributes changed"),
    ("fsetxattr", "attributes changed"), ("removexattr", "attributes changed"), ("utime", "timestamps changed"),
)
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")


def _verb(event: Event) -> str:
    syscall = event.get("syscall")
    for prefix, verb in _SYSCALL_VERBS:
        if syscall.startswith(prefix):
            return verb
    if syscall in ("open", "openat", "openat2"):
        flags = event.get("a2" if syscall == "openat" else "a1")
        return "opened for writing" if any(f in flags for f in _WRITE_FLAGS) else "opened"
    types = [f.get("nametype") for t, f in event.records if t == "PATH"]
    return "created" if "CREATE" in types else "deleted" if "DELETE" in types else "changed"


def _headline_generic(event: Event, failed: bool) -> Line:
    action = event.get("action")
    line = ["%s event%s" % (event.get("type"), " (FAILED)" if failed else "")]
    if action not in ("", "n/a"):
        line += [": ", action.replace("-", " ")]
    obj = event.get("primary_object")
    if obj:
        line += [" ", obj]
    line += [" by ", _who(event)]
    if event.get("how") not in ("", "n/a"):
        line += [" via ", event.get("how")]
    return L(*line)


def headline(event: Event) -> Tuple[Line, Optional[bool]]:
    """What happened, to/by whom, from where: one line for a lock screen."""
    rtype = event.get("type")
    failed = _failed(event)
    if rtype == "USER_CMD":
        make = _headline_sudo
    elif rtype == "LOGIN":
        make = _headline_login_id
    elif rtype == "USER" and event.get("text"):
        make = _headline_user_message
    elif rtype in _LOGIN_TYPES:
        make = _headline_login
    elif rtype in _ACCOUNT_TYPES:
        make = _headline_account
    elif rtype in ("AVC", "USER_AVC", "SELINUX_ERR", "USER_SELINUX_ERR") or event.get("apparmor"):
        make = _headline_mac
        failed = _mac_verdict(event) == "denied" or rtype.endswith("SELINUX_ERR")
    elif rtype in _AUDIT_TYPES:
        make = _headline_audit
    elif rtype.startswith("ANOM_"):
        make = _headline_anomaly
    elif "SYSCALL" in event.types():
        make = _headline_syscall
    else:
        make = _headline_generic
    return make(event, bool(failed)), failed


_DETAIL_FIELDS = (
    ("user", ("acct",)), ("login user", ("auid",)), ("as", ("uid",)), ("from", ("addr",)),
    ("host name", ("hostname",)), ("terminal", ("terminal",)), ("program", ("exe",)), ("command", ("argv", "cmd")),
    ("title", ("proctitle",)), ("directory", ("cwd",)), ("path", ("name",)), ("rule", ("key",)),
    ("syscall", ("syscall",)), ("exit", ("exit",)), ("pid", ("pid",)), ("session", ("ses",)),
    ("unit", ("unit",)), ("operation", ("op",)),
)


def details(event: Event) -> List[Line]:
    """The useful raw facts, one short line each, in a fixed order."""
    lines = []
    seen = set()
    for label, names in _DETAIL_FIELDS:
        for name in names:
            value = event.get(name)
            if value and value not in ("?", "(none)", "unset", "(null)") and (name, value) not in seen:
                if name == "proctitle" and value == event.get("argv"):
                    continue
                seen.add((name, value))
                limit = MAX_COMMAND_CHARS if name in ("argv", "cmd", "proctitle") else MAX_VALUE_CHARS
                lines.append(Line(("%s: " % label, value), limit))
                break
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(event.timestamp))
    lines.append(Line(("event: ", "%s #%s at %s" % (event.get("records"), event.get("serial"), stamp))))
    return lines


def format_event(event: Event) -> Notification:
    """One notification for one event: headline, then details."""
    head, failed = headline(event)
    host = event.get("node")
    head = head + (" on ", host) if host else head
    marker = "❌ " if failed else "✅ " if failed is not None else "ℹ️ "
    lines = details(event)
    body = _fit([marker + head.text()] + [ln.text() for ln in lines], MAX_BODY_BYTES, "\n")
    html_lines = ["%s<b>%s</b>" % (marker, head.html())] + [ln.html() for ln in lines]
    formatted = _fit(html_lines, MAX_HTML_BYTES, "<br>\n")
    return Notification(body=body, html=formatted, fields=dict(event.fields), timestamp=event.timestamp,
                        priority=1 if failed else 0)


def _fit(lines: List[str], limit: int, joiner: str) -> str:
    """Join lines, dropping whole detail lines from the end until the text
    fits the homeserver's size limit (HTML is never cut inside a tag)."""
    text = joiner.join(lines)
    while len(text.encode("utf-8")) > limit and len(lines) > 1:
        lines = lines[:-1]
        text = joiner.join(lines + ["(details cut to fit Matrix's size limit)"])
    if len(text.encode("utf-8")) > limit:
        text = text.encode("utf-8")[:limit].decode("utf-8", "ignore")
    return text


# ---------------------------------------------------------------------------
# Digests: a flood of one kind of event becomes one summary per window
# ---------------------------------------------------------------------------

# Events with equal values of these fields have the same "shape": the same
# rule, kind, action, subject, result, program and host.
SHAPE_FIELDS = ("node", "type", "key", "kind", "action", "primary_subject", "result", "success", "how")


def shape_of(event: Event) -> str:
    return "\x1f".join(event.get(name) for name in SHAPE_FIELDS)


@dataclass
class Window:
    """One shape's current window, in the events' own time."""

    start: float
    alone: int = 0
    folded: int = 0
    first: float = 0.0
    last: float = 0.0
    sample: str = ""
    sample_html: str = ""
    priority: int = 0


class Digester:
    """Per shape and window of ``window`` seconds of *event* time, the first
    ``after`` events go out alone and the rest are counted into one summary,
    sent when the window closes.  Using the events' timestamps, not the
    wall clock, makes --dry-run over a file show exactly what the live
    plugin sends, and makes tests exact without sleeping.  ``after = 0``
    turns digests off."""

    def __init__(self, after: int, window: float):
        self.after = after
        self.window = window
        self.windows: Dict[str, Window] = {}

    def offer(self, event: Event) -> Tuple[bool, List[Notification]]:
        """Whether to send ``event`` alone, and the summaries of any window
        of its shape that it closes."""
        if self.after <= 0:
            return True, []
        key = shape_of(event)
        closed = []
        window = self.windows.get(key)
        if window is not None and event.timestamp >= window.start + self.window:
            closed = self._close(key)
            window = None
        if window is None:
            window = self.windows[key] = Window(start=event.timestamp)
        if window.alone < self.after:
            window.alone += 1
            return True, closed
        if not window.folded:
            head, failed = headline(event)
            head = head + (" on ", event.get("node")) if event.get("node") else head
            window.first, window.sample, window.sample_html = event.timestamp, head.text(), head.html()
            window.priority = 1 if failed else 0
        window.folded += 1
        window.last = max(window.last, event.timestamp)
        return False, closed

    def due(self, now: float) -> List[Notification]:
        """Close the windows that ended by ``now`` (event time, or the wall
        clock when the plugin is live and idle)."""
        out = []
        for key in [k for k, w in self.windows.items() if w.start + self.window <= now]:
            out += self._close(key)
        return out

    def close_all(self) -> List[Notification]:
        out = []
        for key in list(self.windows):
            out += self._close(key)
        return out

    def pending(self) -> bool:
        return any(w.folded for w in self.windows.values())

    def _close(self, key: str) -> List[Notification]:
        window = self.windows.pop(key)
        return [digest_notification(window, self.window)] if window.folded else []

    def snapshot(self) -> str:
        return json.dumps({k: w.__dict__ for k, w in self.windows.items()})

    def restore(self, text: str):
        self.windows = {k: Window(**v) for k, v in json.loads(text or "{}").items()}


def digest_notification(window: Window, length: float) -> Notification:
    first, last = (time.strftime("%H:%M:%S", time.localtime(t)) for t in (window.first, window.last))
    count = "{:,}".format(window.folded)
    what = "%s more in %d s, like: " % (count, length)
    span = "first %s, last %s (%s)" % (first, last, time.strftime("%Z", time.localtime(window.last)))
    body = "🔁 +%s%s\n%s" % (what, window.sample, span)
    formatted = "🔁 <b>+%s</b>%s<br>\n%s" % (html.escape(what), window.sample_html, html.escape(span))
    fields = {"digest": count, "first": str(window.first), "last": str(window.last)}
    return Notification(body=body, html=formatted, fields=fields, timestamp=window.last, priority=window.priority)


# ---------------------------------------------------------------------------
# Spool: accepted notifications on disk until the homeserver has them
# ---------------------------------------------------------------------------

# sqlite3 in WAL mode rather than a Maildir: ordering, per-item attempts,
# size and age bounds, the digest state and the counters all live in one
# file that changes in one transaction per batch of input (one fsync, not
# one per notification), and --status can read it while the plugin writes.
SPOOL_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,          -- wall clock when accepted
    event_time REAL NOT NULL,
    priority INTEGER NOT NULL,      -- 1: failures and denials
    attempts INTEGER NOT NULL DEFAULT 0,
    content TEXT NOT NULL           -- the Matrix event content, JSON
);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY, created REAL, buried REAL, reason TEXT, content TEXT);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True)
class Item:
    id: int
    content: dict
    attempts: int
    created: float


class Spool:
    """A durable queue of notifications, oldest first.

    ``add`` happens inside a transaction that ``commit`` ends (the plugin
    commits after each batch of input: a notification is accepted when its
    batch is on disk).  ``delivered`` removes an item only once the
    homeserver has confirmed it.  The spool is bounded in bytes and age;
    past a bound it drops the oldest of the least important items, says so
    in the log and queues a notice for the room.
    """

    def __init__(self, path: str, max_bytes: int, max_age: float, clock=time.time):
        self.path = path
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SPOOL_SCHEMA)
        self.bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(content)), 0) FROM outbox").fetchone()[0]
        self._dirty = False

    def _begin(self):
        if not self._dirty:
            self._db.execute("BEGIN IMMEDIATE")
            self._dirty = True

    def add(self, notification: Notification):
        self._begin()
        content = json.dumps(notification.content(), ensure_ascii=False)
        self._db.execute("INSERT INTO outbox (created, event_time, priority, content) VALUES (?, ?, ?, ?)",
                         (self._clock(), notification.timestamp, notification.priority, content))
        self.bytes += len(content)

    def set_state(self, name: str, value: str):
        self._begin()
        self._db.execute("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", (name, value))

    def state(self, name: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return row[0] if row else default

    def commit(self):
        if self._dirty:
            self._db.execute("COMMIT")
            self._dirty = False

    def peek(self, after_id: int = 0) -> Optional[Item]:
        row = self._db.execute("SELECT id, content, attempts, created FROM outbox WHERE id > ? ORDER BY id LIMIT 1",
                               (after_id,)).fetchone()
        return Item(row[0], json.loads(row[1]), row[2], row[3]) if row else None

    def delivered(self, item_id: int):
        self._change("DELETE FROM outbox WHERE id = ?", item_id)

    def attempt_failed(self, item_id: int):
        self._change("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", item_id)

    def bury(self, item_id: int, reason: str):
        """Move an item that can never be sent to the dead-letter table."""
        self._begin()
        self._db.execute("INSERT INTO dead (id, created, buried, reason, content) "
                         "SELECT id, created, ?, ?, content FROM outbox WHERE id = ?",
                         (self._clock(), reason, item_id))
        self._change("DELETE FROM outbox WHERE id = ?", item_id)

    def _change(self, sql: str, item_id: int):
        self._begin()
        if sql.startswith("DELETE"):
            row = self._db.execute("SELECT LENGTH(content) FROM outbox WHERE id = ?", (item_id,)).fetchone()
            self.bytes -= row[0] if row else 0
        self._db.execute(sql, (item_id,))
        self.commit()

    def depth(self) -> Tuple[int, Optional[float]]:
        count, oldest = self._db.execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
        return count, oldest

    def enforce_bounds(self) -> int:
        """Drop what is past the age bound, then the oldest of the least
        important until the size bound holds; return how many went."""
        self._begin()
        dropped = self._db.execute("DELETE FROM outbox WHERE created < ?",
                                   (self._clock() - self.max_age,)).rowcount
        if self.bytes > self.max_bytes:
            victims, freed = [], 0
            for item_id, size in self._db.execute("SELECT id, LENGTH(content) FROM outbox ORDER BY priority, id"):
                if self.bytes - freed <= self.max_bytes:
                    break
                victims.append((item_id,))
                freed += size
            self._db.executemany("DELETE FROM outbox WHERE id = ?", victims)
            dropped += len(victims)
        if dropped:
            self.bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(content)), 0) FROM outbox").fetchone()[0]
        return dropped

    def close(self):
        self.commit()
        self._db.close()


def spool_status(path: str) -> Dict[str, object]:
    """What --status prints: read-only, so the running plugin is not
    disturbed (WAL readers never block the writer)."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        count, oldest, size = db.execute(
            "SELECT COUNT(*), MIN(created), COALESCE(SUM(LENGTH(content)), 0) FROM outbox").fetchone()
        dead = db.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
        state = dict(db.execute("SELECT name, value FROM state").fetchall())
    finally:
        db.close()
    return {"depth": count, "oldest": oldest, "bytes": size, "dead": dead, "state": state}


# ---------------------------------------------------------------------------
# Delivery: matrix-commander, one call at a time, never with our stdin
# ---------------------------------------------------------------------------


def matrix_commander_argv(config: Config) -> List[str]:
    """The fixed part of every call.  No audit text is ever in argv:
    matrix-commander parses a message starting with '-' as an option and
    lets a later '--room=' in the text redirect it.  The event goes in on
    the child's own stdin (``--event -``); ``--log-level ERROR ERROR`` keeps
    it from logging every message's plaintext."""
    argv = [config.matrix_commander, "--credentials", config.credentials, "--store", config.store,
            "--log-level", "ERROR", "ERROR", "--print-event-id"]
    if config.room:
        argv += ["--room", config.room]
    return argv


class _Call:
    """One running matrix-commander and what it has printed so far."""

    def __init__(self, process, notification: Notification, deadline: float):
        self.process = process
        self.notification = notification
        self.deadline = deadline
        self.output = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
        self.open = set(self.output)

    def read(self, fd: int):
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        if chunk:
            self.output[fd].extend(chunk[: max(0, READ_SIZE - len(self.output[fd]))])
        else:
            self.open.discard(fd)

    def text(self, stream) -> str:
        return bytes(self.output[stream.fileno()]).decode("utf-8", "replace")


class Courier:
    """Sends notifications with matrix-commander, one process at a time.

    Two matrix-commander processes on one store lose messages, so calls are
    strictly sequential.  A call that outlives ``send_timeout`` (a frozen
    homeserver makes matrix-commander's sync hang forever) is killed.  The
    child's stdin is a pipe holding exactly one event; it never inherits the
    plugin's stdin, where it would hang or send audit records as messages.
    Everything is driven by the plugin's select() loop: ``fds()`` to watch,
    ``deadline()`` to wake up for, ``step()`` to make progress.
    """

    def __init__(self, config: Config, counters: Counters, clock=time.monotonic, spawn=subprocess.Popen):
        self.config = config
        self._counters = counters
        self._clock = clock
        self._spawn = spawn
        self._queue: List[Notification] = []
        self._call: Optional[_Call] = None

    def submit(self, notification: Notification):
        self._queue.append(notification)
        self.step()

    def busy(self) -> bool:
        return bool(self._queue) or self._call is not None

    def fds(self) -> List[int]:
        return sorted(self._call.open) if self._call else []

    def deadline(self) -> Optional[float]:
        """When the loop must call step() even if no fd is readable: the
        call's timeout, or soon if the child closed its output and is about
        to exit (it cannot be waited for without blocking the loop)."""
        if self._call is None:
            return None
        if not self._call.open:
            return min(self._call.deadline, self._clock() + REAP_INTERVAL)
        return self._call.deadline

    def step(self, readable: Iterable[int] = ()):
        """Read the child's output, reap or kill it, start the next call."""
        call = self._call
        if call is not None:
            for fd in readable:
                if fd in call.open:
                    call.read(fd)
            if not call.open and call.process.poll() is not None:
                self._finish(call, None)
            elif self._clock() >= call.deadline:
                self._kill(call, "timed out after %.0f s" % self.config.send_timeout)
        if self._queue and self._call is None:
            self._start(self._queue.pop(0))

    def _start(self, notification: Notification):
        event = json.dumps({"type": "m.room.message", "content": notification.content()})
        env = dict(os.environ, HOME=self.config.state_dir, PYTHONUNBUFFERED="1")
        try:
            process = self._spawn(
                matrix_commander_argv(self.config) + ["--event", "-"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, close_fds=True, start_new_session=True)
        except OSError as exc:
            self._counters.failed += 1
            log.error("cannot run matrix-commander %s: %s; notification lost", self.config.matrix_commander, exc)
            return
        for stream in (process.stdout, process.stderr):
            os.set_blocking(stream.fileno(), False)
        try:
            process.stdin.write(event.encode("utf-8"))
            process.stdin.close()
        except BrokenPipeError:
            pass
        self._call = _Call(process, notification, self._clock() + self.config.send_timeout)

    def _kill(self, call: _Call, problem: str):
        call.process.kill()
        call.process.wait()
        self._finish(call, problem)

    def _finish(self, call: _Call, problem: Optional[str]):
        self._call = None
        call.process.wait()
        out, err = call.text(call.process.stdout), call.text(call.process.stderr)
        call.process.stdout.close()
        call.process.stderr.close()
        if problem is None and call.process.returncode == 0 and out.startswith("$"):
            self._counters.sent += 1
            return
        self._counters.failed += 1
        log.error("matrix-commander failed (%s); notification lost: %s",
                  problem or "exit code %s" % call.process.returncode, _first_error_line(err) or "no error output")

    def stop(self, seconds: float, wait: Callable[[List[int], float], List[int]]):
        """Deliver what is queued for at most ``seconds``, then give up on
        the rest and say how much was lost."""
        end = self._clock() + seconds
        while self.busy() and self._clock() < end:
            timeout = max(0.0, min(end, self.deadline() or end) - self._clock())
            self.step(wait(self.fds(), timeout))
        if self._call is not None:
            self._kill(self._call, "stopped at shutdown")
        if self._queue:
            self._counters.failed += len(self._queue)
            log.error("%d notifications were not sent before shutdown", len(self._queue))
            self._queue.clear()


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if re.search(r"\bE\d{3}\b|[Ee]rror", line):
            return line.strip()[:300]
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else ""


class Printer:
    """--dry-run: print each notification instead of sending it."""

    def __init__(self, stream, as_json: bool, counters: Counters):
        self._stream = stream
        self._json = as_json
        self._counters = counters

    def submit(self, notification: Notification):
        if self._json:
            record = {"body": notification.body, "formatted_body": notification.html, "fields": notification.fields}
            self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self._stream.write(notification.body + "\n\n")
        self._stream.flush()
        self._counters.sent += 1

    def busy(self) -> bool:
        return False

    def fds(self) -> List[int]:
        return []

    def deadline(self) -> Optional[float]:
        return None

    def step(self, readable: Iterable[int] = ()):
        pass

    def stop(self, seconds, wait):
        pass


# ---------------------------------------------------------------------------
# Daemon: the select() loop, signals, reload, counters
# ---------------------------------------------------------------------------


def _select(fds: List[int], timeout: Optional[float]) -> List[int]:
    if not fds and timeout is not None:
        time.sleep(timeout)
        return []
    return select.select(fds, [], [], timeout)[0]


class Plugin:
    """Reads audit records, filters, formats and hands notifications on.

    Signal handlers only set flags and wake the loop through a self-pipe
    (signal.set_wakeup_fd), as auditd-plugins(5) asks.  The loop blocks in
    select() with no timeout unless auparse or the outlet is waiting for
    something: an idle plugin uses no CPU.  EOF or SIGTERM: flush what
    auparse holds, let the outlet finish, log the totals, return 0.
    """

    def __init__(self, config: Config, rules: RuleSet, auparse, outlet, counters: Counters,
                 reload: Callable[[], Tuple[Config, RuleSet]] = None, clock=time.monotonic,
                 wait=_select, hostname: str = ""):
        self.config = config
        self.rules = rules
        self.outlet = outlet
        self.counters = counters
        self._reload_source = reload
        self._clock = clock
        self._wait = wait
        self.reader = EventReader(auparse, self._on_event, counters, hostname, config.eoe_timeout)
        self.stopping = False
        self.reload_requested = False
        self._last_age = clock()

    def _on_event(self, event: Event):
        try:
            if not self.rules.wanted(event):
                self.counters.filtered += 1
                return
            notification = format_event(event)
        except Exception:  # noqa: BLE001 - one odd event must not stop the plugin
            self.counters.problem("could not format an event", exc_info=True)
            return
        self.outlet.submit(notification)

    def request_stop(self, *_):
        self.stopping = True

    def request_reload(self, *_):
        self.reload_requested = True

    def reload(self):
        """SIGHUP: new config and rules, or the old ones and a log line why."""
        self.reload_requested = False
        if self._reload_source is None:
            return
        try:
            config, rules = self._reload_source()
        except Error as exc:
            log.error("reload failed, keeping the previous config and rules: %s", exc)
            return
        self.config, self.rules = config, rules
        if isinstance(self.outlet, Courier):
            self.outlet.config = config
        log.info("reloaded %s: %d blacklist rules, %d allow-list rules",
                 config.source, len(rules.deny), len(rules.allow))

    def _timeout(self) -> Optional[float]:
        timeouts = []
        if self.reader.pending():
            timeouts.append(IDLE_TICK)
        deadline = self.outlet.deadline()
        if deadline is not None:
            timeouts.append(max(0.0, deadline - self._clock()))
        return min(timeouts) if timeouts else None

    def run(self, fd: int, wakeup_fd: Optional[int] = None) -> bool:
        """Process one input until EOF (True) or a stop request (False)."""
        while not self.stopping:
            if self.reload_requested:
                self.reload()
            watch = [fd] + ([wakeup_fd] if wakeup_fd is not None else []) + self.outlet.fds()
            ready = self._wait(watch, self._timeout())
            if wakeup_fd is not None and wakeup_fd in ready:
                _drain(wakeup_fd)
            if fd in ready:
                try:
                    data = os.read(fd, READ_SIZE)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EINTR):
                        continue
                    log.error("reading audit records failed: %s", exc)
                    return True
                if not data:
                    return True
                self.reader.feed(data)
            now = self._clock()
            if (fd not in ready or now - self._last_age >= IDLE_TICK) and self.reader.pending():
                self._last_age = now
                self.reader.age()
            self.outlet.step(ready)
        return False

    def finish(self, at_eof: bool):
        """Emit what auparse still holds and give the outlet its time."""
        self.reader.flush()
        self.outlet.stop(EOF_DRAIN_SECONDS if at_eof else SHUTDOWN_GRACE, self._wait)
        log.info("exiting: %s", self.counters.line())


def _drain(fd: int):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


# ---------------------------------------------------------------------------
# Logging and files
# ---------------------------------------------------------------------------


def open_private_file(path: str) -> int:
    """Open (creating 0600) a file for appending, refusing world-writable
    directories such as /tmp and symlinks planted in the file's place."""
    parent = os.path.dirname(os.path.abspath(path))
    mode = os.stat(parent).st_mode
    if mode & stat.S_IWOTH:
        raise Error("refusing to write %s: its directory %s is writable by everyone" % (path, parent))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def setup_logging(config: Config, to_stderr: bool, syslog_socket: str = "/dev/log") -> logging.Handler:
    """Syslog by default, or the configured file; stderr too when a person
    is watching.  Never /tmp."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.setLevel(config.log_level.upper())
    log.propagate = False
    if config.log_file:
        stream = os.fdopen(open_private_file(config.log_file), "a", encoding="utf-8")
        handler: logging.Handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s audit-notify[%(process)d]: %(levelname)s %(message)s"))
    elif os.path.exists(syslog_socket):
        handler = logging.handlers.SysLogHandler(address=syslog_socket, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("audit-notify[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("audit-notify: %(levelname)s %(message)s"))
        to_stderr = False
    log.addHandler(handler)
    if to_stderr:
        echo = logging.StreamHandler(sys.stderr)
        echo.setFormatter(logging.Formatter("audit-notify: %(levelname)s %(message)s"))
        log.addHandler(echo)
    return handler


# ---------------------------------------------------------------------------
# --check
# ---------------------------------------------------------------------------


def check(config_path: Optional[str], out, root: str = "/", run=subprocess.run) -> int:
    """Validate everything the plugin needs and say plainly what is wrong.
    Returns the number of failures."""
    failures = 0

    def report(ok: Optional[bool], text: str):
        nonlocal failures
        failures += ok is False
        out.write("%-4s %s\n" % ({True: "ok", False: "FAIL", None: "warn"}[ok], text))

    try:
        config = load_config(config_path, root)
        report(True, "config: %s" % config.source)
    except Error as exc:
        report(False, "config: %s" % exc)
        return failures
    try:
        rules = load_ruleset(config)
        report(True, "rules: %d blacklist, %d allow-list (%s)" % (
            len(rules.deny), len(rules.allow), config.blacklist or "no blacklist"))
    except Error as exc:
        report(False, "rules: %s" % exc)
    try:
        module = import_auparse()
        report(True, "auparse: %s" % getattr(module, "__file__", "built in"))
    except Error as exc:
        report(False, str(exc))
    mc = config.matrix_commander
    if not (os.path.isfile(mc) and os.access(mc, os.X_OK)):
        report(False, "matrix-commander: %s is not an executable file (install it with pipx, "
                      "then set matrix_commander = PATH)" % mc)
    else:
        try:
            result = run([mc, "--version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            version = result.stdout.decode("utf-8", "replace").strip().splitlines()
            report(result.returncode == 0, "matrix-commander: %s %s" % (mc, version[-1] if version else ""))
        except (OSError, subprocess.TimeoutExpired) as exc:
            report(False, "matrix-commander: %s does not run: %s" % (mc, exc))
    _check_secret_file(config.credentials, "credentials", report)
    _check_secret_dir(config.store, "store", report)
    if config.log_file:
        parent = os.path.dirname(config.log_file)
        if os.path.isdir(parent) and os.stat(parent).st_mode & stat.S_IWOTH:
            report(False, "log_file: %s is in a world-writable directory" % config.log_file)
        else:
            report(True, "log_file: %s" % config.log_file)
    else:
        report(True, "logging to syslog")
    return failures


def _check_secret_file(path: str, what: str, report):
    try:
        st = os.stat(path)
    except OSError as exc:
        report(False, "%s: %s (log the bot in with matrix-commander --login, see README)" % (what, exc))
        return
    if st.st_mode & 0o077:
        report(False, "%s: %s is mode %o; it holds an access token: chmod 600 %s"
               % (what, path, stat.S_IMODE(st.st_mode), path))
    else:
        report(True, "%s: %s" % (what, path))


def _check_secret_dir(path: str, what: str, report):
    if not os.path.isdir(path):
        report(False, "%s: %s is not a directory (matrix-commander creates it at login)" % (what, path))
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        report(False, "%s: %s is mode %o; it holds encryption keys: chmod 700 %s" % (what, path, mode, path))
    else:
        report(True, "%s: %s" % (what, path))


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="audit-notify",
        description="auditd plugin: send audit events as end-to-end-encrypted Matrix notifications.",
        epilog="Try: ausearch --start today --raw | audit-notify --dry-run")
    parser.add_argument("--config", metavar="FILE", help="config file (default %s)" % DEFAULT_CONFIG)
    parser.add_argument("--dry-run", action="store_true", help="send nothing; print each notification")
    parser.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per line")
    parser.add_argument("--check", action="store_true", help="validate the setup and say what is wrong")
    parser.add_argument("files", nargs="*", metavar="FILE", help="audit logs to read instead of stdin")
    args = parser.parse_args(argv)
    if args.json and not args.dry_run:
        parser.error("--json needs --dry-run")
    return args


def _open_inputs(files: Sequence[str]):
    if not files:
        yield sys.stdin.fileno()
        return
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise Error("cannot read %s: %s" % (path, exc)) from None
        try:
            yield fd
        finally:
            os.close(fd)


def _install_signals(plugin: Plugin) -> Tuple[int, int]:
    read_end, write_end = os.pipe()
    for end in (read_end, write_end):
        os.set_blocking(end, False)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGTERM, plugin.request_stop)
    signal.signal(signal.SIGINT, plugin.request_stop)
    signal.signal(signal.SIGHUP, plugin.request_reload)
    return read_end, write_end


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.check:
        return 1 if check(args.config, sys.stdout) else 0
    try:
        config = load_config(args.config)
        rules = load_ruleset(config)
        auparse = import_auparse()
        if args.dry_run:
            setup_logging(Config(), to_stderr=False, syslog_socket="")
        else:
            setup_logging(config, to_stderr=sys.stderr.isatty())
    except Error as exc:
        sys.stderr.write("audit-notify: %s\n" % exc)
        return 1
    counters = Counters()
    if args.dry_run:
        outlet = Printer(sys.stdout, args.json, counters)
    else:
        outlet = Courier(config, counters)

    def reload():
        new = load_config(args.config)
        return new, load_ruleset(new)

    hostname = config.hostname or socket.gethostname()
    plugin = Plugin(config, rules, auparse, outlet, counters, reload=reload, hostname=hostname)
    wakeup = _install_signals(plugin)
    log.info("started: config %s, %d blacklist and %d allow-list rules, %s",
             config.source, len(rules.deny), len(rules.allow),
             "dry run" if args.dry_run else "sending with %s" % config.matrix_commander)
    at_eof = True
    try:
        for fd in _open_inputs(args.files):
            if not plugin.run(fd, wakeup[0]):
                at_eof = False
                break
    except Error as exc:
        log.error("%s", exc)
        sys.stderr.write("audit-notify: %s\n" % exc)
        plugin.finish(at_eof=False)
        return 1
    plugin.finish(at_eof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
