"""Privileges: the files we trust, and the user we become.

auditd starts the plugin as root.  Once it has checked its config and
rule files, opened its log and made its directories, it becomes the
unprivileged ``user`` for good (no capabilities, no_new_privs), before it
reads a byte of audit data or starts matrix-commander, which therefore
runs as that user too.  What it keeps: its stdin from auditd, the log file
it opened, and files owned by that user (spool, state, the bot's
credentials and store).  Signals from auditd (root) still reach it.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from typing import List

from .config import STATE_DIR, Config, Error
from .logs import refuse_public_parent

@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def lookup_user(name: str) -> Account:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise Error("user %r (config key user) does not exist: create it with "
                    "'useradd --system --home-dir %s --shell /usr/sbin/nologin %s', "
                    "or set user = root" % (name, STATE_DIR, name)) from None
    return Account(name, entry.pw_uid, entry.pw_gid)


def check_trusted(path: str, what: str):
    """A file that tells a root process what to do (config, rules) must be
    owned by root (or by whoever runs us) and writable by nobody else."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise Error("cannot check %s %s: %s" % (what, path, exc)) from None
    if st.st_uid not in (0, os.geteuid()):
        raise Error("refusing %s %s: it is owned by uid %d, not root, so that user controls the plugin "
                    "(chown root %s)" % (what, path, st.st_uid, path))
    if st.st_mode & 0o022:
        raise Error("refusing %s %s: mode %o lets group or others change it (chmod go-w %s)"
                    % (what, path, stat.S_IMODE(st.st_mode), path))


def check_config_files(config: Config):
    if os.path.isfile(config.source):
        check_trusted(config.source, "config")
    for what, path in (("blacklist", config.blacklist), ("allow-list", config.allowlist)):
        if path:
            check_trusted(path, what)


def secure_private(path: str, account: Account, what: str, fix: bool = True) -> List[str]:
    """The bot's credentials (access token) and store (encryption keys):
    owned by the delivering user, 0600 files, 0700 directories.
    matrix-commander creates them world-readable; we fix that and say so,
    and refuse what another user owns.  Returns what was fixed, or with
    ``fix=False`` (the doctor) what the plugin would fix at its start."""
    found = []
    if not os.path.exists(path):
        raise Error("%s %s does not exist: log the bot in first (see README, 'Matrix setup')" % (what, path))
    todo = [path]
    if os.path.isdir(path):
        todo += [os.path.join(top, name) for top, dirs, files in os.walk(path) for name in dirs + files]
    for item in todo:
        st = os.lstat(item)
        if stat.S_ISLNK(st.st_mode):
            raise Error("refusing %s: %s is a symbolic link" % (what, item))
        if st.st_uid != account.uid:
            if st.st_uid != 0 or (fix and os.geteuid() != 0):
                raise Error("refusing %s: %s is owned by uid %d, not by %s (uid %d)"
                            % (what, item, st.st_uid, account.name, account.uid))
            if fix:
                os.chown(item, account.uid, account.gid)
            found.append("%s %s owned by %s" % (item, "now" if fix else "is not", account.name))
        wanted = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_IMODE(st.st_mode) & 0o077:
            if fix:
                os.chmod(item, wanted)
            found.append("%s %s mode %o, %s %o" % (item, "was" if fix else "is", stat.S_IMODE(st.st_mode),
                                                   "now" if fix else "not", wanted))
    return found


def private_dir(path: str, account: Account) -> List[str]:
    """Spool and state: 0700, owned by the user; never under a directory
    that everyone may write (/tmp), where another user could plant files.
    What root left in them (a run with ``user = root``, as the original's
    drop-in runs) becomes the user's too, or the user could not open its
    own spool."""
    refuse_public_parent(path)
    fixed = []
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700)
    st = os.stat(path)
    if (st.st_uid, st.st_gid) != (account.uid, account.gid) and os.geteuid() == 0:
        os.chown(path, account.uid, account.gid)
        fixed.append("%s now owned by %s" % (path, account.name))
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
        fixed.append("%s was mode %o, now 700" % (path, stat.S_IMODE(st.st_mode)))
    if os.geteuid() == 0 and account.uid != 0:
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                item = os.path.join(top, name)
                if os.lstat(item).st_uid == 0:
                    os.lchown(item, account.uid, account.gid)
                    fixed.append("%s now owned by %s" % (item, account.name))
    return fixed


def drop_privileges(account: Account):
    """Become ``account`` for good: no groups, no capabilities, and no way
    back through set-uid programs (PR_SET_NO_NEW_PRIVS)."""
    if os.geteuid() != account.uid:
        if os.geteuid() != 0:
            raise Error("running as uid %d: run as root (auditd does) or as %s" % (os.geteuid(), account.name))
        os.setgroups([])
        os.setgid(account.gid)
        os.setuid(account.uid)
    PR_SET_NO_NEW_PRIVS = 38
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def prepare(config: Config) -> List[str]:
    """Everything done as root before dropping privileges; returns what
    had to be fixed, for the log."""
    check_config_files(config)
    account = lookup_user(config.user)
    fixed = secure_private(config.credentials, account, "credentials")
    fixed += secure_private(config.store, account, "store")
    # The spool first: made while its parent is still root's, root needs no
    # DAC override (nor the SELinux policy dac_override) to make it.
    for path in (config.spool_dir, config.state_dir):
        fixed += private_dir(path, account)
    drop_privileges(account)
    return fixed

