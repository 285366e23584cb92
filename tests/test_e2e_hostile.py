"""Hostile SSH usernames, end to end and all real.

A private sshd on 127.0.0.1 (UsePAM yes) is sent failed password logins
whose usernames the test chooses (paramiko sends any bytes as they are).  PAM
writes each name into a USER_AUTH record of a private real auditd, whose
plugin is audit_notify.py; it sends through the real matrix-commander to a
real Synapse, and a matrix-nio client reads the encrypted room.  For every
name: its message arrives once, in the configured room only, showing the
name visibly escaped, with no live markup of the attacker's and no mention.

What reaches the audit log is not what was sent (measured on Debian 12,
OpenSSH 9.2p1, Linux-PAM 1.5.2, libaudit 3.0.9); VECTORS records both:

* sshd cuts the name at the first ``:`` (the BSD auth "style") and at the
  first ``/`` (Debian's SELinux "user/role" patch):
  ``--room=#other:localhost`` arrives as ``--room=#other``,
  ``@alice:localhost`` as ``@alice``, and no ``</tag>`` or URL survives;
* libaudit keeps the first 32 bytes (UT_NAMESIZE) of ``acct``, so a long
  name is cut -- in the middle of a UTF-8 character if need be, which makes
  invalid UTF-8 of valid input;
* a name with a NUL makes sshd drop the connection ("ssh_dispatch_run_fatal:
  ... invalid format"): nothing is logged;
* ``acct`` is hex-encoded when it has a byte outside 0x21..0x7e or a ``"``;
* the attacker's name is only in USER_AUTH: sshd's USER_LOGIN records of an
  unknown user say ``(invalid user)``.

"No mention fires" is proved by Synapse's own push-rule evaluator: it
cannot read the encrypted room, so each decrypted message with the
attacker's text is sent again, unchanged, by the bot (power level 100, so
it could ping @room) into a plaintext room, and the reader's highlights are
read back from /notifications (with controls that must highlight).

The run takes 20-60 s (20 s on an idle 2-CPU VM); per vector,
what reached the log and what the room showed is written to report.txt in
the test's temporary directory.
"""

from __future__ import annotations

import concurrent.futures
import html
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Optional

import pytest
from auditd_env import _children, auditd_unavailable_reason, private_auditd
from matrix_env import free_port, matrix_world
from rig import SCRIPT
from test_e2e_matrix import Plugin

SSHD = "/usr/sbin/sshd"


def _unavailable() -> Optional[str]:
    reason = auditd_unavailable_reason()
    if reason:
        return reason
    if not os.access(SSHD, os.X_OK):
        return "%s not installed (apt-get install openssh-server)" % SSHD
    if importlib.util.find_spec("paramiko") is None:
        return "paramiko is not installed in this interpreter"
    return None


_reason = _unavailable()
pytestmark = [pytest.mark.matrix, pytest.mark.auditd, pytest.mark.skipif(_reason is not None, reason=_reason or "")]

NODE = socket.gethostname()  # the plugin's default node name
PEER = "127.0.0.1"
BEGIN, END = "an-hostile-begin", "an-hostile-end"
ALLOWED_TAGS = {"b", "code", "br"}  # what audit_notify.py itself writes
# Characters that must never reach a reader raw (as the plugin's clean()).
INVISIBLE = ("Cc", "Cf", "Zl", "Zp", "Cs")


@dataclass(frozen=True)
class Vector:
    id: str
    sent: bytes                 # the SSH username, as paramiko sends it
    logged: Optional[bytes]     # acct of the USER_AUTH record (None: no record)
    shown: Optional[str]        # how the name must read in the message


def V(vid, sent, logged=..., shown=...):  # noqa: N802
    """logged defaults to sent, shown to logged as text."""
    sent_b = sent if isinstance(sent, bytes) else sent.encode("utf-8")
    logged_b = sent_b if logged is ... else logged if logged is None or isinstance(logged, bytes) \
        else logged.encode("utf-8")
    if shown is ...:
        shown = logged_b.decode("utf-8")
    return Vector(vid, sent_b, logged_b, shown)


