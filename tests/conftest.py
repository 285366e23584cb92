"""Shared pytest configuration for audit-notify's tests.

The code under test is the package in src/ (what a host installs is built
from it: see src/audit_notify/bundle.py); tests import its modules.
"""

import contextlib
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))


def pytest_configure(config):
    # Tests that start a real Synapse homeserver and run matrix-commander
    # (see tests/matrix_env.py); deselect with -m "not matrix".
    config.addinivalue_line(
        "markers", "matrix: needs a real Synapse homeserver and matrix-commander")
    # Tests that start a private real auditd (see tests/auditd_env.py).
    config.addinivalue_line(
        "markers", "auditd: starts a private real auditd (root, kernel audit); "
                   "serialized by /run/audit-notify-tests.lock")


class SmallDisk:
    """A real filesystem that fills up: a 2 MB tmpfs at ``path``."""

    def __init__(self, path):
        self.path = path
        self._filler = path / "filler"

    def fill(self):
        """Take every free byte."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (65536, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)

    def free(self):
        self._filler.unlink()


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount)], check=True)
    yield SmallDisk(mount)
    subprocess.run(["umount", "-l", str(mount)], check=True)
