#!/usr/bin/env python3
"""Make a real audit log for the benchmarks: a private auditd with an
execve rule, around a loop of short commands.

    tests/bench/make_execve_log.py [--commands 20000] [--format RAW|ENRICHED]
                                        [--out /var/tmp/audit-notify-bench/execve.log]

The log is what auditd's dispatcher hands a plugin (format = string, in
auditd's log_format: RAW, or ENRICHED as Debian ships it):
a recording plugin appends its stdin to OUT.  Each /bin/true run is one
event of about 7 records (SYSCALL EXECVE CWD PATH PATH PROCTITLE EOE), so
20,000 commands give ~140,000 records.  Needs root and auditd; takes about
a minute.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from auditd_env import private_auditd  # noqa: E402

RECORDER = textwrap.dedent("""\
    #!/bin/sh
    exec /bin/cat >> "$1"
    """)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--format", choices=("RAW", "ENRICHED"), default="RAW")
    parser.add_argument("--out", default="/var/tmp/audit-notify-bench/execve.log")
    args = parser.parse_args(argv)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    if os.path.exists(args.out):
        os.unlink(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = os.path.join(tmp, "recorder.sh")
        with open(recorder, "w") as handle:
            handle.write(RECORDER)
        os.chmod(recorder, 0o755)
        true = os.path.join(tmp, "an-true")
        subprocess.run(["cp", "/bin/true", true], check=True)
        rule = "-a always,exit -F arch=b64 -S execve -F path=%s -k an-bench" % true
        with private_auditd(tmp, plugin_path=recorder, plugin_args=(args.out,), rules=[rule],
                            q_depth=65536, log_format=args.format) as auditd:
            started = time.monotonic()
            subprocess.run(["/bin/sh", "-c", 'i=0; while [ $i -lt %d ]; do %s; i=$((i+1)); done'
                            % (args.commands, true)], check=True)
            took = time.monotonic() - started
            auditd.wait_for(lambda text: text.count("an-bench") >= args.commands, timeout=120)
            time.sleep(2)  # let the dispatcher hand the last records over
            report = auditd.state_report()
    with open(args.out, "rb") as handle:
        data = handle.read()
    records = data.count(b"\ntype=") + data.startswith(b"type=")
    print("%d commands in %.1f s; %s: %d records, %d bytes; plugin queue overflow: %s"
          % (args.commands, took, args.out, records, len(data), report.get("plugin queue overflow detected")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
