"""Least privilege and file safety: what the plugin trusts, what it fixes,
what it refuses, and who it is once running."""

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from records import O_WRONLY_CREAT_TRUNC, syscall
from rig import SCRIPT, WAIT, Rig

USER = "an-notify-test"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates a user, chowns files)")


@pytest.fixture(scope="module")
def account():
    """A system user for the plugin to become, removed afterwards."""
    created = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
        created = True
    yield pwd.getpwnam(USER)
    subprocess.run(["pkill", "-KILL", "-u", USER])
    if created:
        subprocess.run(["userdel", USER], check=True)


@pytest.fixture
def base():
    """A directory the unprivileged user can traverse (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="an-priv-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def _status(pid):
    with open("/proc/%d/status" % pid) as handle:
        return dict(line.split(":\t", 1) for line in handle.read().splitlines() if ":\t" in line)


# A one-event action that goes out at once: critical.  (A routine one waits
# for its hour's summary, in its host's own time: clocks.py.)
SUDOERS_WRITE = syscall("openat", exe="/usr/bin/vi", a0="ffffff9c", a2=O_WRONLY_CREAT_TRUNC,
                        paths=[("/etc/sudoers", "NORMAL")], uid="0", auid="1000").encode()


def test_runs_as_the_user_without_capabilities_and_so_does_matrix_commander(account, base):
    rig = Rig(base)
    os.chmod(rig.mc_dir, 0o777)  # the stand-in writes what it got next to itself
    rig.write_config("user = %s\n" % USER)
    os.chmod(rig.dir / "creds.json", 0o644)  # as matrix-commander leaves them
    os.chmod(rig.dir / "store", 0o755)
    (rig.dir / "store" / "bot.db").write_text("keys")
    os.chmod(rig.dir / "store" / "bot.db", 0o644)
    plugin = rig.start()
    try:
        plugin.stdin.write(SUDOERS_WRITE)
        plugin.stdin.flush()
        rig.wait_for(lambda: len(rig.bodies()) == 1, "the notification")
        status = _status(plugin.pid)
        plugin.stdin.close()
        assert plugin.wait(timeout=WAIT) == 0
    finally:
        plugin.kill()
    uid = str(account.pw_uid)
    assert status["Uid"].split() == [uid] * 4 and status["Gid"].split() == [str(account.pw_gid)] * 4
    assert status["Groups"].strip() == ""
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    # matrix-commander ran as the user too.
    assert rig.calls()[0]["uid"] == account.pw_uid
    # Credentials and store were world-readable: fixed, owned by the user, and said so.
    for path, mode in ((rig.dir / "creds.json", 0o600), (rig.dir / "store", 0o700),
                       (rig.dir / "store" / "bot.db", 0o600), (rig.dir / "spool", 0o700),
                       (rig.dir / "state", 0o700)):
        st = os.stat(path)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.pw_uid, mode), path
    log = rig.log_text()
    assert "fixed permissions: %s/creds.json was mode 644, now 600" % rig.dir in log
    assert "fixed permissions: %s/store now owned by %s" % (rig.dir, USER) in log
    assert "running as root" not in log


def _start_fails(rig):
    out = subprocess.run([sys.executable, SCRIPT, "--config", str(rig.config)], input=b"", capture_output=True,
                         timeout=WAIT)
    assert out.returncode == 1
    return out.stderr.decode()


def test_group_writable_config_is_refused(tmp_path):
    rig = Rig(tmp_path)
    os.chmod(rig.config, 0o664)
    assert "refusing config %s: mode 664 lets group or others change it" % rig.config in _start_fails(rig)


def test_config_owned_by_another_user_is_refused(tmp_path):
    rig = Rig(tmp_path)
    os.chown(rig.config, 65534, 65534)
    assert "refusing config %s: it is owned by uid 65534, not root" % rig.config in _start_fails(rig)


def test_world_writable_blacklist_is_refused(tmp_path):
    rig = Rig(tmp_path)
    os.chmod(rig.blacklist, 0o646)
    assert "refusing blacklist %s: mode 646" % rig.blacklist in _start_fails(rig)


def test_credentials_of_another_user_are_refused(tmp_path):
    rig = Rig(tmp_path)
    os.chown(rig.dir / "creds.json", 65534, 65534)
    assert "refusing credentials: %s/creds.json is owned by uid 65534, not by root" % rig.dir in _start_fails(rig)


def test_missing_credentials_say_what_to_do(tmp_path):
    rig = Rig(tmp_path)
    os.unlink(rig.dir / "creds.json")
    assert "log the bot in first" in _start_fails(rig)


def test_a_missing_user_is_a_clear_error(tmp_path):
    rig = Rig(tmp_path)
    rig.write_config("user = no-such-user-an\n")
    assert "user 'no-such-user-an' (config key user) does not exist: create it with 'useradd --system" \
        in _start_fails(rig)


def test_state_in_a_world_writable_directory_is_refused(tmp_path):
    rig = Rig(tmp_path)
    public = tmp_path / "public"
    public.mkdir()
    os.chmod(public, 0o1777)
    rig.write_config("state_dir = %s/state\n" % public)
    text = rig.config.read_text().replace("state_dir = %s/state\n" % rig.dir, "", 1)
    rig.config.write_text(text)
    assert "refusing %s/state: its directory %s is writable by everyone" % (public, public) in _start_fails(rig)
    assert not (public / "state").exists()


def test_user_root_is_accepted_with_a_warning(tmp_path):
    rig = Rig(tmp_path)
    plugin = rig.start()
    plugin.communicate(b"", timeout=WAIT)
    assert plugin.returncode == 0
    assert "running as root, and so does matrix-commander" in rig.log_text()


def test_spool_files_a_root_run_left_become_the_users(account, base):
    """The original's drop-in runs as root; switching to the dedicated user
    must not leave a spool the user cannot open (every start failed, and
    auditd gave up after max_restarts)."""
    rig = Rig(base, "digest_after = 0\n")
    rig.mode("hang")  # the root run's notifications stay spooled
    as_root = rig.start()
    as_root.stdin.write(SUDOERS_WRITE)
    as_root.stdin.flush()
    rig.wait_for(lambda: len(rig.calls()) == 1, "the root run's notification in flight")
    as_root.kill()
    as_root.wait()
    spool = base / "spool"
    left = [p for p in spool.iterdir() if p.stat().st_uid == 0]
    assert {p.name for p in left} >= {"spool.sqlite3", "lock"}, left
    os.chmod(rig.mc_dir, 0o777)
    os.chmod(rig.mc_dir / "calls.jsonl", 0o666)  # the stand-in's record, from the root run
    rig.mode("ok")
    rig.write_config("digest_after = 0\nuser = %s\n" % USER)
    as_user = rig.start()
    as_user.communicate(b"", timeout=WAIT)
    assert as_user.returncode == 0, rig.log_text()
    assert all(p.stat().st_uid == account.pw_uid for p in spool.iterdir())
    assert "fixed permissions: %s now owned by %s" % (spool / "spool.sqlite3", USER) in rig.log_text()
    # The root run's notification and the word that it was killed, sent as the user.
    assert [c["uid"] for c in rig.calls() if c["mode"] == "ok"] == [account.pw_uid] * 2
