"""Where the plugin's own log goes, and the private files it writes.

auditd starts plugins with stdout and stderr on /dev/null, so the log is
syslog, or the configured file; where there is no syslog socket
(containers, minimal VMs) it falls back to FALLBACK_LOG rather than to
nowhere.  Never a world-writable directory such as /tmp.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import stat
import sys
from typing import Optional

from .config import FALLBACK_LOG, Config, Error

log = logging.getLogger("audit-notify")

_FILE_FORMAT = "%(asctime)s audit-notify[%(process)d]: %(levelname)s %(message)s"
_STDERR_FORMAT = "audit-notify: %(levelname)s %(message)s"


def refuse_public_parent(path: str):
    """Nothing of ours goes in a directory everyone may write (/tmp), where
    another user could plant a file or a symlink in its place."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(parent) and os.stat(parent).st_mode & stat.S_IWOTH:
        raise Error("refusing %s: its directory %s is writable by everyone" % (path, parent))


def open_private_file(path: str) -> int:
    """Open (creating 0600) a file for appending, refusing world-writable
    directories such as /tmp and symlinks planted in the file's place."""
    refuse_public_parent(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _file_handler(path: str) -> logging.Handler:
    handler = logging.StreamHandler(os.fdopen(open_private_file(path), "a", encoding="utf-8"))
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    return handler


def _syslog_handler(socket_path: str) -> Optional[logging.Handler]:
    """A handler for the syslog socket; None if nothing listens there."""
    try:
        handler = logging.handlers.SysLogHandler(address=socket_path,
                                                 facility=logging.handlers.SysLogHandler.LOG_DAEMON)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("audit-notify[%(process)d]: %(message)s"))
    return handler


def setup_logging(config: Config, to_stderr: bool, syslog_socket: str = "/dev/log",
                  fallback: str = FALLBACK_LOG) -> str:
    """Log to the configured file, else syslog, else ``fallback``; echo to
    stderr too when a person is watching.  Returns where the log goes.

    Called twice by the plugin: first with the defaults (so that a config
    that cannot be read is still reported somewhere), then with its config.
    """
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.setLevel(config.log_level.upper())
    log.propagate = False
    if config.log_file:
        handler, where = _file_handler(config.log_file), config.log_file
    else:
        handler = _syslog_handler(syslog_socket) if syslog_socket and os.path.exists(syslog_socket) else None
        where = "syslog"
    if handler is None:
        if fallback:
            with contextlib.suppress(OSError, Error):  # not root, say: a person is running us
                handler, where = _file_handler(fallback), fallback
        if handler is None:
            handler, where = logging.StreamHandler(sys.stderr), "stderr"
            handler.setFormatter(logging.Formatter(_STDERR_FORMAT))
            to_stderr = False
    log.addHandler(handler)
    if to_stderr:
        echo = logging.StreamHandler(sys.stderr)
        echo.setFormatter(logging.Formatter(_STDERR_FORMAT))
        log.addHandler(echo)
    return where


def set_level(level: str):
    """SIGHUP: a new log_level applies at once."""
    log.setLevel(level.upper())
