"""A private, real auditd for tests (stdlib only).

Usage::

    from auditd_env import private_auditd, auditd_unavailable_reason

    with private_auditd(tmp_path, plugin_path="/path/to/plugin",
                        plugin_args=("--config", "/x/y.conf"),
                        log_format="RAW",
                        rules=[("-w", str(watched), "-p", "wa", "-k", "watched")]) as ad:
        ad.user_message("hello")                      # auditctl -m hello
        ad.wait_for(lambda text: "hello" in text, timeout=10)
        ad.add_rule("-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", "x")
        print(ad.kernel_status()["lost"], ad.state_report(), ad.daemon_messages())

What it does
------------
* Takes a global ``fcntl.flock`` on ``/run/audit-notify-tests.lock`` for the
  whole lifetime of the daemon: only one auditd can own the kernel's audit
  netlink, so parallel pytest processes queue up here instead of fighting.
* ``local_events=False`` makes an *aggregator* instead (``local_events =
  no``): it never registers with the kernel, so it takes no lock, touches
  no kernel setting and deletes no rules, and it can run beside the
  kernel-holding one.  With ``tcp_listen_port=N`` it listens for
  ``audisp-remote`` clients (``distribute_network = yes``, so its plugin
  sees their records).  auditd always writes ``/var/run/auditd.pid`` and,
  on SIGCONT, ``/var/run/auditd.state``, and unlinks both when it exits, so
  an aggregator gets a private ``/run`` (a bind mount in its own mount
  namespace; ``private_run=``) and the two never touch each other's files.
* ``binds={"/etc/audit/audisp-remote.conf": "DIR/x.conf"}`` bind-mounts
  files over others inside the daemon's mount namespace (its plugins see
  them too): audisp-remote reads only that fixed path.
* Writes ``DIR/auditd.conf`` (0640, root) with ``log_file = DIR/audit.log``,
  ``plugin_dir = DIR/plugins.d`` and the requested ``log_format``,
  ``q_depth``, ``end_of_event_timeout``, ``name_format``...; and, if
  ``plugin_path`` is given, ``DIR/plugins.d/plugin.conf`` (0640) with
  ``active = yes / direction = out / type = always / format = string``.
* Starts ``auditd -n -c DIR`` (the production mode: no fork, auditd writes
  the log file itself, its stdio is /dev/null, its own messages go to
  syslog) inside a private mount namespace whose ``/dev/log`` is a symlink
  to a datagram socket owned by this fixture, so auditd's syslog messages
  ("queue to plugins is full - dropping event", "plugin ... terminated
  unexpectedly", "plugin ... was restarted", ...) can be read back with
  :meth:`PrivateAuditd.daemon_messages`.  The host's /dev is not touched.
  ``mode="foreground"`` runs ``auditd -f`` instead: records go to auditd's
  stdout (redirected to DIR/audit.log), most of its messages to stderr
  (DIR/auditd.stderr; the plugin-queue overflow ones still go to syslog) --
  and the plugin inherits both, so anything a plugin prints to stdout ends
  up *inside the audit log* in that mode.  In -n mode a plugin's
  stdout/stderr are /dev/null (as under systemd); ``capture_plugin_stderr=
  True`` wraps the plugin in ``exec PLUGIN "$@" 2>>DIR/plugin.stderr``.
* Raises the kernel backlog limit for the run (the kernel default here is
  64) and restores it, the "enabled" flag and an empty rule list
  (``auditctl -D``) on stop.  auditd itself does *not* clear the enabled
  flag when it exits.

Facts learnt from auditd 3.0.9 (Debian 12) that matter for plugins
------------------------------------------------------------------
* The plugin is exec'ed with an EMPTY environment (``execve(path, argv,
  NULL)``), stdin = one end of an AF_UNIX SOCK_STREAM socketpair, fds 3..23
  closed, stdout/stderr inherited from auditd (/dev/null in -n mode).
* ``args`` is split on whitespace; at most 2 args, no quoting.
* The plugin executable must be a regular file owned by root with at least
  mode 0750 (rwxr-x---), and its directory name must be >= 4 chars.
* A plugin that dies is only restarted lazily, when auditd next fails to
  write a record to it (EPIPE); the record that hit EPIPE is re-sent to the
  new instance.  At most ``max_restarts`` times.
* On SIGTERM auditd stops its dispatcher thread, which sends SIGTERM to the
  plugin; the socket is closed (EOF) when auditd exits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

LOCK_FILE = "/run/audit-notify-tests.lock"
STATE_FILE = "/var/run/auditd.state"
AUDITD = "/usr/sbin/auditd"
AUDITCTL = "/usr/sbin/auditctl"

RuleSpec = Union[str, Sequence[str]]


class AuditdError(RuntimeError):
    pass


class AuditdBusy(AuditdError):
    """Another audit daemon (not started by this fixture) owns the kernel."""


# ---------------------------------------------------------------------------
# small helpers


def auditd_unavailable_reason() -> Optional[str]:
    """None if a private auditd can be run here, else a reason (for skipif)."""
    if os.geteuid() != 0:
        return "needs root"
    for exe in (AUDITD, AUDITCTL):
        if not os.access(exe, os.X_OK):
            return f"{exe} not installed (apt-get install auditd)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "needs unshare(1) and mount(8) from util-linux"
    try:
        status = kernel_status()
    except (OSError, subprocess.SubprocessError, AuditdError) as exc:
        return f"kernel audit subsystem not usable: {exc}"
    if status.get("enabled") == 2:
        return "kernel audit configuration is locked (enabled 2)"
    return None


def auditctl(*args: str, check: bool = True, timeout: float = 10) -> str:
    """Run auditctl with the given arguments; return its stdout."""
    proc = subprocess.run(
        [AUDITCTL, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AuditdError(
            f"auditctl {' '.join(args)} failed ({proc.returncode}): "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


def append_from_child(path, text: str = "changed\n") -> None:
    """Append TEXT to PATH from a freshly forked child process.

    The kernel gives a task an audit context at fork only once audit has
    been enabled (by any auditd) since boot.  The test runner may have been
    started before that on this boot, so its own writes may never be
    audited; a child forked now always is.  Tests make events this way.
    """
    subprocess.run(["/bin/sh", "-c", 'printf "%s" "$1" >> "$2"', "append", text, str(path)],
                   check=True, timeout=10)


def kernel_status() -> dict:
    """`auditctl -s` as a dict; numeric values as int.

    Keys include enabled, failure, pid, rate_limit, backlog_limit, lost,
    backlog, backlog_wait_time.  ``lost`` counts records the *kernel* dropped
    (its backlog overflowed); drops in auditd's plugin queue are not in it.
    """
    out = auditctl("-s")
    result = {}
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) != 2:
            continue
        key, value = parts
        value = value.strip()
        try:
            result[key] = int(value.split()[0])
        except ValueError:
            result[key] = value
    return result


def listening_tcp_ports() -> set:
    """Local ports of TCP sockets in LISTEN state (IPv4 and IPv6)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def free_tcp_port(host: str = "127.0.0.1", below: Optional[int] = None) -> int:
    """A TCP port nobody uses now (bound and released at once).  below=1024
    picks a privileged one, for audisp-remote's local_port."""
    if below is None:
        with socket.socket() as s:
            s.bind((host, 0))
            return s.getsockname()[1]
    for port in range(below - 1, 599, -1):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise AuditdError(f"no free TCP port below {below}")


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    # state is the field after the ")" of comm; Z = zombie (dead, unreaped)
    state = data.rsplit(b")", 1)[1].split()[0]
    return state not in (b"Z", b"X")


