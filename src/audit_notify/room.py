"""Reading the room: reactions and redactions, never with /sync.

The bot's device belongs to matrix-commander: a ``/sync`` with its token
would hand over, and then delete, that device's to-device messages (room
keys, key requests) that matrix-commander needs.  So a small thread asks
``/rooms/{room}/messages`` for the events that can answer (reactions, in
the clear or with an encrypted body but a clear annotation, and
redactions), from where it last read, every POLL_INTERVAL seconds, with
the bot's access token from matrix-commander's credentials file, over
urllib.  It only reads: what the events mean is decided in the daemon's
thread (answering.py), which this thread wakes through a pipe.  A
homeserver that is down delays answers, never alerts: the thread waits
in its own time, one log line when reading fails and one when it works
again.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from typing import Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote

from .matrix import matrix_api

log = logging.getLogger("audit-notify")

# A reaction is answered within this (plus the time to apply it): the
# issue asks for 30 s.  Each poll is one small request per room.
POLL_INTERVAL = 10.0
# How long one request may take.
REQUEST_TIMEOUT = 10.0
# At start, this many of the latest answering events per room are read
# (those already applied are known by their ids, ledger.py).
LOOKBACK = 100
# Events per request, and requests per room per poll at most.
PAGE = 100
MAX_PAGES = 10
ANSWER_TYPES = ["m.reaction", "m.room.encrypted", "m.room.redaction"]


def read_credentials(path: str) -> Dict[str, str]:
    """matrix-commander's credentials: homeserver, access_token, user_id,
    room_id (its default room).  OSError or ValueError if unusable."""
    with open(path, encoding="utf-8") as handle:
        creds = json.load(handle)
    if not isinstance(creds, dict) or not all(isinstance(creds.get(k), str) and creds.get(k)
                                              for k in ("homeserver", "access_token", "user_id")):
        raise ValueError("%s lacks homeserver, access_token or user_id" % path)
    return creds


class RoomReader:
    """The thread that reads answering events; ``take`` hands them to the
    daemon's thread as (room id, event) pairs, oldest first.  ``fd`` is
    readable when there are some."""

    def __init__(self, credentials: str, rooms: Iterable[str], interval: float = POLL_INTERVAL,
                 api: Callable[..., Tuple[int, dict]] = matrix_api):
        self._credentials = credentials
        self._rooms = [room for room in dict.fromkeys(rooms)]  # "" is the credentials' default room
        self._interval = interval
        self._api = api
        self._creds: Optional[Dict[str, str]] = None
        self._ids: Dict[str, str] = {}      # alias -> room id
        self._tokens: Dict[str, str] = {}   # room id -> where reading goes on
        self._events: "queue.Queue[Tuple[str, dict]]" = queue.Queue()
        self._wake_read, self._wake_write = os.pipe()
        for end in (self._wake_read, self._wake_write):
            os.set_blocking(end, False)
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._failing = False
        self.polls = 0

    def start(self):
        self._thread = threading.Thread(target=self._run, name="answers", daemon=True)
        self._thread.start()

    def fd(self) -> int:
        return self._wake_read

    def take(self) -> List[Tuple[str, dict]]:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def stop(self, timeout: float = 1.0):
        """Ask the thread to end; a request in flight is not waited for
        (the thread is a daemon: it dies with the plugin)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for end in (self._wake_read, self._wake_write):
            try:
                os.close(end)
            except OSError:
                pass

    # -- the thread ------------------------------------------------------------

    def _run(self):
        while not self._stopping.is_set():
            try:
                self.poll()
                if self._failing:
                    self._failing = False
                    log.warning("reading answers from the room works again")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                if not self._failing:
                    self._failing = True
                    log.error("cannot read answers from the room: %s; trying again every %.0f s (alerts are "
                              "not delayed)", exc, self._interval)
                self._creds = None  # read again: a new login may have replaced them
            self._stopping.wait(self._interval)

    def poll(self):
        """One round: every room's new answering events, queued."""
        if self._creds is None:
            self._creds = read_credentials(self._credentials)
        got = []
        for room in self._rooms:
            room_id = self._room_id(room)
            if room_id:
                got += [(room_id, event) for event in self._read(room_id)]
        self.polls += 1
        if got:
            for pair in got:
                self._events.put(pair)
            try:
                os.write(self._wake_write, b"!")
            except (BlockingIOError, OSError):
                pass  # already awake, or stopping

    def _call(self, path: str) -> dict:
        creds = self._creds
        status, answer = self._api(creds["homeserver"], path, creds["access_token"], REQUEST_TIMEOUT)
        if status != 200:
            raise ValueError("HTTP %d from %s: %s" % (status, path.split("?")[0], answer.get("errcode", "")))
        return answer

    def _room_id(self, room: str) -> str:
        room = room or self._creds.get("room_id", "")
        if not room.startswith("#"):
            return room
        if room not in self._ids:
            self._ids[room] = self._call("/_matrix/client/v3/directory/room/" + quote(room))["room_id"]
        return self._ids[room]

    def _read(self, room_id: str) -> List[dict]:
        """New answering events of one room since the last read, oldest
        first; at the first read, the latest LOOKBACK."""
        flt = quote(json.dumps({"types": ANSWER_TYPES, "not_senders": [self._creds["user_id"]]},
                               separators=(",", ":")))
        base = "/_matrix/client/v3/rooms/%s/messages?filter=%s&limit=%d" % (quote(room_id), flt, PAGE)
        token = self._tokens.get(room_id)
        if token is None:
            answer = self._call(base.replace("limit=%d" % PAGE, "limit=%d" % LOOKBACK) + "&dir=b")
            self._tokens[room_id] = answer["start"]
            return list(reversed(answer.get("chunk", [])))
        events: List[dict] = []
        for _ in range(MAX_PAGES):
            answer = self._call(base + "&dir=f&from=" + quote(token))
            chunk = answer.get("chunk", [])
            events += chunk
            token = answer.get("end") or token
            if not chunk:
                break
        self._tokens[room_id] = token
        return events
