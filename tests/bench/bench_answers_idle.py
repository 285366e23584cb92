#!/usr/bin/env python3
"""What the answer path costs while nothing happens: the plugin idle against
a real Synapse on 127.0.0.1, with the answer path on (someone may answer:
the room is read every 10 s) and off (nobody may: nothing is read), one
after the other.  Prints CPU seconds a minute of the plugin process (its
threads included; its matrix-commander apart) and its RSS every
``--every`` seconds.  Asserts nothing.

    tests/bench/bench_answers_idle.py [--minutes 3] [--every 30]
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)

from matrix_env import matrix_world  # noqa: E402
from test_e2e_answers import ALICE, Plugin  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as handle:
        return int(next(line.split()[1] for line in handle if line.startswith("VmRSS:")))


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
        return [int(child) for child in handle.read().split()]


def measure(world, tmp, answering, minutes, every):
    extra = "" if answering else "mention =\n"
    plugin = Plugin(world, tmp / ("on" if answering else "off"), extra)
    if not answering:  # Plugin sets mention = alice; the later line must not be a duplicate key
        plugin.config.write_text(plugin.config.read_text().replace("mention = %s\n" % ALICE, ""))
    plugin.start()
    pid = plugin.process.pid
    time.sleep(15)  # start-up (imports, matrix-commander warm) is not idle
    start, cpu0 = time.monotonic(), cpu_seconds(pid)
    kids0 = {kid: cpu_seconds(kid) for kid in children(pid)}
    samples = []
    while time.monotonic() - start < minutes * 60:
        time.sleep(every)
        samples.append((time.monotonic() - start, rss_kb(pid)))
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(pid) - cpu0
    kids = sum(cpu_seconds(kid) - before for kid, before in kids0.items() if os.path.exists("/proc/%d" % kid))
    polls = plugin.log_text().count("cannot read answers")
    plugin.finish()
    label = "answer path on " if answering else "answer path off"
    print("%s: plugin %.3f CPU s/min, its matrix-commander %.3f CPU s/min, over %.0f s; read errors logged: %d"
          % (label, cpu / elapsed * 60, kids / elapsed * 60, elapsed, polls))
    print("  RSS KB: " + ", ".join("%.0fs %d" % sample for sample in samples))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--every", type=float, default=30.0)
    args = parser.parse_args(argv)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp, matrix_world(tmp) as world:
        for answering in (True, False):
            measure(world, Path(tmp), answering, args.minutes, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
