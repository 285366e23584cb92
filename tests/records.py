"""Audit records written as the kernel and PAM write them, for tests that
need one precise situation the recorded logs do not hold: x86_64 syscall
numbers, hex flags, a PATH record per object, an EOE.  Read back with the
real auparse (corpus.events_of), so a test reads what a host's log holds."""

import re

from corpus import DATA, events_of

# x86_64 syscall numbers (what arch=c000003e records carry).
NR = {"openat": 257, "execve": 59, "chmod": 90, "fchmodat": 268, "init_module": 175, "finit_module": 313,
      "unlinkat": 263, "rename": 82, "truncate": 76, "clock_settime": 227, "ptrace": 101, "mount": 165,
      "connect": 42}
O_RDONLY, O_WRONLY_CREAT_TRUNC, O_WRONLY_APPEND = "0", "241", "441"
UNSET = "4294967295"


class Clock:
    """Event ids: each record set gets the next serial, at a time the test
    moves on explicitly."""

    def __init__(self, start=1800000000.0, serial=1000):
        self.now, self.serial = start, serial

    def stamp(self, after=0.0):
        self.now += after
        self.serial += 1
        return "%.3f:%d" % (self.now, self.serial)


def syscall(name, exe="/usr/bin/vi", paths=(), a0="3", a1="0", a2="0", success="yes", exit_="0", key="(null)",
            uid="1000", euid=None, auid="1000", ses=None, pid=4242, ppid=1, tty="pts0", argv=(), stamp=None):
    """The records of one syscall event: SYSCALL, EXECVE for an exec, CWD,
    a PATH per (name, nametype), EOE."""
    stamp = stamp or "1700000000.000:77"
    key = '"%s"' % key if key != "(null)" else key
    ses = ses or ("3" if auid != UNSET else UNSET)
    euid = euid or uid
    records = ["type=SYSCALL msg=audit(%s): arch=c000003e syscall=%d success=%s exit=%s a0=%s a1=%s a2=%s a3=0 "
               "items=%d ppid=%s pid=%s auid=%s uid=%s gid=%s euid=%s suid=%s fsuid=%s egid=0 sgid=0 fsgid=0 tty=%s "
               "ses=%s comm=\"%s\" exe=\"%s\" key=%s"
               % (stamp, NR[name], success, exit_, a0, a1, a2, len(paths), ppid, pid, auid, uid, uid, euid, euid,
                  euid, tty, ses, exe.rsplit("/", 1)[-1][:15], exe, key)]
    if argv:
        records.append("type=EXECVE msg=audit(%s): argc=%d %s" % (
            stamp, len(argv), " ".join("a%d=%s" % (i, encoded(word)) for i, word in enumerate(argv))))
    records.append('type=CWD msg=audit(%s): cwd="/root"' % stamp)
    for i, (path, nametype) in enumerate(paths):
        records.append('type=PATH msg=audit(%s): item=%d name="%s" inode=9 dev=fe:00 mode=0100644 ouid=0 ogid=0 '
                       'rdev=00:00 nametype=%s cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0'
                       % (stamp, i, path, nametype))
    records.append("type=EOE msg=audit(%s): " % stamp)
    return "\n".join(records) + "\n"


def encoded(value):
    """A value as the kernel logs an untrusted string (audit_log_untrustedstring):
    quoted, or in hex when it holds a space, a quote or a control or
    non-ASCII character; sudo logs its cmd= the same way."""
    if any(char == '"' or not "\x21" <= char <= "\x7e" for char in value):
        return value.encode("utf-8", "surrogateescape").hex().upper()
    return '"%s"' % value


def sudo_cmd(command, uid="1003", auid="1003", ses="84", pid=12688, cwd="/home/opsadm", res="success", stamp=None):
    """sudo's USER_CMD record: the command line as the person typed it
    after sudo (a one-record event)."""
    stamp = stamp or "1700000000.000:77"
    return ("type=USER_CMD msg=audit(%s): pid=%s uid=%s auid=%s ses=%s msg='cwd=\"%s\" cmd=%s "
            "exe=\"/usr/bin/sudo\" terminal=pts/0 res=%s'\n"
            % (stamp, pid, uid, auid, ses, cwd, encoded(command), res))


