"""In-process stand-ins: a clock the test moves, and matrix-commander as
a Popen-like object the test plays step by step (no threads, no sleeps).

The process tests use fake_matrix_commander.py, a script, instead.
"""

import json
import os


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeMatrixCommander:
    """What the fake spawn returns: a Popen-like stand-in for one
    matrix-commander process.  It writes its pid file at once, as the real
    one does after its start-up check; the test then opens the FIFO for
    reading (as matrix-commander does once per event), takes the event the
    Sender wrote, and answers on stdout or stderr."""

    next_pid = 4_000_000  # above pid_max: never a real process

    def __init__(self, argv, env, **_):
        self.argv, self.env = argv, env
        self.pid = FakeMatrixCommander.next_pid
        FakeMatrixCommander.next_pid += 1
        self.returncode = None
        out_r, self._out = os.pipe()
        err_r, self._err = os.pipe()
        self.stdout, self.stderr = os.fdopen(out_r, "rb", 0), os.fdopen(err_r, "rb", 0)
        run = os.path.join(env["HOME"], ".run")
        os.makedirs(run, exist_ok=True)
        with open(os.path.join(run, "matrix-commander.%d.pid" % self.pid), "w") as handle:
            handle.write(str(self.pid))
        self.fifo = argv[-1]
        self._reader = None

    # -- what the test does as matrix-commander ---------------------------
    def open_fifo(self):
        self._reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)

    def take(self):
        """The event written since the FIFO was opened; None if none was."""
        try:
            data = os.read(self._reader, 1 << 20)
        except BlockingIOError:
            data = b""
        os.close(self._reader)
        self._reader = None
        return json.loads(data) if data else None

    def ack(self, event_id):
        os.write(self._out, ("%s    !room:localhost    %s\n" % (event_id, self.fifo)).encode())

    def error(self, line):
        os.write(self._err, (line + "\n").encode())

    def exit(self, code):
        if self.returncode is None:
            self.returncode = code
            os.close(self._out)
            os.close(self._err)

    # -- Popen ------------------------------------------------------------
    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        return self.returncode

    def terminate(self):
        self.exit(-15)

    def kill(self):
        self.exit(-9)