# Expected values are written out by hand (not computed with the plugin's
# own clean()): \uXXXX / \xXX / \n are the visible escapes, @ is U+FF20.
VECTORS = [
    V("html_img", "<img src=x onerror=alert(1)>"),
    V("html_a", '<a href="?x">click me'),
    V("html_a_url", '<a href="https://evil.example/">x</a>', '<a href="https'),  # sshd cuts at ':'
    V("html_nest", "<b>x<code>y<br><script>"),
    V("html_entity", "&lt;img&gt;&#64;room&amp;"),
    V("md_link", "[click me](evil.example)"),
    V("md_emph", "**bold**_em_`code`~~s~~"),
    V("room_mention", "@room", shown="\uff20room"),
    V("user_mention", "@alice:localhost", "@alice", "\uff20alice"),
    V("room_mention_zw", "@\u200broom", shown="\uff20\\u200broom"),
    V("bidi_rlo", "\u202egnp.exe", shown="\\u202egnp.exe"),
    V("bidi_mix", "x\u202d\u2066y\u2069\u202c\u200f", shown="x\\u202d\\u2066y\\u2069\\u202c\\u200f"),
    V("zero_width", "ro\u200bot\u200c\u200d\ufeff\u2060", shown="ro\\u200bot\\u200c\\u200d\\ufeff\\u2060"),
    V("opt_room", "--room=#other:localhost", "--room=#other"),
    V("opt_x", "-x"),
    V("opt_help", "--help"),
    V("dash", "-"),
    V("underscore", "_"),
    V("double_dash", "--"),
    V("opt_newline", "-m\n--room=#other", shown="-m\\n--room=#other"),
    V("newline", "root\nFailed SSH login for root", shown="root\\nFailed SSH login for root"),
    V("crlf_tab", "x\r\n@room\tz", shown="x\\r\\n\uff20room\\tz"),
    V("ansi_escape", "\x1b[31mred\x1b[0m", shown="\\x1b[31mred\\x1b[0m"),
    V("line_separators", "a\u2028b\u2029c\x85d", shown="a\\u2028b\\u2029c\\x85d"),
    V("spoof_source", "root from 203.0.113.9"),
    V("long_ascii", "A" * 300, "A" * 32),  # libaudit keeps 32 bytes
    V("long_bidi", "\u202e" * 16, "\u202e".encode() * 10 + b"\xe2\x80", "\\u202e" * 10 + "\\xe2\\x80"),
    V("long_accents", "\u00e9" * 40, "\u00e9" * 16),
    V("invalid_utf8", b"bad\xff\xfeutf8\xc3(", shown="bad\\xff\\xfeutf8\\xc3("),
    V("invalid_utf8_overlong_surrogate", b"\xc0\xaf\xed\xa0\x80\x80", shown="\\xc0\\xaf\\xed\\xa0\\x80\\x80"),
    V("literal_escape", "lit\\u202e", shown="lit\\\\u202e"),  # a literal backslash is shown doubled
    # An empty acct: the plugin falls back to the auid ("unset"); see the report.
    V("empty", "", shown=None),
    V("nul", b"ro\x00ot", None, None),  # sshd drops the connection
]


# ---------------------------------------------------------------------------
# helpers


