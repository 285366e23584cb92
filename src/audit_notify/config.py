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
    routine_minutes: int = 60
    mention: Tuple[str, ...] = ()
    critical_room: str = ""
    warning_room: str = ""
    routine_room: str = ""
    heartbeat: str = "09:00"
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


def _heartbeat(text):
    """"HH:MM" (daily, local time), "every 30m" / "every 2h" ("every 20s"
    for tests), or "" (off)."""
    if not text:
        return ""
    if re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", text):
        return text
    found = re.fullmatch(r"every (\d+)([smh])", text)
    if found and int(found.group(1)) > 0:
        return text
    raise ValueError("must be a time of day like 09:00, 'every 30m' or 'every 2h', or empty (off)")


def _nonnegative(text):
    value = float(text)
    if value < 0:
        raise ValueError("must be 0 (off) or more")
    return value


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _duration(text):
    """Seconds from "8h", "15m", "90s", "1d" or a bare number of seconds."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d|)", text)
    if not found:
        raise ValueError("must be a duration like 90s, 15m, 8h or 1d")
    return float(found.group(1)) * _DURATION_UNITS[found.group(2)]


def _positive_duration(text):
    value = _duration(text)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _room(text):
    if text and not text.startswith(("#", "!")):
        raise ValueError("must be a room alias (#name:server) or id")
    return text


_CONVERTERS = {
    "send_timeout": _positive_number(float),
    "eoe_timeout": _positive_number(int),
    "log_level": _choice(_LOG_LEVELS),
    "spool_max_mb": _positive_number(int),
    "spool_max_age_hours": _positive_number(float),
    "max_messages_per_minute": _count,
    "digest_after": _count,
    "digest_window": _positive_number(float),
    "group_events": _yes_no,
    "routine_minutes": _positive_number(int),
    "mention": _mxids,
    "room": _room,
    "critical_room": _room,
    "warning_room": _room,
    "routine_room": _room,
    "heartbeat": _heartbeat,
    "node_silence_minutes": _nonnegative,
    "responders": _mxids,
    "mute": _positive_duration,
    "reannounce": _duration,
    "reannounce_times": _count,
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
    return parse_config(read_text(path, "config"), path)


def read_text(path: str, what: str) -> str:
    """A config or rule file's text, or an Error that says which and why."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise Error("cannot read %s %s: %s" % (what, path, exc)) from None

