"""What the kernel's audit subsystem says about itself.

* Its status (enabled, failure mode, auditd's pid, backlog and its limit,
  the count of events lost since boot): AUDIT_GET over the audit netlink
  socket, which needs CAP_AUDIT_CONTROL, so the plugin asks once, as root,
  before it drops privileges (and the doctor asks when it runs).
* Events the kernel loses are not numbered (the number is taken after the
  backlog check), so no gap shows them.  The kernel says so in its log
  instead ("audit: audit_lost=N audit_rate_limit=R audit_backlog_limit=B"):
  /dev/kmsg, opened as root at start and read for the plugin's lifetime
  (with kernel.dmesg_restrict = 1, opening needs CAP_SYSLOG; reading an
  open descriptor does not).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
from dataclasses import dataclass
from typing import List, Optional

NETLINK_AUDIT = 9
AUDIT_GET = 1000
NLMSG_ERROR = 2
_HEADER = struct.Struct("=IHHII")   # nlmsghdr: len, type, flags, seq, pid
_STATUS = struct.Struct("=IIIIIIII")  # mask enabled failure pid rate_limit backlog_limit lost backlog
FAILURE_MODES = {0: "silent", 1: "printk", 2: "panic"}
LOST_LINE = re.compile(r"audit: audit_lost=(\d+) audit_rate_limit=(\d+) audit_backlog_limit=(\d+)")


@dataclass(frozen=True)
class Status:
    enabled: int        # 0 off, 1 on, 2 on and locked (immutable)
    failure: int        # what the kernel does when it must lose events: FAILURE_MODES
    pid: int            # the auditd the kernel sends to (0: none)
    rate_limit: int
    backlog_limit: int
    lost: int           # events lost since boot
    backlog: int        # events waiting for auditd now


def status(timeout: float = 2.0) -> Status:
    """The kernel's audit status; OSError (EPERM without CAP_AUDIT_CONTROL)
    if it cannot be had."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sock.send(_HEADER.pack(_HEADER.size, AUDIT_GET, 0x1 | 0x4, 1, 0))  # NLM_F_REQUEST | NLM_F_ACK
        while True:
            data = sock.recv(65536)
            at = 0
            while at + _HEADER.size <= len(data):
                length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, at)
                body = data[at + _HEADER.size:at + length]
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(-code, os.strerror(-code))
                elif kind == AUDIT_GET and len(body) >= _STATUS.size:
                    _mask, enabled, failure, pid, rate, limit, lost, backlog = _STATUS.unpack_from(body)
                    return Status(enabled, failure, pid, rate, limit, lost, backlog)
                if length < _HEADER.size:
                    break
                at += (length + 3) & ~3


def open_kmsg(path: str = "/dev/kmsg") -> Optional[int]:
    """/dev/kmsg at its end, non-blocking; None where it cannot be opened
    (no permission, a container without it): lost kernel events then show
    only in the doctor's report."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        os.lseek(fd, 0, os.SEEK_END)
    except OSError:
        os.close(fd)
        return None
    return fd


def read_kmsg(fd: int) -> List[str]:
    """The kernel log lines waiting on ``fd`` (one record per read)."""
    lines = []
    while True:
        try:
            record = os.read(fd, 8192)
        except BlockingIOError:
            return lines
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # we fell behind and records were overwritten: go on
                continue
            return lines
        if not record:
            return lines
        text = record.decode("utf-8", "replace")
        lines.append(text.split(";", 1)[-1].split("\n", 1)[0])


def lost_total(lines: List[str]) -> Optional[int]:
    """The kernel's count of lost events, as its latest line says."""
    found = None
    for line in lines:
        match = LOST_LINE.search(line)
        if match:
            found = int(match.group(1))
    return found
