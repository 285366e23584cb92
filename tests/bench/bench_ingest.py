#!/usr/bin/env python3
"""Ingest benchmark: the whole pipeline except the network, side by side
with `ausearch -i` over the same records, in one run (the machine is shared
and noisy: runs alternate, medians and ratios are reported).

    tests/bench/make_execve_log.py --all      # once: the six bench logs (make_execve_log.py)
    tests/bench/bench_ingest.py [--runs 7] [--compare REV] [LOG ...]

    # every bench log, this tree and the one before a change, 5 rounds
    tests/bench/bench_ingest.py --runs 5 --compare de74e3c --all

Each LOG (default: execve.log; --all: every log make_execve_log.py --all
makes that is there) is measured in rounds: in each round, `ausearch -i`
and each tree once, one after the other.  For each log and tree it reports
the median over the rounds of (ausearch -i time / plugin time), each
round's ratio, how many rounds were at 1 or more, and the peak RSS; and the
medians of the times.

Each tree is byte-compiled before the runs: they measure ingest, not
compiling the plugin's source (a host does that once per start).

The pipeline is the plugin's own: auparse feed, the shipped blacklist,
digests, formatting and the sqlite spool (in a temporary directory), run by
Plugin.run() on the log's file descriptor; only the Sender is left out.
"digests off" (--digests-off) formats and spools every event
(digest_after = 0).  Peak RSS is the child process's, from wait4().
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_LOG = "/var/tmp/audit-notify-bench/execve.log"


def child(log: str, digest_after: int, root: str = ROOT) -> int:
    """Run the pipeline of the checkout at ``root`` over ``log`` once;
    print the counters.  ``root`` may be an older revision (--compare),
    from before the package layout."""
    packaged = os.path.isdir(os.path.join(root, "src", "audit_notify"))
    sys.path.insert(0, os.path.join(root, "src") if packaged else root)
    from dataclasses import replace
    if packaged:
        from audit_notify.config import Config
        from audit_notify.counters import Counters
        from audit_notify.daemon import EOF, Plugin
        from audit_notify.reader import import_auparse
        from audit_notify.rules import load_ruleset
        from audit_notify.spool import open_spool
    else:
        from audit_notify import Config, Counters, Plugin, import_auparse, load_ruleset, open_spool
    with tempfile.TemporaryDirectory() as tmp:
        config = replace(Config(), blacklist=os.path.join(ROOT, "blacklist.example"),
                         spool_dir=os.path.join(tmp, "spool"), state_dir=tmp, digest_after=digest_after)
        counters = Counters()
        spool, _rights = open_spool(config)
        plugin = Plugin(config, load_ruleset(config), import_auparse(), spool, counters, hostname="bench")
        fd = os.open(log, os.O_RDONLY)
        plugin.run(fd)
        if packaged:
            plugin.finish(EOF)
        else:
            plugin.finish(at_eof=True)
        depth = spool.depth()[0]
        spool.close()
    print(counters.line(), "spooled=%d" % depth)
    return 0


def checkout(revision: str, into: str) -> str:
    """The tree of ``revision`` (git archive), to measure beside this one."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def measure(argv):
    """Wall time, peak RSS (MB) and last output line of one run.  Output
    goes to a file, not to our memory: a fork of a big parent would count
    the parent's pages in the child's peak RSS."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(process.pid, 0)
        took = time.perf_counter() - started
        if status != 0:
            raise SystemExit("%s failed: %s" % (argv, status))
        out.seek(max(0, out.seek(0, 2) - 4096))
        tail = out.read().decode(errors="replace").strip().splitlines()
    return took, usage.ru_maxrss / 1024.0, tail[-1] if tail else ""


BENCH_LOGS = ("execve.log", "execve-enriched.log", "ordinary.log", "ordinary-enriched.log", "users.log",
              "users-enriched.log")


def _commands(log: str, compare: list, trees: str, digests_off: bool) -> dict:
    """What a round runs over ``log``, by name (ausearch -i first)."""
    python = "/usr/bin/python3"
    commands = {
        "ausearch -i": ["ausearch", "-i", "-if", log],
        "audit-notify": [python, __file__, "--child", "5", log],
    }
    if digests_off:
        commands["audit-notify, digests off"] = [python, __file__, "--child", "0", log]
    for revision, root in compare:
        commands["audit-notify @%s" % revision] = [python, __file__, "--child", "5", "--root", root, log]
    return commands


def bench(log: str, runs: int, compare: list, trees: str, digests_off: bool) -> dict:
    """Alternating rounds over one log; prints and returns the figures."""
    with open(log, "rb") as handle:
        records = sum(1 for line in handle if line.startswith(b"type=") and not line.startswith(b"type=EOE"))
    commands = _commands(log, compare, trees, digests_off)
    times = {name: [] for name in commands}
    rss = {name: [] for name in commands}
    outputs = {}
    for _ in range(runs):
        for name, command in commands.items():
            took, peak, out = measure(command)
            times[name].append(took)
            rss[name].append(peak)
            outputs[name] = out
    base = statistics.median(times["ausearch -i"])
    print("log: %s, %d records (EOE not counted), %d rounds, alternating" % (log, records, runs))
    figures = {}
    for name in commands:
        median = statistics.median(times[name])
        line = "%-28s median %6.2f s  %8.0f records/s  peak RSS %5.1f MB" % (name, median, records / median,
                                                                          max(rss[name]))
        if name != "ausearch -i":
            # Each round's ratio, its runs side by side: how steady it is.
            ratios = [a / b for a, b in zip(times["ausearch -i"], times[name])]
            figures[name] = (statistics.median(ratios), min(ratios), max(ratios),
                             sum(r >= 1 for r in ratios), len(ratios), max(rss[name]))
            line += "  speed vs ausearch -i: median of rounds %.2f (%.2f to %.2f, %d of %d rounds at 1 or more;" \
                    " ratio of medians %.2f)" % (figures[name][:5] + (base / median,))
        print(line)
    for name in commands:
        if name != "ausearch -i":
            print("  %s: %s" % (name, outputs[name]))
    print("  rounds (s): " + "; ".join("%s %s" % (name, " ".join("%.2f" % t for t in times[name]))
                                       for name in commands))
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="*", metavar="LOG")
    parser.add_argument("--all", action="store_true", help="every bench log in --dir (make_execve_log.py --all)")
    parser.add_argument("--dir", default=os.path.dirname(DEFAULT_LOG))
    parser.add_argument("--runs", type=int, default=7, help="rounds per log")
    parser.add_argument("--compare", metavar="REV", action="append", default=[],
                        help="also measure this git revision (e.g. the one before a change), in the same run")
    parser.add_argument("--digests-off", action="store_true", help="also run with digest_after = 0")
    parser.add_argument("--child", type=int, metavar="DIGEST_AFTER", help=argparse.SUPPRESS)
    parser.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.logs[0] if args.logs else DEFAULT_LOG, args.child, args.root)
    logs = list(args.logs)
    if args.all:
        logs += [os.path.join(args.dir, name) for name in BENCH_LOGS if os.path.exists(os.path.join(args.dir, name))]
    logs = logs or [DEFAULT_LOG]
    for log in logs:
        if not os.path.exists(log):
            raise SystemExit("no %s: make it with tests/bench/make_execve_log.py" % log)
    python = "/usr/bin/python3"
    trees = tempfile.TemporaryDirectory()
    compare = [(revision, checkout(revision, tempfile.mkdtemp(dir=trees.name))) for revision in args.compare]
    # Each tree's bytecode made first: a run measures ingest, not compiling
    # the plugin (which a host does once per start, and which a shell with
    # PYTHONDONTWRITEBYTECODE=1 would make every run pay for anew).
    for root in [ROOT] + [root for _revision, root in compare]:
        source = os.path.join(root, "src") if os.path.isdir(os.path.join(root, "src")) else root
        subprocess.run([python, "-m", "compileall", "-q", source], check=True, stdout=subprocess.DEVNULL)
    summary = []
    for log in logs:
        figures = bench(log, args.runs, compare, trees.name, args.digests_off)
        summary += [(os.path.basename(log), name, figure) for name, figure in figures.items()]
        print()
    print("%-24s %-28s %7s %13s %8s %9s" % ("log", "tree", "median", "rounds", ">= 1", "peak RSS"))
    for log, name, (median, low, high, ones, rounds, peak) in summary:
        print("%-24s %-28s %6.2fx %5.2f-%5.2fx %4d of %d %6.1f MB" % (log, name, median, low, high, ones, rounds, peak))
    trees.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
