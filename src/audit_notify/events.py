"""Events: the records of one audit event, and the fields people match on.

An Event is what auparse groups by serial and node: its records, each
with its fields interpreted (ids to names, hex decoded), and a flat view
of them with the original script's normalized fields first, so existing
blacklists keep working.  The functions here read an Event out of an
auparse parser; reader.py decides when.
"""

from __future__ import annotations

import functools
import re
import time
from typing import Callable, Dict, List, Optional, Tuple

from .facts import Facts, facts_from, kernel_layout
from .names import user_field


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
# The fields auparse's normalizer gives (the original script's): a summary
# may leave them out (EventReader.normalize) and read them on demand.
NORMALIZED = frozenset(("kind", "action", "object_kind", "how", "session", "primary_subject", "secondary_subject",
                        "primary_object", "secondary_object"))
# The user id fields a SYSCALL record in the kernel's layout holds (Event.who).
USER_IDS = frozenset(("auid", "uid", "euid"))
_EVENT_LEVEL_SET_LATER = frozenset(("node", "serial", "records"))
# The summary fields read one by one from the parser (summary_from_parser),
# in SUMMARY_FIELDS order, with and without the normalizer: worked out once
# here, not tested name by name for every event; each with the text that
# must be in the event's lines for auparse to find it.
_LOOKED_UP = {normalize: tuple((name, name + "=") for name in SUMMARY_FIELDS if name not in ("type", "time")
                               and name not in _EVENT_LEVEL_SET_LATER and (normalize or name not in NORMALIZED))
              for normalize in (True, False)}


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

    __slots__ = ("_fields", "_records", "_types", "_load", "_lines", "timestamp", "ended", "skipped", "facts",
                 "standalone", "kernel")

    def __init__(self, fields: Dict[str, str], records: Optional[List[Tuple[str, Dict[str, str]]]] = None,
                 timestamp: float = 0.0, ended: bool = False, skipped: int = 0,
                 types: Optional[List[str]] = None, load: Optional[Callable[[str], Optional["Event"]]] = None,
                 lines: str = "", facts: Optional[Facts] = None):
        self._fields = fields
        self.facts = facts if facts is not None else Facts({})  # what severity and grouping read
        self._records = records if records is not None else []
        self._types = types
        self._load = load    # reads ``lines`` (the event's lines as fed) whole: a summary's rest
        self._lines = lines
        self.timestamp = timestamp
        self.ended = ended      # its EOE record came: nothing more will
        self.skipped = skipped  # records whose type could not be read
        self.standalone = False  # one record from user space: nothing more will come
        # A summary whose first record is a SYSCALL in the kernel's layout
        # from its first field on: its facts hold that record's ids (who()).
        self.kernel = False

    def _read_all(self):
        if self._load is not None:
            load, self._load = self._load, None
            whole = load(self._lines)
            self._lines = ""
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
        value = self._fields.get(name)
        if value is not None:
            return value
        if self._load is not None and (name not in _SUMMARY or (name in NORMALIZED and "kind" not in self._fields)):
            self._read_all()  # not in the summary: only the whole event knows
        return self._fields.get(name, default)

    def who(self, name: str) -> str:
        """``get(name)`` of a field that says who (auid, uid, euid, acct,
        id), where a summary can tell without being read again: a user id
        in a first record that is a SYSCALL in the kernel's layout (its
        name as auparse gives it: names.py), or a field whose name is
        nowhere in the event's lines ("").  A routine event is counted
        with its person's name: a flood of them is not read twice."""
        if self._load is None or name in self._fields:
            return self.get(name)
        lines = self._lines
        if " %s=" % name not in lines and "'%s=" % name not in lines and "\x1d%s=" % name not in lines:
            return ""  # (a field's name follows a space, or the quote of msg='...')
        if self.kernel and name in USER_IDS:
            value = user_field(lines, name, self.facts.values[name])
            if value is not None:
                return value
        return self.get(name)

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
        self.facts.merge(piece.facts)


def _text(call, *args) -> str:
    """Call an auparse accessor; bytes that are not UTF-8 come back as
    surrogate escapes instead of raising (an attacker chooses an SSH
    username's bytes; message.clean shows them as \\xNN, never like text)."""
    try:
        value = call(*args)
    except UnicodeDecodeError as exc:
        return exc.object.decode("utf-8", "surrogateescape")
    return "" if value is None else str(value)


def _interpret(au) -> str:
    """The current field, interpreted (as _text, without its extra call:
    this runs for most fields the plugin reads)."""
    try:
        value = au.interpret_field()
    except RuntimeError:
        return _text(au.get_field_str)
    except UnicodeDecodeError as exc:
        return exc.object.decode("utf-8", "surrogateescape")
    return "" if value is None else value