def _children(pid: int) -> list:
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def _cmdline(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _normalise_rule(rule: RuleSpec) -> list:
    if isinstance(rule, str):
        return shlex.split(rule)
    return [str(a) for a in rule]


# ---------------------------------------------------------------------------
# the global lock


class _GlobalLock:
    """flock on LOCK_FILE; the file also records which auditd we run."""

    def __init__(self, path: str = LOCK_FILE):
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self, timeout: float) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise AuditdBusy(
                        f"could not lock {self.path} within {timeout}s "
                        "(another test process runs a private auditd)"
                    )
                time.sleep(0.1)
        self.fd = fd

    def read_owner(self) -> dict:
        assert self.fd is not None
        os.lseek(self.fd, 0, os.SEEK_SET)
        text = os.read(self.fd, 4096).decode(errors="replace")
        owner = {}
        for line in text.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                owner[k.strip()] = v.strip()
        return owner

    def write_owner(self, **fields) -> None:
        assert self.fd is not None
        data = "".join(f"{k}={v}\n" for k, v in fields.items()).encode()
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, data)

    def release(self) -> None:
        if self.fd is not None:
            try:
                self.write_owner()
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
                self.fd = None


# ---------------------------------------------------------------------------
# syslog capture


class _SyslogSink(threading.Thread):
    """Receives datagrams sent to the private /dev/log; keeps the messages."""

    _PRI = re.compile(r"^<\d+>")

    def __init__(self, sock_path: Path, out_path: Path):
        super().__init__(daemon=True, name="auditd-syslog-sink")
        self.sock_path = sock_path
        self.out_path = out_path
        self.messages: list = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        os.chmod(sock_path, 0o666)
        self.sock.settimeout(0.1)

    def run(self) -> None:
        with open(self.out_path, "a", encoding="utf-8") as out:
            while not self._stopping.is_set():
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                text = data.decode(errors="replace").rstrip("\n\0")
                with self._lock:
                    self.messages.append(text)
                out.write(text + "\n")
                out.flush()

    def snapshot(self) -> list:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._stopping.set()
        self.join(timeout=2)
        self.sock.close()


