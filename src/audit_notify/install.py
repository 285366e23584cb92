"""`audit-notify setup` and `uninstall`: what the original's users did by hand.

Every step is idempotent and says what it did; nothing the admin edited
is overwritten.  Every answer has a flag, so both run unattended (the
password comes from a file or stdin, never argv).  Paths are under
``--root``, so tests install into a directory; under a root other than /
nothing outside it is touched: the system user is neither created nor
removed, the line that would do it is printed instead.  What setup needs
from outside (matrix-commander, the user) is checked before anything is
written; a step that fails later says what the steps before it left.
The plugin's own run path never imports this module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pkgutil
import pwd
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import List, Sequence

from . import bundle, host
from .config import DEFAULT_MATRIX_COMMANDER, INSTALL_PATHS, Config, Error
from .matrix import first_error_line, matrix_api, mc_argv, mc_env, run_as, send_once, test_content
from .privileges import Account, lookup_user, private_dir


@dataclass
class Answers:
    """What setup needs to know; asked for interactively when missing."""

    homeserver: str = ""
    bot: str = ""
    password: str = ""
    access_token: str = ""
    device: str = ""
    room: str = ""
    user: str = "audit-notify"
    matrix_commander: str = DEFAULT_MATRIX_COMMANDER


def useradd_argv(name: str) -> List[str]:
    """The system user the plugin becomes: no home of its own to create (its
    HOME is the state directory, which setup makes), no login shell."""
    return ["useradd", "--system", "--home-dir", INSTALL_PATHS["state_dir"], "--no-create-home",
            "--shell", "/usr/sbin/nologin", name]


class Setup:
    """`audit-notify setup` / `uninstall`: every step idempotent, every
    step said.  Paths are under ``root`` (tests install into a directory);
    a root other than / is a tree apart: the host's users are left alone."""

    def __init__(self, answers: Answers, root: str, out, run=subprocess.run):
        root = os.path.abspath(root)  # a relative root would write paths that resolve elsewhere
        self.answers, self.root, self.out, self.run = answers, root, out, run
        self.on_host = os.path.realpath(root) == "/"
        self.left: List[str] = []  # what this run wrote, said if a later step fails
        self.paths = {k: os.path.join(root, v.lstrip("/")) for k, v in INSTALL_PATHS.items()}
        config_dir, state = self.paths["config_dir"], self.paths["state_dir"]
        self.config_path = os.path.join(config_dir, "audit-notify.conf")
        self.config = Config(matrix_commander=answers.matrix_commander,
                             credentials=os.path.join(config_dir, "credentials.json"),
                             store=os.path.join(state, "store"), room=answers.room,
                             blacklist=os.path.join(config_dir, "blacklist"), state_dir=state,
                             spool_dir=os.path.join(state, "spool"), user=answers.user, source=self.config_path)

    def say(self, text: str):
        self.out.write(text + "\n")
        self.out.flush()

    def install(self, send_test: bool = True) -> int:
        """Check what setup needs from outside, then install step by step;
        a step that fails says why and what the steps before it left."""
        self._check_matrix_commander()
        account = self._user()
        try:
            self._dirs(account)
            self._executable()
            self._config()
            self._login(account)
            self._join(account)
            self._plugin_entry()
            self._relabel()
            if send_test:
                ok, detail = send_once(self.config, test_content("setup"), account, self.run)
                if not ok:
                    raise Error("the test notification was not sent: %s" % detail)
                self.say("sent a test notification (%s)" % detail)
        except (Error, OSError, subprocess.CalledProcessError) as exc:
            raise Error("%s\n%s" % (exc, self._what_is_left())) from None
        self.say("done. Now restart auditd so that it starts the plugin: service auditd restart\n"
                 "and check it: %s --check --config %s" % (self.paths["executable"], self.config_path))
        return 0

    def _what_is_left(self) -> str:
        if not self.left:
            return "setup stopped before writing anything."
        return ("setup stopped; this run wrote %s. Fix the above and run setup again (it keeps what is there and "
                "goes on), or remove it all with: %s" % (", ".join(self.left), self.purge_command()))

    def purge_command(self) -> str:
        """The exact command that removes this install: from its own copy
        of the plugin (which the purge removes last), or, before that copy
        is installed, from the program running now."""
        program = self.paths["executable"]
        if not os.path.exists(program):
            program = "%s %s" % (sys.executable, os.path.abspath(sys.argv[0]))
        flags = "" if self.on_host else " --root %s" % self.root
        if self.answers.user != "audit-notify":
            flags += " --user %s" % self.answers.user
        return "%s uninstall --purge%s" % (program, flags)

    def _check_matrix_commander(self):
        """Before anything is written: setup cannot log in without it."""
        program = self.answers.matrix_commander
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise Error("matrix-commander is not installed at %s (or not executable). Install it first: "
                        "PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install matrix-commander "
                        "(README, Install), or give its path with --matrix-commander. setup wrote nothing."
                        % program)

    def _user(self) -> Account:
        """The system user, created on the host; under another root, the
        host's users are not ours to change: say the line and stop."""
        name = self.answers.user
        if name != "root":
            try:
                pwd.getpwnam(name)
            except KeyError:
                line = " ".join(useradd_argv(name))
                if not self.on_host:
                    raise Error("user %s does not exist, and setup --root %s creates no user on this system. Run "
                                "on the host the plugin will run on:\n  %s\nthen run setup again. setup wrote "
                                "nothing." % (name, self.root, line)) from None
                self.run(useradd_argv(name), check=True)
                self.say("created system user %s" % name)
                self.left.append("the user %s" % name)
        return lookup_user(name)

    def _dirs(self, account: Account):
        config_dir = self.paths["config_dir"]
        for path in (config_dir, self.config.state_dir):
            if not os.path.isdir(path):
                self.left.append(path + "/")
        os.makedirs(config_dir, mode=0o750, exist_ok=True)
        os.chown(config_dir, 0, account.gid)  # the user may read its config (SIGHUP reload)
        os.chmod(config_dir, 0o750)
        for path in (self.config.state_dir, self.config.spool_dir):
            private_dir(path, account)
        os.makedirs(os.path.dirname(self.paths["plugins_d"]), exist_ok=True)

    def _executable(self):
        """The one-file plugin (bundle.py): this copy when it is one, else
        built from the package's sources."""
        target, data = self.paths["executable"], bundle.build()
        if os.path.exists(target):
            with open(target, "rb") as handle:
                if handle.read() == data:
                    self.say("plugin already installed: %s" % target)
                    return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        bundle.write(target, data)
        self.say("installed the plugin as %s" % target)
        self.left.append(target)

    def _config(self):
        """Write config and blacklist once; never overwrite what the admin edited."""
        if os.path.exists(self.config_path):
            self.say("kept the existing config %s" % self.config_path)
        else:
            keys = ("matrix_commander", "credentials", "store", "room", "blacklist", "user", "state_dir", "spool_dir")
            text = "# Written by audit-notify setup; every key: audit-notify.conf.example\n" + "".join(
                "%s = %s\n" % (k, getattr(self.config, k)) for k in keys)
            _write_new(self.config_path, text, 0o640, gid=lookup_user(self.answers.user).gid)
            self.say("wrote %s" % self.config_path)
            self.left.append(self.config_path)
        if os.path.exists(self.config.blacklist):
            self.say("kept the existing blacklist %s" % self.config.blacklist)
        else:
            text = pkgutil.get_data(__package__, "blacklist.example").decode("utf-8")
            _write_new(self.config.blacklist, text, 0o640, gid=lookup_user(self.answers.user).gid)
            self.say("wrote %s (the shipped blacklist.example)" % self.config.blacklist)
            self.left.append(self.config.blacklist)

    def _login(self, account: Account):
        creds = self.config.credentials
        if os.path.exists(creds):
            self.say("the bot is already logged in (%s)" % creds)
            return
        a = self.answers
        fresh = os.path.join(self.config.state_dir, "credentials.json")
        if a.access_token:
            self._token_login(account, fresh)
        else:
            # The password goes in on stdin (getpass reads it there when there is no
            # terminal), never in argv where ps would show it; matrix-commander then
            # asks to confirm the login data, and the "yes" follows it.
            argv = mc_argv(self.config, "--login", "password", "--homeserver", a.homeserver, "--user-login", a.bot,
                           "--device", a.device or "audit-notify " + socket.gethostname(), "--room-default", a.room,
                           credentials=fresh)
            self._mc(argv, account, a.password + "\nyes\n", "log the bot in")
            if not os.path.exists(fresh):
                raise Error("matrix-commander did not log the bot in (no %s written)" % fresh)
        os.rename(fresh, creds)
        self.say("logged %s in; credentials in %s" % (a.bot or "the bot", creds))
        self.left.append(creds)

    def _token_login(self, account: Account, fresh: str):
        """Credentials from an access token.  matrix-commander starts the
        encryption store on its first run and publishes the device's keys;
        so the token must be a new device's, one whose keys are not on the
        server yet: keys made elsewhere cannot be recreated here."""
        a = self.answers
        status, who = matrix_api(a.homeserver, "/_matrix/client/v3/account/whoami", a.access_token)
        if status != 200 or "device_id" not in who:
            raise Error("the access token was refused by %s (HTTP %d)" % (a.homeserver, status))
        user, device = who["user_id"], who["device_id"]
        status, keys = matrix_api(a.homeserver, "/_matrix/client/v3/keys/query", a.access_token,
                                  data={"device_keys": {user: [device]}})
        if status != 200:
            raise Error("cannot ask %s for device %s's keys (HTTP %d)" % (a.homeserver, device, status))
        if device in keys.get("device_keys", {}).get(user, {}):
            raise Error("the access token's device %s has published its encryption keys already, from another "
                        "store; a new store cannot use it. Make a token for a new device (setup --help), or "
                        "use --password-file" % device)
        _write_new(fresh, json.dumps({"homeserver": a.homeserver, "user_id": user, "device_id": device,
                                      "access_token": a.access_token, "room_id": a.room}),
                   0o600, uid=account.uid, gid=account.gid)
        if not os.path.isdir(self.config.store):
            os.makedirs(self.config.store, mode=0o700)
            os.chown(self.config.store, account.uid, account.gid)
        a.bot = user

    def _join(self, account: Account):
        self._mc(mc_argv(self.config, "--room-join", self.config.room), account, "", "join %s" % self.config.room)
        self.say("the bot is in %s" % self.config.room)

    def _mc(self, argv: List[str], account: Account, stdin: str, what: str):
        try:
            result = self.run(argv, input=stdin.encode(), capture_output=True, env=mc_env(self.config),
                              cwd=self.config.state_dir,
                              timeout=120, start_new_session=True, umask=0o077, **run_as(account))
        except OSError as exc:
            raise Error("could not %s: cannot run %s (%s); --matrix-commander names it"
                        % (what, argv[0], exc.strerror or exc)) from None
        except subprocess.TimeoutExpired:
            raise Error("could not %s: matrix-commander gave no answer in 120 s (is the homeserver up?)" % what) \
                from None
        if result.returncode != 0:
            raise Error("could not %s: %s" % (what, first_error_line(result.stderr.decode("utf-8", "replace"))
                                              or "matrix-commander exit code %d" % result.returncode))

    def _plugin_entry(self):
        text = host.plugin_entry(self.paths["executable"], self.config_path)
        target = self.paths["plugins_d"]
        if os.path.exists(target):
            with open(target) as handle:
                if handle.read() == text:
                    self.say("plugins.d entry already in place: %s" % target)
                    return
        _write_new(target, text, 0o640, replace=True)
        self.say("wrote the auditd plugins.d entry %s" % target)
        self.left.append(target)

    def _relabel(self):
        """Where SELinux is on, give what setup wrote its labels from the
        policy module (selinux/): a new file takes its directory's label,
        and a plugin labelled bin_t would run unconfined inside auditd_t."""
        if not host.selinux_enabled() or not shutil.which("restorecon"):
            return
        paths = [self.paths[k] for k in ("executable", "config_dir", "state_dir", "plugins_d")]
        self.run(["restorecon", "-RF"] + paths, check=True)
        self.say("relabelled for SELinux: %s" % " ".join(paths))

    def uninstall(self, purge: bool) -> int:
        """Without ``purge``: remove the plugins.d entry, so that auditd runs
        the plugin no more once restarted; keep the plugin, config and state,
        so that ``audit-notify uninstall --purge`` still runs afterwards.
        With ``purge``: the plugin, config, state and user too.  A purge
        while the plugin still runs would delete its live spool and fail at
        userdel: it is refused before anything is touched."""
        running = self._running()
        if purge and running:
            raise Error("the plugin is still running (pid %s): its spool is in %s. Remove the plugins.d entry "
                        "(uninstall without --purge), restart auditd (service auditd restart), then run "
                        "uninstall --purge again" % (", ".join(map(str, running)), self.paths["state_dir"]))
        command = self.purge_command()
        self._remove(self.paths["plugins_d"])
        if not purge:
            self.say("kept the plugin %s, %s and %s" % (self.paths["executable"], self.paths["config_dir"],
                                                        self.paths["state_dir"]))
            if running:
                self.say("the plugin still runs (pid %s) until auditd restarts" % ", ".join(map(str, running)))
            self.say("now restart auditd, so that it stops running the plugin: service auditd restart\n"
                     "then remove the plugin, its config, its state and its user: %s" % command)
            return 0
        for key in ("config_dir", "state_dir"):
            if os.path.isdir(self.paths[key]):
                shutil.rmtree(self.paths[key])
                self.say("removed %s" % self.paths[key])
        self._remove(self.paths["executable"])  # last: it is the copy that runs this purge
        self._remove_user()
        self.say("restart auditd if it has not been since the plugin ran: service auditd restart")
        return 0

    def _remove(self, path: str):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            self.say("removed %s" % path)

    def _remove_user(self):
        name = self.answers.user
        if name == "root":
            return
        try:
            pwd.getpwnam(name)
        except KeyError:
            return
        if not self.on_host:
            self.say("kept the user %s: uninstall --root %s changes no user on this system. If no other install "
                     "uses it, run on the host the plugin ran on: userdel %s" % (name, self.root, name))
            return
        self.run(["userdel", name], check=True)
        self.say("removed user %s" % name)

    def _running(self) -> List[int]:
        """Pids of plugins running with this install's config, and of any
        process of its user (matrix-commander, a plugin being drained)."""
        uid = None
        if self.answers.user != "root":
            with contextlib.suppress(KeyError):
                uid = pwd.getpwnam(self.answers.user).pw_uid
        return host.processes_of(uid=uid, argv_has=self.config_path)


