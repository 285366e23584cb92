#!/usr/bin/env python3
"""Write (or, with --check, compare) the golden files: for each audit log
in tests/data, what ``audit-notify --dry-run --json`` prints for it, with
tests/data/golden.conf and TZ=UTC, as LOG.expected.jsonl beside it.

    python3 tests/data/make_golden.py            # after a change that alters output
    git diff tests/data/*.expected.jsonl         # review it like code

tests/test_golden.py runs the same comparison (--check).
"""

import argparse
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(HERE, "golden.conf")


def inputs():
    return sorted(glob.glob(os.path.join(HERE, "*.log")))


def expected_path(log):
    return log[:-len(".log")] + ".expected.jsonl"


def dry_run(log, python=sys.executable):
    env = dict(os.environ, TZ="UTC")
    out = subprocess.run([python, os.path.join(ROOT, "audit_notify.py"), "--dry-run", "--json", "--config", CONFIG,
                          log], capture_output=True, env=env, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (log, out.returncode, out.stderr.decode()[-2000:]))
    return out.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    differ = 0
    for log in inputs():
        got, path = dry_run(log), expected_path(log)
        if args.check:
            with open(path, "rb") as handle:
                if handle.read() != got:
                    print("differs: %s" % path)
                    differ += 1
        else:
            with open(path, "wb") as handle:
                handle.write(got)
            print("wrote %s (%d notifications)" % (path, got.count(b"\n")))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
