"""setup and uninstall, the parts that need no homeserver (test_setup.py
runs the whole thing against a real Synapse)."""

import os
import shutil
import subprocess
import sys

import pytest
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