def _write_new(path: str, text: str, mode: int, uid: int = 0, gid: int = 0, replace: bool = False):
    """Write a file atomically with its final owner and mode from the start."""
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if os.geteuid() == 0:
        os.chown(tmp, uid, gid)
    os.chmod(tmp, mode)
    if not replace and os.path.exists(path):
        os.unlink(tmp)
        return
    os.rename(tmp, path)


def parse_setup_args(argv: Sequence[str]) -> argparse.Namespace:
    """`setup` and `uninstall`: every answer has a flag, so both run unattended."""
    parser = argparse.ArgumentParser(prog="audit-notify " + argv[0], description=(
        "Install the plugin: system user, directories, config and blacklist (never overwriting yours), the bot's "
        "login, the room, the auditd plugins.d entry, and a test notification.  Safe to run again."
        if argv[0] == "setup" else "Remove the plugins.d entry, so that auditd stops running the plugin once "
                                   "restarted; the plugin, config and state stay until --purge, which removes "
                                   "them and the user (refused while the plugin still runs)."))
    parser.add_argument("--root", default="/", help=(
        "install under this directory (default /); nothing outside it is touched: the system user is neither "
        "created nor removed, the useradd or userdel line to run on the real host is printed instead"))
    parser.add_argument("--user", default="audit-notify", help="system user to run as (default audit-notify)")
    if argv[0] == "setup":
        parser.add_argument("--homeserver", help="homeserver URL, e.g. https://matrix.example.org")
        parser.add_argument("--bot", help="the bot's Matrix id, e.g. @audit-bot:example.org")
        parser.add_argument("--password-file", help="file holding the bot's password ('-': stdin)")
        parser.add_argument("--access-token-file", help=(
            "file holding an access token instead of a password ('-': stdin). It must be a new device's token, "
            "whose encryption keys are not published yet: e.g. from POST /_matrix/client/v3/login with a new "
            "device_id, or a server admin's POST /_synapse/admin/v1/users/USER/login (README, Install)"))
        parser.add_argument("--device", help="device name (default: audit-notify HOSTNAME)")
        parser.add_argument("--room", help="room alias, e.g. '#audit:example.org'")
        parser.add_argument("--matrix-commander", default=DEFAULT_MATRIX_COMMANDER)
        parser.add_argument("--no-test", action="store_true", help="do not send a test notification")
    else:
        parser.add_argument("--purge", action="store_true", help="also remove the plugin, config, state and the user")
    return parser.parse_args(argv[1:])


