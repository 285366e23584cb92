#!/usr/bin/python3
"""A recording stand-in for matrix-commander 8.0.6, for process tests.

It behaves as the real one does with ``--print-event-id --event P P ...``
(measured, see tests/matrix_env.py): every P must be a regular file when it
starts (else E236, exit 1), it writes $HOME/.run/matrix-commander.<uuid>.pid,
then opens each P in turn, reads it to EOF, sends the JSON event in it and
prints ``event_id    room_id    P``; an empty file is skipped.  Instead of
sending, it appends what it got (argv, the event, HOME, uid) as a JSON line
to calls.jsonl next to itself, with the event id it answered.  The file ``mode`` next to it, read before
each event, says what happens: ``ok`` (acknowledge), ``fail`` (E145 on
stderr, like a homeserver that is down), ``toolarge`` (E144 M_TOO_LARGE),
``hang`` (never answer), ``die`` (exit 1 at once).
"""

import json
import os
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def _mode():
    try:
        with open(os.path.join(HERE, "mode")) as handle:
            return handle.read().strip() or "ok"
    except FileNotFoundError:
        return "ok"


def main(argv):
    paths = argv[argv.index("--event") + 1:] if "--event" in argv else []
    for path in paths:
        if not os.path.isfile(path):
            sys.stderr.write("ERROR: matrix-commander: E236: event file %s does not exist.\n" % path)
            return 1
    run = os.path.join(os.environ["HOME"], ".run")
    os.makedirs(run, exist_ok=True)
    pid_file = os.path.join(run, "matrix-commander.%s.pid" % uuid.uuid4())
    with open(pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(0.05)  # the real one logs in between: 50-140 ms measured
    errors = 0
    for path in paths:
        with open(path) as handle:
            data = handle.read()
        if not data.strip():
            continue
        mode = _mode()
        event_id = "$ev%d:localhost" % time.monotonic_ns()
        with open(os.path.join(HERE, "calls.jsonl"), "a") as handle:
            handle.write(json.dumps({"argv": argv, "event": data, "home": os.environ.get("HOME"),
                                     "uid": os.getuid(), "mode": mode, "event_id": event_id}) + "\n")
        if mode == "hang":
            while True:
                time.sleep(60)
        if mode == "die":
            return 1
        if mode in ("fail", "toolarge"):
            errors += 1
            if mode == "toolarge":
                sys.stderr.write("ERROR: matrix-commander: E144: room_send failed with error "
                                 "'RoomSendError: M_TOO_LARGE event too large'.\n")
            sys.stderr.write("ERROR: matrix-commander: E145: Event send failed. Sorry.\n")
            sys.stderr.flush()
            continue
        json.loads(data)
        print("%s    !room:localhost    %s" % (event_id, path), flush=True)
    os.unlink(pid_file)
    return errors


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