def _api(world, method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(world.homeserver.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise RuntimeError("%s %s: HTTP %d %r" % (method, path, e.code, e.read()[:500])) from None


def _q(text):
    return urllib.parse.quote(text, safe="")


def _bot_power(world, room_id, alice, bot_mxid):
    """The bot may ping the whole room (power 100), as a real bot often can:
    so an @room that leaked would really fire."""
    path = "/_matrix/client/v3/rooms/%s/state/m.room.power_levels" % _q(room_id)
    levels = _api(world, "GET", path, alice)
    levels.setdefault("users", {})[bot_mxid] = 100
    _api(world, "PUT", path, alice, levels)


def _plain_room(world, alice, bot, bot_mxid, name):
    room = _api(world, "POST", "/_matrix/client/v3/createRoom", alice, {
        "preset": "private_chat", "room_version": "11", "name": name, "invite": [bot_mxid],
        "power_level_content_override": {"users": {world.receiver.user_id: 100, bot_mxid: 100}},
    })["room_id"]
    _api(world, "POST", "/_matrix/client/v3/join/%s" % _q(room), bot, {})
    return room


def _send(world, token, room_id, content):
    path = "/_matrix/client/v3/rooms/%s/send/m.room.message/%s" % (_q(room_id), uuid.uuid4().hex)
    return _api(world, "PUT", path, token, content)["event_id"]


def _notifications(world, alice):
    """Every push notification of the reader: event id -> highlighted?"""
    found, token = {}, None
    for _ in range(50):
        path = "/_matrix/client/v3/notifications?limit=1000" + ("&from=%s" % _q(token) if token else "")
        page = _api(world, "GET", path, alice)
        for item in page.get("notifications", []):
            found[item["event"]["event_id"]] = any(
                isinstance(a, dict) and a.get("set_tweak") == "highlight" and a.get("value", True) is not False
                for a in item.get("actions", []))
        token = page.get("next_token")
        if not token:
            break
    return found


class HtmlFacts(HTMLParser):
    """What a Matrix client would make of formatted_body."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.other, self.code, self.data = [], [], [], [], []
        self._in_code = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        if tag == "code":
            self._in_code = []

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "code" and self._in_code is not None:
            self.code.append("".join(self._in_code))
            self._in_code = None

    def handle_data(self, data):
        self.data.append(data)
        if self._in_code is not None:
            self._in_code.append(data)

    def handle_comment(self, data):
        self.other.append("<!--%s-->" % data)

    def handle_decl(self, decl):
        self.other.append("<!%s>" % decl)

    def unknown_decl(self, data):
        self.other.append("<![%s]>" % data)

    def handle_pi(self, data):
        self.other.append("<?%s>" % data)

    @property
    def text(self):
        return "".join(self.data)


_ACCT = re.compile(r' acct=("[^"]*"|[0-9A-F]*) ')
_SERIAL = re.compile(r"msg=audit\(\d+\.\d+:(\d+)\)")
_MSG_SERIAL = re.compile(r"^event: .* #(\d+) at ", re.M)


def _acct_bytes(line):
    raw = _ACCT.search(line).group(1)
    return raw[1:-1].encode("utf-8") if raw.startswith('"') else bytes.fromhex(raw)


def _sshd_auth_lines(text):
    return {int(_SERIAL.search(line).group(1)): line for line in text.split("\n")
            if line.startswith("type=USER_AUTH ") and 'exe="/usr/sbin/sshd"' in line}


def _serial_of(message):
    found = _MSG_SERIAL.search(message["body"] or "")
    return int(found.group(1)) if found else None


def _attempt(port, username, out):
    """One failed password login; paramiko puts the bytes on the wire as they are."""
    import paramiko

    transport = None
    try:
        sock = socket.create_connection((PEER, port), timeout=15)
        out["port"] = sock.getsockname()[1]
        transport = paramiko.Transport(sock)
        transport.start_client(timeout=15)
        transport.auth_password(username, "not-the-password", fallback=False)
        out["result"] = "accepted?!"
    except Exception as exc:  # noqa: BLE001 - the outcome is recorded and checked
        out["result"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        if transport is not None:
            transport.close()


# ---------------------------------------------------------------------------
# the run: one Synapse, one auditd, one sshd for every vector


def _start_sshd(work, port):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "hostkey")], check=True)
    config = work / "sshd_config"
    config.write_text(
        "Port %d\nListenAddress %s\nHostKey %s/hostkey\nPidFile %s/sshd.pid\n"
        "UsePAM yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication no\nPermitRootLogin no\nUseDNS no\nLogLevel VERBOSE\n"
        "MaxAuthTries 50\nMaxStartups 200\nPerSourceMaxStartups none\n" % (port, PEER, work, work))
    os.chmod(config, 0o600)
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
    log = open(work / "sshd.log", "wb")
    try:
        sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log)
    finally:
        log.close()
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((PEER, port), 1).close()
            return sshd
        except OSError:
            if sshd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sshd did not start: %s" % (work / "sshd.log").read_text())
            time.sleep(0.05)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _drive(auditd, port):
    """The vectors one after another: each is started once the previous one's
    USER_AUTH is in the log (so record i belongs to vector i), without
    waiting out PAM's ~2 s failure delay."""
    attempts, threads = {}, []
    for vector in VECTORS:
        before = set(_sshd_auth_lines(auditd.log_text()))
        out = {}
        thread = threading.Thread(target=_attempt, args=(port, vector.sent, out), daemon=True)
        thread.start()
        threads.append(thread)
        done_at, new = None, []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            lines = _sshd_auth_lines(auditd.log_text())
            new = sorted(set(lines) - before)
            if new:
                break
            if not thread.is_alive():
                done_at = done_at or time.monotonic()
                if time.monotonic() - done_at > 1.5:
                    break
            time.sleep(0.02)
        attempts[vector.id] = dict(out=out, serials=new, line=lines[new[0]] if new else None)
    for thread in threads:
        thread.join(30)
    return attempts


def _collect(receiver, serials, timeout):
    """Room messages until every serial and both sentinels have come."""
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        have = {_serial_of(m) for m in got}
        bodies = " ".join(m["body"] or "" for m in got)
        missing = len(serials - have) + (BEGIN not in bodies) + (END not in bodies)
        if not missing:
            break
        got += receiver.wait_for_messages(missing, timeout=max(0.1, min(3, end - time.monotonic())))
    return got + receiver.drain()


class Run(dict):
    """The run's results; a short repr, so that a failing test does not print them all."""

    def __repr__(self):
        return "<hostile run in %s>" % self.get("tmp")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Everything happens here, once; the tests only look at the result."""
    tmp = tmp_path_factory.mktemp("hostile")
    started = time.monotonic()
    utmp = {p: os.path.getsize(p) for p in ("/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog")
            if os.path.exists(p)}
    made_run_sshd = not os.path.exists("/run/sshd")
    sshd = None
    result = Run(tmp=tmp)
    marks = result["marks"] = []

    def mark(what):
        marks.append((what, time.monotonic() - started))
    try:
        with matrix_world(tmp / "matrix") as world:
            alice = world.receiver.client.access_token
            bot = json.loads(world.creds_path.read_text())["access_token"]
            # A second encrypted room the bot is in: nothing may ever land there.
            other = world.receiver.create_encrypted_room("other", invite=[world.bot_mxid])
            _api(world, "POST", "/_matrix/client/v3/join/%s" % _q("#other:localhost"), bot, {})
            for room in (world.room_id, other):
                _bot_power(world, room, alice, world.bot_mxid)
            mark("matrix world and rooms")
            # One message per event: each attacker's name gets a headline of
            # its own (grouped, one source's failures are one incident that
            # names five; test_fuzz renders hostile names in incidents).
            plugin = Plugin(world, tmp, extra="digest_after = 0\nmax_messages_per_minute = 0\ngroup_events = no\n")
            work = tmp / "sshd"
            work.mkdir()
            port = free_port()
            with private_auditd(tmp, plugin_path=SCRIPT, plugin_args=("--config=%s" % plugin.config,)) as auditd:
                try:
                    if made_run_sshd:  # sshd's privilege separation directory
                        os.makedirs("/run/sshd", 0o755, exist_ok=True)
                    sshd = _start_sshd(work, port)
                    auditd.user_message(BEGIN)
                    mark("auditd and sshd")
                    attempts = _drive(auditd, port)
                    mark("logins tried")
                    deadline = time.monotonic() + 30  # sshd writes the last USER_LOGIN as each session ends
                    while _children(sshd.pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    auditd.user_message(END)
                    log = auditd.wait_for(lambda text: END in text and text, timeout=10)
                    sshd_serials = {int(_SERIAL.search(line).group(1)) for line in log.split("\n")
                                    if 'exe="/usr/sbin/sshd"' in line}
                    mark("sshd sessions over")
                    messages = _collect(world.receiver, sshd_serials, timeout=120)
                    mark("messages received")
                finally:
                    if sshd is not None:
                        _stop(sshd)
                audit_log = auditd.log_text()
            end = time.monotonic() + 15
            while not plugin.exit_line() and time.monotonic() < end:
                time.sleep(0.1)
            messages += world.receiver.drain()
            mark("auditd and plugin stopped")

            # Synapse's push rules on the exact decrypted contents (and, as a
            # pre-Matrix-1.7 client would judge them, without m.mentions).
            replay = _plain_room(world, alice, bot, world.bot_mxid, "replay")
            legacy = _plain_room(world, alice, bot, world.bot_mxid, "replay-legacy")
            # The messages with attacker text (the USER_AUTHs) and the sentinels;
            # the "(invalid user)" ones are checked in test_every_message_is_inert.
            wanted = {s for a in attempts.values() for s in a["serials"]}
            mine = [m for m in messages if m["room_id"] == world.room_id and m["decrypted"]
                    and (_serial_of(m) in wanted or BEGIN in m["body"] or END in m["body"])]
            with concurrent.futures.ThreadPoolExecutor(8) as pool:  # order does not matter here
                replayed = dict(zip(pool.map(lambda m: _send(world, bot, replay, m["content"]), mine), mine))
                legacy_replayed = dict(zip(pool.map(lambda m: _send(world, bot, legacy, {
                    k: v for k, v in m["content"].items() if k != "m.mentions"}), mine), mine))
            controls = {
                _send(world, bot, replay, {"msgtype": "m.text", "body": "control: intentional user mention",
                                           "m.mentions": {"user_ids": [world.receiver.user_id]}}): "user_ids",
                _send(world, bot, replay, {"msgtype": "m.text", "body": "control: intentional room mention",
                                           "m.mentions": {"room": True}}): "room",
                _send(world, bot, legacy, {"msgtype": "m.text", "body": "control: @room legacy"}): "legacy @room",
            }
            mark("replayed")
            notes = _notifications(world, alice)
            sync = _api(world, "GET", "/_matrix/client/v3/sync?timeout=0", alice)
            other_events = _api(world, "GET", "/_matrix/client/v3/rooms/%s/messages?dir=b&limit=1000" % _q(other),
                                alice)["chunk"]
            result.update(
                world=dict(room_id=world.room_id, bot=world.bot_mxid, other=other, reader=world.receiver.user_id),
                attempts=attempts, audit_log=audit_log, sshd_serials=sshd_serials, messages=messages,
                sshd_log=(work / "sshd.log").read_bytes().decode("utf-8", "backslashreplace"),
                plugin_exit=plugin.exit_line(), plugin_log=plugin.log_text(),
                replayed=replayed, legacy_replayed=legacy_replayed, controls=controls, notifications=notes,
                unread=sync.get("rooms", {}).get("join", {}).get(world.room_id, {}).get("unread_notifications", {}),
                other_events=other_events)
    finally:
        if sshd is not None:
            _stop(sshd)
        if made_run_sshd:
            shutil.rmtree("/run/sshd", ignore_errors=True)
        for path, size in utmp.items():  # sshd wrote the failed logins to btmp
            if os.path.getsize(path) > size:
                os.truncate(path, size)
    result["seconds"] = time.monotonic() - started
    _write_report(result)
    return result


def _by_serial(run):
    found = {}
    for m in run["messages"]:
        found.setdefault(_serial_of(m), []).append(m)
    return found


def _write_report(run):
    """tmp/report.txt: per vector, what reached the log and what was shown."""
    by_serial = _by_serial(run) if "messages" in run else {}
    lines = ["run took %.1f s; " % run["seconds"] + ", ".join("%s at %.1f s" % m for m in run["marks"])]
    for vector in VECTORS:
        attempt = run.get("attempts", {}).get(vector.id, {})
        line = attempt.get("line")
        acct = _ACCT.search(line).group(1) if line else None
        shown = [m for s in attempt.get("serials", []) for m in by_serial.get(s, [])]
        lines.append("%s: sent %r -> %s" % (vector.id, vector.sent, attempt.get("out", {}).get("result")))
        lines.append("    audit acct=%s (%r)" % (acct, _acct_bytes(line) if line else None))
        port = attempt.get("out", {}).get("port")
        lines += ["    sshd: %s" % said for said in run.get("sshd_log", "").split("\n")
                  if port and re.search(r" port %d(\D|$)" % port, said)]
        for m in shown:
            lines.append("    body:  %r" % m["body"].split("\n")[0])
            lines.append("    html:  %r" % m["formatted_body"].split("<br>")[0])
    notes = run.get("notifications", {})
    for name in ("replayed", "legacy_replayed"):
        lines.append("%s: %d sent again, highlighted: %r" % (name, len(run.get(name, {})), [
            m["body"].split("\n")[0] for event_id, m in run.get(name, {}).items() if notes.get(event_id)]))
    lines.append("controls highlighted: %r" % {what: notes.get(e) for e, what in run.get("controls", {}).items()})
    (run["tmp"] / "report.txt").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# per vector


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_vector(run, vector):
    attempt = run["attempts"][vector.id]
    assert attempt["out"].get("result", "").startswith("AuthenticationException"), attempt
    if vector.logged is None:
        assert attempt["serials"] == [], "sshd was expected to refuse %r, but PAM logged it" % vector.sent
        return
    assert len(attempt["serials"]) == 1, "no USER_AUTH (or several) for %r: %r" % (vector.sent, attempt)
    [serial] = attempt["serials"]
    assert _acct_bytes(attempt["line"]) == vector.logged, \
        "sshd/PAM/libaudit logged another name than measured on Debian 12: %s" % attempt["line"]

    found = _by_serial(run).get(serial, [])
    assert len(found) == 1, "USER_AUTH #%d (%r) arrived %d times" % (serial, vector.sent, len(found))
    [m] = found
    where = "vector %s, message %r" % (vector.id, m["body"])
    # In the right room, from the bot, end-to-end encrypted.
    assert m["room_id"] == run["world"]["room_id"], where
    assert m["sender"] == run["world"]["bot"], where
    assert (m["wire_type"], m["algorithm"], m["decrypted"]) == ("m.room.encrypted", "m.megolm.v1.aes-sha2", True)
    content = m["content"]
    assert content["msgtype"] == "m.text" and content["format"] == "org.matrix.custom.html", where
    # No mention: m.mentions is empty and no @room / @user:server is in the text.
    assert content.get("m.mentions") == {}, where
    body, formatted = m["body"], m["formatted_body"]
    for text in (body, formatted):
        assert "@" not in text and "matrix.to" not in text, where
    # Nothing invisible: every line of the body and of the HTML (the plugin
    # joins them with "\n" and "<br>\n") is printable.
    for line in body.split("\n") + formatted.split("<br>\n"):
        bad = [c for c in line if unicodedata.category(c) in INVISIBLE]
        assert not bad, "%s: raw invisible characters %r" % (where, bad)
    # HTML: only the plugin's own tags, no attributes, nothing else.
    facts = HtmlFacts(formatted)
    assert set(facts.tags) <= ALLOWED_TAGS, "%s: tags %r" % (where, facts.tags)
    assert facts.attrs == [] and facts.other == [], "%s: %r %r" % (where, facts.attrs, facts.other)
    assert facts.tags.count("code") == len(facts.code), "%s: unbalanced <code>" % where

    headline = body.split("\n")[0]
    prefix = "\u26a0\ufe0f\u274c %s: Failed SSH authentication for " % NODE
    suffix = " from %s" % PEER
    assert headline.startswith(prefix) and headline.endswith(suffix), where
    if vector.shown is None:
        return
    # Shown visibly: the escaped name in the headline (between “ ” unless
    # it is plain: a name must not read as more of the sentence), and in
    # <code> as text a client renders literally.  A "user:" detail line (the
    # plugin may leave it out when the headline says it) must read the same.
    bare = re.fullmatch(r"[\w./:@\uff20+%,=~\[\]\\-]+", vector.shown) and not vector.shown.startswith("-")
    plain = vector.shown if bare else "\u201c%s\u201d" % vector.shown
    assert headline == prefix + plain + suffix, where
    escaped = html.escape(vector.shown)
    assert formatted.startswith("\u26a0\ufe0f\u274c <b><code>%s</code>: Failed SSH authentication for <code>%s</code> "
                                "from <code>%s</code></b>" % (html.escape(NODE), escaped, PEER)), where
    # The host is the first <code> (it comes first), the name the second.
    assert facts.code[:2] == [NODE, vector.shown] and vector.shown in facts.text, \
        "%s: code texts %r" % (where, facts.code)
    users = [line for line in body.split("\n") if line.startswith("user: ")]
    assert users in ([], ["user: " + plain]), where
    html_users = [line for line in formatted.split("<br>\n") if line.startswith("user: ")]
    assert html_users in ([], ["user: <code>%s</code>" % escaped]), where


# ---------------------------------------------------------------------------
# the whole run


def test_every_event_arrives_once_and_only_in_the_configured_room(run):
    by_serial = _by_serial(run)
    counts = {s: len(by_serial.get(s, [])) for s in run["sshd_serials"]}
    missing = sorted(s for s, n in counts.items() if n == 0)
    twice = sorted(s for s, n in counts.items() if n > 1)
    assert not missing and not twice, "sshd events missing %r / repeated %r" % (missing, twice)
    # Each vector made 1 USER_AUTH and some USER_LOGINs; all of them came.
    logged = [v for v in VECTORS if v.logged is not None]
    assert len(_sshd_auth_lines(run["audit_log"])) == len(logged)
    bodies = [m["body"] for m in run["messages"]]
    assert sum(BEGIN in b for b in bodies) == 1 and sum(END in b for b in bodies) == 1
    rooms = {m["room_id"] for m in run["messages"]}
    assert rooms == {run["world"]["room_id"]}, rooms
    exit_line = run["plugin_exit"]
    numbers = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", exit_line.split(";")[0])}
    assert numbers["failed"] == 0 and numbers["errors"] == 0 and numbers["dropped"] == 0, exit_line
    # All it read became a notification; all but what came with auditd's
    # own stop (spooled for the next start, never lost) was delivered.
    # (auditd's own stop record, the last event, is the next run's to tell:
    # lifecycle.py keeps the stop in the spool's state for it.)
    assert numbers["events"] == numbers["notified"], exit_line
    assert numbers["notified"] - 1 <= numbers["sent"] + numbers["spooled"] <= numbers["notified"], exit_line
    assert numbers["sent"] == len(run["messages"]) and numbers["spooled"] <= 1, exit_line


def test_every_message_is_inert(run):
    """Also the ones without the attacker's text (USER_LOGIN "(invalid user)",
    the sentinels): no mention, only the plugin's own tags."""
    for m in run["messages"]:
        assert m["decrypted"] and m["wire_type"] == "m.room.encrypted", m
        assert m["content"].get("m.mentions") == {}, m["body"]
        assert "@" not in m["body"] and "@" not in m["formatted_body"], m["body"]
        facts = HtmlFacts(m["formatted_body"])
        assert set(facts.tags) <= ALLOWED_TAGS and facts.attrs == [] and facts.other == [], m["formatted_body"]


def test_nothing_reaches_the_other_room(run):
    other = run["world"]["other"]
    assert not [m for m in run["messages"] if m["room_id"] == other]
    bot_events = [e for e in run["other_events"]
                  if e.get("sender") == run["world"]["bot"] and e.get("type") != "m.room.member"]
    assert bot_events == [], bot_events


def test_no_mention_fires_by_synapses_push_rules(run):
    notes = run["notifications"]
    # The controls prove highlights are seen (and the bot may ping @room).
    for event_id, what in run["controls"].items():
        assert notes.get(event_id) is True, "control %s did not highlight: %r" % (what, notes.get(event_id))
    assert set(run["replayed"]) <= set(notes), "Synapse did not evaluate every replayed message"
    highlighted = [m["body"] for event_id, m in run["replayed"].items() if notes[event_id]]
    assert highlighted == []
    # The encrypted room itself: Synapse can only say "encrypted", never highlight.
    assert run["unread"].get("highlight_count", 0) == 0, run["unread"]


def test_without_m_mentions_only_the_readers_own_name_would_highlight(run):
    """As a client without intentional mentions (before Matrix 1.7) would
    judge the same text: "@room" cannot fire (it is "＠room"); the only
    highlight left is the reader's own name as a word, which no escaping
    can remove (vector user_mention: "＠alice")."""
    notes = run["notifications"]
    assert set(run["legacy_replayed"]) <= set(notes)
    highlighted = [m["body"] for event_id, m in run["legacy_replayed"].items() if notes[event_id]]
    reader = run["world"]["reader"][1:].split(":")[0]
    assert [b for b in highlighted if not re.search(r"\b%s\b" % reader, b, re.I)] == []
