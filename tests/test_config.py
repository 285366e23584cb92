"""Config: auditd-style key = value, strict, with the original's files as a fallback."""

import os
import subprocess
import sys

import pytest
from corpus import ROOT, SRC
from rig import SCRIPT, WAIT

from audit_notify.config import DEFAULT_CONFIG, Config, Error, Heartbeat, load_config
from audit_notify.rules import RuleSet, load_ruleset


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_shipped_example_sets_every_key_and_parses(tmp_path):
    example = os.path.join(ROOT, "audit-notify.conf.example")
    config = load_config(example)
    with open(example) as handle:
        keys = {line.split("=")[0].strip() for line in handle if "=" in line and not line.startswith("#")}
    assert keys == set(Config.__dataclass_fields__) - {"source"}
    assert config.room == "#audit:example.org"
    assert config.blacklist == "/etc/audit-notify/blacklist"


def test_empty_config_means_defaults_and_no_blacklist(tmp_path):
    config = load_config(_write(tmp_path / "empty.conf", ""))
    assert config == Config(source=str(tmp_path / "empty.conf"))
    assert load_ruleset(config) == RuleSet()


def test_values_comments_and_relative_paths(tmp_path):
    path = _write(tmp_path / "a.conf", "# c\n\nroom = #ops:example.org\nblacklist = rules/bl\nsend_timeout = 2.5\n")
    config = load_config(path)
    assert config.room == "#ops:example.org"
    assert config.blacklist == str(tmp_path / "rules" / "bl")
    assert config.send_timeout == 2.5


@pytest.mark.parametrize("text, message", [
    ("colour = blue\n", "a.conf:1: unknown key 'colour'"),
    ("# x\nroom\n", "a.conf:2: expected 'key = value'"),
    ("send_timeout = soon\n", "a.conf:1: bad value for send_timeout: 'soon'"),
    ("send_timeout = -1\n", "a.conf:1: bad value for send_timeout: '-1' (must be greater than 0)"),
    ("log_level = loud\n", "a.conf:1: bad value for log_level: 'loud' (must be one of debug, info"),
    ("room = #a:x\nroom = #b:x\n", "a.conf:2: 'room' is set twice"),
    ("room = audit\n", "a.conf:1: bad value for room: 'audit' (must be a room alias (#name:server) or id)"),
    ("mention = @room\n", "a.conf:1: bad value for mention: '@room' ('@room' is not a Matrix user id"),
    ("group_events = maybe\n", "a.conf:1: bad value for group_events: 'maybe' (must be yes or no)"),
    ("room = #audit\n", "a.conf:1: bad value for room: '#audit' (must be a room alias (#name:server) or id)"),
    ("send_timeout = soon\n", "a.conf:1: bad value for send_timeout: 'soon' (expected a duration: a number of "
                              "seconds (30) or a number with a unit: 60s, 5m, 2h or 1d)"),
    ("routine_minutes = 1 week\n", "a.conf:1: bad value for routine_minutes: '1 week' (expected a duration: a number "
                                   "of minutes (30) or a number with a unit: 60s, 5m, 2h or 1d)"),
    ("spool_max_mb = lots\n", "a.conf:1: bad value for spool_max_mb: 'lots' (expected a whole number of megabytes, "
                              "like 64)"),
    ("eoe_timeout = 1.5\n", "a.conf:1: bad value for eoe_timeout: '1.5' (must be a whole number of seconds)"),
    ("digest_window = 0\n", "a.conf:1: bad value for digest_window: '0' (must be greater than 0)"),
    ("node_silence_minutes = -5\n", "a.conf:1: bad value for node_silence_minutes: '-5' (must be 0 (off) or more)"),
    ("send_timeout = 400d\n", "a.conf:1: bad value for send_timeout: '400d' (must be at most 365d)"),
    ("heartbeat = every 30\n", "a.conf:1: bad value for heartbeat: 'every 30' ('every' takes a duration with its "
                               "unit, like 'every 30m'"),
    ("heartbeat = 25:00\n", "a.conf:1: bad value for heartbeat: '25:00' (expected a time of day like 09:00"),
])
def test_bad_config_names_the_line(tmp_path, text, message):
    with pytest.raises(Error) as caught:
        load_config(_write(tmp_path / "a.conf", text))
    assert str(caught.value).startswith(str(tmp_path / message))


def test_missing_config_named_on_the_command_line_is_an_error(tmp_path):
    with pytest.raises(Error, match="cannot read config"):
        load_config(str(tmp_path / "nope.conf"))


