"""Settings: where things live, and the config file that changes them.

The config file is auditd's own format (``key = value``, ``#`` comments),
parsed strictly: an unknown key or a bad value is an error naming the file
and line, never a silent default.  ``audit-notify.conf.example`` documents
every key.  This module is also the one table of default paths: setup,
the doctor and the plugin all take them from here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Tuple

# Where a fresh install keeps things (README, "Install"); setup writes the
# same layout under --root.
CONFIG_DIR = "/etc/audit-notify"
STATE_DIR = "/var/lib/audit-notify"
DEFAULT_CONFIG = CONFIG_DIR + "/audit-notify.conf"
DEFAULT_MATRIX_COMMANDER = "/usr/local/bin/matrix-commander"  # where pipx puts it (README)
# The plugin's log where there is no syslog socket and no log_file.
FALLBACK_LOG = "/var/log/audit-notify.log"
INSTALL_PATHS = {
    "executable": "/usr/local/sbin/audit-notify",
    "config_dir": CONFIG_DIR,
    "state_dir": STATE_DIR,
    "plugins_d": "/etc/audit/plugins.d/matrix-notifications.conf",
}
# The original script's hard-coded files: used when no config exists, so an
# upgrade from krair/auditd-matrix-notify is a drop-in.
LEGACY_DIR = "/usr/local/share/matrix-commander"
LEGACY_MATRIX_COMMANDER = "/usr/sbin/matrix-commander.py"


class Error(Exception):
    """A problem the user must fix: bad config, bad rule, missing package.

    The message is complete and names the file and line where there is one;
    only main() turns it into an exit code.
    """


@dataclass(frozen=True)
class Heartbeat:
    """When the heartbeat message is edited: every day at a local time
    (``at``: hour, minute), every ``every`` seconds, or never (neither)."""

    at: Optional[Tuple[int, int]] = None
    every: float = 0.0

    def __bool__(self):
        return self.at is not None or self.every > 0

    def __str__(self):
        if self.at is not None:
            return "%02d:%02d" % self.at
        if not self.every:
            return ""
        unit = next(u for u in "dhms" if u == "s" or self.every % UNITS[u] == 0)
        return "every %g%s" % (self.every / UNITS[unit], unit)


@dataclass(frozen=True)
class Config:
    """Every setting, with the default a fresh install uses.

    The file format is auditd's own (``key = value``, ``#`` comments); the
    shipped ``audit-notify.conf.example`` documents each key.
    """

    matrix_commander: str = DEFAULT_MATRIX_COMMANDER
    credentials: str = CONFIG_DIR + "/credentials.json"
    store: str = STATE_DIR + "/store"
    room: str = ""
    blacklist: str = ""
    allowlist: str = ""
    log_file: str = ""
    log_level: str = "info"
    hostname: str = ""
    send_timeout: float = 30.0
    eoe_timeout: int = 2
    state_dir: str = STATE_DIR
    spool_dir: str = STATE_DIR + "/spool"
    spool_max_mb: int = 64
    spool_max_age_hours: float = 168.0
    max_messages_per_minute: int = 30
    digest_after: int = 5
    digest_window: float = 60.0
    group_events: bool = True
    routine_minutes: float = 60.0
    mention: Tuple[str, ...] = ()
    critical_room: str = ""
    warning_room: str = ""
    routine_room: str = ""
    heartbeat: Heartbeat = Heartbeat(at=(9, 0))
    node_silence_minutes: float = 15.0
    responders: Tuple[str, ...] = ()   # who may answer from the room (answers.py); empty: those in mention
    mute: float = 8 * 3600.0           # seconds a 🔕 mutes a message's shape
    reannounce: float = 15 * 60.0      # an unacknowledged critical is announced again after this (0: never)
    reannounce_times: int = 2
    user: str = "audit-notify"
    source: str = "(built-in defaults)"


# What SIGHUP cannot change: by then the plugin has dropped root for good,
# so it can no longer become another user, open a log file or a directory
# that only root may write, or take ownership of new credentials and store.
# A reload that changes one of these logs it by name (a restart applies
# it); every other key takes effect at once.
RESTART_KEYS: FrozenSet[str] = frozenset(("user", "log_file", "state_dir", "spool_dir", "credentials", "store"))


def changed_keys(old: Config, new: Config) -> List[str]:
    """The keys whose values differ, in the file's documented order."""
    return [name for name in Config.__dataclass_fields__
            if name != "source" and getattr(old, name) != getattr(new, name)]


_PATH_KEYS = ("matrix_commander", "credentials", "store", "blacklist", "allowlist", "log_file", "state_dir",
              "spool_dir")
_LOG_LEVELS = ("debug", "info", "warning", "error")

# Numbers are written in decimal and nothing else: float() would also take
# nan, inf, 1e9 and 1_000, which no setting means.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_DURATION = re.compile(r"(%s)\s*([A-Za-z]*)" % _NUMBER.pattern)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_UNIT_NAMES = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_DURATION = 365 * 86400  # a year: past it a timer means "never", which no key needs
MAX_COUNT = 1000000         # counts and sizes (a million MB is a terabyte)


def duration_seconds(text: str, bare_unit: str = "") -> float:
    """A duration in seconds: ``60s``, ``5m``, ``2h``, ``1d``, or a bare
    number in ``bare_unit`` (the unit the key's name says).  Only finite
    decimal numbers: ``nan`` and ``inf`` are not durations."""
    found = _DURATION.fullmatch(text.strip())
    unit = found.group(2).lower() if found else ""
    if not found or (unit or bare_unit) not in UNITS:
        bare = "a number of %s (30) or " % _UNIT_NAMES[bare_unit] if bare_unit else ""
        raise ValueError("expected a duration: %sa number with a unit: 60s, 5m, 2h or 1d" % bare)
    return float(found.group(1)) * UNITS[unit or bare_unit]