def _type_name(au) -> Optional[str]:
    """The record's type; None if it cannot be read at all."""
    try:
        name = au.get_type_name()
        return "" if name is None else name
    except UnicodeDecodeError as exc:
        return exc.object.decode("utf-8", "surrogateescape")
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


def _read_records(au) -> Tuple[List[Tuple[str, Dict[str, str]]], bool, int, List[Tuple[str, str]]]:
    """The event's records (without EOE), whether its EOE was among them,
    how many records were skipped because their type is unreadable, and
    each record's type and raw text (for its Facts)."""
    records, ended, skipped, texts = [], False, 0, []
    au.first_record()
    while True:
        rtype = _type_name(au)
        if rtype is None:
            skipped += 1
        elif rtype == "EOE":
            ended = True
        else:
            texts.append((rtype, _text(au.get_record_text)))
            records.append((rtype, _read_fields(au)))
        if not au.next_record():
            break
    return records, ended, skipped, texts


# The longest account name the system allows, in bytes with its NUL
# (LOGIN_NAME_MAX on Linux; useradd stops at 32).
NAME_MAX_BYTES = 256


def _overlong_account(au) -> bool:
    """Whether an ``acct=`` of the event is longer than any account name.
    auparse's normalizer looks acct up by name (getpwnam in
    set_subject_what, for a USER_LOGIN), and NSS may abort the process on
    a name of megabytes (systemd's userdb asserts that it fits its stack).
    Such an event is not normalized; its fields are read as they are.  The
    cursor is left on the first record, where the normalizer starts."""
    au.first_record()
    try:
        value = au.find_field("acct")
        while value is not None:
            if (len(value) - 2 if value[:1] == '"' else len(value) // 2) >= NAME_MAX_BYTES:  # quoted, or hex
                return True
            value = au.find_field_next()
    except UnicodeDecodeError as exc:  # not UTF-8: judged by its bytes
        return len(exc.object) >= NAME_MAX_BYTES
    except OSError:  # the binding's "not found" with a stale errno
        pass
    finally:
        au.first_record()
    return False


def _normalized(au, auparse) -> Dict[str, str]:
    """The original script's fields, computed the same way: subjects read
    "value = field" ("system" for an unset primary), objects "field = value",
    and "n/a" where the normalizer has nothing.  Called first thing: the
    normalizer searches each record from where its field cursor is, so
    fields read before would change its answers (an AVC on a directory
    came out "admin-defined-rule" instead of "file")."""
    out: Dict[str, str] = {}
    if _overlong_account(au):
        out["error"] = "Error normalizing: an account name longer than any the system allows (not looked up)"
        return out
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


_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+")
_ARG_NAME = re.compile(r"a(\d+)(?:\[\d+\])?$")


def _shell_word(word: str) -> str:
    if word and _SHELL_SAFE.fullmatch(word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


@functools.lru_cache(maxsize=64)
def _second_text(sec: int) -> Tuple[str, str]:
    return time.strftime("%a %b %d %H:%M:%S", time.localtime(sec)), time.strftime("%Y", time.localtime(sec))


def _stamp_text(stamp, host: str) -> str:
    """str(AuEvent), the original's "time" field, made once per second
    rather than once per event (it is a quarter of the parsing time);
    ``host`` is the stamp's, read once by the caller."""
    clock, year = _second_text(stamp.sec)
    return "%s.%d %s serial=%d host=%s" % (clock, stamp.milli, year, stamp.serial, host or "(null)")


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
    records, ended, skipped, texts = _read_records(au)
    if not records and not ended:
        raise Malformed("a record whose type cannot be read")
    host = _text(getattr, stamp, "host")
    fields = {"type": records[0][0] if records else "EOE", "time": _stamp_text(stamp, host)}
    fields.update(normalized)
    if "result" not in fields:
        res = next((f["res"] for _, f in records if "res" in f), None)
        if res is not None:
            fields["result"] = res
    fields["node"] = host or default_node
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
    syscall = next((f.get("syscall") for name, f in records if name == "SYSCALL"), None)
    return Event(fields=fields, records=records, timestamp=stamp.sec + stamp.milli / 1000.0, ended=ended,
                 skipped=skipped, facts=facts_from(texts, syscall))


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


def summary_from_parser(au, auparse, default_node: str, lines_of: Optional[Callable[[List[str]], Optional[str]]],
                        read_again: Callable[[str], Optional[Event]], normalize: bool = True) -> Event:
    """An Event that holds only SUMMARY_FIELDS until more is asked for,
    then calls ``read_again`` on its records' lines (``lines_of`` gives
    them as fed, from the records' texts, None where a stream without
    enrichment needs none: a record's text is its line).  An event whose
    lines cannot be had exactly as fed (enrichment lost, bytes that are not
    UTF-8) or that auparse cannot normalize is read whole at once.  The
    facts are read from the records' texts, which are their lines up to
    the enrichment: the facts never read past it."""
    stamp = au.get_timestamp()
    if stamp is None:
        raise Malformed("a record without type= and msg=audit(...)")
    # The normalizer is a fifth of reading a flood; without rules on its
    # fields it waits until a message asks (read again, then).
    normalized = _normalized(au, auparse) if normalize else {}
    types, texts, ended, typed = [], [], False, []
    type_name, record_text, next_record = au.get_type_name, au.get_record_text, au.next_record
    au.first_record()
    while True:  # once per record: the plain calls first, the careful ones (_type_name) where they raise
        try:
            rtype = type_name()
        except (UnicodeDecodeError, LookupError):
            rtype = _type_name(au)
        else:
            if rtype is None:
                rtype = ""
        try:
            text = record_text()
        except UnicodeDecodeError:
            text = None
        if text is None or rtype is None:
            return event_from_parser(au, auparse, default_node, normalized)
        texts.append(text)
        if rtype == "EOE":
            ended = True
        else:
            types.append(rtype)
            typed.append((rtype, text))
        if not next_record():
            break
    if not types and not ended:
        raise Malformed("a record whose type cannot be read")
    if "error" in normalized:
        return event_from_parser(au, auparse, default_node, normalized)
    host = _text(getattr, stamp, "host")
    fields = {"type": types[0] if types else "EOE", "time": _stamp_text(stamp, host)}
    if normalized:
        fields.update(normalized)
    # Most events start with a SYSCALL record in the kernel's layout: what
    # auparse would say of its key, success and syscall is known from it.
    layout = kernel_layout(typed[0][1]) if typed and typed[0][0] == "SYSCALL" else None
    if layout is not None:
        _from_layout(layout, fields)
    if lines_of is None:
        texts.append("")  # (so that the last line ends with its newline too)
        text = "\n".join(texts)  # one string: a list of the lines would hold more memory
    else:
        text = lines_of(texts)
        if text is None:
            return event_from_parser(au, auparse, default_node, normalized)
    # The rest as the whole event has them: "result" is the first "res";
    # a name the normalizer left out is the first record's raw field.  A
    # name whose "name=" is nowhere in the lines is not looked for (a
    # field auparse does not find costs it an exception).
    result = _first_value(au, "res") if "res=" in text else None
    if result is not None:
        fields["result"] = result
    for name, probe in _LOOKED_UP[bool(normalize)]:
        if name not in fields and probe in text:
            value = _first_value(au, name)
            if value is not None:
                fields[name] = value
    if fields.get("key") in ("(null)", "(none)"):
        del fields["key"]
    fields["node"] = host or default_node
    fields["serial"] = str(stamp.serial)
    fields["records"] = " ".join(types)
    if layout is not None:
        syscall = _syscall_name(au, layout)
    else:
        syscall = _first_value(au, "syscall") if "SYSCALL" in types else None
    event = Event(fields, timestamp=stamp.sec + stamp.milli / 1000.0, ended=ended, types=types,
                  load=read_again, lines=text, facts=facts_from(typed, syscall, layout))
    # (its first field where the prefix "type=... msg=audit(...): " ends)
    event.kernel = layout is not None and layout.start() == typed[0][1].find("): ") + 3
    return event


def _from_layout(layout: re.Match, fields: Dict[str, str]):
    """The summary's key and success from the event's first record, a
    SYSCALL record in the kernel's layout (facts.kernel_layout), as auparse
    interprets them: a quoted key is its text, "(null)" itself, success
    "yes" or "no" itself.  A hex key (several keys, or odd bytes) is left
    to auparse."""
    key, success = layout.group("key", "success")
    if key[:1] == '"':
        fields["key"] = key[1:-1]
    elif key[:1] == "(":
        fields["key"] = key
    if success is not None and not success[:1].isdigit():
        fields["success"] = success


# (arch, syscall number) -> the name auparse gives it: the same for every
# event of the host, looked up once (a fifth of the per-event auparse calls).
_SYSCALL_NAMES: Dict[Tuple[str, str], str] = {}


def _syscall_name(au, layout: re.Match) -> Optional[str]:
    """The syscall's name of the event's first record, a SYSCALL record in
    the kernel's layout.  socketcall and ipc are named by their a0 too:
    those are not kept."""
    key = layout.group("arch", "syscall")
    name = _SYSCALL_NAMES.get(key)
    if name is None:
        name = _first_value(au, "syscall")
        if name is not None and not name.startswith(("socketcall", "ipc")) and len(_SYSCALL_NAMES) < 4096:
            _SYSCALL_NAMES[key] = name
    return name


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

