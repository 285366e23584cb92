"""A plugin under test: its config, a recording stand-in for matrix-commander
(fake_matrix_commander.py) and its log file, all in one temporary directory."""

import json
import os
import shutil
import subprocess
import sys
import time

from corpus import HERE, ROOT

SCRIPT = os.path.join(ROOT, "audit_notify.py")
WAIT = 30  # seconds; a bound for polling loops, never a sleep


class Rig:
    """A config, a stand-in matrix-commander and a log file in tmp_path."""

    def __init__(self, tmp_path, extra=""):
        self.dir = tmp_path
        self.mc_dir = tmp_path / "mc"
        self.mc_dir.mkdir()
        self.mc = str(self.mc_dir / "matrix-commander")
        shutil.copy(os.path.join(HERE, "fake_matrix_commander.py"), self.mc)
        os.chmod(self.mc, 0o755)
        self.log = tmp_path / "log" / "audit-notify.log"
        self.log.parent.mkdir(mode=0o700)
        self.blacklist = tmp_path / "blacklist"
        self.blacklist.write_text("")
        (tmp_path / "state").mkdir()
        # The bot's login, as matrix-commander leaves it (world-readable).
        (tmp_path / "creds.json").write_text("{}")
        (tmp_path / "store").mkdir()
        self.config = tmp_path / "audit-notify.conf"
        self.write_config(extra)

    def write_config(self, extra=""):
        self.config.write_text(
            "matrix_commander = %s\ncredentials = %s/creds.json\nstore = %s/store\nroom = #audit:localhost\n"
            "blacklist = %s\nlog_file = %s\nstate_dir = %s/state\nspool_dir = %s/spool\nmax_messages_per_minute = 0\n%s%s"
            % (self.mc, self.dir, self.dir, self.blacklist, self.log, self.dir, self.dir,
               "" if "user =" in extra else "user = root\n", extra))

    def mode(self, mode):
        (self.mc_dir / "mode").write_text(mode)

    def calls(self):
        """What the stand-in was given, one dict per event it read."""
        path = self.mc_dir / "calls.jsonl"
        if not path.exists():
            return []
        # Only whole lines: the stand-in may be half-way through writing a
        # long one (a 30 KB line is several write()s) while a test polls.
        text = path.read_text()
        return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]

    def bodies(self, mode="ok"):
        """The bodies of the events the stand-in acknowledged."""
        return [json.loads(c["event"])["content"]["body"] for c in self.calls() if c["mode"] == mode]

    def messages(self):
        """The room as a reader sees it: each acknowledged message's body
        after its edits (an m.replace event changes the one it names)."""
        shown, order = {}, []
        for call in self.calls():
            if call["mode"] != "ok":
                continue
            content = json.loads(call["event"])["content"]
            relates = content.get("m.relates_to") or {}
            if relates.get("rel_type") == "m.replace" and relates.get("event_id") in shown:
                shown[relates["event_id"]] = content["m.new_content"]["body"]
                continue
            shown[call["event_id"]] = content["body"]
            order.append(call["event_id"])
        return [shown[event_id] for event_id in order]

    def start(self, *args):
        return subprocess.Popen([sys.executable, SCRIPT, "--config", str(self.config)] + list(args),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""

    def wait_for(self, predicate, what):
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s; log:\n%s" % (what, self.log_text()))


