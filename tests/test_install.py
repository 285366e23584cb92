"""setup and uninstall, the parts that need no homeserver (test_setup.py
runs the whole thing against a real Synapse)."""

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from corpus import ROOT
from rig import SCRIPT, WAIT, Rig

from audit_notify import host

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs as root")


def _layout(tmp_path):
    """An installed tree under tmp_path/root, its config the Rig's."""
    root = tmp_path / "root"
    rig = Rig(tmp_path, "digest_after = 0\n")
    config_dir = root / "etc/audit-notify"
    config_dir.mkdir(parents=True)
    (root / "var/lib/audit-notify").mkdir(parents=True)
    (root / "etc/audit/plugins.d").mkdir(parents=True)
    config = config_dir / "audit-notify.conf"
    shutil.copy(rig.config, config)
    (root / "etc/audit/plugins.d/matrix-notifications.conf").write_text(
        host.plugin_entry(str(root / "usr/local/sbin/audit-notify"), str(config)))
    return root, rig, config


def _uninstall(root, *extra):
    return subprocess.run([sys.executable, SCRIPT, "uninstall", "--root", str(root), "--user", "root", *extra],
                          capture_output=True, text=True, timeout=WAIT)


def test_purge_while_the_plugin_runs_is_refused_before_anything_is_touched(tmp_path):
    root, rig, config = _layout(tmp_path)
    plugin = subprocess.Popen([sys.executable, SCRIPT, "--config", str(config)], stdin=subprocess.PIPE)
    try:
        rig.wait_for(lambda: "started:" in rig.log_text(), "the plugin's start")
        refused = _uninstall(root, "--purge")
        assert refused.returncode == 1
        assert "the plugin is still running (pid %d)" % plugin.pid in refused.stderr
        assert "restart auditd (service auditd restart), then run uninstall --purge again" in refused.stderr
        assert config.exists() and (root / "etc/audit/plugins.d/matrix-notifications.conf").exists()
        assert plugin.poll() is None
        # Without --purge the entry goes (the running plugin keeps its files).
        kept = _uninstall(root)
        assert kept.returncode == 0, kept.stderr
        assert not (root / "etc/audit/plugins.d/matrix-notifications.conf").exists() and config.exists()
        assert "the plugin still runs (pid %d) until auditd restarts" % plugin.pid in kept.stdout
    finally:
        plugin.communicate(b"", timeout=WAIT)
    gone = _uninstall(root, "--purge")
    assert gone.returncode == 0, gone.stderr
    assert not (root / "etc/audit-notify").exists() and not (root / "var/lib/audit-notify").exists()


def test_the_plugins_d_entry_setup_writes_is_what_the_doctor_reads():
    text = host.plugin_entry("/usr/local/sbin/audit-notify", "/etc/audit-notify/audit-notify.conf")
    entry = host.parse_entry(text)
    assert entry["path"] == "/usr/local/sbin/audit-notify" and entry["format"] == "string"
    assert host.entry_config(entry) == "/etc/audit-notify/audit-notify.conf"
    assert len(entry["args"].split()) <= 2  # auditd passes at most two
    assert host.entry_config(host.parse_entry("args = --config=/x.conf\n")) == "/x.conf"
    assert host.entry_config(host.parse_entry("args = --dry-run\n")) is None


# What setup asks of matrix-commander, and nothing more: --login writes the
# credentials it is given, --room-join succeeds; the file "refuse" next to
# it makes the login fail as a wrong password does.
SETUP_MC = """#!/usr/bin/python3
import os, sys
argv = sys.argv[1:]
if "--login" in argv:
    if os.path.exists(os.path.join(os.path.dirname(sys.argv[0]), "refuse")):
        sys.stderr.write("ERROR: matrix-commander: E110: login failed: M_FORBIDDEN Invalid password\\n")
        sys.exit(1)
    os.makedirs(argv[argv.index("--store") + 1], mode=0o700, exist_ok=True)
    with open(argv[argv.index("--credentials") + 1], "w") as handle:
        handle.write('{"homeserver": "http://127.0.0.1:9", "user_id": "@bot:x", "device_id": "D", '
                     '"access_token": "t", "room_id": "#audit:x"}')
"""
HOST_ACCOUNTS = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")


def _accounts():
    """The host's account files, byte for byte."""
    found = {}
    for path in HOST_ACCOUNTS:
        if os.path.exists(path):
            with open(path, "rb") as handle:
                found[path] = handle.read()
    return found


def _setup_mc(tmp_path):
    program = tmp_path / "mc" / "matrix-commander"
    program.parent.mkdir()
    program.write_text(SETUP_MC)
    program.chmod(0o755)
    return program


def _setup(tmp_path, root, *extra, matrix_commander=None, user="root"):
    """setup from the checkout, unattended, from tmp_path (so that a
    relative root is relative to it)."""
    password = tmp_path / "password"
    password.write_text("secret\n")
    return subprocess.run(
        [sys.executable, SCRIPT, "setup", "--root", str(root), "--user", user, "--homeserver", "http://127.0.0.1:9",
         "--bot", "@bot:x", "--password-file", str(password), "--room", "#audit:x", "--no-test",
         "--matrix-commander", str(matrix_commander or _setup_mc(tmp_path)), *extra],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=WAIT, cwd=str(tmp_path))