def test_default_config_is_used_when_present(tmp_path):
    etc = tmp_path / "etc" / "audit-notify"
    etc.mkdir(parents=True)
    _write(etc / "audit-notify.conf", "room = #x:y\n")
    assert load_config(None, root=str(tmp_path)).room == "#x:y"


def test_original_files_are_a_drop_in_when_no_config_exists(tmp_path):
    legacy = tmp_path / "usr" / "local" / "share" / "matrix-commander"
    (legacy / "store").mkdir(parents=True)
    _write(legacy / "credentials.json", "{}")
    _write(legacy / "blacklist", "type BPF\n")
    (tmp_path / "usr" / "sbin").mkdir(parents=True)
    _write(tmp_path / "usr" / "sbin" / "matrix-commander.py", "")
    config = load_config(None, root=str(tmp_path))
    assert config.credentials == str(legacy / "credentials.json")
    assert config.store == str(legacy / "store")
    assert config.blacklist == str(legacy / "blacklist")
    assert config.matrix_commander == str(tmp_path / "usr" / "sbin" / "matrix-commander.py")
    assert len(load_ruleset(config).deny) == 1


def test_no_config_and_no_original_files_is_built_in_defaults(tmp_path):
    assert load_config(None, root=str(tmp_path)) == Config()


def test_plugins_d_entry_passes_the_config():
    with open(os.path.join(ROOT, "matrix-notifications.conf")) as handle:
        entry = dict(line.split(" = ", 1) for line in handle.read().splitlines() if " = " in line and line[0] != "#")
    assert entry["args"].split() == ["--config", DEFAULT_CONFIG]
    assert entry["format"] == "string" and entry["direction"] == "out" and entry["active"] == "yes"
    assert os.path.isabs(entry["path"])


def test_auparse_is_found_in_system_site_packages(tmp_path):
    import subprocess
    import sys
    # A Python that cannot import auparse on its own (isolated, no site) finds it
    # through the system directories, as the original's README had users do by hand.
    code = ("import sys; sys.path.insert(0, %r); from audit_notify.reader import import_auparse; "
            "m = import_auparse(); print(m.__file__)" % SRC)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "dist-packages" in out.stdout or "site-packages" in out.stdout


def test_missing_auparse_names_the_package(tmp_path):
    import subprocess
    import sys
    code = ("import sys; sys.path.insert(0, %r); from audit_notify.reader import import_auparse; "
            "import_auparse(search=[%r])" % (SRC, str(tmp_path)))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert "python3-audit" in out.stderr


def test_the_shipped_config_says_which_keys_need_a_restart():
    """Its "# restart" lines mark exactly the keys a reload cannot apply."""
    from audit_notify.config import RESTART_KEYS
    marked, pending = set(), False
    with open(os.path.join(ROOT, "audit-notify.conf.example")) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("# restart"):
                pending = True  # for the key lines right below it
            elif line and not line.startswith("#"):
                if pending:
                    marked.add(line.split("=")[0].strip())
            else:
                pending = False
    assert marked == set(RESTART_KEYS)
    example = load_config(os.path.join(ROOT, "audit-notify.conf.example"))
    assert set(Config.__dataclass_fields__) - {"source"} >= marked and example.user == "audit-notify"


@pytest.mark.parametrize("line", [
    "send_timeout = nan", "send_timeout = NaN", "digest_window = inf", "digest_window = Infinity",
    "spool_max_age_hours = -inf", "routine_minutes = nan", "node_silence_minutes = inf", "eoe_timeout = inf",
    "digest_after = inf", "spool_max_mb = 1e3", "max_messages_per_minute = 1_000", "send_timeout = 1e309",
    "heartbeat = every nan", "heartbeat = every infs",
])
def test_nan_inf_and_other_non_decimals_are_refused_in_words(tmp_path, line):
    """float() takes nan, inf, 1e3 and 1_000; no setting means any of them,
    and --check used to say ok to send_timeout = nan."""
    with pytest.raises(Error) as caught:
        load_config(_write(tmp_path / "a.conf", "room = #a:b\n%s\n" % line))
    message = str(caught.value)
    assert message.startswith("%s:2: bad value for %s: " % (tmp_path / "a.conf", line.split(" = ")[0]))
    assert "(expected " in message or "takes a duration with its unit" in message
    assert "could not convert" not in message and "invalid literal" not in message


