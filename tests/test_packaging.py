"""Packaging: one module, no runtime dependencies, Python >= 3.9."""

import ast
import os
import subprocess
import sys

from corpus import ROOT

MODULE = os.path.join(ROOT, "audit_notify.py")


def test_runs_on_python_3_9_and_later():
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    out = subprocess.run([vermin, "--no-tips", "--violations", "-t=3.9-", "--eval-annotations", MODULE],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # And the figure itself, so a newer construct cannot slip in unnoticed.
    out = subprocess.run([vermin, "--no-tips", "--eval-annotations", MODULE], capture_output=True, text=True)
    minimum = out.stdout.split("Minimum required versions:")[1].split()[0]
    assert tuple(map(int, minimum.split("."))) <= (3, 9), out.stdout


def test_imports_only_the_standard_library_and_auparse():
    with open(MODULE) as handle:
        tree = ast.parse(handle.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    outside = {n for n in names if n not in sys.stdlib_module_names}
    assert outside == {"auparse"}


def test_importing_does_nothing():
    code = "import sys, signal; sys.path.insert(0, %r); h = signal.getsignal(signal.SIGTERM); " \
           "import audit_notify, logging; assert signal.getsignal(signal.SIGTERM) is h; " \
           "assert not logging.getLogger('audit-notify').handlers; print('clean')" % ROOT
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert out.stdout.strip() == "clean", out.stderr


def test_console_script_entry_point_is_main():
    with open(os.path.join(ROOT, "pyproject.toml")) as handle:
        text = handle.read()
    assert 'audit-notify = "audit_notify:main"' in text
    assert "dependencies = []" in text