def _files(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")) if root.exists() else []


def test_setup_under_a_root_creates_no_user_and_prints_the_useradd_line(tmp_path):
    user = "an-no-such-user"
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    before = _accounts()
    done = _setup(tmp_path, "root", user=user)  # relative: resolved against where setup runs
    assert _accounts() == before  # no useradd on this system
    assert done.returncode == 1
    assert ("user %s does not exist, and setup --root %s creates no user on this system" % (user, tmp_path / "root")
            in done.stderr)
    assert ("\n  useradd --system --home-dir /var/lib/audit-notify --no-create-home --shell /usr/sbin/nologin %s\n"
            % user) in done.stderr
    assert "setup wrote nothing" in done.stderr and _files(tmp_path / "root") == []


def test_setup_under_a_relative_root_writes_only_under_it_with_absolute_paths(tmp_path):
    before = _accounts()
    done = _setup(tmp_path, "root")
    assert done.returncode == 0, done.stderr
    assert _accounts() == before
    root = tmp_path / "root"
    config = (root / "etc/audit-notify/audit-notify.conf").read_text()
    assert "state_dir = %s/var/lib/audit-notify\n" % root in config
    assert "credentials = %s/etc/audit-notify/credentials.json\n" % root in config
    assert "path = %s/usr/local/sbin/audit-notify\n" % root in (root / "etc/audit/plugins.d/matrix-notifications.conf"
                                                                  ).read_text()
    assert set(_files(root)) >= {"etc/audit-notify/credentials.json", "etc/audit-notify/blacklist",
                                 "usr/local/sbin/audit-notify", "etc/audit/plugins.d/matrix-notifications.conf"}
    assert not any(line.startswith("created system user") for line in done.stdout.splitlines())


def test_setup_without_matrix_commander_says_how_to_get_it_and_writes_nothing(tmp_path):
    done = _setup(tmp_path, tmp_path / "root", matrix_commander=tmp_path / "nowhere" / "matrix-commander")
    assert done.returncode == 1
    assert "matrix-commander is not installed at %s" % (tmp_path / "nowhere" / "matrix-commander") in done.stderr
    assert "pipx install matrix-commander" in done.stderr and "--matrix-commander" in done.stderr
    assert "Errno" not in done.stderr and "setup wrote nothing" in done.stderr
    assert _files(tmp_path / "root") == []


def test_setup_that_stops_half_way_says_what_it_left_and_how_to_remove_it(tmp_path):
    program = _setup_mc(tmp_path)
    (program.parent / "refuse").write_text("")
    root = tmp_path / "root"
    done = _setup(tmp_path, root, matrix_commander=program)
    assert done.returncode == 1
    assert "could not log the bot in: ERROR: matrix-commander: E110: login failed" in done.stderr
    said = re.search(r"setup stopped; this run wrote (.*)\. Fix the above and run setup again .*, or remove it "
                     r"all with: (.*)$", done.stderr, re.M)
    assert said, done.stderr
    for path in ("etc/audit-notify/", "var/lib/audit-notify/", "usr/local/sbin/audit-notify",
                 "etc/audit-notify/audit-notify.conf", "etc/audit-notify/blacklist"):
        assert "%s/%s" % (root, path) in said.group(1).split(", ")
    assert not (root / "etc/audit/plugins.d/matrix-notifications.conf").exists()
    # The command it names removes what it left.
    gone = subprocess.run(shlex.split(said.group(2)), capture_output=True, text=True, timeout=WAIT)
    assert gone.returncode == 0, gone.stderr
    assert _files(root) == ["etc", "etc/audit", "etc/audit/plugins.d", "usr", "usr/local", "usr/local/sbin",
                            "var", "var/lib"]


def _readme_uninstall_sequence():
    """The README's uninstall block, line by line, comments dropped."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        blocks = re.findall(r"```sh\n(.*?)```", handle.read(), re.S)
    [block] = [b for b in blocks if "uninstall --purge" in b]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_readmes_uninstall_sequence_runs_as_written(tmp_path):
    """uninstall, service auditd restart, uninstall --purge: each
    audit-notify line run by the installed plugin itself (under --root),
    auditd's restart played by what it does to its plugins: SIGTERM."""
    sequence = _readme_uninstall_sequence()
    assert [argv[0] for argv in sequence] == ["audit-notify", "service", "audit-notify"]
    root = tmp_path / "root"
    done = _setup(tmp_path, root)
    assert done.returncode == 0, done.stderr
    config = root / "etc/audit-notify/audit-notify.conf"
    with open(config, "a") as handle:
        handle.write("log_file = %s\n" % (root / "plugin.log"))
    installed = root / "usr/local/sbin/audit-notify"
    plugin = subprocess.Popen([str(installed), "--config", str(config)], stdin=subprocess.PIPE)  # as auditd runs it
    try:
        end = time.monotonic() + WAIT
        while not ((root / "plugin.log").exists() and "started:" in (root / "plugin.log").read_text()):
            assert time.monotonic() < end and plugin.poll() is None, "the plugin did not start"
            time.sleep(0.05)
        for argv in sequence:
            if argv == ["service", "auditd", "restart"]:
                assert not (root / "etc/audit/plugins.d/matrix-notifications.conf").exists()  # not started again
                plugin.terminate()
                assert plugin.wait(timeout=WAIT) == 0
                continue
            out = subprocess.run([str(installed)] + argv[1:] + ["--root", str(root), "--user", "root"],
                                 capture_output=True, text=True, timeout=WAIT)
            assert out.returncode == 0, out.stderr
            if "--purge" not in argv:
                assert "the plugin still runs (pid %d) until auditd restarts" % plugin.pid in out.stdout
                assert "service auditd restart" in out.stdout
                assert "%s uninstall --purge --root %s --user root" % (installed, root) in out.stdout
                assert installed.exists() and config.exists()
    finally:
        if plugin.poll() is None:
            plugin.kill()
            plugin.wait()
    assert _files(root) == ["etc", "etc/audit", "etc/audit/plugins.d", "plugin.log", "usr", "usr/local",
                            "usr/local/sbin", "var", "var/lib"]
