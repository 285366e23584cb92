"""A real Matrix world for tests: a Synapse homeserver on 127.0.0.1, a receiving
matrix-nio client, an end-to-end-encrypted room and a logged-in matrix-commander bot.

Why a real homeserver: audit-notify delivers through the separate program
``matrix-commander``; whether a notification really arrives *encrypted* and
*decryptable*, with the right ``body``/``formatted_body``, can only be proven by a
second Matrix client reading the room.  Mocks would only repeat our assumptions.

Only the standard library and matrix-nio are used, so the module can be imported by
any test.  Everything runs in temporary directories on free random ports, and every
process started here is stopped by its PID.  The only sleeps are bounded
readiness/poll loops.

Typical use::

    with matrix_world(tmp_path) as world:
        subprocess.run(world.mc_command("-m", "hello"), env=world.mc_env(),
                       stdin=subprocess.DEVNULL, check=True)
        [msg] = world.receiver.wait_for_messages(1, timeout=10)
        assert msg["body"] == "hello" and msg["wire_type"] == "m.room.encrypted"

The Synapse and matrix-commander installs are found through the environment
variables AUDIT_NOTIFY_SYNAPSE_PYTHON and AUDIT_NOTIFY_MATRIX_COMMANDER (defaults:
the venvs under /opt/audit-notify-test).  The test venv needs matrix-nio with its
``e2e`` extra (vodozemac), or nio cannot decrypt.

Facts this module is built on are in shared/MATRIX-TESTING.md (room version 12 ids
are rejected by matrix-commander 8.0.6, a receiver must keep one device, ``limited``
sync timelines must be paged back with /messages, rate limits must be lifted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import nio

SYNAPSE_PYTHON = os.environ.get(
    "AUDIT_NOTIFY_SYNAPSE_PYTHON", "/opt/audit-notify-test/synapse/bin/python"
)
MC_BINARY = os.environ.get(
    "AUDIT_NOTIFY_MATRIX_COMMANDER", "/opt/audit-notify-test/mc/bin/matrix-commander"
)
SERVER_NAME = "localhost"
MEGOLM = "m.megolm.v1.aes-sha2"

# Synapse's rate limits that a burst of test traffic can hit.  Each is replaced by a
# huge limit unless a test asks for Synapse's defaults (to see M_LIMIT_EXCEEDED).
_HUGE = {"per_second": 100000, "burst_count": 100000}
_RATELIMIT_OVERRIDES: dict[str, Any] = {
    "rc_message": _HUGE,
    "rc_registration": _HUGE,
    "rc_registration_token_validity": _HUGE,
    "rc_login": {"address": _HUGE, "account": _HUGE, "failed_attempts": _HUGE},
    "rc_admin_redaction": _HUGE,
    "rc_joins": {"local": _HUGE, "remote": _HUGE},
    "rc_joins_per_room": _HUGE,
    "rc_key_requests": _HUGE,
    "rc_3pid_validation": _HUGE,
    "rc_invites": {"per_room": _HUGE, "per_user": _HUGE, "per_issuer": _HUGE},
    "rc_third_party_invite": _HUGE,
    "rc_media_create": _HUGE,
    "rc_presence": {"per_user": _HUGE},
    "rc_delayed_event_mgmt": _HUGE,
    "rc_room_creation": _HUGE,
    "rc_reports": _HUGE,
    "rc_user_directory": _HUGE,
    "rc_profile": _HUGE,
    "rc_federation": {"window_size": 1000, "sleep_limit": 100000, "sleep_delay": 1,
                      "reject_limit": 100000, "concurrent": 100000},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).

    The machine is shared, so fixed ports would collide with other work.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_json(url: str, body: dict | None = None, token: str | None = None,
               timeout: float = 10.0) -> dict:
    """GET (body None) or POST JSON with urllib; raise RuntimeError with the
    server's answer on an HTTP error so a failing test shows the Matrix errcode."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{req.method} {url}: HTTP {e.code} {e.read()[:500]!r}") from None


