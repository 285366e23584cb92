"""`audit-notify setup`, unattended, on this machine against a real Synapse;
then a real auditd runs what it installed and a real event arrives.  Then
setup again (nothing changes, the admin's edits stay), the doctor, and
uninstall --purge.  Under --root setup creates no user: each test creates
it with the useradd line setup prints, as an admin would on the host."""

import io
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from auditd_env import auditd_unavailable_reason, private_auditd
from matrix_env import matrix_world
from rig import SCRIPT, WAIT
from corpus import ROOT

from audit_notify.doctor import Doctor

USER = "an-setup-test"
_reason = auditd_unavailable_reason()
pytestmark = [pytest.mark.matrix, pytest.mark.auditd, pytest.mark.skipif(_reason is not None, reason=_reason or "")]


def _host_accounts():
    with open("/etc/passwd", "rb") as passwd, open("/etc/group", "rb") as group:
        return passwd.read(), group.read()


@pytest.fixture
def root():
    """An empty root, and the user setup asked for, made with the line it
    printed (setup --root itself changed nothing on the host)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="an-setup-"))
    os.chmod(path, 0o755)  # the system user must reach its state under it
    before = _host_accounts()
    refused = subprocess.run(
        [sys.executable, SCRIPT, "setup", "--root", str(path), "--user", USER, "--homeserver", "http://127.0.0.1:9",
         "--bot", "@b:x", "--password-file", "-", "--room", "#a:x", "--matrix-commander", "/bin/true", "--no-test"],
        capture_output=True, text=True, input="unused\n", timeout=WAIT)
    assert refused.returncode == 1 and _host_accounts() == before and not any(path.iterdir())
    [useradd] = [line.strip() for line in refused.stderr.splitlines() if line.strip().startswith("useradd ")]
    assert useradd.split() == ["useradd", "--system", "--home-dir", "/var/lib/audit-notify", "--no-create-home",
                               "--shell", "/usr/sbin/nologin", USER]
    subprocess.run(useradd.split(), check=True)
    yield path
    subprocess.run(["pkill", "-KILL", "-u", USER])
    subprocess.run(["userdel", USER], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _setup(world, root, *extra, program=(sys.executable, SCRIPT), login=None):
    if login is None:
        password = root / "password"
        password.write_text(world.bot_password + "\n")
        os.chmod(password, 0o600)
        login = ["--bot", world.bot_mxid, "--password-file", str(password)]
    return subprocess.run(
        [*program, "setup", "--root", str(root), "--user", USER, "--homeserver", world.homeserver.url,
         *login, "--room", world.room_alias, "--matrix-commander", str(world.mc_binary)] + list(extra),
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)


def _new_device_token(world, device):
    """What the README tells an admin to do: log in over the API with a new
    device id, and give setup that device's token."""
    answer = json.loads(urllib.request.urlopen(urllib.request.Request(
        world.homeserver.url + "/_matrix/client/v3/login", method="POST",
        headers={"Content-Type": "application/json"},
        data=json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": world.bot_mxid},
                         "password": world.bot_password, "device_id": device,
                         "initial_device_display_name": "audit-notify test"}).encode()), timeout=30).read())
    return answer["access_token"]


def test_setup_with_a_new_devices_access_token(tmp_path, root):
    with matrix_world(tmp_path) as world:
        token = root / "token"
        token.write_text(_new_device_token(world, "ANTOKENDEV") + "\n")
        done = _setup(world, root, login=["--access-token-file", str(token)])
        assert done.returncode == 0, done.stderr + done.stdout
        assert "logged %s in" % world.bot_mxid in done.stdout and "sent a test notification" in done.stdout
        [test] = world.receiver.wait_for_messages(1, timeout=60)
        assert test["body"].startswith("✅ audit-notify works on ") and test["wire_type"] == "m.room.encrypted"
        creds = json.loads((root / "etc/audit-notify/credentials.json").read_text())
        assert creds["device_id"] == "ANTOKENDEV"
        assert ((root / "var/lib/audit-notify/store").stat().st_mode & 0o777) == 0o700


def test_setup_refuses_a_token_whose_keys_are_elsewhere(tmp_path, root):
    """The world's bot device has published its keys from its own store: a
    new store cannot use its token; setup says why and writes no
    credentials."""
    with matrix_world(tmp_path) as world:
        sent = subprocess.run(world.mc_command("-m", "keys published"), env=world.mc_env(), capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=120)
        assert sent.returncode == 0, sent.stderr  # its first send published the device's keys
        token = root / "token"
        token.write_text(json.loads(world.creds_path.read_text())["access_token"])
        refused = _setup(world, root, login=["--access-token-file", str(token)])
        assert refused.returncode == 1
        assert "device %s has published its encryption keys already" % world.bot_device_id in refused.stderr
        assert "Make a token for a new device" in refused.stderr
        assert not (root / "etc/audit-notify/credentials.json").exists()


