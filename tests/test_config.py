"""Config: auditd-style key = value, strict, with the original's files as a fallback."""

import os

import pytest
from corpus import ROOT, SRC

from audit_notify.config import DEFAULT_CONFIG, Config, Error, load_config
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