@pytest.mark.parametrize("line, key, value", [
    ("digest_window = 5m", "digest_window", 300.0),
    ("digest_window = 90", "digest_window", 90.0),          # bare: seconds, as before
    ("digest_window = 1.5h", "digest_window", 5400.0),
    ("send_timeout = 60s", "send_timeout", 60.0),
    ("send_timeout = 2 m", "send_timeout", 120.0),
    ("eoe_timeout = 1m", "eoe_timeout", 60),
    ("eoe_timeout = 5", "eoe_timeout", 5),
    ("routine_minutes = 2h", "routine_minutes", 120.0),
    ("routine_minutes = 30s", "routine_minutes", 0.5),
    ("routine_minutes = 45", "routine_minutes", 45.0),      # bare: minutes, as its name says
    ("spool_max_age_hours = 7d", "spool_max_age_hours", 168.0),
    ("spool_max_age_hours = 90m", "spool_max_age_hours", 1.5),
    ("spool_max_age_hours = 12", "spool_max_age_hours", 12.0),
    ("node_silence_minutes = 1h", "node_silence_minutes", 60.0),
    ("node_silence_minutes = 0", "node_silence_minutes", 0.0),
    ("heartbeat = every 30m", "heartbeat", Heartbeat(every=1800.0)),
    ("heartbeat = every 1d", "heartbeat", Heartbeat(every=86400.0)),
    ("heartbeat = every 20s", "heartbeat", Heartbeat(every=20.0)),
    ("heartbeat = 7:30", "heartbeat", Heartbeat(at=(7, 30))),
    ("heartbeat =", "heartbeat", Heartbeat()),
])
def test_durations_take_units_and_a_bare_number_keeps_the_keys_unit(tmp_path, line, key, value):
    config = load_config(_write(tmp_path / "a.conf", line + "\n"))
    assert getattr(config, key) == value
    assert type(getattr(config, key)) is type(value)


def test_the_heartbeat_is_parsed_once_into_when_it_beats():
    """The watcher reads these fields; it parses no text of its own."""
    assert Config().heartbeat == Heartbeat(at=(9, 0)) and str(Config().heartbeat) == "09:00"
    assert str(Heartbeat(every=5400.0)) == "every 90m" and str(Heartbeat(every=7200.0)) == "every 2h"
    assert not Heartbeat() and Heartbeat(every=20.0) and Heartbeat(at=(0, 0))


def test_a_byte_order_mark_is_not_part_of_the_first_key(tmp_path):
    path = tmp_path / "bom.conf"
    path.write_bytes(b"\xef\xbb\xbfroom = #audit:example.org\r\ndigest_after = 3\r\n")
    config = load_config(str(path))
    assert (config.room, config.digest_after) == ("#audit:example.org", 3)
    path.write_bytes(b"\xef\xbb\xbf# a comment first\ncolour = blue\n")
    with pytest.raises(Error, match=r"bom.conf:2: unknown key 'colour'"):
        load_config(str(path))


@pytest.mark.parametrize("line", [
    "room = #audit:example.org # the main room",
    "digest_after = 3  # fewer",
    "send_timeout = 30\t# seconds",
    "blacklist = # none",
    "room = #",
])
def test_a_comment_after_a_value_is_named(tmp_path, line):
    with pytest.raises(Error) as caught:
        load_config(_write(tmp_path / "a.conf", "\n" + line + "\n"))
    key, value = (part.strip() for part in line.split("=", 1))
    assert str(caught.value) == ("%s:2: %s = %r: a comment after the value; comments go on their own line, "
                                 "starting with #" % (tmp_path / "a.conf", key, value))


def test_a_value_that_starts_with_a_hash_is_a_room_alias_not_a_comment(tmp_path):
    config = load_config(_write(tmp_path / "a.conf", "room = #audit:example.org\ncritical_room=#loud:example.org\n"
                                                       "  # an indented comment line\n"))
    assert (config.room, config.critical_room) == ("#audit:example.org", "#loud:example.org")


def test_a_config_error_is_printed_once_with_file_and_line(tmp_path):
    """It used to be printed twice: once by main(), and once more by the
    log, which in a dry run (or with no handler yet) is stderr too."""
    bad = _write(tmp_path / "bad.conf", "room = #a:b\ndigest_window = inf\n")
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--config", bad], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("digest_window") == 1, out.stderr
    assert "%s:2: bad value for digest_window: 'inf' (expected a duration" % bad in out.stderr
    # An error met while running (a file that cannot be read) is said once too.
    good = _write(tmp_path / "good.conf", "room = #a:b\n")
    out = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--config", good, str(tmp_path / "missing.log")],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 1
    assert out.stderr.count("cannot read %s" % (tmp_path / "missing.log")) == 1, out.stderr