def _entry(root):
    text = (root / "etc/audit/plugins.d/matrix-notifications.conf").read_text()
    return dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)


def test_setup_then_a_real_event_arrives(tmp_path, root):
    with matrix_world(tmp_path) as world:
        first = _setup(world, root)
        assert first.returncode == 0, first.stderr
        for said in ("installed the plugin as %s/usr/local/sbin/audit-notify" % root,
                     "wrote %s/etc/audit-notify/audit-notify.conf" % root, "logged %s in" % world.bot_mxid,
                     "the bot is in %s" % world.room_alias, "wrote the auditd plugins.d entry",
                     "sent a test notification", "service auditd restart"):
            assert said in first.stdout, first.stdout
        [test] = world.receiver.wait_for_messages(1, timeout=60)
        assert test["body"].startswith("✅ audit-notify works on ") and test["wire_type"] == "m.room.encrypted"
        account = pwd.getpwnam(USER)
        creds = root / "etc/audit-notify/credentials.json"
        assert (creds.stat().st_uid, creds.stat().st_mode & 0o777) == (account.pw_uid, 0o600)
        assert ((root / "var/lib/audit-notify/store").stat().st_mode & 0o777) == 0o700

        # What setup installed, run by a real auditd: a real event arrives.
        entry = _entry(root)
        assert entry["path"] == "%s/usr/local/sbin/audit-notify" % root
        with private_auditd(tmp_path, plugin_path=entry["path"], plugin_args=entry["args"].split()) as auditd:
            auditd.user_message("an-setup-marker")
            got = []
            for _ in range(30):
                got += world.receiver.wait_for_messages(1, timeout=2)
                if any("an-setup-marker" in m["body"] for m in got):
                    break
            # The doctor agrees (its plugins.d check looks under the same
            # root), and sees auditd running the installed plugin.
            out = io.StringIO()
            failures = Doctor(out, root=str(root)).check(entry["args"].split()[1], send_test=True)
        # The first message of its shape on this host (known.py): "new:".
        assert any(m["body"].startswith("⚠️ %s: new: Audit message: an-setup-marker from /usr/sbin/auditctl"
                                        % os.uname().nodename) for m in got), got
        assert failures == 0, out.getvalue()
        assert re.search(r"^ok   plugin: running, pid \d+, started by auditd \(pid %d\)$" % auditd.pid, out.getvalue(),
                         re.M), out.getvalue()
        assert re.search(r"^ok   room: #audit:localhost joined, encrypted \(m.megolm.v1.aes-sha2\)$", out.getvalue(), re.M)
        assert re.search(r"^ok   test notification: accepted by the homeserver as \$", out.getvalue(), re.M)

        # Setup again, from the installed copy (one file): nothing is
        # overwritten, the admin's edit stays; a deleted blacklist comes back
        # as the shipped defaults, which that one file carries.
        config = root / "etc/audit-notify/audit-notify.conf"
        config.write_text(config.read_text() + "digest_after = 9\n")
        blacklist = root / "etc/audit-notify/blacklist"
        assert blacklist.read_text() == (Path(ROOT) / "blacklist.example").read_text()
        blacklist.unlink()
        again = _setup(world, root, "--no-test", program=[entry["path"]])
        assert again.returncode == 0, again.stderr
        for said in ("kept the existing config", "already logged in",
                     "plugin already installed", "plugins.d entry already in place"):
            assert said in again.stdout
        assert config.read_text().endswith("digest_after = 9\n")
        assert blacklist.read_text() == (Path(ROOT) / "blacklist.example").read_text()

    # auditd has stopped; the plugin it ran may still be delivering its last
    # messages (SIGTERM gives it a grace period): --purge waits for that.
    end = time.monotonic() + WAIT
    while time.monotonic() < end and subprocess.run(["pgrep", "-f", str(root / "etc/audit-notify")],
                                                    capture_output=True).returncode == 0:
        time.sleep(0.1)
    before = _host_accounts()
    gone = subprocess.run([sys.executable, SCRIPT, "uninstall", "--root", str(root), "--user", USER, "--purge"],
                          capture_output=True, text=True)
    assert gone.returncode == 0, gone.stderr
    assert not (root / "etc/audit/plugins.d/matrix-notifications.conf").exists()
    assert not (root / "usr/local/sbin/audit-notify").exists()
    assert not (root / "etc/audit-notify").exists() and not (root / "var/lib/audit-notify").exists()
    # The user is the host's: --root removes none, it says the line instead.
    assert _host_accounts() == before
    assert "run on the host the plugin ran on: userdel %s" % USER in gone.stdout