def user(rtype, op, acct="alice", exe="/usr/sbin/sshd", res="success", uid="0", auid=UNSET, ses=None, pid=77,
         addr="203.0.113.7", terminal="ssh", extra="", stamp=None):
    """One PAM or shadow-utils record (a one-record event)."""
    stamp = stamp or "1700000000.000:77"
    ses = ses or ("3" if auid != UNSET else UNSET)
    return ("type=%s msg=audit(%s): pid=%s uid=%s auid=%s ses=%s msg='op=%s acct=\"%s\" %sexe=\"%s\" hostname=? "
            "addr=%s terminal=%s res=%s'\n" % (rtype, stamp, pid, uid, auid, ses, op, acct, extra, exe, addr,
                                               terminal, res))


def config_change(text, auid="1000", stamp=None):
    stamp = stamp or "1700000000.000:77"
    return "type=CONFIG_CHANGE msg=audit(%s): auid=%s ses=3 subj=unconfined %s res=1\n" % (stamp, auid, text)


def event(text):
    """The one event in ``text``."""
    [one] = events_of(text.encode())
    return one


_ID = re.compile(r"msg=audit\((\d+)\.(\d{3}):(\d+)\)")


def records_of(text, serials):
    """The lines of ``text`` (a recorded log) whose event is one of
    ``serials`` (numbers), in the order they are there."""
    wanted = {str(serial) for serial in serials}
    return "".join(line for line in text.splitlines(keepends=True)
                   if _ID.search(line) and _ID.search(line).group(3) in wanted)


def another_run(text, seconds=0.0, serials=0, pids=(), pid_offset=0, ses=None):
    """Records copied as another run of the same action: times moved by
    ``seconds``, serials by ``serials``, each pid or ppid in ``pids`` moved
    by ``pid_offset`` (the others, a parent outside the action, kept), and
    the session ``ses`` = (old, new) renumbered."""
    def stamp(m):
        return "msg=audit(%.3f:%d)" % (int(m.group(1)) + int(m.group(2)) / 1000.0 + seconds, int(m.group(3)) + serials)

    def pid(m):
        return "%s=%d" % (m.group(1), int(m.group(2)) + pid_offset) if m.group(2) in pids else m.group(0)
    text = re.sub(r"\b(pid|ppid)=(\d+)", pid, _ID.sub(stamp, text))
    if ses:
        text = re.sub(r"\bses=%s\b" % ses[0], "ses=%s" % ses[1], text)
    return text


# bob's "ssh host 'uptime; ls -l reports'" on the recorded neo23x0 day: its
# connection (sshd pid 9450, a child of the listener, pid 8968), its
# session (74), the command and its children; and the listener's own
# socket() when it started.
BOB_SSH = dict(serials=range(308399, 308424), pids=("9450", "9453", "9454", "9455", "9456", "9457", "9458"),
               ses="74")
SSHD_LISTENER_SERIAL = 308271


def ssh_sessions(count, gap, listener_before=0.5):
    """``count`` runs of BOB_SSH, ``gap`` seconds apart, each a connection
    and a session of its own (new pids, serials, ``ses``), as five ``ssh``
    commands of one user within seconds make; ``listener_before`` seconds
    before the first, the sshd listener's event (None: without it)."""
    with open("%s/days/neo23x0.log" % DATA, encoding="utf-8", errors="surrogateescape") as handle:
        day = handle.read()
    one = records_of(day, BOB_SSH["serials"])
    start = float(_ID.search(one).group(1) + "." + _ID.search(one).group(2))
    text = ""
    if listener_before is not None:
        listener = records_of(day, [SSHD_LISTENER_SERIAL])
        text = another_run(listener, seconds=start - listener_before - float(
            _ID.search(listener).group(1) + "." + _ID.search(listener).group(2)))
    for i in range(count):
        text += another_run(one, seconds=i * gap, serials=1000 * i, pids=BOB_SSH["pids"], pid_offset=100 * i,
                            ses=(BOB_SSH["ses"], str(int(BOB_SSH["ses"]) + i)))
    return text