_NS_SETUP = r"""
set -e
D="$1"; SOCK="$2"; shift 2
# SOURCE TARGET pairs to bind-mount, up to "--"
while [ "$1" != "--" ]; do mount --bind "$1" "$2"; shift 2; done
shift
[ "$D" = "-" ] && exec "$@"
mount -t tmpfs -o mode=0755,size=64k auditd-test-dev "$D"
for n in null zero full random urandom tty kmsg; do
    if [ -e "/dev/$n" ]; then : > "$D/$n"; mount --bind "/dev/$n" "$D/$n"; fi
done
ln -s /proc/self/fd "$D/fd"
ln -s /proc/self/fd/0 "$D/stdin"
ln -s /proc/self/fd/1 "$D/stdout"
ln -s /proc/self/fd/2 "$D/stderr"
mkdir "$D/pts" "$D/shm"
mount --rbind /dev/pts "$D/pts" 2>/dev/null || true
mount --rbind /dev/shm "$D/shm" 2>/dev/null || true
ln -s "$SOCK" "$D/log"
mount --move "$D" /dev
exec "$@"
"""


# ---------------------------------------------------------------------------
# the daemon


class PrivateAuditd:
    def __init__(
        self,
        tmpdir: Union[str, os.PathLike],
        plugin_path: Optional[str] = None,
        plugin_args: Sequence[str] = (),
        log_format: str = "RAW",
        rules: Iterable[RuleSpec] = (),
        q_depth: int = 2000,
        end_of_event_timeout: int = 2,
        name_format: str = "NONE",
        name: Optional[str] = None,
        overflow_action: str = "SYSLOG",
        max_restarts: int = 10,
        mode: str = "nofork",
        capture_syslog: bool = True,
        capture_plugin_stderr: bool = False,
        backlog_limit: Optional[int] = 8192,
        extra_conf: Optional[dict] = None,
        local_events: bool = True,
        tcp_listen_port: Optional[int] = None,
        binds: Optional[dict] = None,
        private_run: Optional[bool] = None,
        lock_timeout: float = 300.0,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        plugin_exit_timeout: float = 15.0,
    ):
        if log_format.upper() not in ("RAW", "ENRICHED"):
            raise ValueError("log_format must be RAW or ENRICHED")
        if mode not in ("nofork", "foreground"):
            raise ValueError("mode must be 'nofork' (-n) or 'foreground' (-f)")
        plugin_args = [str(a) for a in plugin_args]
        if len(plugin_args) > 2:
            raise ValueError("auditd passes at most 2 args to a plugin")
        for a in plugin_args:
            if not a or any(c.isspace() for c in a):
                raise ValueError(
                    f"plugin arg {a!r}: auditd splits args on whitespace"
                )
        self.dir = Path(tmpdir).resolve() / "auditd"
        self.conf_file = self.dir / "auditd.conf"
        self.plugin_dir = self.dir / "plugins.d"
        self.log_file = self.dir / "audit.log"
        self.syslog_file = self.dir / "syslog.log"
        self.stderr_file = self.dir / "auditd.stderr"
        self.plugin_stderr_file = self.dir / "plugin.stderr"
        self.plugin_path = str(plugin_path) if plugin_path else None
        self.plugin_args = plugin_args
        self.log_format = log_format.upper()
        self.initial_rules = [_normalise_rule(r) for r in rules]
        self.q_depth = int(q_depth)
        self.end_of_event_timeout = int(end_of_event_timeout)
        self.name_format = name_format
        self.name = name
        self.overflow_action = overflow_action
        self.max_restarts = int(max_restarts)
        self.mode = mode
        self.capture_syslog = capture_syslog
        self.capture_plugin_stderr = capture_plugin_stderr
        self.backlog_limit = backlog_limit
        self.extra_conf = dict(extra_conf or {})
        # False: an aggregator (local_events = no) that leaves the kernel alone
        self.local_events = bool(local_events)
        self.tcp_listen_port = int(tcp_listen_port) if tcp_listen_port else None
        self.binds = {str(k): str(v) for k, v in (binds or {}).items()}
        self.private_run = (not self.local_events) if private_run is None else private_run
        self.run_dir = self.dir / "run"
        self.lock_timeout = lock_timeout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.plugin_exit_timeout = plugin_exit_timeout

        self.proc: Optional[subprocess.Popen] = None
        self.pid: Optional[int] = None
        self.started_at: Optional[float] = None  # time.time() just before exec
        self.ready_at: Optional[float] = None
        self.exit_code: Optional[int] = None
        self.rules_added: list = []
        self.plugin_pids_seen: set = set()
        self._lock = _GlobalLock()
        self._sink: Optional[_SyslogSink] = None
        self._saved_status: Optional[dict] = None
        self._stdout = None
        self._stderr = None
        self._stopped = False

    # -- configuration ------------------------------------------------------

    def _conf_text(self) -> str:
        conf = {
            "local_events": "yes" if self.local_events else "no",
            "write_logs": "yes",
            "log_file": str(self.log_file),
            "log_group": "root",
            "log_format": self.log_format,
            # line-buffered by auditd anyway; INCREMENTAL_ASYNC + freq only
            # controls fsync, so the log is readable at once.
            "flush": "INCREMENTAL_ASYNC",
            "freq": "50",
            "max_log_file": "100",
            "num_logs": "0",
            "priority_boost": "0",
            "name_format": self.name_format,
            "max_log_file_action": "IGNORE",
            "space_left": "2",
            "space_left_action": "IGNORE",
            "verify_email": "no",
            "action_mail_acct": "root",
            "admin_space_left": "1",
            "admin_space_left_action": "IGNORE",
            "disk_full_action": "IGNORE",
            "disk_error_action": "IGNORE",
            "use_libwrap": "no",
            "tcp_listen_queue": "5",
            "tcp_max_per_addr": "1",
            "tcp_client_max_idle": "0",
            "transport": "TCP",
            "distribute_network": "no",
            "q_depth": str(self.q_depth),
            "overflow_action": self.overflow_action,
            "max_restarts": str(self.max_restarts),
            "plugin_dir": str(self.plugin_dir),
            "end_of_event_timeout": str(self.end_of_event_timeout),
        }
        if self.name is not None:
            conf["name"] = self.name
        if self.tcp_listen_port:
            conf["tcp_listen_port"] = str(self.tcp_listen_port)
            conf["distribute_network"] = "yes"
        conf.update({k: str(v) for k, v in self.extra_conf.items()})
        lines = ["# written by tests/auditd_env.py"]
        lines += [f"{k} = {v}" for k, v in conf.items()]
        return "\n".join(lines) + "\n"

    def _write_files(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, mode=0o750)
        os.chmod(self.dir, 0o750)
        self.plugin_dir.mkdir(mode=0o750)
        self.conf_file.write_text(self._conf_text())
        os.chmod(self.conf_file, 0o640)
        if self.plugin_path:
            exe = self.plugin_path
            if not os.path.isabs(exe):
                raise ValueError("plugin_path must be absolute")
            st = os.stat(exe)
            if st.st_uid != 0 or (st.st_mode & 0o750) != 0o750:
                raise AuditdError(
                    f"auditd refuses plugin {exe}: it must be owned by root "
                    f"with mode >= 0750 (has uid {st.st_uid}, "
                    f"mode {stat.S_IMODE(st.st_mode):o})"
                )
            if self.capture_plugin_stderr:
                wrapper = self.dir / "plugin-wrapper.sh"
                wrapper.write_text(
                    "#!/bin/sh\n"
                    f"exec {shlex.quote(exe)} \"$@\" "
                    f"2>>{shlex.quote(str(self.plugin_stderr_file))}\n"
                )
                os.chmod(wrapper, 0o750)
                exe = str(wrapper)
            lines = [
                "active = yes",
                "direction = out",
                f"path = {exe}",
                "type = always",
            ]
            if self.plugin_args:
                lines.append("args = " + " ".join(self.plugin_args))
            lines.append("format = string")
            pconf = self.plugin_dir / "plugin.conf"
            pconf.write_text("\n".join(lines) + "\n")
            os.chmod(pconf, 0o640)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> "PrivateAuditd":
        if self.local_events:
            self._lock.acquire(self.lock_timeout)
        try:
            self._start_locked()
        except BaseException:
            self._teardown()
            raise
        return self

    def _reap_stale_own_auditd(self, status: dict) -> dict:
        """A crashed test run may have left *our* auditd behind: stop it."""
        owner = self._lock.read_owner()
        kpid = status.get("pid", 0)
        if not kpid:
            return status
        stale_pid = int(owner.get("pid", "0") or 0)
        cmd = _cmdline(kpid)
        if (
            stale_pid == kpid
            and cmd
            and os.path.basename(cmd[0]) == "auditd"
            and owner.get("dir")
            and owner["dir"] in cmd
        ):
            os.kill(kpid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while _pid_alive(kpid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(kpid):
                os.kill(kpid, signal.SIGKILL)
            auditctl("-D", check=False)
            time.sleep(0.2)
            status = kernel_status()
            # restore what the crashed run had found, not what it left
            for key in ("enabled", "backlog_limit"):
                if owner.get("orig_" + key, "").isdigit():
                    status[key] = int(owner["orig_" + key])
            return status
        raise AuditdBusy(
            f"another audit daemon (pid {kpid}: {' '.join(cmd) or '?'}) owns "
            "the kernel audit netlink; refusing to touch it"
        )

    def _start_locked(self) -> None:
        if self.local_events:
            status = kernel_status()
            status = self._reap_stale_own_auditd(status)
            self._saved_status = status
        self._write_files()
        if self.local_events and self.backlog_limit:
            auditctl("-b", str(self.backlog_limit))
        self._spawn(first=True)
        for rule in self.initial_rules:
            self.add_rule(*rule)

    def _spawn(self, first: bool) -> None:
        """Start auditd in self.dir (again, for a restart: the syslog sink,
        the files and the saved kernel settings are the first start's) and
        wait until it holds the kernel's netlink and has logged its start."""
        starts_before = self.log_text().count("type=DAEMON_START")
        if self.mode == "nofork":
            argv = [AUDITD, "-n", "-c", str(self.dir)]
        else:
            argv = [AUDITD, "-f", "-c", str(self.dir)]
        binds = []
        if self.private_run:
            self.run_dir.mkdir(mode=0o755, exist_ok=not first)
            binds += [str(self.run_dir), "/run"]
        for target, source in self.binds.items():
            binds += [source, target]
        if self.capture_syslog or binds:
            devdir = sock = "-"
            if self.capture_syslog:
                devdir = self.dir / "dev"
                sock = self.dir / "syslog.sock"
                if first:
                    devdir.mkdir(mode=0o755)
                    self._sink = _SyslogSink(sock, self.syslog_file)
                    self._sink.start()
            argv = [
                "unshare", "--mount", "--propagation", "private",
                "/bin/sh", "-c", _NS_SETUP, "ns-setup",
                str(devdir), str(sock), *binds, "--", *argv,
            ]
        for f in (self._stdout, self._stderr):
            if hasattr(f, "close"):
                f.close()
        if self.mode == "foreground":
            self._stdout = open(self.log_file, "ab")
            self._stderr = open(self.stderr_file, "ab")
        else:
            self._stdout = subprocess.DEVNULL
            self._stderr = open(self.stderr_file, "ab")

        self.started_at = time.time()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            cwd=str(self.dir),
            close_fds=True,
            start_new_session=True,
        )
        self.pid = self.proc.pid  # unshare and sh exec, so this is auditd
        if self.local_events:
            self._lock.write_owner(
                pid=self.pid, dir=str(self.dir), started=self.started_at,
                orig_enabled=self._saved_status.get("enabled", ""),
                orig_backlog_limit=self._saved_status.get("backlog_limit", ""))

        deadline = time.monotonic() + self.start_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AuditdError(
                    f"auditd exited during start-up with {rc}; "
                    f"stderr: {self._read(self.stderr_file)[-2000:]!r} "
                    f"syslog: {self.daemon_messages()[-20:]!r}"
                )
            if self.local_events:
                ready = kernel_status().get("pid") == self.pid
            else:
                ready = (not self.tcp_listen_port
                         or self.tcp_listen_port in listening_tcp_ports())
            if ready and self.log_text().count("type=DAEMON_START") > starts_before:
                break
            if time.monotonic() >= deadline:
                raise AuditdError(
                    f"auditd (pid {self.pid}) not ready after "
                    f"{self.start_timeout}s; messages: "
                    f"{self.daemon_messages()[-20:]!r}"
                )
            time.sleep(0.02)
        self.ready_at = time.time()
        self.plugin_pids_seen.update(self.plugin_pids())

    def restart(self, rules_file: Optional[Union[str, os.PathLike]] = None) -> None:
        """What ``service auditd restart`` does under Debian 12's
        auditd.service: SIGTERM auditd (its plugin gets SIGTERM and EOF),
        wait for both, start auditd again in the same directory (a new
        plugin process), then, as its ExecStartPost ``augenrules --load``
        does, load ``rules_file`` with one ``auditctl -R`` (a file that
        begins with -D deletes the rules the kernel kept meanwhile)."""
        self._kernel_only("restart")
        self._stop_daemon()
        self._spawn(first=False)
        if rules_file is not None:
            auditctl("-R", str(rules_file))

    def stop(self) -> Optional[int]:
        """SIGTERM auditd (bounded wait, then SIGKILL), reap its plugin,
        then `auditctl -D` and restore the kernel settings.  Idempotent.
        Returns auditd's exit status (negative = killed by signal)."""
        if self._stopped:
            return self.exit_code
        self._stopped = True
        try:
            self._stop_daemon()
        finally:
            self._teardown()
        return self.exit_code

    def _stop_daemon(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.plugin_pids_seen.update(self.plugin_pids())
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.exit_code = self.proc.returncode
        # auditd's plugins get SIGTERM + EOF; give them a bounded grace time
        # (longer than audit-notify's own bound: 5 s for the send in flight,
        # 5 s for matrix-commander to stop).
        # (A plugin that stalled auditd's dispatcher gets no SIGTERM at all:
        # the dispatcher thread is stuck in write() when auditd exits.)
        deadline = time.monotonic() + self.plugin_exit_timeout
        for pid in sorted(self.plugin_pids_seen):
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _teardown(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)
            if self.local_events:
                with contextlib.suppress(Exception):
                    auditctl("-D", check=False)
            saved = self._saved_status
            if saved:
                if isinstance(saved.get("backlog_limit"), int) and self.backlog_limit:
                    with contextlib.suppress(Exception):
                        auditctl("-b", str(saved["backlog_limit"]), check=False)
                if saved.get("enabled") in (0, 1):
                    with contextlib.suppress(Exception):
                        auditctl("-e", str(saved["enabled"]), check=False)
            if self._sink is not None:
                # let late datagrams ("The audit daemon is exiting.") arrive
                time.sleep(0.1)
                self._sink.close()
            for f in (self._stdout, self._stderr):
                if hasattr(f, "close"):
                    f.close()
        finally:
            self._lock.release()

    def __enter__(self) -> "PrivateAuditd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- rules & messages ---------------------------------------------------

    def add_rule(self, *args: str) -> None:
        """`auditctl ARGS...`, e.g. add_rule("-w", "/etc/passwd", "-p", "wa",
        "-k", "identity").  All rules are deleted (auditctl -D) on stop."""
        self._kernel_only("add_rule")
        auditctl(*[str(a) for a in args])
        self.rules_added.append(list(args))

    def delete_all_rules(self) -> None:
        self._kernel_only("delete_all_rules")
        auditctl("-D")

    def user_message(self, text: str) -> None:
        """`auditctl -m TEXT`: a type=USER record from userspace."""
        self._kernel_only("user_message")
        auditctl("-m", text)

    def _kernel_only(self, what: str) -> None:
        if not self.local_events:
            raise AuditdError(
                f"{what}: this auditd has local_events = no; the kernel "
                "(and its rules) belong to the kernel-holding auditd")

    # -- observation --------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        return self._read(self.log_file)

    def log_lines(self) -> list:
        # not str.splitlines(): that also splits on \x1d (ENRICHED separator)
        return [l for l in self.log_text().split("\n") if l]

    def wait_for(
        self,
        predicate: Callable[[str], object],
        timeout: float = 10.0,
        interval: float = 0.05,
        source: Optional[Callable[[], str]] = None,
    ):
        """Poll until predicate(text) is truthy; return its value.

        text is the audit log by default, or source() if given (e.g.
        ``lambda: Path(out).read_text()`` for a recording plugin's output).
        Raises TimeoutError after `timeout` seconds."""
        source = source or self.log_text
        deadline = time.monotonic() + timeout
        while True:
            text = source()
            value = predicate(text)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"condition not met within {timeout}s; last "
                    f"{min(len(text), 2000)} chars: {text[-2000:]!r}"
                )
            time.sleep(interval)

    def wait_for_text(self, needle: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda t: needle in t, timeout)

    def daemon_messages(self) -> list:
        """auditd's own messages: what it sent to syslog (nofork mode with
        capture_syslog) plus its stderr lines (foreground mode).  Includes
        "queue to plugins is full - dropping event", "plugin X terminated
        unexpectedly", "plugin X was restarted", "... exceeded max_restarts"."""
        msgs = self._sink.snapshot() if self._sink else []
        msgs += [l for l in self._read(self.stderr_file).split("\n") if l]
        return msgs

    def plugin_pids(self) -> list:
        """PIDs of auditd's children (the running plugin instances)."""
        return _children(self.pid) if self.pid else []

    def state_report(self, timeout: float = 5.0) -> dict:
        """SIGCONT auditd and parse /var/run/auditd.state.  Keys include
        'current plugin queue depth', 'max plugin queue depth used',
        'plugin queue size', 'plugin queue overflow detected' (yes/no),
        'plugin queueing suspended'."""
        before = time.time()
        # as auditd sees it (a private /run for an aggregator); the symlink
        # /var/run -> /run is resolved here, as /proc/PID/root would follow
        # an absolute link back into *our* root
        state_file = f"/proc/{self.pid}/root{os.path.realpath(STATE_FILE)}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state_file)
        os.kill(self.pid, signal.SIGCONT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = Path(state_file).read_text()
                if "plugin queueing suspended" in text and os.stat(
                        state_file).st_mtime >= before - 1:
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError("auditd did not write its state report")
            time.sleep(0.02)
        report = {}
        for line in text.splitlines():
            if " = " in line:
                k, v = line.split(" = ", 1)
                report[k.strip()] = v.strip()
        return report

    kernel_status = staticmethod(kernel_status)


@contextlib.contextmanager
def private_auditd(tmpdir, plugin_path=None, plugin_args=(), log_format="RAW",
                   rules=(), q_depth=2000, **kwargs) -> Iterator[PrivateAuditd]:
    """Context manager around PrivateAuditd (see its __init__ for options:
    end_of_event_timeout, name_format, name, overflow_action, max_restarts,
    mode, capture_syslog, capture_plugin_stderr, backlog_limit, extra_conf,
    local_events, tcp_listen_port, binds, private_run, lock_timeout,
    start_timeout, stop_timeout)."""
    ad = PrivateAuditd(tmpdir, plugin_path=plugin_path,
                       plugin_args=plugin_args, log_format=log_format,
                       rules=rules, q_depth=q_depth, **kwargs)
    ad.start()
    try:
        yield ad
    finally:
        ad.stop()


# ---------------------------------------------------------------------------
# parsing helpers for tests

_EVENT_ID = re.compile(r"msg=audit\((\d+\.\d+):(\d+)\)")


def record_types(lines: Iterable[str]) -> list:
    """type=XXX of each record line (node=... prefix allowed)."""
    out = []
    for line in lines:
        m = re.search(r"(?:^|\s)type=(\S+)", line)
        if m:
            out.append(m.group(1))
    return out


def event_ids(lines: Iterable[str]) -> list:
    """Distinct (timestamp, serial) pairs in order of first appearance."""
    seen = {}
    for line in lines:
        m = _EVENT_ID.search(line)
        if m:
            seen.setdefault((m.group(1), int(m.group(2))), None)
    return list(seen)
