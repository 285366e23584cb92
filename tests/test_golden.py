"""Golden files: --dry-run --json over every log in tests/data, compared
byte for byte with the expected output checked in beside it (as auparse's
own tests do with auparse_test.ref).  After a change that alters what is
sent: python3 tests/data/make_golden.py, and review the diff like code."""

import json
import os
import sys

import pytest
from corpus import DATA

sys.path.insert(0, DATA)
import make_golden  # noqa: E402


@pytest.mark.parametrize("log", [os.path.basename(p) for p in make_golden.inputs()])
def test_dry_run_output_is_the_checked_in_one(log):
    path = os.path.join(DATA, log)
    got = make_golden.dry_run(path).decode("utf-8")
    with open(make_golden.expected_path(path), encoding="utf-8") as handle:
        expected = handle.read()
    got_lines, expected_lines = got.splitlines(), expected.splitlines()
    for number, (one, two) in enumerate(zip(got_lines, expected_lines), 1):
        assert json.loads(one) == json.loads(two), "%s line %d differs (make_golden.py, then review)" % (log, number)
    # Each sample day holds dozens of incidents; an empty golden proves nothing.
    assert len(got_lines) == len(expected_lines) >= 20
    assert got == expected


def test_every_log_has_its_golden_file():
    for log in make_golden.inputs():
        assert os.path.exists(make_golden.expected_path(log)), log