def _answers(args: argparse.Namespace, stdin=sys.stdin) -> Answers:
    """Flags first; what is missing is asked for, if someone is there to ask."""
    def ask(flag, prompt, secret=False):
        if not stdin.isatty():
            raise Error("setup needs --%s when not run interactively" % flag)
        if secret:
            import getpass

            return getpass.getpass(prompt + ": ")
        return input(prompt + ": ").strip()

    def read_secret(path):
        if path == "-":
            return stdin.readline().rstrip("\n")
        with open(path) as handle:
            return handle.read().strip()

    answers = Answers(user=args.user, matrix_commander=args.matrix_commander, device=args.device or "")
    answers.homeserver = args.homeserver or ask("homeserver", "Homeserver URL (https://matrix.example.org)")
    answers.room = args.room or ask("room", "Room alias (#audit:example.org)")
    if args.access_token_file:
        answers.access_token = read_secret(args.access_token_file)
    else:
        answers.bot = args.bot or ask("bot", "The bot's Matrix id (@audit-bot:example.org)")
        answers.password = read_secret(args.password_file) if args.password_file else ask(
            "password-file", "The bot's password", secret=True)
    if not answers.room.startswith("#"):
        raise Error("--room must be an alias (#name:server): matrix-commander 8.0.6 cannot address "
                    "room version 12 ids")
    return answers


def main(argv: List[str]) -> int:
    """``setup ...`` or ``uninstall ...``."""
    args = parse_setup_args(argv)
    args.root = os.path.abspath(args.root)
    try:
        if argv[0] == "uninstall":
            return Setup(Answers(user=args.user), args.root, sys.stdout).uninstall(args.purge)
        return Setup(_answers(args), args.root, sys.stdout).install(send_test=not args.no_test)
    except (Error, OSError, subprocess.CalledProcessError) as exc:
        sys.stderr.write("audit-notify %s: %s\n" % (argv[0], exc))
        return 1
