"""Shared pytest configuration for audit-notify's tests."""


def pytest_configure(config):
    # Tests that start a real Synapse homeserver and run matrix-commander
    # (see tests/matrix_env.py); deselect with -m "not matrix".
    config.addinivalue_line(
        "markers", "matrix: needs a real Synapse homeserver and matrix-commander")
    # Tests that start a private real auditd (see tests/auditd_env.py).
    config.addinivalue_line(
        "markers", "auditd: starts a private real auditd (root, kernel audit); "
                   "serialized by /run/audit-notify-tests.lock")
