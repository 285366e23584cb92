#!/usr/bin/env python3
"""Ingest benchmark: the whole pipeline except the network, side by side
with `ausearch -i` over the same records, in one run (the machine is shared
and noisy: runs alternate, medians and ratios are reported).

    tests/bench/make_execve_log.py            # once: a real 140,000-record log
    tests/bench/bench_ingest.py [--runs 7] [LOG]

    # the same in auditd's ENRICHED format (Debian's default)
    tests/bench/make_execve_log.py --format ENRICHED --out /var/tmp/audit-notify-bench/execve-enriched.log
    tests/bench/bench_ingest.py /var/tmp/audit-notify-bench/execve-enriched.log

The pipeline is the plugin's own: auparse feed, the shipped blacklist,
digests, formatting and the sqlite spool (in a temporary directory), run by
Plugin.run() on the log's file descriptor; only the Sender is left out.
"digests off" formats and spools every event (digest_after = 0).  Peak RSS
is the child process's, from wait4().
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


def child(log: str, digest_after: int) -> int:
    """Run the pipeline over ``log`` once; print the counters."""
    sys.path.insert(0, ROOT)
    import audit_notify as an

    with tempfile.TemporaryDirectory() as tmp:
        config = an.replace(an.Config(), blacklist=os.path.join(ROOT, "blacklist.example"),
                            spool_dir=os.path.join(tmp, "spool"), state_dir=tmp, digest_after=digest_after)
        counters = an.Counters()
        spool, _owner = an.open_spool(config)
        plugin = an.Plugin(config, an.load_ruleset(config), an.import_auparse(), spool, counters, hostname="bench")
        fd = os.open(log, os.O_RDONLY)
        plugin.run(fd)
        plugin.finish(at_eof=True)
        depth = spool.depth()[0]
        spool.close()
    print(counters.line(), "spooled=%d" % depth)
    return 0


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", nargs="?", default=DEFAULT_LOG)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--child", type=int, metavar="DIGEST_AFTER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.log, args.child)
    if not os.path.exists(args.log):
        raise SystemExit("no %s: make it with tests/bench/make_execve_log.py" % args.log)
    with open(args.log, "rb") as handle:
        records = sum(1 for line in handle if line.startswith(b"type=") and not line.startswith(b"type=EOE"))
    python = "/usr/bin/python3"
    commands = {
        "ausearch -i": ["ausearch", "-i", "-if", args.log],
        "audit-notify": [python, __file__, "--child", "5", args.log],
        "audit-notify, digests off": [python, __file__, "--child", "0", args.log],
    }
    times = {name: [] for name in commands}
    rss = {name: [] for name in commands}
    outputs = {}
    for _ in range(args.runs):
        for name, command in commands.items():
            took, peak, out = measure(command)
            times[name].append(took)
            rss[name].append(peak)
            outputs[name] = out
    base = statistics.median(times["ausearch -i"])
    print("log: %s, %d records (EOE not counted), %d runs each, alternating" % (args.log, records, args.runs))
    for name in commands:
        median = statistics.median(times[name])
        print("%-28s median %6.2f s  %8.0f records/s  speed vs ausearch -i %.2f  peak RSS %5.1f MB"
              % (name, median, records / median, base / median, max(rss[name])))
    for name in ("audit-notify", "audit-notify, digests off"):
        print("%s: %s" % (name, outputs[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