def _stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` s, then SIGKILL: by PID, never by name."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
        # A frozen (SIGSTOPped) process cannot run its SIGTERM handler.
        proc.send_signal(signal.SIGCONT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(grace)


class Homeserver:
    """A Synapse homeserver on 127.0.0.1 with its data in `workdir`.

    The base config (server name ``localhost``, sqlite, signing key) is written once;
    an overrides file given as a second ``-c`` wins over it and holds
    everything a test needs to be deterministic: listener on 127.0.0.1 only, no key
    servers (there is no network), presence off, a known registration shared secret,
    and every ``rc_*`` rate limit raised unless ``default_ratelimits`` is set.
    """

    def __init__(self, workdir: str | os.PathLike, port: int | None = None,
                 synapse_python: str = SYNAPSE_PYTHON, default_ratelimits: bool = False):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.synapse_python = synapse_python
        #: True: Synapse's own defaults (0.2 msg/s, burst 10) apply from the next
        #: start()/restart(), so a test can provoke M_LIMIT_EXCEEDED.
        self.default_ratelimits = default_ratelimits
        self.shared_secret = secrets.token_hex(16)
        self.config_path = self.workdir / "homeserver.yaml"
        self.overrides_path = self.workdir / "overrides.yaml"
        self.log_path = self.workdir / "synapse.stdout.log"
        self.proc: subprocess.Popen | None = None
        self._frozen = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _write_base_config(self) -> None:
        """Write homeserver.yaml once; later starts reuse it (and the data).

        Written directly instead of ``--generate-config``: that costs ~2.7 s of
        Synapse imports on these machines and we would override most of it anyway.
        Any 32 random bytes are a valid ed25519 signing key seed.
        """
        if self.config_path.exists():
            return
        seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        key_path = self.workdir / f"{SERVER_NAME}.signing.key"
        key_path.write_text(f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
        base = {
            "server_name": SERVER_NAME,
            "pid_file": str(self.workdir / "homeserver.pid"),
            "database": {"name": "sqlite3",
                         "args": {"database": str(self.workdir / "homeserver.db")}},
            "media_store_path": str(self.workdir / "media_store"),
            "signing_key_path": str(key_path),
            "macaroon_secret_key": secrets.token_hex(32),
            "form_secret": secrets.token_hex(32),
        }
        # JSON is valid YAML, so no YAML library is needed.
        self.config_path.write_text(json.dumps(base, indent=1))

    def _write_overrides(self) -> None:
        # Top-level keys of a later -c file replace the same keys of the first file.
        overrides: dict[str, Any] = {
            "listeners": [{
                "port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http",
                "tls": False, "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }],
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            "enable_registration": False,
            "registration_shared_secret": self.shared_secret,
            "report_stats": False,
            "url_preview_enabled": False,
            # Cheap password hashing: registration and login ~0.3 s faster each.
            "bcrypt_rounds": 4,
        }
        if not self.default_ratelimits:
            overrides.update(_RATELIMIT_OVERRIDES)
        self.overrides_path.write_text(json.dumps(overrides, indent=1))

    def start(self, timeout: float = 60.0) -> "Homeserver":
        """Start Synapse and wait (bounded) until /_matrix/client/versions answers."""
        if self.proc and self.proc.poll() is None:
            return self
        self._write_base_config()
        self._write_overrides()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.synapse_python, "-m", "synapse.app.homeserver",
                 "-c", str(self.config_path), "-c", str(self.overrides_path)],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        finally:
            log.close()
        self._frozen = False
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"synapse exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                _http_json(self.url + "/_matrix/client/versions", timeout=2)
                return self
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"synapse not ready after {timeout} s:\n{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; data and port stay for restart()."""
        if self.proc:
            _stop_process(self.proc)
        self._frozen = False

    def kill(self) -> None:
        """SIGKILL at once (a crash, not a shutdown)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout: float = 60.0) -> "Homeserver":
        """Stop and start again with the same data and port (rewrites the
        overrides, so a changed `default_ratelimits` takes effect)."""
        self.stop()
        return self.start(timeout)

    def freeze(self) -> None:
        """SIGSTOP: the TCP port stays open but nothing answers (a hung server)."""
        assert self.proc and self.proc.poll() is None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT after freeze()."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self._frozen = False

    def register(self, user: str, password: str, admin: bool = False) -> dict:
        """Create a user with the shared-secret admin API (nonce + HMAC-SHA1).

        Returns the server's answer: ``user_id``, ``access_token``, ``device_id``.
        """
        base = self.url + "/_synapse/admin/v1/register"
        nonce = _http_json(base)["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), user.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        return _http_json(base, {"nonce": nonce, "username": user, "password": password,
                                 "admin": admin, "mac": mac.hexdigest()})

    def override_ratelimit(self, mxid: str, admin_token: str,
                           messages_per_second: int = 0, burst_count: int = 0) -> dict:
        """Per-user rate limit override (0/0 = unlimited), as a real server admin
        would do for the bot; only matters with `default_ratelimits`."""
        return _http_json(
            f"{self.url}/_synapse/admin/v1/users/{urllib.request.quote(mxid)}/override_ratelimit",
            {"messages_per_second": messages_per_second, "burst_count": burst_count},
            token=admin_token)


class _RecordingClient(nio.AsyncClient):
    """AsyncClient that notes how each event looked on the wire.

    nio replaces ``m.room.encrypted`` events by their decrypted form while it handles
    a response, so afterwards the wire type is gone.  ``receive_response`` is the
    public hook that sees every response first: here we note type and algorithm of
    each timeline / /messages event before nio decrypts it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wire: dict[str, tuple[str, str | None]] = {}

    def _note(self, event: Any) -> None:
        src = getattr(event, "source", None)
        if isinstance(src, dict) and src.get("event_id"):
            content = src.get("content") or {}
            self.wire.setdefault(src["event_id"], (src.get("type"), content.get("algorithm")))

    async def receive_response(self, response: Any) -> None:
        if isinstance(response, nio.SyncResponse):
            for info in response.rooms.join.values():
                for ev in info.timeline.events:
                    self._note(ev)
        elif isinstance(response, nio.RoomMessagesResponse):
            for ev in response.chunk:
                self._note(ev)
        await super().receive_response(response)


class Receiver:
    """The person reading the room: a matrix-nio client with synchronous methods.

    It runs its own event loop (no pytest-asyncio needed).  The device is kept across
    instances: credentials and the nio store live in `workdir`, and a second Receiver
    on the same workdir restores that login instead of making a new device (a new
    device could not read messages encrypted for the old one).
    """

    def __init__(self, homeserver: Homeserver, workdir: str | os.PathLike, user: str,
                 password: str | None = None):
        self.homeserver = homeserver
        self.workdir = Path(workdir).resolve()
        self.store_dir = self.workdir / "nio-store"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.creds_path = self.workdir / "receiver-credentials.json"
        self.user_id = f"@{user}:{SERVER_NAME}"
        self.password = password or secrets.token_hex(12)
        self._loop = asyncio.new_event_loop()
        self.client = _RecordingClient(
            homeserver.url, self.user_id, store_path=str(self.store_dir),
            config=nio.AsyncClientConfig(store_sync_tokens=True, encryption_enabled=True,
                                         max_limit_exceeded=0, max_timeouts=0))
        self._seen: set[str] = set()         # every event id handled, for paging stops
        self._pending: list[dict] = []       # received, not yet returned by wait_*
        #: /messages requests made to fill `limited` timelines (lets a test prove
        #: that paging back happened).
        self.pages_fetched = 0
        self._login()

    # -- plumbing --------------------------------------------------------------------
    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    def _login(self) -> None:
        if self.creds_path.exists():
            creds = json.loads(self.creds_path.read_text())
            self.client.restore_login(creds["user_id"], creds["device_id"],
                                      creds["access_token"])
        else:
            resp = self._run(self.client.login(self.password, device_name="test-receiver"))
            if not isinstance(resp, nio.LoginResponse):
                raise RuntimeError(f"receiver login failed: {resp}")
            self.creds_path.write_text(json.dumps({
                "user_id": resp.user_id, "device_id": resp.device_id,
                "access_token": resp.access_token}))
        self.device_id = self.client.device_id
        self._sync(0)

    async def _maintenance(self) -> None:
        # What nio's sync_forever does besides syncing: keep our one-time keys on the
        # server (the bot claims one to send us the room key) and answer key traffic.
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()
        await self.client.send_to_device_messages()

    def _sync(self, timeout_ms: int) -> None:
        """One /sync (long-poll `timeout_ms`), pages back limited timelines, and
        queues new m.room.message events."""
        async def go():
            # timeout=0 means "answer at once"; None would mean nio's 60 s default.
            resp = await self.client.sync(timeout=timeout_ms, full_state=False)
            now = time.monotonic()
            if not isinstance(resp, nio.SyncResponse):
                raise RuntimeError(f"receiver sync failed: {resp}")
            for room_id, info in resp.rooms.join.items():
                events = list(info.timeline.events)
                if info.timeline.limited and info.timeline.prev_batch:
                    events = await self._page_back(room_id, info.timeline.prev_batch) + events
                for ev in events:
                    self._take(room_id, ev, now)
            await self._maintenance()
        self._run(go())

    async def _page_back(self, room_id: str, token: str, max_pages: int = 100) -> list:
        """Events between the last sync and a cut-short (`limited`) timeline, oldest
        first.  Stops at the first event already seen, or at the room's start."""
        older: list = []
        for _ in range(max_pages):
            resp = await self.client.room_messages(room_id, start=token, limit=100,
                                                  direction=nio.MessageDirection.back)
            self.pages_fetched += 1
            if not isinstance(resp, nio.RoomMessagesResponse):
                raise RuntimeError(f"/messages failed: {resp}")
            for ev in resp.chunk:  # newest first
                if ev.event_id in self._seen:
                    return list(reversed(older))
                older.append(ev)
            if not resp.chunk or not resp.end or resp.end == token:
                break
            token = resp.end
        return list(reversed(older))

    def _take(self, room_id: str, ev: Any, now: float) -> None:
        event_id = getattr(ev, "event_id", None)
        if not event_id or event_id in self._seen:
            return
        self._seen.add(event_id)
        if isinstance(ev, nio.MegolmEvent) or (
                isinstance(ev, nio.RoomMessage) and ev.source.get("type") == "m.room.message"):
            self._pending.append(self._describe(room_id, ev, now))

    def _describe(self, room_id: str, ev: Any, now: float) -> dict:
        wire_type, algorithm = self.client.wire.get(
            ev.event_id, (ev.source.get("type"), (ev.source.get("content") or {}).get("algorithm")))
        decrypted = bool(getattr(ev, "decrypted", False))
        content = dict(ev.source.get("content") or {}) if not isinstance(ev, nio.MegolmEvent) else {}
        return {
            "event_id": ev.event_id,
            "room_id": room_id,
            "sender": ev.sender,
            "wire_type": wire_type,
            "algorithm": algorithm,
            "decrypted": decrypted,
            "sender_key": getattr(ev, "sender_key", None),
            "sender_device": None,  # filled in by _resolve_devices()
            "content": content,
            "body": content.get("body"),
            "formatted_body": content.get("formatted_body"),
            "format": content.get("format"),
            "msgtype": content.get("msgtype"),
            "origin_server_ts": getattr(ev, "server_timestamp", None),
            "received": now,
            "_event": ev,
        }

    def _retry_decryption(self) -> None:
        # A room key can arrive in a later sync than the message it opens.
        for i, msg in enumerate(self._pending):
            ev = msg["_event"]
            if isinstance(ev, nio.MegolmEvent):
                ev.room_id = msg["room_id"]
                try:
                    dec = self.client.decrypt_event(ev)
                except (nio.EncryptionError, nio.LocalProtocolError):
                    continue
                if isinstance(dec, nio.RoomMessage):
                    self._pending[i] = self._describe(msg["room_id"], dec, msg["received"])

    def _resolve_devices(self, msgs: list[dict]) -> None:
        """Name the sending device of each decrypted message (by its curve25519
        sender key), so a test can check it was the bot's matrix-commander device.

        Nothing needs trusting for decryption: matrix-commander sends with
        ``ignore_unverified_devices`` and nio decrypts from unverified devices.
        The bot uploads its device keys only with its first send, so its device is
        looked up (keys query) when needed rather than at setup.
        """
        def lookup(m):
            for dev in self.client.device_store.active_user_devices(m["sender"]):
                if dev.curve25519 == m["sender_key"]:
                    return dev.id
            return None
        missing = [m for m in msgs if m["decrypted"] and m["sender_key"]
                   and not m["sender_device"] and not lookup(m)]
        if missing:
            self.client.users_for_key_query.update(m["sender"] for m in missing)
            self._run(self.client.keys_query())
        for m in msgs:
            if m["decrypted"] and m["sender_key"]:
                m["sender_device"] = lookup(m)

    # -- public ----------------------------------------------------------------------
    def create_encrypted_room(self, alias_localpart: str, invite: list[str] = (),
                              room_version: str = "11") -> str:
        """Private room with an initial ``m.room.encryption`` (megolm) state event,
        the alias ``#alias_localpart:localhost`` and invites; returns the room id.

        Room version 11 because version 12 ids (no ``:server``) are rejected by
        matrix-commander 8.0.6; the alias is what the bot should use anyway.
        """
        resp = self._run(self.client.room_create(
            visibility=nio.RoomVisibility.private, alias=alias_localpart,
            preset=nio.RoomPreset.private_chat, room_version=room_version,
            invite=list(invite),
            initial_state=[{"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": MEGOLM}}]))
        if not isinstance(resp, nio.RoomCreateResponse):
            raise RuntimeError(f"room_create failed: {resp}")
        self._sync(0)
        return resp.room_id

    def wait_for_members(self, room_id: str, mxid: str, timeout: float = 10.0) -> None:
        """Until `mxid` has joined `room_id` (so the bot is a member before tests)."""
        deadline = time.monotonic() + timeout
        while True:
            room = self.client.rooms.get(room_id)
            if room and mxid in room.users and mxid not in room.invited_users:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{mxid} did not join {room_id}")
            self._sync(int(min(left, 5) * 1000))

    def wait_for_messages(self, n: int, timeout: float = 10.0) -> list[dict]:
        """The next `n` room messages, oldest first; fewer if `timeout` s pass.

        Each message is returned exactly once across calls.  A dict has ``body``,
        ``formatted_body``, ``format``, ``msgtype``, ``content`` (the whole decrypted
        content), ``event_id``, ``room_id``, ``sender``, ``wire_type`` and
        ``algorithm`` as they came over the wire, ``decrypted``, ``sender_key`` and
        ``sender_device`` (the device id that holds that key, e.g. the bot's
        matrix-commander device), ``origin_server_ts`` and ``received``
        (time.monotonic() when the sync answer carrying it arrived).

        A message that cannot be decrypted is still returned (``decrypted`` False,
        empty ``content``) once `timeout` has passed, so a test sees the failure.
        """
        deadline = time.monotonic() + timeout
        while len(self._pending) < n or any(not m["decrypted"] for m in self._pending[:n]):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._sync(int(max(min(left, 5), 0.05) * 1000))
            self._retry_decryption()
        out, self._pending = self._pending[:n], self._pending[n:]
        self._resolve_devices(out)
        return [{k: v for k, v in m.items() if k != "_event"} for m in out]

    def drain(self) -> list[dict]:
        """Everything that has arrived so far (one sync without waiting)."""
        self._sync(0)
        self._retry_decryption()
        return self.wait_for_messages(len(self._pending), timeout=0)

    def close(self) -> None:
        """Close the HTTP session and the loop; the device stays in workdir."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._run(self.client.close())
        self._loop.close()


def mc_env(home: str | os.PathLike, extra: dict | None = None) -> dict:
    """Environment for matrix-commander: HOME in a temp dir, because it writes
    ``~/.run/matrix-commander.<uuid>.pid`` on every run (left behind if it is
    killed).  PYTHON* variables of the test interpreter are dropped so they cannot
    leak into matrix-commander's own venv; pass them in `extra` if wanted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["HOME"] = str(home)
    env.update(extra or {})
    return env


def setup_bot(homeserver: Homeserver, mc_binary: str, creds_path: str | os.PathLike,
              store_dir: str | os.PathLike, room_alias: str, user: str, password: str,
              home: str | os.PathLike | None = None, device: str = "audit-notify") -> str:
    """Log matrix-commander in non-interactively and join `room_alias`.

    The user must exist and be invited.  stdin is /dev/null so nothing waits for a
    keyboard; HOME points at `home` (default: next to the store) so pid files stay
    out of /root.  Returns the bot's mxid.
    """
    store_dir = Path(store_dir)
    home = Path(home) if home else store_dir.parent / "mc-home"
    home.mkdir(parents=True, exist_ok=True)
    mxid = f"@{user}:{SERVER_NAME}"
    # One call does both (~1.1 s instead of ~2 s for two processes).
    argv = [mc_binary, "--login", "password", "--homeserver", homeserver.url,
            "--user-login", mxid, "--password", password, "--device", device,
            "--room-default", room_alias, "--room-join", room_alias,
            "-c", str(creds_path), "-s", str(store_dir), "--log-level", "ERROR", "ERROR"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=mc_env(home), timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"matrix-commander login/join failed ({r.returncode}): "
                           f"{r.stdout}{r.stderr}")
    return mxid


@dataclass
class MatrixWorld:
    """Everything a test needs; see matrix_world()."""

    homeserver: Homeserver
    receiver: Receiver
    room_alias: str
    room_id: str
    bot_mxid: str
    bot_device_id: str
    bot_password: str
    creds_path: Path
    store_dir: Path
    mc_home: Path
    mc_binary: str = MC_BINARY
    admin_token: str = ""

    def mc_command(self, *args: str) -> list[str]:
        """argv for matrix-commander with this world's credentials and store."""
        return [self.mc_binary, "-c", str(self.creds_path), "-s", str(self.store_dir), *args]

    def mc_env(self, extra: dict | None = None) -> dict:
        return mc_env(self.mc_home, extra)


@contextlib.contextmanager
def matrix_world(tmpdir: str | os.PathLike, *, default_ratelimits: bool = False,
                 mc_binary: str = MC_BINARY, synapse_python: str = SYNAPSE_PYTHON,
                 alias_localpart: str = "audit") -> Iterator[MatrixWorld]:
    """Homeserver, receiver ``@alice``, bot ``@bot`` (logged in with
    matrix-commander, joined) and an encrypted room ``#audit:localhost``.

    About 4 s (Synapse's start-up ~2.5 s is most of it).  On exit the receiver is
    closed and Synapse stopped by PID.  `default_ratelimits=True` keeps Synapse's
    real limits (0.2 msg/s, burst 10); ``world.homeserver.override_ratelimit(
    world.bot_mxid, world.admin_token)`` then lifts them for the bot, as an admin
    of a real server would.
    """
    tmp = Path(tmpdir).resolve()
    hs = Homeserver(tmp / "synapse", synapse_python=synapse_python,
                    default_ratelimits=default_ratelimits)
    receiver = None
    try:
        hs.start()
        admin = hs.register("admin", "admin-pw", admin=True)
        alice_pw, bot_pw = secrets.token_hex(12), secrets.token_hex(12)
        alice = hs.register("alice", alice_pw)
        bot = hs.register("bot", bot_pw)
        # Registration makes a device that nobody uses; log both out so the only
        # devices are the receiver's and matrix-commander's.
        for who in (alice, bot):
            _http_json(hs.url + "/_matrix/client/v3/logout", {}, token=who["access_token"])
        receiver = Receiver(hs, tmp / "receiver", "alice", alice_pw)
        alias = f"#{alias_localpart}:{SERVER_NAME}"
        room_id = receiver.create_encrypted_room(alias_localpart, invite=[bot["user_id"]])
        bot_dir = tmp / "bot"
        bot_dir.mkdir(exist_ok=True)
        creds, store, home = bot_dir / "credentials.json", bot_dir / "store", bot_dir / "home"
        bot_mxid = setup_bot(hs, mc_binary, creds, store, alias, "bot", bot_pw, home=home)
        receiver.wait_for_members(room_id, bot_mxid)
        yield MatrixWorld(homeserver=hs, receiver=receiver, room_alias=alias,
                          room_id=room_id, bot_mxid=bot_mxid, bot_password=bot_pw,
                          bot_device_id=json.loads(creds.read_text())["device_id"],
                          creds_path=creds, store_dir=store, mc_home=home,
                          mc_binary=mc_binary, admin_token=admin["access_token"])
    finally:
        if receiver:
            receiver.close()
        hs.stop()