def _duration(unit: str, off: bool = False, whole: bool = False):
    """A key whose value is a duration, kept in the unit its name gives
    (``routine_minutes = 2h`` is 120).  ``off``: 0 is allowed and means off;
    ``whole``: only whole numbers of that unit (auparse takes an int)."""
    def convert(text):
        seconds = duration_seconds(text, unit)
        if seconds < 0 or (seconds == 0 and not off):
            raise ValueError("must be greater than 0" if not off else "must be 0 (off) or more")
        if seconds > MAX_DURATION:
            raise ValueError("must be at most 365d")
        value = seconds / UNITS[unit]
        if whole:
            if value != int(value):
                raise ValueError("must be a whole number of %s" % _UNIT_NAMES[unit])
            return int(value)
        return value

    return convert


def _whole(minimum: int, what: str):
    """A count or size: a whole number from ``minimum`` to MAX_COUNT;
    ``what`` says of what, with an example ("megabytes, like 64")."""
    def convert(text):
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError("expected a whole number of %s" % what)
        value = int(text)
        if value < minimum:
            raise ValueError("must be %s" % ("greater than 0" if minimum == 1 else "0 (off) or more"))
        if value > MAX_COUNT:
            raise ValueError("must be at most %d" % MAX_COUNT)
        return value

    return convert


def _choice(choices):
    def convert(text):
        if text not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return text

    return convert


def _yes_no(text):
    if text not in ("yes", "no"):
        raise ValueError("must be yes or no")
    return text == "yes"


_MXID = re.compile(r"@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(?::\d+)?")


def _mxids(text):
    """Matrix user ids to mention, separated by spaces or commas."""
    ids = tuple(part for part in re.split(r"[\s,]+", text) if part)
    for mxid in ids:
        if not _MXID.fullmatch(mxid):
            raise ValueError("%r is not a Matrix user id like @alice:example.org" % mxid)
    return ids


def parse_heartbeat(text: str) -> Heartbeat:
    """"HH:MM" (daily, local time), "every 30m" / "every 2h" (any duration
    with its unit; "every 20s" for tests), or "" (off)."""
    if not text:
        return Heartbeat()
    daily = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
    if daily:
        return Heartbeat(at=(int(daily.group(1)), int(daily.group(2))))
    every = re.fullmatch(r"every\s+(.+)", text)
    if not every:
        raise ValueError("expected a time of day like 09:00, 'every 30m' or 'every 2h', or nothing (off)")
    try:
        seconds = duration_seconds(every.group(1))
    except ValueError:
        raise ValueError("'every' takes a duration with its unit, like 'every 30m', 'every 2h' or 'every 1d'") \
            from None
    if not 1 <= seconds <= MAX_DURATION:
        raise ValueError("every must be from 1s to 365d")
    return Heartbeat(every=seconds)


_ROOM = re.compile(r"[#!][^\s:]+:\S+")


def _room(text):
    if text and not _ROOM.fullmatch(text):
        raise ValueError("must be a room alias (#name:server) or id")
    return text


_CONVERTERS = {
    "send_timeout": _duration("s"),
    "eoe_timeout": _duration("s", whole=True),
    "log_level": _choice(_LOG_LEVELS),
    "spool_max_mb": _whole(1, "megabytes, like 64"),
    "spool_max_age_hours": _duration("h"),
    "max_messages_per_minute": _whole(0, "messages, like 30 (0: no cap)"),
    "digest_after": _whole(0, "repeats, like 5 (0: never count)"),
    "digest_window": _duration("s"),
    "group_events": _yes_no,
    "routine_minutes": _duration("m"),
    "mention": _mxids,
    "room": _room,
    "critical_room": _room,
    "warning_room": _room,
    "routine_room": _room,
    "heartbeat": parse_heartbeat,
    "node_silence_minutes": _duration("m", off=True),
    "responders": _mxids,
    "mute": _duration("s"),
    "reannounce": _duration("s", off=True),
    "reannounce_times": _whole(0, "times, like 2 (0: never)"),
}

# A comment after a value: "#" at the start (nothing else on the line
# but the key) or after a space.  A room alias (#audit:example.org) has
# no space before its "#" and is a value.
_INLINE_COMMENT = re.compile(r"^#(?:\s|$)|\s#")


def parse_config(text: str, path: str) -> Config:
    """Parse a config file strictly: unknown keys and bad values are errors
    that name ``file:line`` and say in words what was expected.

    Relative paths are taken relative to the config file's directory, so a
    config next to its blacklist works from anywhere.  A UTF-8 byte order
    mark (some Windows editors write one) is not part of the first key.
    """
    known = set(Config.__dataclass_fields__) - {"source"}
    values = {}
    base = os.path.dirname(os.path.abspath(path))
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), 1):
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
        if _INLINE_COMMENT.search(value):
            raise Error("%s: %s = %r: a comment after the value; comments go on their own line, "
                        "starting with #" % (where, key, value))
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
    return parse_config(read_text(path, "config"), path)


def read_text(path: str, what: str) -> str:
    """A config or rule file's text, or an Error that says which and why."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise Error("cannot read %s %s: %s" % (what, path, exc)) from None

