#!/usr/bin/python3
"""A recording stand-in for matrix-commander, for process tests.

It appends what it was given (argv, all of stdin, HOME) as one JSON line to
calls.jsonl next to itself, then behaves as the file ``mode`` next to it
says: ``ok`` (print an event id, exit 0), ``fail`` (an E-code on stderr,
exit 1) or ``hang`` (never finish).  It reads all of stdin first, so a
child that inherited a never-closing stdin would hang here, visibly.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    data = sys.stdin.read()
    with open(os.path.join(HERE, "calls.jsonl"), "a") as handle:
        handle.write(json.dumps({"argv": sys.argv[1:], "stdin": data, "home": os.environ.get("HOME"),
                                 "uid": os.getuid()}) + "\n")
    try:
        with open(os.path.join(HERE, "mode")) as handle:
            mode = handle.read().strip()
    except FileNotFoundError:
        mode = "ok"
    if mode == "hang":
        while True:
            time.sleep(60)
    if mode == "fail":
        sys.stderr.write("ERROR: E219: could not reach the homeserver\n")
        return 1
    print("$ev%d:localhost    !room:localhost    -" % time.monotonic_ns())
    return 0


if __name__ == "__main__":
    sys.exit(main())
