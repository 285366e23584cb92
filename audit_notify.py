#!/usr/bin/python3
"""audit-notify: Linux audit events as end-to-end-encrypted Matrix notifications.

An auditd plugin (see auditd-plugins(5)).  The data flows one way::

    auditd (format = string) ─ stdin ─┐
    ausearch --raw ... | or FILE ... ─┴─> EventReader  auparse feed: records -> events (a
                                                       summary first, the rest when asked)
                                          RuleSet      allow-list / blacklist
                                          Digester     floods -> one summary per window
                                          format_event plain body + escaped HTML
                                          Spool        sqlite3 (WAL): accepted = on disk
                                          Sender       one warm matrix-commander, via a FIFO
                                          Plugin       the select() loop, signals, counters

Sections follow the data: config, auparse, events, rules, format, digests,
spool, delivery, daemon; then logging, privileges, the doctor and setup,
and the CLI.

Try it by hand, without any homeserver::

    ausearch --start today --raw | python3 audit_notify.py --dry-run
    python3 audit_notify.py --dry-run --json tests/data/debian12-sample.log

The module runs as root inside auditd (until it drops to its own user), so
it is kept to the standard library plus the system's auparse bindings, does
nothing at import time, and treats every byte of audit data as hostile: it
never reaches argv or a shell, and it is escaped for every renderer it
reaches.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import fnmatch
import functools
import glob
import html
import json
import logging
import logging.handlers
import os
import pwd
import re
import select
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
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
DEFAULT_MATRIX_COMMANDER = "/usr/local/bin/matrix-commander"  # where pip puts it
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
# Events held back at most, waiting for more of their records.
HOLD_MAX = 1000
# An unfinished input line longer than this is not carried to the next read
# (a record line is at most ~9 KB plus its enrichment).
MAX_LINE_BYTES = 65536
# Record types one event may have several of; any other type seen again
# under the same event id means another event with that id.
_REPEATING_TYPES = frozenset(("PATH", "EXECVE", "AVC", "AVC_PATH", "OBJ_PID", "SOCKADDR", "UNKNOWN"))
# How long input must pause before the events held back are emitted (the
# newest event, in case more of its records come; events whose EOE never
# came).  Only used while something is held: it is most of the latency of
# a lone event, and the records of one event arrive within milliseconds.
IDLE_TICK = 0.1
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
# A SIGTERM waits this long for the event in flight (auditd itself does
# not wait for its plugins).
SHUTDOWN_GRACE = 5.0
# At EOF (someone piping ausearch by hand) the spool gets this long to be
# delivered; what is left is sent by the next start.
EOF_DRAIN_SECONDS = 120.0
# At EOF, stop waiting for the homeserver after this many failed sends in a
# row (it is down: the spool is sent by the next start).
EOF_GIVE_UP_FAILURES = 4
# While input keeps coming, new notifications are committed at least this
# often; when it pauses, at once.
COMMIT_DELAY = 0.2
# Counters go to the log this often, and the spool's bounds are checked.
STATS_INTERVAL = 3600.0
BOUNDS_INTERVAL = 60.0


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

    matrix_commander: str = DEFAULT_MATRIX_COMMANDER
    credentials: str = "/etc/audit-notify/credentials.json"
    store: str = "/var/lib/audit-notify/store"
    room: str = ""
    blacklist: str = ""
    allowlist: str = ""
    log_file: str = ""
    log_level: str = "info"
    hostname: str = ""
    send_timeout: float = 30.0
    eoe_timeout: int = 2
    state_dir: str = "/var/lib/audit-notify"
    spool_dir: str = "/var/lib/audit-notify/spool"
    spool_max_mb: int = 64
    spool_max_age_hours: float = 168.0
    max_messages_per_minute: int = 30
    digest_after: int = 5
    digest_window: float = 60.0
    user: str = "audit-notify"
    source: str = "(built-in defaults)"


_PATH_KEYS = ("matrix_commander", "credentials", "store", "blacklist", "allowlist", "log_file", "state_dir",
              "spool_dir")
_LOG_LEVELS = ("debug", "info", "warning", "error")


def _positive_number(kind):
    def convert(text):
        value = kind(text)
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    return convert


def _count(text):
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


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
    "spool_max_mb": _positive_number(int),
    "spool_max_age_hours": _positive_number(float),
    "max_messages_per_minute": _count,
    "digest_after": _count,
    "digest_window": _positive_number(float),
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
    # The original ran everything as root, with root's files: keep that
    # (with a warning at start) until the admin moves to a config of its own.
    values = dict(credentials=os.path.join(legacy, "credentials.json"), store=os.path.join(legacy, "store"),
                  state_dir=legacy, spool_dir=os.path.join(legacy, "spool"), user="root")
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
_EVENT_LEVEL = frozenset(NORMALIZED_FIELDS + EXTRA_FIELDS)
# What an event's summary holds, read as the event arrives: what digests
# group by, and what rules most often test.
SUMMARY_FIELDS = ("type", "time", "node", "serial", "records", "kind", "action", "object_kind", "how",
                  "session", "primary_subject", "secondary_subject", "primary_object", "secondary_object",
                  "result", "key", "success")
_SUMMARY = frozenset(SUMMARY_FIELDS)
_EVENT_LEVEL_SET_LATER = frozenset(("node", "serial", "records"))


class Event:
    """One audit event: all records sharing a serial (and node).

    ``fields`` is flat: the normalized fields above, then every raw field by
    its audit name, interpreted (hex decoded, ids to names); where several
    records carry a name the first wins.  ``records`` keeps each record's own
    fields for the formatter and for rules on repeated names (PATH ``name``).

    Reading every field of every record through auparse's bindings is most
    of the cost of a flood, and in a flood most events are only counted into
    a digest.  So an event read from the live stream starts as a *summary*:
    its record types and the fields that rules and digests usually ask for
    (SUMMARY_FIELDS).  Asking for anything else reads the event's own lines
    again with a second parser, once (``load``); the result is the same as
    reading everything at once (tests/test_events.py checks this over every
    corpus event).
    """

    __slots__ = ("_fields", "_records", "_types", "_load", "timestamp", "ended", "skipped")

    def __init__(self, fields: Dict[str, str], records: Optional[List[Tuple[str, Dict[str, str]]]] = None,
                 timestamp: float = 0.0, ended: bool = False, skipped: int = 0,
                 types: Optional[List[str]] = None, load: Optional[Callable[[], Optional["Event"]]] = None):
        self._fields = fields
        self._records = records if records is not None else []
        self._types = types
        self._load = load
        self.timestamp = timestamp
        self.ended = ended      # its EOE record came: nothing more will
        self.skipped = skipped  # records whose type could not be read

    def _read_all(self):
        if self._load is not None:
            load, self._load = self._load, None
            whole = load()
            if whole is None:  # could not be read again: what the summary has
                self._records = [(name, {}) for name in self._types]
            else:
                self._fields, self._records = whole._fields, whole._records
            self._types = None

    @property
    def whole(self) -> bool:
        """Whether every record has been read (not only the summary)."""
        return self._load is None

    @property
    def fields(self) -> Dict[str, str]:
        self._read_all()
        return self._fields

    @property
    def records(self) -> List[Tuple[str, Dict[str, str]]]:
        self._read_all()
        return self._records

    def get(self, name: str, default: str = "") -> str:
        if self._load is not None and name not in _SUMMARY and name not in self._fields:
            self._read_all()  # not a summary field: only the whole event knows
        return self._fields.get(name, default)

    def values(self, name: str) -> List[str]:
        """Every value of a field in the event, for rule matching.  The
        event-level fields (``type`` is the first record's, as in the
        original) have one; a raw field has one per record that has it."""
        if name in _EVENT_LEVEL:
            value = self.get(name, None)
            return [] if value is None else [value]
        found = []
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
        if self._types is not None:
            return self._types
        return [name for name, _ in self._records]

    def absorb(self, piece: "Event"):
        """Join another piece of this event (see EventReader): its records
        follow, and its fields fill in what this one lacks."""
        if not self.records:  # a piece that was only an EOE
            self._fields = dict(piece.fields)
        self.records.extend(piece.records)
        for name, value in piece.fields.items():
            self._fields.setdefault(name, value)
        self._fields["records"] = " ".join(self.types())
        self.ended = self.ended or piece.ended
        self.skipped += piece.skipped


def _text(call, *args) -> str:
    """Call an auparse accessor; bytes that are not UTF-8 come back escaped
    instead of raising (an attacker chooses an SSH username's bytes)."""
    try:
        value = call(*args)
    except UnicodeDecodeError as exc:
        return exc.object.decode("utf-8", "backslashreplace")
    return "" if value is None else str(value)


def _interpret(au) -> str:
    """The current field, interpreted (as _text, without its extra call:
    this runs for most fields the plugin reads)."""
    try:
        value = au.interpret_field()
    except RuntimeError:
        return _text(au.get_field_str)
    except UnicodeDecodeError as exc:
        return exc.object.decode("utf-8", "backslashreplace")
    return "" if value is None else value


def _type_name(au) -> Optional[str]:
    """The record's type; None if it cannot be read at all."""
    try:
        name = au.get_type_name()
        return "" if name is None else name
    except UnicodeDecodeError as exc:
        return exc.object.decode("utf-8", "backslashreplace")
    except LookupError:  # a type number this libauparse has no name for
        try:
            return "UNKNOWN[%d]" % au.get_type()
        except LookupError:
            return None


def _read_fields(au) -> Dict[str, str]:
    """The current record's fields by name, interpreted; the first of a
    repeated name wins.  This is the hot loop of the plugin: the plain
    calls go first, the careful ones only where they raise."""
    if not au.first_field():
        return {}
    pairs = []
    name_of, interpret, next_field = au.get_field_name, au.interpret_field, au.next_field
    while True:
        try:
            pairs.append((name_of(), interpret()))
        except (UnicodeDecodeError, RuntimeError):
            pairs.append((_text(au.get_field_name), _interpret(au)))
        if not next_field():
            break
    fields = dict(reversed(pairs))  # reversed: the first of a repeated name wins
    fields.pop(None, None)
    fields.pop("", None)
    return fields


def _read_records(au) -> Tuple[List[Tuple[str, Dict[str, str]]], bool, int]:
    """The event's records (without EOE), whether its EOE was among them,
    and how many records were skipped because their type is unreadable."""
    records, ended, skipped = [], False, 0
    au.first_record()
    while True:
        rtype = _type_name(au)
        if rtype is None:
            skipped += 1
        elif rtype == "EOE":
            ended = True
        else:
            records.append((rtype, _read_fields(au)))
        if not au.next_record():
            break
    return records, ended, skipped


def _normalized(au, auparse) -> Dict[str, str]:
    """The original script's fields, computed the same way: subjects read
    "value = field" ("system" for an unset primary), objects "field = value",
    and "n/a" where the normalizer has nothing.  Called first thing: the
    normalizer searches each record from where its field cursor is, so
    fields read before would change its answers (an AVC on a directory
    came out "admin-defined-rule" instead of "file")."""
    out: Dict[str, str] = {}
    if au.aup_normalize(auparse.NORM_OPT_NO_ATTRS):
        out["error"] = "Error normalizing"
        return out
    for name, call in (("kind", au.aup_normalize_get_event_kind), ("action", au.aup_normalize_get_action),
                       ("object_kind", au.aup_normalize_object_kind), ("how", au.aup_normalize_how)):
        try:
            out[name] = _text(call)
        except RuntimeError:
            out[name] = "n/a"
    if au.aup_normalize_session():
        out["session"] = _interpret(au)
    for name, finder in (("primary_subject", au.aup_normalize_subject_primary),
                         ("secondary_subject", au.aup_normalize_subject_secondary),
                         ("primary_object", au.aup_normalize_object_primary),
                         ("secondary_object", au.aup_normalize_object_secondary)):
        if finder():
            value, field_name = _interpret(au), _text(au.get_field_name)
            if name == "primary_subject" and value == "unset":
                value = "system"
            out[name] = "%s = %s" % ((value, field_name) if name.endswith("subject") else (field_name, value))
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
    # argc is whatever the record says; the words are what is there (an
    # argc of 4294967295 with one argument must not mean 4e9 words).
    present = [int(m.group(1)) for m in map(_ARG_NAME.match, args) if m]
    try:
        argc = min(int(args.get("argc", "0")), max(present, default=-1) + 1)
    except ValueError:
        argc = max(present, default=-1) + 1
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


_EOE_LINE = re.compile(rb"(?:node=(\S*) )?type=EOE msg=audit\((\d+)\.(\d+):(\d+)\)")
_RECORD_LINE = re.compile(rb"(?:node=(\S*) )?type=\S+ msg=audit\((\d+)\.(\d+):(\d+)\)")
_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+")
_BLANK_LINE = re.compile(rb"\n(?=\n)")
_ARG_NAME = re.compile(r"a(\d+)(?:\[\d+\])?$")


def _shell_word(word: str) -> str:
    if word and _SHELL_SAFE.fullmatch(word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


@functools.lru_cache(maxsize=64)
def _second_text(sec: int) -> Tuple[str, str]:
    return time.strftime("%a %b %d %H:%M:%S", time.localtime(sec)), time.strftime("%Y", time.localtime(sec))


def _stamp_text(stamp) -> str:
    """str(AuEvent), the original's "time" field, made once per second
    rather than once per event (it is a quarter of the parsing time)."""
    clock, year = _second_text(stamp.sec)
    host = _text(lambda: stamp.host) or "(null)"
    return "%s.%d %s serial=%d host=%s" % (clock, stamp.milli, year, stamp.serial, host)


class Malformed(Exception):
    """auparse handed over something that is not an audit event."""


def event_from_parser(au, auparse, default_node: str, normalized: Optional[Dict[str, str]] = None) -> Event:
    """Build an Event from the parser's current event (inside its callback),
    normalized first unless that was done already."""
    stamp = au.get_timestamp()
    if stamp is None:
        raise Malformed("a record without type= and msg=audit(...)")
    if normalized is None:
        normalized = _normalized(au, auparse)
    records, ended, skipped = _read_records(au)
    if not records and not ended:
        raise Malformed("a record whose type cannot be read")
    fields = {"type": records[0][0] if records else "EOE", "time": _stamp_text(stamp)}
    fields.update(normalized)
    if "result" not in fields:
        res = next((f["res"] for _, f in records if "res" in f), None)
        if res is not None:
            fields["result"] = res
    fields["node"] = _text(lambda: stamp.host) or default_node
    fields["serial"] = str(stamp.serial)
    raw: Dict[str, str] = {}
    for _, record_fields in reversed(records):  # so that the first record's value wins
        raw.update(record_fields)
    raw.update(fields)
    fields = raw
    if fields.get("key") in ("(null)", "(none)"):
        del fields["key"]
    argv = _argv(records)
    if argv:
        fields["argv"] = argv
    fields["records"] = " ".join(name for name, _ in records)
    return Event(fields=fields, records=records, timestamp=stamp.sec + stamp.milli / 1000.0, ended=ended,
                 skipped=skipped)


def _first_value(au, name: str) -> Optional[str]:
    """The first value of a field in the parser's current event, read
    without walking every field (auparse searches in C)."""
    au.first_record()
    try:
        found = au.find_field(name)
    except OSError:  # the binding reports a stale errno with "not found"
        found = None
    if found is None:  # not there, or there with no text
        try:
            if au.get_field_name() != name:
                return None
        except (RuntimeError, UnicodeDecodeError):
            return None
    return _interpret(au)


def summary_from_parser(au, auparse, default_node: str, lines: "LineIndex",
                        read_again: Callable[[str], Optional[Event]]) -> Event:
    """An Event that holds only SUMMARY_FIELDS until more is asked for,
    then calls ``read_again`` on its records' lines.  An event whose lines
    cannot be had exactly as fed (enrichment lost, bytes that are not
    UTF-8) or that auparse cannot normalize is read whole at once."""
    stamp = au.get_timestamp()
    if stamp is None:
        raise Malformed("a record without type= and msg=audit(...)")
    normalized = _normalized(au, auparse)
    types, texts, ended = [], [], False
    au.first_record()
    while True:
        rtype = _type_name(au)
        try:
            text = lines.take(au.get_record_text())
        except UnicodeDecodeError:
            text = None
        if text is None or rtype is None:
            return event_from_parser(au, auparse, default_node, normalized)
        texts.append(text)
        if rtype == "EOE":
            ended = True
        else:
            types.append(rtype)
        if not au.next_record():
            break
    if not types and not ended:
        raise Malformed("a record whose type cannot be read")
    if "error" in normalized:
        return event_from_parser(au, auparse, default_node, normalized)
    fields = {"type": types[0] if types else "EOE", "time": _stamp_text(stamp)}
    fields.update(normalized)
    # The rest as the whole event has them: "result" is the first "res";
    # a name the normalizer left out is the first record's raw field.
    result = _first_value(au, "res")
    if result is not None:
        fields["result"] = result
    for name in SUMMARY_FIELDS:
        if name not in fields and name not in _EVENT_LEVEL_SET_LATER:
            value = _first_value(au, name)
            if value is not None:
                fields[name] = value
    if fields.get("key") in ("(null)", "(none)"):
        del fields["key"]
    fields["node"] = _text(lambda: stamp.host) or default_node
    fields["serial"] = str(stamp.serial)
    fields["records"] = " ".join(types)
    text = "\n".join(texts) + "\n"
    return Event(fields, timestamp=stamp.sec + stamp.milli / 1000.0, ended=ended, types=types,
                 load=lambda: read_again(text))


def read_event_text(auparse, text: str, default_node: str) -> Event:
    """Read one event's lines again, whole, with a parser of their own."""
    parser = auparse.AuParser(auparse.AUSOURCE_BUFFER, text)
    parser.set_escape_mode(auparse.AUPARSE_ESC_RAW)
    whole = None
    while parser.parse_next_event():
        piece = event_from_parser(parser, auparse, default_node)
        if whole is None:
            whole = piece
        else:
            whole.absorb(piece)
    if whole is None:
        raise Malformed("an event's lines could not be read again")
    return whole


class LineIndex:
    """The input lines as fed, by their text up to the enrichment, for
    reading an event again later.

    auparse hands a record's text back without its ENRICHED part (after
    0x1d: the names auditd resolved on the host that logged it), and
    reading it again without that would resolve ids with this host's
    passwd.  So, once the stream shows enrichment, each line is kept here
    until its record is claimed; a record that is not found (the index
    was trimmed, or auparse cut the line at a NUL) makes its event be read
    whole at once, never with names guessed.  A stream without enrichment
    costs nothing here.
    """

    MAX_LINES = 50000  # lines no event claimed (not records, cut lines)

    def __init__(self, enriched: bool = False):
        self.enriched = enriched
        self._lines: Dict[str, str] = {}

    def add(self, data: bytes):
        """Keep whole lines (``data`` ends with a newline)."""
        if not self.enriched and b"\x1d" not in data:
            return
        self.enriched = True
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:  # such a line is not kept: its event is read whole at once
            lines = []
            for line in data.split(b"\n"):
                with contextlib.suppress(UnicodeDecodeError):
                    lines.append(line.decode("utf-8"))
        if b"\0" in data:  # auparse cut the line there: reading it again would differ
            lines = [line for line in lines if "\0" not in line]
        self._lines.update(zip([line.partition("\x1d")[0] for line in lines], lines))
        if len(self._lines) > self.MAX_LINES:
            for old in list(self._lines)[:len(self._lines) // 2]:
                del self._lines[old]

    def take(self, text: str) -> Optional[str]:
        """The line a record came from, with its enrichment."""
        if not self.enriched:
            return text
        return self._lines.pop(text, None)


@dataclass
class Counters:
    """What the plugin did; logged periodically and at exit.  ``problems``
    counts each kind of bad input, which is logged once, not once per hit."""

    records: int = 0
    events: int = 0
    filtered: int = 0    # dropped by the blacklist / allow-list
    notified: int = 0    # events accepted as notifications of their own
    digested: int = 0    # events counted into a digest instead
    digests: int = 0     # digest summaries accepted
    sent: int = 0        # messages the homeserver acknowledged
    retried: int = 0     # failed send attempts, retried later
    rate_limited: int = 0  # of those, refused by the homeserver's rate limit
    failed: int = 0      # messages given up on (dead letters)
    dropped: int = 0     # messages dropped at the spool's bounds
    errors: int = 0
    problems: Dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict:
        return dict(self.__dict__, problems=dict(self.problems))

    def problem(self, kind: str, count: int = 1, exc_info: bool = False):
        self.errors += count
        seen = self.problems.get(kind, 0)
        self.problems[kind] = seen + count
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

    auparse sometimes hands one serial over in pieces: it ends a LOGIN
    record's event at once although the kernel follows it with a SYSCALL
    record; records that arrive out of order (a PROCTITLE before its
    SYSCALL) start a second piece; and within one read it hands events over
    in time order, so an earlier-stamped event cuts a later one in two.  So
    pieces are held and joined by (node, serial, time) until the event is
    over: its EOE has come, the input pauses (idle tick), the events
    arriving are ``eoe_timeout`` seconds newer (unless it is the one still
    being read), or too many are held.

    auparse does not hand the EOE record over (except in a piece it hands
    over late, as the SYSCALL after a LOGIN, once it reads the next
    record).  So EOE lines are picked out of the input as it is fed, and an
    event with its SYSCALL goes out once auparse has read a line past its
    EOE; a one-record user-space event at the next pause.  Input lines that
    are not audit records, which auparse skips without a word, and NUL
    bytes, at which it cuts a record, are counted.
    """

    def __init__(self, auparse, sink: Callable[[Event], None], counters: Counters,
                 default_node: str = "", eoe_timeout: int = 2, lazy: bool = True):
        self._auparse = auparse
        self._sink = sink
        self._counters = counters
        self._node = default_node
        self._held: Dict[Tuple[str, str, float], Event] = {}
        self._newest = 0.0
        self._timeout = eoe_timeout
        self._line_open = False
        self._line_head = b""  # the first bytes of a line that is not finished
        self._tail = b""       # the unfinished last line, for _whole_lines
        self._eoes: set = set()  # ids whose EOE auparse has read a line past
        self._last_eoes: set = set()  # ids whose EOE is the last line read
        self._reading = None   # the id of the last record line read: maybe more to come
        self._lines: Optional[LineIndex] = LineIndex() if lazy else None
        self._fed = False
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
            if self._lines is None:
                event = event_from_parser(au, self._auparse, self._node)
            else:
                event = summary_from_parser(au, self._auparse, self._node, self._lines, self._read_again)
            self._counters.records += len(event.types())
            if event.skipped:
                self._counters.problem("records whose type cannot be read skipped", event.skipped)
            self._hold(event)
        except Malformed as exc:
            self._counters.problem("malformed input skipped: %s" % exc)
        except Exception:  # noqa: BLE001 - a bad event must not stop the stream
            self._counters.problem("could not read an audit event", exc_info=True)

    @property
    def lazy(self) -> bool:
        """Whether events start as summaries.  Worth it when most events
        are only digested; with digests off every event is formatted, and
        reading it twice would only cost."""
        return self._lines is not None

    @lazy.setter
    def lazy(self, on: bool):
        if on and self._lines is None:
            # Lines fed before now are not in the new index: if the stream
            # may be enriched, their events are read whole.
            self._lines = LineIndex(enriched=self._fed)
        elif not on:
            self._lines = None

    def _read_again(self, text: str) -> Optional[Event]:
        try:
            return read_event_text(self._auparse, text, self._node)
        except Exception:  # noqa: BLE001 - keep what the summary has
            self._counters.problem("could not read an event's records again", exc_info=True)
            return None

    def _hold(self, event: Event):
        key = (event.get("node"), event.get("serial"), event.timestamp)
        first = self._held.get(key)
        if first is not None and (set(first.types()) & set(event.types())) - _REPEATING_TYPES:
            self._emit(self._held.pop(key))  # the same id again (a replayed log): another event
            first = None
        if first is not None:
            first.absorb(event)
            event = first
        else:
            self._held[key] = event
        self._newest = max(self._newest, event.timestamp)

    def _release(self):
        """After each feed(): emit the events whose EOE came (all pieces of
        one read are joined first, whatever order auparse handed them over
        in), then those that are too old or too many to keep waiting."""
        eoes, self._eoes = self._eoes, set()
        for key in [k for k, e in self._held.items() if e.ended or (k in eoes and "SYSCALL" in e.types())]:
            self._emit(self._held.pop(key))
        for old in list(self._held):  # oldest first: stop at the first still young,
            young = self._held[old].timestamp >= self._newest - self._timeout and len(self._held) <= HOLD_MAX
            if young or old == self._reading:  # or still being read: its next line may come next
                break
            self._emit(self._held.pop(old))

    def _emit(self, event: Event):
        if not event.types():
            return  # an EOE whose records were all unreadable
        self._counters.events += 1
        self._sink(event)

    def _emit_held(self):
        self._eoes, self._last_eoes = set(), set()
        held, self._held = self._held, {}
        for event in held.values():
            self._emit(event)

    def feed(self, data: bytes):
        if data:
            self._count_strays(data)
            lines = self._whole_lines(data)
            if lines:
                self._note_eoes(lines)
                if self._lines is not None:
                    self._lines.add(lines)
            self._fed = True
            self._parser.feed(data)
            self._line_open = not data.endswith(b"\n")
            self._release()

    def _whole_lines(self, data: bytes) -> bytes:
        """The lines this read finishes, the unfinished one before it
        included; the rest waits for the next read."""
        text = self._tail + data
        end = text.rfind(b"\n") + 1
        self._tail = text[end:] if len(text) - end <= MAX_LINE_BYTES else b""
        return text[:end]

    def _note_eoes(self, text: bytes):
        """The (node, serial, time) of every EOE line in ``text`` (whole
        lines), and the id of its last record line."""
        end = len(text)
        self._eoes |= self._last_eoes
        self._last_eoes = set()
        last_line = text.rfind(b"\n", 0, end - 1) + 1
        at = text.find(b"type=EOE ", 0, end)  # bytes.find, not a regex over every byte
        while at >= 0:
            start = text.rfind(b"\n", 0, at) + 1
            found = _EOE_LINE.match(text, start, end)
            if found:
                (self._last_eoes if start >= last_line else self._eoes).add(self._key(*found.groups()))
            at = text.find(b"type=EOE ", at + 9, end)
        last = _RECORD_LINE.match(text, last_line, end)
        if last:
            self._reading = self._key(*last.groups())

    def _key(self, node: Optional[bytes], sec: bytes, milli: bytes, serial: bytes) -> tuple:
        """(node, serial, time) of a record line, as _hold keys its event."""
        return (node.decode("utf-8", "backslashreplace") if node else self._node, serial.decode(),
                int(sec) + int(milli) / 1000.0)

    def _count_strays(self, data: bytes):
        """Count the lines auparse will skip without a word (neither type=
        nor node= at their start, not blank) and NUL bytes, with bytes.count
        alone: this runs on every byte of input."""
        nuls = data.count(b"\0")
        if nuls:
            self._counters.problem("NUL bytes in the input (auparse cuts a record there)", nuls)
        end = data.rfind(b"\n")
        if end < 0:
            if len(self._line_head) < 5:
                self._line_head += data[:5]
            self._line_open = True
            return
        done = b"\n" + data[:end + 1]
        lines = done.count(b"\n") - 1
        blank = len(_BLANK_LINE.findall(done))  # a lookahead: runs of blank lines overlap
        good = done.count(b"\ntype=") + done.count(b"\nnode=") + blank
        if self._line_open:  # the first line began in an earlier chunk
            first = self._line_head + data[:5]
            good += first.startswith((b"type=", b"node=")) - data.startswith((b"type=", b"node=", b"\n"))
        strays = lines - good
        if strays > 0:
            self._counters.problem("input lines that are not audit records skipped", strays)
        self._line_head = data[end + 1:end + 6]

    def end_of_input(self):
        """Close a last line without its newline: auparse would drop it, or
        glue it to the next file's first record."""
        if self._line_open:
            self.feed(b"\n")

    def pending(self) -> bool:
        return bool(self._held) or bool(self._parser.feed_has_data())

    def age(self):
        """Idle tick: emit what auparse held back, and held LOGIN events."""
        self._parser.feed_age_events()
        self._emit_held()

    def flush(self):
        self.end_of_input()
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
    pattern: Optional["re.Pattern"] = None  # for ~ (a translated glob) and =~

    def matches(self, event: Event) -> bool:
        values = event.values(self.name)
        if self.op in ("=", "!="):
            hit = self.value in values
        elif self.op.endswith("=~"):
            hit = any(self.pattern.search(v) for v in values)
        else:
            hit = any(self.pattern.match(v) for v in values)
        return hit != (self.op[0] == "!")


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
        elif op.endswith("~"):
            pattern = re.compile(fnmatch.translate(value))
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
    # Rules indexed by one exact condition each (see _index), so that an
    # event is tested only against the rules that can match it.
    _index: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", (_index(self.deny), _index(self.allow)))

    def wanted(self, event: Event) -> bool:
        deny, allow = self._index
        if self.allow and not _any_matches(allow, event):
            return False
        return not _any_matches(deny, event)


def _index(rules: Tuple[Rule, ...]) -> Tuple[Dict[str, Dict[str, List[Rule]]], List[Rule]]:
    """Rules by the value of one ``name=value`` condition on a summary field
    (``type`` first), and the rules without one.  Within a rule, conditions
    on summary fields come first: a rule that fails on them never makes the
    event be read whole."""
    indexed: Dict[str, Dict[str, List[Rule]]] = {}
    other = []
    for rule in rules:
        rule = replace(rule, conditions=tuple(sorted(rule.conditions, key=lambda c: c.name not in _SUMMARY)))
        exact = [c for c in rule.conditions if c.op == "=" and c.name in _SUMMARY]
        if exact:
            key = min(exact, key=lambda c: c.name != "type")
            indexed.setdefault(key.name, {}).setdefault(key.value, []).append(rule)
        else:
            other.append(rule)
    return indexed, other


def _any_matches(index, event: Event) -> bool:
    indexed, other = index
    for name, by_value in indexed.items():
        if any(r.matches(event) for r in by_value.get(event.get(name, None), ())):
            return True
    return any(r.matches(event) for r in other)


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
    result = text[:limit]
    if not result.isprintable() or "@" in result:  # else nothing to do: the common case, fast
        result = "".join(_escape_char(c) if unicodedata.category(c) in _INVISIBLE_CATEGORIES
                         else "\uff20" if c == "@" else c for c in result)
    if len(text) > limit:
        result += "… (%d more characters)" % (len(text) - limit)
    return result


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
        return "".join(clean(p, self.limit) if isinstance(p, V) else p for p in self.parts)

    def html(self) -> str:
        return "".join("<code>%s</code>" % html.escape(clean(p, self.limit)) if isinstance(p, V) else html.escape(p)
                       for p in self.parts)

    def __add__(self, parts: Tuple[str, ...]) -> "Line":
        return replace(self, parts=self.parts + tuple(parts))


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


def _known(value: str) -> bool:
    return value not in ("", "?", "(none)", "(null)", "unset", "n/a")


def _who(event: Event) -> Tuple[str, ...]:
    """The person behind an event: login uid, and the uid it acted as."""
    auid, uid = event.get("auid"), event.get("uid")
    if _known(auid) and auid not in ("-1", "4294967295"):
        return (V(auid), " as ", V(uid)) if _known(uid) and uid != auid else (V(auid),)
    return (V(uid or event.get("acct") or "system"),)


def _from(event: Event) -> Tuple[str, ...]:
    addr, host = event.get("addr"), event.get("hostname")
    parts: Tuple[str, ...] = (" from ", V(addr)) if _known(addr) else ()
    if _known(host) and host != addr:
        parts += (" (", V(host), ")") if parts else (" from ", V(host))
    return parts


def _program(event: Event) -> str:
    return V(event.get("comm") or event.get("exe") or "?")


_SERVICES = {
    "sshd": "SSH", "login": "console", "sudo": "sudo", "su": "su", "gdm-session-worker": "GDM",
    "lightdm": "LightDM", "sddm-helper": "SDDM", "cron": "cron", "crond": "cron", "polkit-agent-helper-1": "polkit",
    "vsftpd": "FTP", "dovecot": "IMAP", "cockpit-session": "Cockpit",
}


def _service(event: Event) -> str:
    """"SSH", "sudo", ... for programs we know; else the program's name,
    which is the attacker's to choose (a V)."""
    name = os.path.basename(event.get("exe") or event.get("how") or event.get("comm"))
    return _SERVICES.get(name) or V(name or "login")


_LOGIN_TYPES = {
    "USER_LOGIN": ("login", "Failed %s login"),
    "USER_AUTH": ("authentication", "Failed %s authentication"),
    "USER_ERR": ("account error", "%s account error"),
    "USER_ACCT": ("account check", "%s account check refused"),
    "USER_LOGOUT": ("logout", "Failed %s logout"),
    "USER_START": ("session opened", "%s session failed to open"),
    "USER_END": ("session closed", "%s session failed to close"),
    "CRED_ACQ": ("credentials acquired", "%s credentials refused"),
    "CRED_REFR": ("credentials refreshed", "%s credentials refresh failed"),
    "CRED_DISP": ("credentials disposed", "%s credentials disposal failed"),
    "USER_ROLE_CHANGE": ("role changed", "%s role change failed"),
    "ANOM_LOGIN_FAILURES": ("too many login failures", "%s: too many login failures"),
    "ANOM_LOGIN_SESSIONS": ("too many sessions", "%s: too many sessions"),
    "ANOM_LOGIN_TIME": ("login at a forbidden time", "%s login at a forbidden time"),
    "ANOM_LOGIN_LOCATION": ("login from a forbidden place", "%s login from a forbidden place"),
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
# Events done by someone, worth saying who.
_AUDIT_BY_WHOM = ("CONFIG_CHANGE", "USYS_CONFIG", "MAC_STATUS", "MAC_CONFIG_CHANGE", "NETFILTER_CFG", "KERN_MODULE")


def _headline_login(event: Event, failed: bool) -> Line:
    ok, bad = _LOGIN_TYPES[event.get("type")]
    service = _service(event)
    if failed:
        before, _, after = bad.partition("%s")
        what: Tuple[str, ...] = (before, service, after)
    else:
        what = (service, " " + ok)
    # An empty acct is shown as "" (sshd logs a client's empty user name so).
    account = event.get("acct") if "acct" in event.fields else event.get("id") or event.get("auid") or "?"
    return L(*what + (" for ", V(account or '""')) + _from(event))


def _headline_sudo(event: Event, failed: bool) -> Line:
    who = V(event.get("auid") or event.get("uid") or "?")
    command = V(event.get("cmd") or "?")
    if failed:
        return L("sudo refused: ", who, " tried ", command)
    return L("sudo: ", who, " ran ", command, " as ", V(event.get("acct") or "root"))


def _headline_account(event: Event, failed: bool) -> Line:
    what = _ACCOUNT_TYPES[event.get("type")] + (" (FAILED)" if failed else "")
    target = event.get("acct") or event.get("grp") or event.get("id") or "?"
    line: Tuple[str, ...] = (what + ": ", V(target))
    op = event.get("op")
    if _known(op) and event.get("type") in ("USER_MGMT", "GRP_MGMT") and op != target:
        line += (" (", V(op), ")")
    return L(*line + (" by ",) + _who(event))


def _mac_verdict(event: Event) -> str:
    verdict = (event.get("apparmor") or event.get("seresult")).lower()
    return verdict if verdict in ("denied", "granted", "allowed", "audit", "status") else "event"


def _headline_mac(event: Event, failed: bool) -> Line:
    verdict = _mac_verdict(event)
    line: Tuple[str, ...]
    if event.get("apparmor"):
        line = ("AppArmor %s " % verdict, _program(event), ": ", V(event.get("operation") or "?"))
        if _known(event.get("name")):
            line += (" on ", V(event.get("name")))
        return L(*line + (" (profile ", V(event.get("profile") or "?"), ")"))
    perms = (event.get("seperms") or event.get("perm") or "").strip("{} ")
    target = event.get("name") or event.get("path") or event.get("tclass")
    line = ("SELinux %s " % verdict, V(event.get("comm") or event.get("exe") or "?"))
    if _known(perms):
        line += (": ", V(perms))
    if _known(target):
        line += (" on ", V(target))
    scontext, tcontext = event.get("scontext").split(":"), event.get("tcontext").split(":")
    if len(scontext) > 2 and len(tcontext) > 2:
        line += (" (", V("%s → %s %s" % (scontext[2], tcontext[2], event.get("tclass"))), ")")
    return L(*line)


def _headline_user_message(event: Event, failed: bool) -> Line:
    """A free-text USER record (auditctl -m, audit_log_user_message)."""
    return L("Audit message: ", V(event.get("text")), " from ", V(event.get("exe") or event.get("comm") or "?"),
             " by ", *_who(event))


def _headline_login_id(event: Event, failed: bool) -> Line:
    line: Tuple[str, ...] = ("Login id set%s: " % (" FAILED" if failed else ""), V(event.get("auid") or "?"))
    if _known(event.get("ses")):
        line += (" (session ", V(event.get("ses")), ")")
    if _known(event.get("comm") or event.get("exe")):
        line += (" by ", _program(event))
    return L(*line)


def _headline_audit(event: Event, failed: bool) -> Line:
    rtype = event.get("type")
    line: Tuple[str, ...] = (_AUDIT_TYPES[rtype] + (" (FAILED)" if failed else ""),)
    detail = event.get("unit") or event.get("op") or event.get("dev")
    if _known(detail):
        line += (": ", V(detail.strip('"')))
    if event.get("key"):
        line += (" (rule ", V(event.get("key")), ")")
    if rtype in _AUDIT_BY_WHOM:
        line += (" by ",) + _who(event)
    return L(*line)


def _headline_anomaly(event: Event, failed: bool) -> Line:
    rtype = event.get("type")
    if rtype == "ANOM_ABEND":
        return L("Process crashed: ", _program(event), " (signal ", V(event.get("sig") or "?"), ") run by ",
                 *_who(event))
    if rtype == "ANOM_PROMISCUOUS":
        state = "on" if event.get("prom") not in ("0", "") else "off"
        return L("Network device ", V(event.get("dev") or "?"), " promiscuous mode %s by " % state, *_who(event))
    return L("Anomaly %s: " % rtype, _program(event), " by ", *_who(event))


def _headline_syscall(event: Event, failed: bool) -> Line:
    argv = event.get("argv")
    name = _watched_path(event)
    line: Tuple[str, ...]
    if event.get("syscall") in ("execve", "execveat") and (argv or name):
        line = ("Command%s: " % (" failed" if failed else ""), V(argv or name), " by ") + _who(event)
        error = re.sub(r"^[A-Z]+\((.*)\)$", r"\1", event.get("exit"))
        if failed and error:
            line += (" (", V(error), ")")
    elif name:
        line = ("Watched file %s%s: " % (_verb(event), " FAILED" if failed else ""), V(name), " by ") + \
            _who(event) + (" via ", V(event.get("exe") or "?"))
    else:
        line = ("%s%s by " % (event.get("syscall") or event.get("type"), " failed" if failed else ""),) + \
            _who(event) + (" via ", V(event.get("exe") or "?"))
    if event.get("key"):
        line += (" (rule ", V(event.get("key")), ")")
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
    line: Tuple[str, ...] = ("%s event%s" % (event.get("type"), " (FAILED)" if failed else ""),)
    if _known(event.get("action")):
        line += (": ", V(event.get("action").replace("-", " ")))
    if event.get("primary_object"):
        line += (" ", V(event.get("primary_object")))
    line += (" by ",) + _who(event)
    if _known(event.get("how")):
        line += (" via ", V(event.get("how")))
    return L(*line)


def headline(event: Event) -> Tuple[Line, Optional[bool]]:
    """What happened, to/by whom, from where: one line for a lock screen,
    and whether it failed (None: neither)."""
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
        verdict = _mac_verdict(event)
        failed = True if verdict == "denied" or rtype.endswith("SELINUX_ERR") else \
            False if verdict in ("granted", "allowed") else None
    elif rtype in _AUDIT_TYPES:
        make = _headline_audit
    elif rtype.startswith("ANOM_"):
        make = _headline_anomaly
        failed = True  # a crash, a promiscuous interface: something to look at
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
    ("unit", ("unit",)),
)


def details(event: Event, head: Line) -> List[Line]:
    """The useful raw facts the headline does not already show, one short
    line each, in a fixed order."""
    shown = {p for p in head.parts if isinstance(p, V) and len(p) <= head.limit}
    lines = []
    for label, names in _DETAIL_FIELDS:
        if label == "as" and event.get("type") in _LOGIN_TYPES:
            continue  # the uid of sshd, login, sudo...: not the person
        for name in names:
            value = event.get(name)
            if not _known(value) or value in shown or (name == "proctitle" and value == event.get("argv")):
                continue
            shown.add(value)
            limit = MAX_COMMAND_CHARS if name in ("argv", "cmd", "proctitle") else MAX_VALUE_CHARS
            lines.append(Line(("%s: " % label, V(value)), limit))
            break
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(event.timestamp))
    lines.append(Line(("event: ", V(event.get("records")), " #", V(event.get("serial")), " at " + stamp)))
    return lines


def format_event(event: Event) -> Notification:
    """One notification for one event: headline, then details."""
    head, failed = headline(event)
    if event.get("node"):
        head = head + (" on ", V(event.get("node")))
    marker = "❌ " if failed else "✅ " if failed is not None else "ℹ️ "
    lines = details(event, head)
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
    node: str = ""


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
            head = head + (" on ", V(event.get("node"))) if event.get("node") else head
            window.first, window.sample, window.sample_html = event.timestamp, head.text(), head.html()
            window.node = event.get("node")
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
    fields = {"digest": count, "first": str(window.first), "last": str(window.last), "node": window.node}
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
# Delivery: one long-lived matrix-commander, fed one event at a time
# ---------------------------------------------------------------------------

# Events per matrix-commander process.  Each process starts a Megolm
# session (~1.4 KB that every later start loads; the original started one
# per message and its store reached 13 MB) and rotates it every 100
# messages on its own; a restart costs about a second of sending.
SENDER_SLOTS = 1000
# An idle matrix-commander is replaced after this long, so that a phone
# added to the room can read new notifications within the hour.
SENDER_MAX_AGE = 3600.0
# How long matrix-commander may take from start to reading its first event.
SENDER_START_TIMEOUT = 120.0
# Retry delays after a failed send: 1 s, doubling, at most a minute (so a
# homeserver back from an outage is used again within a minute).
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
# How often to check whether matrix-commander has exited, or finished
# starting up.
POLL_INTERVAL = 0.02
# How often, with notifications waiting, to check whether matrix-commander
# has opened the FIFO again after its last event (a few milliseconds).
READER_POLL = 0.002
# How often the swap thread looks for matrix-commander's pid file.
SWAP_POLL = 0.003
# matrix-commander's error codes for a failed event send (E143 bad JSON,
# E144 room_send error, E145 exception) and a few others it prints.
_MC_ERROR = re.compile(r"\bE\d{3}\b")


def matrix_commander_argv(config: Config, events: List[str]) -> List[str]:
    """No audit text is ever in argv: matrix-commander parses a message
    that starts with '-' as an option, and a later '--room=' in the text
    redirects it.  The events go in through the files ``events`` (our FIFO,
    or "-" for stdin).  ``--log-level ERROR ERROR`` keeps it from logging
    each message's plaintext."""
    argv = [config.matrix_commander, "--credentials", config.credentials, "--store", config.store,
            "--log-level", "ERROR", "ERROR", "--print-event-id"]
    if config.room:
        argv += ["--room", config.room]
    return argv + ["--event"] + events


def mc_env(config: Config) -> Dict[str, str]:
    """matrix-commander's whole environment (auditd gives its plugins none):
    HOME is state_dir, where it writes its pid files."""
    return {"HOME": config.state_dir, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class _Child:
    """One running matrix-commander and its unread output."""

    def __init__(self, process: subprocess.Popen, now: float):
        self.process = process
        self.started = now
        self.swapper: Optional[threading.Thread] = None
        self.swapped = threading.Event()   # the FIFO has replaced the placeholder file
        self.sent = 0
        self.buffers = {process.stdout.fileno(): b"", process.stderr.fileno(): b""}
        self.open = set(self.buffers)
        for fd in self.open:
            os.set_blocking(fd, False)

    def lines(self, fd: int) -> List[str]:
        """Complete lines newly readable on ``fd``."""
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return []
        if not chunk:
            self.open.discard(fd)
            chunk = b"\n" if self.buffers[fd] else b""
        *done, self.buffers[fd] = (self.buffers[fd] + chunk).split(b"\n")
        return [line.decode("utf-8", "replace") for line in done if line.strip()]


class Sender:
    """Delivers the spool, oldest first, through one long-lived matrix-commander.

    matrix-commander streams only plain lines (``-m _``: no HTML twin, no
    m.mentions), but ``--event FILE ...`` sends one JSON event per file, in
    order, printing each event id.  Given one FIFO path SENDER_SLOTS times,
    it blocks opening it until we write an event, sends it, prints the id
    and opens it again: a warm process, ~50 ms a message.  Its start-up
    check wants a regular file, so the path is an empty file until the
    process has written its pid file (just after the check; it logs in
    before its first open, 50-140 ms measured), then becomes the FIFO.  A
    small thread makes that swap, so that a busy loop cannot miss the
    moment; if it is missed anyway, the process skips the empty file, ends,
    and is started again.

    Exactly one event is in flight: one written before the last was
    acknowledged would be read glued to it and both lost.  An item leaves
    the spool only when its event id comes back; an error, a timeout or the
    process dying leaves it for a retry after a backoff (one log line when
    an outage starts and one when it ends); M_TOO_LARGE buries it.  The
    process is killed if the plugin dies (PR_SET_PDEATHSIG) and on its
    next start any orphan of ours is stopped first: two matrix-commanders
    on one store lose messages.
    """

    def __init__(self, config: Config, spool: "Spool", counters: Counters, clock=time.monotonic,
                 spawn=subprocess.Popen, wall=time.time):
        self.config = config
        self._spool = spool
        self._counters = counters
        self._clock = clock
        self._wall = wall
        self._spawn = spawn
        self._child: Optional[_Child] = None
        self._inflight: Optional[Item] = None
        self._inflight_deadline = 0.0
        self._next_try = 0.0
        self._failures = 0
        self._outage_since: Optional[float] = None
        self._sends: List[float] = []       # times of recent sends, for the rate cap
        self._waiting_reader = False
        self.run_dir = os.path.join(config.state_dir, "run")
        self.fifo = os.path.join(self.run_dir, "events")

    # -- the loop's view --------------------------------------------------

    def fds(self) -> List[int]:
        return sorted(self._child.open) if self._child else []

    def busy(self) -> bool:
        return self._inflight is not None or self._spool.peek() is not None

    def deadline(self) -> Optional[float]:
        """When step() must run next even if no output arrives.  Computed
        from the state as it is now (the swap thread may just have made
        the FIFO ready), so there is never a sleep with work waiting."""
        now = self._clock()
        child = self._child
        if child is None:
            return max(now, self._next_try)  # keep one warm, once any backoff is over
        if not child.open:
            return now + POLL_INTERVAL  # it exited: reap it
        if not child.swapped.is_set():
            return min(now + POLL_INTERVAL, child.started + SENDER_START_TIMEOUT)
        if self._inflight is not None:
            return self._inflight_deadline
        if self._spool.peek() is not None:
            return max(now + (READER_POLL if self._waiting_reader else 0.0), self._next_try,
                       self._rate_free_at())
        return child.started + SENDER_MAX_AGE

    def _rate_free_at(self) -> float:
        """When the rate cap allows the next message."""
        cap = self.config.max_messages_per_minute
        now = self._clock()
        self._sends = [t for t in self._sends if t > now - 60.0]
        if cap <= 0 or len(self._sends) < cap:
            return now
        return self._sends[-cap] + 60.0

    def step(self, readable: Iterable[int] = ()):
        child = self._child
        if child is not None:
            for fd in readable:
                if fd in child.open:
                    for line in child.lines(fd):
                        self._on_line(fd == child.process.stdout.fileno(), line)
            self._check_child(child)
        if self._inflight is None and self._clock() >= self._next_try:
            self._send_next()

    # -- the child --------------------------------------------------------

    def _check_child(self, child: _Child):
        now = self._clock()
        if not child.open and child.process.poll() is not None:
            self._child = None
            code = child.process.returncode
            child.swapper.join()
            if self._inflight is not None:
                self._failed("matrix-commander exited with code %s" % code)
            elif not child.swapped.is_set() or child.sent == 0:
                self._failed("matrix-commander stopped at start-up with code %s" % code)
            return
        if not child.swapped.is_set():
            if now >= child.started + SENDER_START_TIMEOUT:
                self._kill("matrix-commander did not start within %d s" % SENDER_START_TIMEOUT)
        elif self._inflight is not None and now >= self._inflight_deadline:
            self._kill("no acknowledgement within %g s" % self.config.send_timeout)
        elif self._inflight is None and (child.sent >= SENDER_SLOTS or now >= child.started + SENDER_MAX_AGE):
            self._stop_child()

    def _start(self):
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        self._stop_orphans()
        for path in (self.fifo, self.fifo + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(os.open(self.fifo, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            process = self._spawn(
                matrix_commander_argv(self.config, [self.fifo] * SENDER_SLOTS), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mc_env(self.config), close_fds=True,
                cwd=self.config.state_dir, preexec_fn=_die_with_parent)
        except OSError as exc:
            self._failed("cannot run %s: %s" % (self.config.matrix_commander, exc))
            return
        child = self._child = _Child(process, self._clock())
        child.swapper = threading.Thread(target=self._swap_when_checked, args=(child,), daemon=True)
        child.swapper.start()

    def _pid_file(self, pid: int) -> bool:
        for path in glob.glob(os.path.join(self.config.state_dir, ".run", "matrix-commander.*.pid")):
            with contextlib.suppress(OSError, ValueError):
                with open(path) as handle:
                    if int(handle.read().strip() or 0) == pid:
                        return True
        return False

    def _swap_when_checked(self, child: _Child):
        """Thread: once matrix-commander has written its pid file, put the
        FIFO where it checked for a regular file."""
        end = time.monotonic() + SENDER_START_TIMEOUT
        while child.process.poll() is None and time.monotonic() < end:
            if self._pid_file(child.process.pid):
                os.mkfifo(self.fifo + ".tmp", 0o600)
                os.rename(self.fifo + ".tmp", self.fifo)
                child.swapped.set()
                return
            time.sleep(SWAP_POLL)

    def _stop_orphans(self):
        """Stop a matrix-commander left by an earlier plugin on our store."""
        for path in glob.glob(os.path.join(self.config.state_dir, ".run", "matrix-commander.*.pid")):
            with contextlib.suppress(OSError, ValueError):
                with open(path) as handle:
                    pid = int(handle.read().strip() or 0)
                with open("/proc/%d/cmdline" % pid, "rb") as handle:
                    cmdline = handle.read().split(b"\0")
                if self.config.store.encode() in cmdline and self.fifo.encode() in cmdline:
                    log.warning("stopping an orphaned matrix-commander (pid %d) on our store", pid)
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _kill(self, reason: str):
        child = self._child
        self._child = None
        child.process.kill()
        child.process.wait()
        child.swapper.join()
        for stream in (child.process.stdout, child.process.stderr):
            stream.close()
        self._failed(reason)

    def _stop_child(self):
        """Retire an idle matrix-commander (slots used up, or too old)."""
        child = self._child
        self._child = None
        child.process.terminate()
        try:
            child.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        child.swapper.join()
        for stream in (child.process.stdout, child.process.stderr):
            stream.close()

    # -- events -----------------------------------------------------------

    def _send_next(self):
        if self._child is None:
            self._start()
            return
        if not self._child.swapped.is_set() or not self._rate_allows():
            return
        item = self._spool.peek()
        if item is None:
            self._waiting_reader = False
            return
        event = json.dumps({"type": "m.room.message", "content": item.content}).encode("utf-8")
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: matrix-commander has not opened it yet
                raise
            self._waiting_reader = True
            return
        self._waiting_reader = False
        self._inflight = item
        self._inflight_deadline = self._clock() + self.config.send_timeout
        try:
            os.set_blocking(fd, True)
            os.write(fd, event)
        except BrokenPipeError:
            pass  # it died: _check_child sees the exit and retries the item
        finally:
            os.close(fd)

    def _rate_allows(self) -> bool:
        return self._rate_free_at() <= self._clock()

    def _on_line(self, is_stdout: bool, line: str):
        if is_stdout and self._inflight is not None and line.startswith("$"):
            self._delivered()
        elif not is_stdout and self._inflight is not None and _MC_ERROR.search(line):
            self._failed(line.strip())
        elif not is_stdout:
            log.debug("matrix-commander: %s", line.strip()[:300])

    def _delivered(self):
        item, self._inflight = self._inflight, None
        self._spool.delivered(item.id)
        self._counters.sent += 1
        self._child.sent += 1
        self._sends.append(self._clock())
        if self._outage_since is not None:
            log.warning("delivery resumed after %d failed attempts over %.0f s",
                        self._failures, self._clock() - self._outage_since)
        self._failures, self._outage_since, self._next_try = 0, None, 0.0

    def _failed(self, reason: str):
        item, self._inflight = self._inflight, None
        now = self._clock()
        if item is not None and "M_TOO_LARGE" in reason:
            self._spool.bury(item.id, reason)
            self._counters.failed += 1
            log.error("the homeserver refuses notification %d as too large; kept as a dead letter", item.id)
            return
        if item is not None:
            self._spool.attempt_failed(item.id)
            self._counters.retried += 1
            self._counters.rate_limited += "M_LIMIT_EXCEEDED" in reason
        self._failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
        self._next_try = now + delay
        if self._outage_since is None:
            self._outage_since = now
            log.error("sending failed: %s; retrying with backoff, the notifications stay spooled", reason[:300])
        else:
            log.debug("sending failed again (%d): %s; next try in %.0f s", self._failures, reason[:300], delay)

    def stop(self, seconds: float, wait: Callable[[List[int], Optional[float]], List[int]], drain: bool):
        """Finish the event in flight, and with ``drain`` (EOF: someone
        piping ausearch) the whole spool, for at most ``seconds``, and not
        through an outage; then stop matrix-commander.  The rest stays
        spooled for the next start."""
        end = self._clock() + seconds
        while self._clock() < end and (self._inflight is not None or (
                drain and self.busy() and self._failures < EOF_GIVE_UP_FAILURES)):
            deadline = self.deadline()
            timeout = max(0.0, min(end, deadline if deadline is not None else end) - self._clock())
            self.step(wait(self.fds(), timeout))
        if self._inflight is not None:
            self._kill("stopped before the homeserver acknowledged it")
        if self._child is not None:
            self._stop_child()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.fifo)


def _die_with_parent():
    """In the child, before exec: SIGKILL it if the plugin dies, so that a
    crashed plugin leaves no matrix-commander behind on the store."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Printer:
    """--dry-run: print each notification instead of spooling it."""

    def __init__(self, stream, as_json: bool, counters: Counters):
        self._stream = stream
        self._json = as_json
        self._counters = counters

    def add(self, notification: Notification):
        self._counters.sent += 1
        if self._json:
            record = {"body": notification.body, "formatted_body": notification.html, "fields": notification.fields}
            self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self._stream.write(notification.body + "\n\n")
        self._stream.flush()

    def commit(self):
        pass


# ---------------------------------------------------------------------------
# Daemon: the select() loop, signals, reload, counters
# ---------------------------------------------------------------------------


def _select(fds: List[int], timeout: Optional[float]) -> List[int]:
    if not fds:
        time.sleep(timeout or 0)
        return []
    return select.select(fds, [], [], timeout)[0]


class Plugin:
    """Reads audit records, filters, digests, formats and spools them, and
    lets the Sender deliver the spool.

    Reading never waits on delivery.  Signal handlers only set flags and
    wake the loop through a self-pipe (signal.set_wakeup_fd), as
    auditd-plugins(5) asks.  The loop blocks in select() with no timeout
    unless something is due: an idle plugin uses no CPU.  New notifications
    are committed to the spool in one transaction per burst of input,
    before the loop blocks again.  EOF or SIGTERM: flush what auparse and
    the digests hold, let the sender finish, log the totals, return 0.
    """

    def __init__(self, config: Config, rules: RuleSet, auparse, sink, counters: Counters,
                 sender: Optional[Sender] = None, reload: Callable[[], Tuple[Config, RuleSet]] = None,
                 clock=time.monotonic, wall=time.time, wait=_select, hostname: str = ""):
        self.config = config
        self.rules = rules
        self.sink = sink
        self.sender = sender
        self.counters = counters
        self.digester = Digester(config.digest_after, config.digest_window)
        self._reload_source = reload
        self._clock = clock
        self._wall = wall
        self._wait = wait
        self.reader = EventReader(auparse, self._on_event, counters, hostname, config.eoe_timeout,
                                  lazy=config.digest_after > 0)
        self.stopping = False
        self.reload_requested = False
        self._dirty_since: Optional[float] = None
        self._next_report = clock() + STATS_INTERVAL
        self._next_bounds = clock()

    # -- events -------------------------------------------------------------

    def _on_event(self, event: Event):
        try:
            if not self.rules.wanted(event):
                self.counters.filtered += 1
                return
            alone, closed = self.digester.offer(event)
            for summary in closed:
                self._accept(summary, digest=True)
            if alone:
                self.counters.notified += 1
                self._accept(format_event(event))
            else:
                self.counters.digested += 1
        except Exception:  # noqa: BLE001 - one odd event must not stop the plugin
            self.counters.problem("could not format an event", exc_info=True)

    def _accept(self, notification: Notification, digest: bool = False):
        self.sink.add(notification)
        self.counters.digests += digest
        if self._dirty_since is None:
            self._dirty_since = self._clock()

    def _close_digests(self, everything: bool):
        """Summaries of windows that are over: by event time as events
        arrive, by the wall clock when the stream is quiet, all at the end."""
        closed = self.digester.close_all() if everything else self.digester.due(self._wall())
        for summary in closed:
            self._accept(summary, digest=True)

    def commit(self):
        """Make what was accepted durable, with the counters and digest state."""
        if isinstance(self.sink, Spool) and self.sender is not None:
            self.sink.set_state("counters", json.dumps(self.counters.snapshot()))
            self.sink.set_state("digests", self.digester.snapshot())
            self.sink.set_state("pid", str(os.getpid()))
            self.sink.set_state("updated", str(self._wall()))
        self.sink.commit()
        self._dirty_since = None

    # -- signals ------------------------------------------------------------

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
        self.digester.after, self.digester.window = config.digest_after, config.digest_window
        self.reader.lazy = config.digest_after > 0
        if self.sender is not None:
            self.sender.config = replace(config, state_dir=self.sender.config.state_dir)
        log.info("reloaded %s: %d blacklist rules, %d allow-list rules",
                 config.source, len(rules.deny), len(rules.allow))

    # -- the loop -----------------------------------------------------------

    def _timeout(self) -> Optional[float]:
        now = self._clock()
        times = [self._next_report]
        if self.reader.pending():
            times.append(now + IDLE_TICK)
        if self.digester.windows:
            end = min(w.start for w in self.digester.windows.values()) + self.digester.window
            times.append(now + max(0.0, end - self._wall()))
        if self.sender is not None:
            deadline = self.sender.deadline()
            if deadline is not None:
                times.append(deadline)
        return max(0.0, min(times) - now)

    def run(self, fd: int, wakeup_fd: Optional[int] = None) -> bool:
        """Process one input until EOF (True) or a stop request (False)."""
        while not self.stopping:
            if self.reload_requested:
                self.reload()
            sender_fds = self.sender.fds() if self.sender else []
            watch = [fd] + ([wakeup_fd] if wakeup_fd is not None else []) + sender_fds
            if self._dirty_since is not None:
                # More input right now?  Then group it into this transaction.
                ready = self._wait(watch, 0)
                if fd not in ready or self._clock() - self._dirty_since >= COMMIT_DELAY:
                    self.commit()
                    ready = self._wait(watch, self._timeout()) if not ready else ready
            else:
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
            self._tick(fd in ready)
            if self.sender is not None:
                self.sender.step(ready)
        return False

    def _tick(self, got_input: bool):
        now = self._clock()
        # Age events only when input pauses: auparse ages by the wall clock,
        # so aging while an old log streams in would cut events in two.
        if not got_input and self.reader.pending():
            self.reader.age()
        if not got_input and self.digester.windows:
            self._close_digests(everything=False)
        if isinstance(self.sink, Spool) and now >= self._next_bounds:
            self._next_bounds = now + BOUNDS_INTERVAL
            self._enforce_bounds()
        if now >= self._next_report:
            self._next_report = now + STATS_INTERVAL
            log.info("%s", self.report())

    def _enforce_bounds(self):
        dropped = self.sink.enforce_bounds()
        if dropped:
            self.counters.dropped += dropped
            log.error("spool limit reached (%d MB, %d h): dropped the %d oldest, least important notifications",
                      self.config.spool_max_mb, self.config.spool_max_age_hours, dropped)
            self._accept(Notification(
                body="⚠️ audit-notify dropped %d older notifications: its spool reached its limit" % dropped,
                html="⚠️ <b>audit-notify dropped %d older notifications</b>: its spool reached its limit" % dropped,
                fields={"dropped": str(dropped)}, timestamp=self._wall(), priority=1))

    def report(self) -> str:
        text = self.counters.line()
        if isinstance(self.sink, Spool):
            depth, oldest = self.sink.depth()
            age = self._wall() - oldest if oldest else 0
            text += " spooled=%d oldest=%.0fs" % (depth, age)
        return text

    def finish(self, at_eof: bool):
        """Emit what auparse and the digests hold, commit, let the sender
        work for its time, log the totals."""
        self.reader.flush()
        self._close_digests(everything=True)
        self.commit()
        if self.sender is not None:
            self.sender.stop(EOF_DRAIN_SECONDS if at_eof else SHUTDOWN_GRACE, self._wait, drain=at_eof)
        if isinstance(self.sink, Spool):
            self.commit()
        c = self.counters
        log.info("exiting: %s; events %d = filtered %d + sent alone %d + digested %d",
                 self.report(), c.events, c.filtered, c.notified, c.digested)


def _drain(fd: int):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


# ---------------------------------------------------------------------------
# Logging and files
# ---------------------------------------------------------------------------


def refuse_public_parent(path: str):
    """Nothing of ours goes in a directory everyone may write (/tmp), where
    another user could plant a file or a symlink in its place."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(parent) and os.stat(parent).st_mode & stat.S_IWOTH:
        raise Error("refusing %s: its directory %s is writable by everyone" % (path, parent))


def open_private_file(path: str) -> int:
    """Open (creating 0600) a file for appending, refusing world-writable
    directories such as /tmp and symlinks planted in the file's place."""
    refuse_public_parent(path)
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
# Privileges: the files we trust, and the user we become
# ---------------------------------------------------------------------------
#
# auditd starts the plugin as root.  Once it has checked its config and
# rule files, opened its log and made its directories, it becomes the
# unprivileged `user` for good (no capabilities, no_new_privs), before it
# reads a byte of audit data or starts matrix-commander, which therefore
# runs as that user too.  What it keeps: its stdin from auditd, the log
# file it opened, and files owned by that user (spool, state, the bot's
# credentials and store).  Signals from auditd (root) still reach it.


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def lookup_user(name: str) -> Account:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise Error("user %r (config key user) does not exist: create it with "
                    "'useradd --system --home-dir /var/lib/audit-notify --shell /usr/sbin/nologin %s', "
                    "or set user = root" % (name, name)) from None
    return Account(name, entry.pw_uid, entry.pw_gid)


def check_trusted(path: str, what: str):
    """A file that tells a root process what to do (config, rules) must be
    owned by root (or by whoever runs us) and writable by nobody else."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise Error("cannot check %s %s: %s" % (what, path, exc)) from None
    if st.st_uid not in (0, os.geteuid()):
        raise Error("refusing %s %s: it is owned by uid %d, not root, so that user controls the plugin "
                    "(chown root %s)" % (what, path, st.st_uid, path))
    if st.st_mode & 0o022:
        raise Error("refusing %s %s: mode %o lets group or others change it (chmod go-w %s)"
                    % (what, path, stat.S_IMODE(st.st_mode), path))


def check_config_files(config: Config):
    if os.path.isfile(config.source):
        check_trusted(config.source, "config")
    for what, path in (("blacklist", config.blacklist), ("allow-list", config.allowlist)):
        if path:
            check_trusted(path, what)


def secure_private(path: str, account: Account, what: str) -> List[str]:
    """The bot's credentials (access token) and store (encryption keys):
    owned by the delivering user, 0600 files, 0700 directories.
    matrix-commander creates them world-readable; we fix that and say so,
    and refuse what another user owns.  Returns what was fixed."""
    fixed = []
    if not os.path.exists(path):
        raise Error("%s %s does not exist: log the bot in first (see README, 'Matrix setup')" % (what, path))
    todo = [path]
    if os.path.isdir(path):
        todo += [os.path.join(top, name) for top, dirs, files in os.walk(path) for name in dirs + files]
    for item in todo:
        st = os.lstat(item)
        if stat.S_ISLNK(st.st_mode):
            raise Error("refusing %s: %s is a symbolic link" % (what, item))
        if st.st_uid != account.uid:
            if st.st_uid != 0 or os.geteuid() != 0:
                raise Error("refusing %s: %s is owned by uid %d, not by %s (uid %d)"
                            % (what, item, st.st_uid, account.name, account.uid))
            os.chown(item, account.uid, account.gid)
            fixed.append("%s now owned by %s" % (item, account.name))
        wanted = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(item, wanted)
            fixed.append("%s was mode %o, now %o" % (item, stat.S_IMODE(st.st_mode), wanted))
    return fixed


def private_dir(path: str, account: Account) -> List[str]:
    """Spool and state: 0700, owned by the user; never under a directory
    that everyone may write (/tmp), where another user could plant files."""
    refuse_public_parent(path)
    fixed = []
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700)
    st = os.stat(path)
    if (st.st_uid, st.st_gid) != (account.uid, account.gid) and os.geteuid() == 0:
        os.chown(path, account.uid, account.gid)
        fixed.append("%s now owned by %s" % (path, account.name))
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
        fixed.append("%s was mode %o, now 700" % (path, stat.S_IMODE(st.st_mode)))
    return fixed


def drop_privileges(account: Account):
    """Become ``account`` for good: no groups, no capabilities, and no way
    back through set-uid programs (PR_SET_NO_NEW_PRIVS)."""
    if os.geteuid() != account.uid:
        if os.geteuid() != 0:
            raise Error("running as uid %d: run as root (auditd does) or as %s" % (os.geteuid(), account.name))
        os.setgroups([])
        os.setgid(account.gid)
        os.setuid(account.uid)
    PR_SET_NO_NEW_PRIVS = 38
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def prepare(config: Config) -> List[str]:
    """Everything done as root before dropping privileges; returns what
    had to be fixed, for the log."""
    check_config_files(config)
    account = lookup_user(config.user)
    fixed = secure_private(config.credentials, account, "credentials")
    fixed += secure_private(config.store, account, "store")
    # The spool first: made while its parent is still root's, root needs no
    # DAC override (nor the SELinux policy dac_override) to make it.
    for path in (config.spool_dir, config.state_dir):
        fixed += private_dir(path, account)
    drop_privileges(account)
    return fixed


# ---------------------------------------------------------------------------
# Doctor (--check), one-shot sends, setup and uninstall
# ---------------------------------------------------------------------------

# Where setup installs, under --root (README, "Install").
INSTALL_PATHS = {
    "executable": "/usr/local/sbin/audit-notify",
    "config_dir": "/etc/audit-notify",
    "state_dir": "/var/lib/audit-notify",
    "plugins_d": "/etc/audit/plugins.d/matrix-notifications.conf",
}
# A matrix-commander store past this size makes every start slow (the
# original's stopped sending at 13 MB).
STORE_WARN_BYTES = 5 << 20


def run_as(account: Optional[Account]) -> dict:
    """subprocess arguments that run a child as ``account`` (when we are root)."""
    if account is None or os.geteuid() != 0 or account.uid == 0:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": []}


def send_once(config: Config, content: dict, account: Optional[Account], run=subprocess.run) -> Tuple[bool, str]:
    """Send one event with a one-shot matrix-commander (setup's test message,
    --check --send-test); True and the event id, or False and why."""
    event = json.dumps({"type": "m.room.message", "content": content}).encode("utf-8")
    argv = matrix_commander_argv(config, ["-"])
    try:
        result = run(argv, input=event, capture_output=True, timeout=config.send_timeout, env=mc_env(config),
                     cwd=config.state_dir, start_new_session=True, **run_as(account))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    out = result.stdout.decode("utf-8", "replace").split()
    if result.returncode == 0 and out and out[0].startswith("$"):
        return True, out[0]
    return False, _first_error_line(result.stderr.decode("utf-8", "replace")) or "exit code %d" % result.returncode


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if _MC_ERROR.search(line) or "rror" in line:
            return line.strip()[:300]
    return ""


def matrix_api(homeserver: str, path: str, token: str, timeout: float = 10.0) -> Tuple[int, dict]:
    """GET a client-server API path with the bot's token: (status, JSON)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(homeserver.rstrip("/") + path, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


class Doctor:
    """--check: everything the plugin needs, one line each (ok, warn or
    FAIL) with the fix.  The exit code is the number of failures."""

    def __init__(self, out, root: str = "/", run=subprocess.run):
        self.out, self.root, self.run = out, root, run
        self.failures = 0

    def say(self, level: str, text: str):
        self.failures += level == "FAIL"
        self.out.write("%-4s %s\n" % (level, text))

    def check(self, config_path: Optional[str], send_test: bool = False) -> int:
        try:
            config = load_config(config_path, self.root)
            check_config_files(config)
            self.say("ok", "config: %s" % config.source)
            rules = load_ruleset(config)
            self.say("ok", "rules: %d blacklist, %d allow-list" % (len(rules.deny), len(rules.allow)))
        except Error as exc:
            self.say("FAIL", str(exc))
            return self.failures
        account = self._guard(lambda: lookup_user(config.user))
        if config.user == "root":
            self.say("warn", "user = root: matrix-commander runs as root (set user = audit-notify, run setup)")
        elif account:
            self.say("ok", "user: %s (uid %d)" % (account.name, account.uid))
        auparse = self._guard(import_auparse)
        if auparse:
            self.say("ok", "auparse: %s" % auparse.__file__)
        self._matrix_commander(config)
        for path, what in ((config.credentials, "credentials"), (config.store, "store")):
            self._private(path, what, account)
        self._store_size(config.store)
        self._room(config)
        self._spool(config)
        self._plugins_d(config_path or DEFAULT_CONFIG)
        self._selinux()
        if send_test:
            ok, detail = send_once(config, test_content("--check --send-test"), account, self.run)
            self.say("ok" if ok else "FAIL", "test notification: %s" % (
                "accepted by the homeserver as %s" % detail if ok else "not sent: %s" % detail))
        return self.failures

    def _guard(self, call):
        try:
            return call()
        except Error as exc:
            self.say("FAIL", str(exc))
            return None

    def _matrix_commander(self, config: Config):
        path = config.matrix_commander
        if not os.access(path, os.X_OK):
            self.say("FAIL", "matrix-commander: %s is not executable: pipx install matrix-commander "
                             "(README, Install), or set matrix_commander" % path)
            return
        try:
            result = self.run([path, "--version"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            text = (result.stdout + result.stderr).decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.say("FAIL", "matrix-commander: %s does not run: %s" % (path, exc))
            return
        found = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
        if not found:
            self.say("FAIL", "matrix-commander: %s --version says %r" % (path, text.strip()[:100]))
        elif int(found.group(1)) < 8:
            self.say("warn", "matrix-commander %s: tested with 8.0.6; upgrade: pipx upgrade matrix-commander"
                     % found.group(0))
        else:
            self.say("ok", "matrix-commander %s: %s" % (found.group(0), path))

    def _private(self, path: str, what: str, account: Optional[Account]):
        if not os.path.exists(path):
            self.say("FAIL", "%s: %s is missing: run audit-notify setup (or log in, README)" % (what, path))
            return
        st = os.stat(path)
        mode, wanted = stat.S_IMODE(st.st_mode), 0o700 if os.path.isdir(path) else 0o600
        problems = []
        if account and st.st_uid != account.uid:
            problems.append("owned by uid %d, not %s" % (st.st_uid, account.name))
        if mode & 0o077:
            problems.append("mode %o, not %o" % (mode, wanted))
        if problems:
            self.say("warn", "%s: %s is %s; the plugin fixes this at start (or: chown %s %s; chmod %o %s)"
                     % (what, path, " and ".join(problems), config_user(account), path, wanted, path))
        else:
            self.say("ok", "%s: %s" % (what, path))

    def _store_size(self, store: str):
        size = sum(os.path.getsize(os.path.join(top, f)) for top, _d, files in os.walk(store) for f in files)
        sessions = 0
        for path in glob.glob(os.path.join(store, "*.db")):
            with contextlib.suppress(sqlite3.Error):
                db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE "
                                           "'%session%'").fetchall():
                    sessions += db.execute('SELECT COUNT(*) FROM "%s"' % table).fetchone()[0]
                db.close()
        level = "warn" if size > STORE_WARN_BYTES else "ok"
        self.say(level, "store size: %d KB, %d encryption sessions%s" % (
            size >> 10, sessions, "; every matrix-commander start loads them all: log the bot in again with a "
                                  "new store (README, Troubleshooting)" if level == "warn" else ""))

    def _room(self, config: Config):
        try:
            with open(config.credentials) as handle:
                creds = json.load(handle)
            server, token, mxid = creds["homeserver"], creds["access_token"], creds["user_id"]
        except (OSError, ValueError, KeyError) as exc:
            self.say("FAIL", "room: cannot read the bot's credentials: %s" % exc)
            return
        room = config.room or creds.get("room_id", "")
        try:
            if room.startswith("#"):
                from urllib.parse import quote

                status, answer = matrix_api(server, "/_matrix/client/v3/directory/room/" + quote(room), token)
                if status != 200:
                    self.say("FAIL", "room: alias %s does not resolve on %s (HTTP %d)" % (room, server, status))
                    return
                room_id = answer["room_id"]
            else:
                room_id = room
            status, members = matrix_api(server, "/_matrix/client/v3/rooms/%s/joined_members" % room_id, token)
            enc_status, encryption = matrix_api(
                server, "/_matrix/client/v3/rooms/%s/state/m.room.encryption/" % room_id, token)
            limit_status, limits = matrix_api(
                server, "/_synapse/admin/v1/users/%s/override_ratelimit" % mxid, token)
        except (OSError, ValueError) as exc:
            self.say("FAIL", "room: homeserver %s unreachable: %s" % (server, exc))
            return
        if status != 200 or mxid not in members.get("joined", {}):
            self.say("FAIL", "room: %s is not joined by %s: matrix-commander --room-join '%s'" % (room, mxid, room))
        elif enc_status != 200:
            self.say("FAIL", "room: %s is not end-to-end encrypted: enable encryption in its settings" % room)
        else:
            self.say("ok", "room: %s joined, encrypted (%s)" % (room, encryption.get("algorithm", "?")))
        if limit_status == 200 and limits.get("messages_per_second") == 0:
            self.say("ok", "rate limit: lifted for %s" % mxid)
        elif limit_status == 200 and limits:
            self.say("warn", "rate limit for %s: %s" % (mxid, limits))
        else:
            cap = config.max_messages_per_minute
            self.say("ok" if 0 < cap <= 12 else "warn",
                     "rate limit: cannot read it as %s; Synapse's default allows 12 messages a minute (burst 10) "
                     "and max_messages_per_minute is %s: %s" % (mxid, cap or "no cap",
                     "within it" if 0 < cap <= 12 else "ask the server admin to lift it (README, Matrix setup)"))

    def _spool(self, config: Config):
        path = spool_path(config)
        if not os.path.exists(path):
            self.say("ok", "spool: none yet at %s" % path)
            return
        status = spool_status(path)
        age = time.time() - status["oldest"] if status["oldest"] else 0
        counters = json.loads(status["state"].get("counters", "{}"))
        level = "warn" if age > 3600 or status["dead"] or counters.get("rate_limited") else "ok"
        self.say(level, "spool: %d waiting, oldest %.0f s, %d dead letters, %d sends refused for rate limit"
                 % (status["depth"], age, status["dead"], counters.get("rate_limited", 0)))

    def _plugins_d(self, config_path: str):
        entries = []
        for path in glob.glob(os.path.join(self.root, "etc/audit/plugins.d/*.conf")):
            with contextlib.suppress(OSError):
                with open(path) as handle:
                    entry = dict(line.split("=", 1) for line in handle.read().splitlines()
                                 if "=" in line and not line.lstrip().startswith("#"))
                entry = {k.strip(): v.strip() for k, v in entry.items()}
                if "audit-notify" in entry.get("path", "") or "audit_notify" in entry.get("path", ""):
                    entries.append((path, entry))
        if not entries:
            self.say("FAIL", "plugins.d: no entry runs audit-notify: run audit-notify setup")
            return
        for path, entry in entries:
            problems = ["%s is %r" % (k, entry.get(k)) for k, v in (("active", "yes"), ("direction", "out"),
                                                                    ("format", "string")) if entry.get(k) != v]
            if entry.get("args", "").replace("=", " ").split() != ["--config", config_path]:
                problems.append("args is %r, not '--config %s'" % (entry.get("args"), config_path))
            st = os.stat(path)
            if st.st_uid != 0 or st.st_mode & 0o022:
                problems.append("the file must be root's and not writable by others")
            exe = entry.get("path", "")
            if not os.path.isfile(exe) or os.stat(exe).st_uid != 0 or os.stat(exe).st_mode & 0o022:
                problems.append("path %s must be a root-owned executable nobody else can write" % exe)
            self.say("FAIL" if problems else "ok", "plugins.d: %s%s" % (path, ": " + "; ".join(problems)
                                                                           if problems else ""))

    def _selinux(self):
        if not os.path.exists("/sys/fs/selinux/enforce"):
            self.say("ok", "SELinux: not enabled")
            return
        modules = self.run(["semodule", "-l"], capture_output=True).stdout.decode()
        if re.search(r"^audit_notify\b", modules, re.M):
            self.say("ok", "SELinux: module audit_notify loaded")
        else:
            self.say("FAIL", "SELinux is on but the audit_notify module is not loaded: see selinux/README.md")


def config_user(account: Optional[Account]) -> str:
    return account.name if account else "USER"


def test_content(where: str) -> dict:
    host = socket.gethostname()
    body = "✅ audit-notify works on %s (%s)" % (host, where)
    return {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
            "formatted_body": html.escape(body), "m.mentions": {}}


@dataclass
class Answers:
    """What setup needs to know; asked for interactively when missing."""

    homeserver: str = ""
    bot: str = ""
    password: str = ""
    access_token: str = ""
    device: str = ""
    room: str = ""
    user: str = "audit-notify"
    matrix_commander: str = DEFAULT_MATRIX_COMMANDER


class Setup:
    """`audit-notify setup` / `uninstall`: every step idempotent, every
    step said.  Paths are under ``root`` (tests install into a directory)."""

    def __init__(self, answers: Answers, root: str, out, run=subprocess.run):
        self.answers, self.root, self.out, self.run = answers, root, out, run
        self.paths = {k: os.path.join(root, v.lstrip("/")) for k, v in INSTALL_PATHS.items()}
        config_dir, state = self.paths["config_dir"], self.paths["state_dir"]
        self.config_path = os.path.join(config_dir, "audit-notify.conf")
        self.config = Config(matrix_commander=answers.matrix_commander,
                             credentials=os.path.join(config_dir, "credentials.json"),
                             store=os.path.join(state, "store"), room=answers.room,
                             blacklist=os.path.join(config_dir, "blacklist"), state_dir=state,
                             spool_dir=os.path.join(state, "spool"), user=answers.user, source=self.config_path)

    def say(self, text: str):
        self.out.write(text + "\n")
        self.out.flush()

    def install(self, send_test: bool = True) -> int:
        account = self._user()
        self._dirs(account)
        self._executable()
        self._config()
        self._login(account)
        self._join(account)
        self._plugin_entry()
        self._relabel()
        if send_test:
            ok, detail = send_once(self.config, test_content("setup"), account, self.run)
            if not ok:
                raise Error("the test notification was not sent: %s" % detail)
            self.say("sent a test notification (%s)" % detail)
        self.say("done. Now restart auditd so that it starts the plugin: service auditd restart\n"
                 "and check it: %s --check --config %s" % (self.paths["executable"], self.config_path))
        return 0

    def _user(self) -> Account:
        name = self.answers.user
        if name != "root":
            try:
                pwd.getpwnam(name)
            except KeyError:
                self.run(["useradd", "--system", "--home-dir", INSTALL_PATHS["state_dir"], "--no-create-home",
                          "--shell", "/usr/sbin/nologin", name], check=True)
                self.say("created system user %s" % name)
        return lookup_user(name)

    def _dirs(self, account: Account):
        config_dir = self.paths["config_dir"]
        os.makedirs(config_dir, mode=0o750, exist_ok=True)
        os.chown(config_dir, 0, account.gid)  # the user may read its config (SIGHUP reload)
        os.chmod(config_dir, 0o750)
        for path in (self.config.state_dir, self.config.spool_dir):
            private_dir(path, account)
        os.makedirs(os.path.dirname(self.paths["plugins_d"]), exist_ok=True)

    def _executable(self):
        target, source = self.paths["executable"], os.path.abspath(__file__)
        if os.path.exists(target) and _same_file_content(source, target):
            self.say("plugin already installed: %s" % target)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target + ".new")
        os.chmod(target + ".new", 0o755)
        os.rename(target + ".new", target)
        self.say("installed the plugin as %s" % target)

    def _config(self):
        """Write config and blacklist once; never overwrite what the admin edited."""
        if os.path.exists(self.config_path):
            self.say("kept the existing config %s" % self.config_path)
        else:
            keys = ("matrix_commander", "credentials", "store", "room", "blacklist", "user", "state_dir", "spool_dir")
            text = "# Written by audit-notify setup; every key: audit-notify.conf.example\n" + "".join(
                "%s = %s\n" % (k, getattr(self.config, k)) for k in keys)
            _write_new(self.config_path, text, 0o640, gid=lookup_user(self.answers.user).gid)
            self.say("wrote %s" % self.config_path)
        example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blacklist.example")
        if os.path.exists(self.config.blacklist):
            self.say("kept the existing blacklist %s" % self.config.blacklist)
        else:
            text = ""
            if os.path.exists(example):  # a checkout; an installed copy has none
                with open(example) as handle:
                    text = handle.read()
            _write_new(self.config.blacklist, text, 0o640, gid=lookup_user(self.answers.user).gid)
            self.say("wrote %s" % self.config.blacklist)

    def _login(self, account: Account):
        creds = self.config.credentials
        if os.path.exists(creds):
            self.say("the bot is already logged in (%s)" % creds)
            return
        a = self.answers
        fresh = os.path.join(self.config.state_dir, "credentials.json")
        if a.access_token:
            status, who = matrix_api(a.homeserver, "/_matrix/client/v3/account/whoami", a.access_token)
            if status != 200 or "device_id" not in who:
                raise Error("the access token was refused by %s (HTTP %d)" % (a.homeserver, status))
            _write_new(fresh, json.dumps({"homeserver": a.homeserver, "user_id": who["user_id"],
                                          "device_id": who["device_id"], "access_token": a.access_token,
                                          "room_id": a.room}), 0o600, uid=account.uid, gid=account.gid)
        else:
            # The password goes in on stdin (getpass reads it there when there is no
            # terminal), never in argv where ps would show it; matrix-commander then
            # asks to confirm the login data, and the "yes" follows it.
            argv = [a.matrix_commander, "--login", "password", "--homeserver", a.homeserver, "--user-login",
                    a.bot, "--device", a.device or "audit-notify " + socket.gethostname(), "--room-default",
                    a.room, "-c", fresh, "-s", self.config.store, "--log-level", "ERROR", "ERROR"]
            self._mc(argv, account, a.password + "\nyes\n", "log the bot in")
            if not os.path.exists(fresh):
                raise Error("matrix-commander did not log the bot in (no %s written)" % fresh)
        os.rename(fresh, creds)
        self.say("logged %s in; credentials in %s" % (a.bot or "the bot", creds))

    def _join(self, account: Account):
        argv = [self.config.matrix_commander, "-c", self.config.credentials, "-s", self.config.store,
                "--room-join", self.config.room, "--log-level", "ERROR", "ERROR"]
        self._mc(argv, account, "", "join %s" % self.config.room)
        self.say("the bot is in %s" % self.config.room)

    def _mc(self, argv: List[str], account: Account, stdin: str, what: str):
        result = self.run(argv, input=stdin.encode(), capture_output=True, env=mc_env(self.config),
                          cwd=self.config.state_dir,
                          timeout=120, start_new_session=True, umask=0o077, **run_as(account))
        if result.returncode != 0:
            raise Error("could not %s: %s" % (what, _first_error_line(result.stderr.decode("utf-8", "replace"))
                                              or "matrix-commander exit code %d" % result.returncode))

    def _plugin_entry(self):
        text = ("# audit-notify (written by audit-notify setup)\nactive = yes\ndirection = out\n"
                "path = %s\ntype = always\nargs = --config %s\nformat = string\n"
                % (self.paths["executable"], self.config_path))
        target = self.paths["plugins_d"]
        if os.path.exists(target):
            with open(target) as handle:
                if handle.read() == text:
                    self.say("plugins.d entry already in place: %s" % target)
                    return
        _write_new(target, text, 0o640, replace=True)
        self.say("wrote the auditd plugins.d entry %s" % target)

    def _relabel(self):
        """Where SELinux is on, give what setup wrote its labels from the
        policy module (selinux/): a new file takes its directory's label,
        and a plugin labelled bin_t would run unconfined inside auditd_t."""
        if not os.path.exists("/sys/fs/selinux/enforce") or not shutil.which("restorecon"):
            return
        paths = [self.paths[k] for k in ("executable", "config_dir", "state_dir", "plugins_d")]
        self.run(["restorecon", "-RF"] + paths, check=True)
        self.say("relabelled for SELinux: %s" % " ".join(paths))

    def uninstall(self, purge: bool) -> int:
        for key in ("plugins_d", "executable"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.paths[key])
                self.say("removed %s" % self.paths[key])
        if purge:
            for key in ("config_dir", "state_dir"):
                shutil.rmtree(self.paths[key], ignore_errors=True)
                self.say("removed %s" % self.paths[key])
            if self.answers.user != "root" and self.run(["id", self.answers.user], capture_output=True).returncode == 0:
                self.run(["userdel", self.answers.user], check=True)
                self.say("removed user %s" % self.answers.user)
        else:
            self.say("kept %s and %s (uninstall --purge removes them)" % (self.paths["config_dir"],
                                                                         self.paths["state_dir"]))
        self.say("restart auditd: service auditd restart")
        return 0


def _same_file_content(a: str, b: str) -> bool:
    with open(a, "rb") as one, open(b, "rb") as two:
        return one.read() == two.read()


def _write_new(path: str, text: str, mode: int, uid: int = 0, gid: int = 0, replace: bool = False):
    """Write a file atomically with its final owner and mode from the start."""
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if os.geteuid() == 0:
        os.chown(tmp, uid, gid)
    os.chmod(tmp, mode)
    if not replace and os.path.exists(path):
        os.unlink(tmp)
        return
    os.rename(tmp, path)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="audit-notify",
        description="auditd plugin: send audit events as end-to-end-encrypted Matrix notifications.",
        epilog="Try: ausearch --start today --raw | audit-notify --dry-run.  Install: audit-notify setup --help")
    parser.add_argument("--config", metavar="FILE", help="config file (default %s)" % DEFAULT_CONFIG)
    parser.add_argument("--dry-run", action="store_true", help="send nothing; print each notification")
    parser.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per line")
    parser.add_argument("--check", action="store_true", help="check the whole setup, one line per check")
    parser.add_argument("--send-test", action="store_true", help="with --check: send a test notification")
    parser.add_argument("--status", action="store_true",
                        help="print the spool and counters of the running plugin, read-only")
    parser.add_argument("files", nargs="*", metavar="FILE", help="audit logs to read instead of stdin")
    args = parser.parse_args(argv)
    if args.json and not args.dry_run:
        parser.error("--json needs --dry-run")
    if args.send_test and not args.check:
        parser.error("--send-test needs --check")
    return args


def parse_setup_args(argv: Sequence[str]) -> argparse.Namespace:
    """`setup` and `uninstall`: every answer has a flag, so both run unattended."""
    parser = argparse.ArgumentParser(prog="audit-notify " + argv[0], description=(
        "Install the plugin: system user, directories, config and blacklist (never overwriting yours), the bot's "
        "login, the room, the auditd plugins.d entry, and a test notification.  Safe to run again."
        if argv[0] == "setup" else "Remove the plugins.d entry and the installed plugin (--purge: config, "
                                   "state and user too)."))
    parser.add_argument("--root", default="/", help="install under this directory (default /)")
    parser.add_argument("--user", default="audit-notify", help="system user to run as (default audit-notify)")
    if argv[0] == "setup":
        parser.add_argument("--homeserver", help="homeserver URL, e.g. https://matrix.example.org")
        parser.add_argument("--bot", help="the bot's Matrix id, e.g. @audit-bot:example.org")
        parser.add_argument("--password-file", help="file holding the bot's password ('-': stdin)")
        parser.add_argument("--access-token-file", help="file holding an access token instead of a password")
        parser.add_argument("--device", help="device name (default: audit-notify HOSTNAME)")
        parser.add_argument("--room", help="room alias, e.g. '#audit:example.org'")
        parser.add_argument("--matrix-commander", default=DEFAULT_MATRIX_COMMANDER)
        parser.add_argument("--no-test", action="store_true", help="do not send a test notification")
    else:
        parser.add_argument("--purge", action="store_true", help="also remove config, state and the user")
    return parser.parse_args(argv[1:])


def _answers(args: argparse.Namespace, stdin=sys.stdin) -> Answers:
    """Flags first; what is missing is asked for, if someone is there to ask."""
    def ask(flag, prompt, secret=False):
        if not stdin.isatty():
            raise Error("setup needs --%s when not run interactively" % flag)
        if secret:
            import getpass

            return getpass.getpass(prompt + ": ")
        return input(prompt + ": ").strip()

    def read_secret(path):
        if path == "-":
            return stdin.readline().rstrip("\n")
        with open(path) as handle:
            return handle.read().strip()

    answers = Answers(user=args.user, matrix_commander=args.matrix_commander, device=args.device or "")
    answers.homeserver = args.homeserver or ask("homeserver", "Homeserver URL (https://matrix.example.org)")
    answers.room = args.room or ask("room", "Room alias (#audit:example.org)")
    if args.access_token_file:
        answers.access_token = read_secret(args.access_token_file)
    else:
        answers.bot = args.bot or ask("bot", "The bot's Matrix id (@audit-bot:example.org)")
        answers.password = read_secret(args.password_file) if args.password_file else ask(
            "password-file", "The bot's password", secret=True)
    if not answers.room.startswith("#"):
        raise Error("--room must be an alias (#name:server): matrix-commander 8.0.6 cannot address "
                    "room version 12 ids")
    return answers


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


def spool_path(config: Config) -> str:
    return os.path.join(config.spool_dir, "spool.sqlite3")


def open_spool(config: Config) -> Tuple[Spool, bool]:
    """Open the spool (directory 0700, files 0600) and try to take its
    lock.  Without the lock another plugin is running on it: this one may
    add to the spool but leaves sending to that one (one matrix-commander
    per store)."""
    old = os.umask(0o077)
    try:
        os.makedirs(config.spool_dir, mode=0o700, exist_ok=True)
        spool = Spool(spool_path(config), config.spool_max_mb << 20, config.spool_max_age_hours * 3600)
        lock = os.open(os.path.join(config.spool_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (OSError, sqlite3.Error) as exc:
        raise Error("cannot open the spool in %s: %s" % (config.spool_dir, exc)) from None
    finally:
        os.umask(old)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return spool, False
    return spool, True  # the lock fd stays open (and locked) until exit


def print_status(config: Config, out) -> int:
    """--status: the spool and the running plugin's counters, read-only."""
    path = spool_path(config)
    if not os.path.exists(path):
        out.write("no spool at %s: the plugin has not run with this config\n" % path)
        return 1
    status = spool_status(path)
    now = time.time()
    state = status["state"]
    pid = int(state.get("pid", "0") or 0)
    running = pid > 0 and os.path.exists("/proc/%d" % pid)
    oldest = "%.0f s ago" % (now - status["oldest"]) if status["oldest"] else "-"
    out.write("spool: %s\n" % path)
    out.write("spooled: %d notifications, %d bytes, oldest accepted %s\n" % (status["depth"], status["bytes"], oldest))
    out.write("dead letters: %d\n" % status["dead"])
    out.write("plugin: pid %d, %s; state saved %.0f s ago\n" % (
        pid, "running" if running else "not running", now - float(state.get("updated", now))))
    counters = json.loads(state.get("counters", "{}"))
    problems = counters.pop("problems", {})
    out.write("counters: %s\n" % " ".join("%s=%s" % item for item in counters.items()))
    for kind, count in sorted(problems.items()):
        out.write("problem: %s: %d\n" % (kind, count))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("setup", "uninstall"):
        args = parse_setup_args(argv)
        try:
            if argv[0] == "uninstall":
                return Setup(Answers(user=args.user), args.root, sys.stdout).uninstall(args.purge)
            return Setup(_answers(args), args.root, sys.stdout).install(send_test=not args.no_test)
        except (Error, OSError, subprocess.CalledProcessError) as exc:
            sys.stderr.write("audit-notify %s: %s\n" % (argv[0], exc))
            return 1
    args = parse_args(argv)
    if args.check:
        return 1 if Doctor(sys.stdout).check(args.config, args.send_test) else 0
    fixed: List[str] = []
    try:
        config = load_config(args.config)
        if args.status:
            return print_status(config, sys.stdout)
        rules = load_ruleset(config)
        auparse = import_auparse()
        counters = Counters()
        sender = None
        if args.dry_run:
            setup_logging(Config(), to_stderr=False, syslog_socket="")
            sink = Printer(sys.stdout, args.json, counters)
        else:
            setup_logging(config, to_stderr=sys.stderr.isatty())
            fixed = prepare(config)
            sink, owner = open_spool(config)
            sender = Sender(config, sink, counters) if owner else None
    except Error as exc:
        sys.stderr.write("audit-notify: %s\n" % exc)
        if log.handlers:
            log.error("not started: %s", exc)
        return 1

    def reload():
        new = load_config(args.config)
        if not args.dry_run:
            check_config_files(new)
        return new, load_ruleset(new)

    hostname = config.hostname or socket.gethostname()
    plugin = Plugin(config, rules, auparse, sink, counters, sender=sender, reload=reload, hostname=hostname)
    if sender is not None:
        plugin.digester.restore(sink.state("digests"))
    wakeup = _install_signals(plugin)
    if args.dry_run:
        mode = "dry run"
    elif sender is None:
        mode = "another audit-notify (pid %s) owns the spool and sends what this one adds" % sink.state("pid", "?")
    else:
        mode = "spool %s, sending with %s" % (config.spool_dir, config.matrix_commander)
    log.info("started: config %s, %d blacklist and %d allow-list rules, %s",
             config.source, len(rules.deny), len(rules.allow), mode)
    for what in fixed:
        log.warning("fixed permissions: %s", what)
    if not args.dry_run and config.user == "root":
        log.warning("running as root, and so does matrix-commander: set user = audit-notify (see README)")
    at_eof = True
    try:
        for fd in _open_inputs(args.files):
            if not plugin.run(fd, wakeup[0]):
                at_eof = False
                break
            plugin.reader.end_of_input()
    except Error as exc:
        log.error("%s", exc)
        sys.stderr.write("audit-notify: %s\n" % exc)
        at_eof = False
    plugin.finish(at_eof)
    if isinstance(sink, Spool):
        sink.close()
    return 0 if at_eof or plugin.stopping else 1


if __name__ == "__main__":
    sys.exit(main())
