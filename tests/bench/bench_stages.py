#!/usr/bin/env python3
"""Where ingest's time goes: the bench log read through more and more of the
pipeline, CPU seconds per stage (medians), in one run.

    tests/bench/bench_stages.py [--runs 5] [LOG]

Stages, each a fresh process that also pays the imports:
  feed      auparse alone: the log fed, one callback per event, nothing read
  read      EventReader: each event as a summary with its facts (reader.py,
            events.py, facts.py)
  classify  + severity.classify of each event
  wanted    + the shipped blacklist (rules.wanted)
  notify    the Notifier instead: severity, blacklist, incidents, repeats and
            routine (notify.py, grouper.py, agenda.py, lane.py), messages dropped
The difference between two stages is what the later one adds.  bench_ingest.py
measures the whole plugin beside `ausearch -i`; this says which part to cut.
"""

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_LOG = "/var/tmp/audit-notify-bench/execve.log"
STAGES = ("feed", "read", "classify", "wanted", "notify")


def child(stage: str, log: str) -> int:
    """Run one stage over ``log``; print its CPU seconds and event count."""
    started = time.process_time()
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from dataclasses import replace

    from audit_notify.config import Config
    from audit_notify.counters import Counters
    from audit_notify.daemon import GC_YOUNG
    from audit_notify.notify import Notifier
    from audit_notify.reader import EventReader, import_auparse
    from audit_notify.rules import load_ruleset
    from audit_notify.severity import classify

    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])  # as Plugin.run() sets it
    auparse = import_auparse()
    config = replace(Config(), blacklist=os.path.join(ROOT, "blacklist.example"))
    rules = load_ruleset(config)
    counters = Counters()
    notifier = Notifier(config, rules, lambda _notification: None, counters)
    seen = [0]

    def sink(event):
        if stage == "classify":
            classify(event)
        elif stage == "wanted":
            rules.wanted(event, classify(event).severity)
        elif stage == "notify":
            notifier.on_event(event)

    def count(_au, cbtype, _user):
        if cbtype == auparse.AUPARSE_CB_EVENT_READY:
            seen[0] += 1

    if stage == "feed":
        parser = auparse.AuParser(auparse.AUSOURCE_FEED)
        parser.set_escape_mode(auparse.AUPARSE_ESC_RAW)
        parser.add_callback(count, None)
        feed, done = parser.feed, parser.flush_feed
    else:
        reader = EventReader(auparse, sink, counters, "bench", config.eoe_timeout)
        reader.normalize = False  # as the daemon sets it for the shipped blacklist
        feed, done = reader.feed, reader.flush
    fd = os.open(log, os.O_RDONLY)
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        feed(data)
    done()
    notifier.close_all()
    print("%.4f %d %d" % (time.process_time() - started, seen[0] or counters.events, notifier.grouper.kept_out))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("log", nargs="?", default=DEFAULT_LOG)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.log)
    # The interpreter the installed plugin runs under (#!/usr/bin/python3), as bench_ingest.py
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    # The bytecode made first: a stage measures its work, not compiling the plugin.
    subprocess.run([python, "-m", "compileall", "-q", os.path.join(ROOT, "src")], check=True, stdout=subprocess.DEVNULL)
    times = {stage: [] for stage in STAGES}
    events = {}
    for _ in range(args.runs):  # stages alternate, so that noise spreads over all of them
        for stage in STAGES:
            out = subprocess.run([python, __file__, "--child", stage, args.log], capture_output=True,
                                 text=True, check=True).stdout.split()
            times[stage].append(float(out[0]))
            events[stage] = int(out[1])
            kept_out = int(out[2])
    print("log: %s, %d runs each, CPU seconds (median), each stage a fresh process with its imports"
          % (args.log, args.runs))
    before = 0.0
    for stage in STAGES:
        median = statistics.median(times[stage])
        added = median - (before if stage != "notify" else statistics.median(times["read"]))
        print("%-9s %6.3f s   adds %6.3f s   %5.1f us/event   (%d events)"
              % (stage, median, added, added / max(1, events[stage]) * 1e6, events[stage]))
        before = median
    print("events that took the fast lane (lane.py): %d" % kept_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
