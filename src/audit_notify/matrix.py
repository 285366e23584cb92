"""How we run matrix-commander, and the little we ask a homeserver directly.

matrix-commander is a separate program, never imported: the plugin, the
doctor and setup all start it through the one argv builder and the one
environment here.  No audit text is ever in its argv (a message starting
with '-' would be parsed as an option, and a later '--room=' in the text
would redirect it): events go in through files or stdin.
"""

from __future__ import annotations

import contextlib
import glob
import html
import json
import os
import re
import signal
import socket
import subprocess
from typing import Dict, Iterator, List, Optional, Tuple

from .config import Config
from .privileges import Account

# matrix-commander's error codes for a failed event send (E143 bad JSON,
# E144 room_send error, E145 exception) and a few others it prints.
MC_ERROR = re.compile(r"\bE\d{3}\b")


def mc_argv(config: Config, *action: str, credentials: str = "") -> List[str]:
    """matrix-commander on the bot's credentials and store, doing ``action``.
    ``--log-level ERROR ERROR`` (its own and matrix-nio's) keeps it from
    logging each message's plaintext."""
    return [config.matrix_commander, "--credentials", credentials or config.credentials, "--store", config.store,
            "--log-level", "ERROR", "ERROR", *action]


def send_argv(config: Config, events: List[str], room: str = "") -> List[str]:
    """Send one event per file in ``events`` (our FIFO, or "-" for stdin)
    to ``room`` (default: the configured one), printing each event id."""
    room = room or config.room
    return mc_argv(config, "--print-event-id", *(["--room", room] if room else []), "--event", *events)


def mc_env(config: Config) -> Dict[str, str]:
    """matrix-commander's whole environment (auditd gives its plugins none):
    HOME is state_dir, where it writes its pid files."""
    return {"HOME": config.state_dir, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def pid_files(config: Config) -> Iterator[Tuple[str, int]]:
    """(path, pid) of each pid file matrix-commander left in our HOME
    (``~/.run/matrix-commander.<uuid>.pid``; left behind when killed)."""
    for path in glob.glob(os.path.join(config.state_dir, ".run", "matrix-commander.*.pid")):
        with contextlib.suppress(OSError, ValueError):
            with open(path) as handle:
                yield path, int(handle.read().strip() or 0)


def die_with_parent():
    """In the child, before exec: SIGKILL it if the plugin dies, so that a
    crashed plugin leaves no matrix-commander behind on the store."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_as(account: Optional[Account]) -> dict:
    """subprocess arguments that run a child as ``account`` (when we are root)."""
    if account is None or os.geteuid() != 0 or account.uid == 0:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": []}


def send_once(config: Config, content: dict, account: Optional[Account], run=subprocess.run) -> Tuple[bool, str]:
    """Send one event with a one-shot matrix-commander (setup's test message,
    --check --send-test); True and the event id, or False and why."""
    event = json.dumps({"type": "m.room.message", "content": content}).encode("utf-8")
    try:
        result = run(send_argv(config, ["-"]), input=event, capture_output=True, timeout=config.send_timeout,
                     env=mc_env(config), cwd=config.state_dir, start_new_session=True, **run_as(account))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    out = result.stdout.decode("utf-8", "replace").split()
    if result.returncode == 0 and out and out[0].startswith("$"):
        return True, out[0]
    return False, first_error_line(result.stderr.decode("utf-8", "replace")) or "exit code %d" % result.returncode


def first_error_line(text: str) -> str:
    """The line of matrix-commander's stderr that says what went wrong."""
    for line in text.splitlines():
        if MC_ERROR.search(line) or "rror" in line:
            return line.strip()[:300]
    return ""


def matrix_api(homeserver: str, path: str, token: str, timeout: float = 10.0, data: Optional[dict] = None,
               method: str = "") -> Tuple[int, dict]:
    """Call a client-server API path with a token: (status, JSON).  GET,
    or POST/PUT of ``data``."""
    import urllib.error
    import urllib.request

    body = None if data is None else json.dumps(data).encode("utf-8")
    request = urllib.request.Request(homeserver.rstrip("/") + path, data=body, method=method or None,
                                     headers={"Authorization": "Bearer " + token,
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def test_content(where: str) -> dict:
    """The test notification setup and --check --send-test send."""
    body = "✅ audit-notify works on %s (%s)" % (socket.gethostname(), where)
    return {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
            "formatted_body": html.escape(body), "m.mentions": {}}
