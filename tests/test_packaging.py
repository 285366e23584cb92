"""Packaging: a package of modules, one file to install, no runtime
dependencies, Python >= 3.9, and the admin tools kept out of what auditd
runs."""

import ast
import json
import os
import subprocess
import sys
import zipfile

import pytest
from corpus import DATA, ROOT, SRC
from rig import SCRIPT, WAIT, Rig

PACKAGE = os.path.join(SRC, "audit_notify")
MODULES = sorted(os.path.join(PACKAGE, name) for name in os.listdir(PACKAGE) if name.endswith(".py"))
ADMIN = {"audit_notify.doctor", "audit_notify.install", "audit_notify.host", "audit_notify.bundle"}
SAMPLE = ["--dry-run", "--config", os.path.join(ROOT, "examples", "dry-run.conf"),
          os.path.join(DATA, "debian12-sample.log")]


def test_runs_on_python_3_9_and_later():
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    out = subprocess.run([vermin, "--no-tips", "--violations", "-t=3.9-", "--eval-annotations", *MODULES],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # And the figure itself, so a newer construct cannot slip in unnoticed.
    out = subprocess.run([vermin, "--no-tips", "--eval-annotations", *MODULES], capture_output=True, text=True)
    minimum = out.stdout.split("Minimum required versions:")[1].split()[0]
    assert tuple(map(int, minimum.split("."))) <= (3, 9), out.stdout


def test_imports_only_the_standard_library_and_auparse():
    names = set()
    for path in MODULES + [os.path.join(ROOT, "audit_notify.py")]:
        with open(path) as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    outside = {n for n in names if n not in sys.stdlib_module_names}
    assert outside == {"auparse", "audit_notify"}


def test_no_module_is_too_big_to_hold_in_your_head():
    sizes = {os.path.basename(p): sum(1 for _ in open(p)) for p in MODULES}
    assert max(sizes.values()) <= 620, sizes


def test_importing_does_nothing():
    modules = ", ".join("audit_notify.%s" % os.path.basename(p)[:-3] for p in MODULES
                        if not p.endswith("__main__.py"))
    code = ("import sys, signal; sys.path.insert(0, %r); h = signal.getsignal(signal.SIGTERM); "
            "import %s, logging; assert signal.getsignal(signal.SIGTERM) is h; "
            "assert not logging.getLogger('audit-notify').handlers; print('clean')" % (SRC, modules))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert out.stdout.strip() == "clean", out.stderr


def test_the_plugins_run_path_never_imports_the_admin_tools(tmp_path):
    """The process auditd runs as root loads the plugin's modules only; the
    test can fail: --check in the same process loads the doctor."""
    rig = Rig(tmp_path, "digest_after = 0\n")
    code = ("import sys, json; sys.path.insert(0, %r); from audit_notify.cli import main; "
            "code = main(sys.argv[1:]); "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('audit_notify')))); sys.exit(code)"
            % SRC)
    with open(os.path.join(DATA, "debian12-sample.log"), "rb") as handle:
        out = subprocess.run([sys.executable, "-c", code, "--config", str(rig.config)], stdin=handle,
                             capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert {"audit_notify.daemon", "audit_notify.sender", "audit_notify.spool"} <= loaded
    assert not loaded & ADMIN, loaded & ADMIN
    assert len(rig.calls()) >= 20  # it really ran and sent (the sample day is ~30 incidents)
    check = subprocess.run([sys.executable, "-c", code, "--check", "--config", str(rig.config)],
                           capture_output=True, text=True, timeout=WAIT)
    assert "audit_notify.doctor" in json.loads(check.stdout.splitlines()[-1])


def _build(path):
    out = subprocess.run([sys.executable, SCRIPT, "build", str(path)], capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    return path


def test_the_one_file_build_is_reproducible_and_complete(tmp_path):
    one, two = _build(tmp_path / "one"), _build(tmp_path / "two")
    assert one.read_bytes() == two.read_bytes()
    assert one.read_bytes().startswith(b"#!/usr/bin/python3\n")
    assert os.stat(one).st_mode & 0o777 == 0o755
    with zipfile.ZipFile(one) as zipped:
        names = set(zipped.namelist())
        assert {"__main__.py", "audit_notify/blacklist.example"} | {
            "audit_notify/" + os.path.basename(p) for p in MODULES} == names
        with open(os.path.join(ROOT, "blacklist.example"), "rb") as handle:
            assert zipped.read("audit_notify/blacklist.example") == handle.read()


def test_the_checkout_and_the_one_file_give_the_same_dry_run(tmp_path):
    checkout = subprocess.run([sys.executable, SCRIPT] + SAMPLE, capture_output=True, timeout=WAIT)
    onefile = subprocess.run([str(_build(tmp_path / "audit-notify"))] + SAMPLE, capture_output=True, timeout=WAIT)
    assert checkout.returncode == onefile.returncode == 0
    assert checkout.stdout == onefile.stdout and checkout.stdout.count(b"\n\n") >= 20
    assert checkout.stderr == onefile.stderr  # the exit line's counts too


def test_the_one_file_builds_itself_again(tmp_path):
    """setup run from the installed copy installs that copy, byte for byte."""
    first = _build(tmp_path / "first")
    out = subprocess.run([str(first), "build", str(tmp_path / "again")], capture_output=True, timeout=WAIT)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "again").read_bytes() == first.read_bytes()


@pytest.mark.parametrize("how", ["module", "script"])
def test_console_entry_points(how, tmp_path):
    with open(os.path.join(ROOT, "pyproject.toml")) as handle:
        text = handle.read()
    assert 'audit-notify = "audit_notify.cli:main"' in text
    assert "dependencies = []" in text
    argv = [sys.executable, "-m", "audit_notify"] if how == "module" else [sys.executable, SCRIPT]
    out = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=WAIT,
                         env=dict(os.environ, PYTHONPATH=SRC))
    assert out.returncode == 0 and "audit-notify" in out.stdout
