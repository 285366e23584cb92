"""The command line as a newcomer meets it: --help names every subcommand,
and each subcommand's --help answers with its own usage and success."""

import subprocess
import sys

import pytest
from rig import SCRIPT, WAIT

SUBCOMMANDS = ("setup", "uninstall", "build", "known", "mutes")


def _run(*argv):
    return subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, text=True, timeout=WAIT,
                          stdin=subprocess.DEVNULL)


def test_the_main_help_names_every_subcommand():
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    usage = out.stdout.split("\n\n")[0]  # the usage lines, before the description
    for name in SUBCOMMANDS:
        assert name in usage, (name, usage)
        assert "\n  %s " % name in out.stdout, "no line saying what %s is for" % name


@pytest.mark.parametrize("name", SUBCOMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_each_subcommands_help_exits_0_with_its_usage(name, flag):
    out = _run(name, flag)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("usage: audit-notify %s" % name), out.stdout


def test_build_without_a_file_is_still_a_usage_error():
    out = _run("build")
    assert out.returncode == 2 and "usage: audit-notify build FILE" in out.stderr
