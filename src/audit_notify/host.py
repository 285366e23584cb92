"""Facts about the host that setup, uninstall and the doctor share.

The auditd plugins.d entry (written by setup, read back by the doctor),
processes running the plugin, SELinux, and the kernel command line.  The
plugin's own run path never imports this module.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

SELINUX_ENFORCE = "/sys/fs/selinux/enforce"


def plugin_entry(executable: str, config_path: str) -> str:
    """The plugins.d entry that runs the plugin (auditd-plugins(5)): auditd
    splits ``args`` on whitespace and passes at most two."""
    return ("# audit-notify (written by audit-notify setup)\nactive = yes\ndirection = out\n"
            "path = %s\ntype = always\nargs = --config %s\nformat = string\n" % (executable, config_path))


def parse_entry(text: str) -> Dict[str, str]:
    """A plugins.d entry (or auditd.conf: the same ``key = value`` form)."""
    entry = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            entry[key.strip()] = value.strip()
    return entry


def entry_config(entry: Dict[str, str]) -> Optional[str]:
    """The config file a plugins.d entry gives the plugin, if any."""
    args = entry.get("args", "").replace("=", " ").split()
    return args[args.index("--config") + 1] if "--config" in args[:-1] else None


def selinux_enabled() -> bool:
    return os.path.exists(SELINUX_ENFORCE)


def processes_of(uid: Optional[int] = None, argv_has: str = "", proc: str = "/proc") -> List[int]:
    """Pids of processes owned by ``uid`` or whose command line contains
    ``argv_has`` (this process excluded)."""
    found = []
    for name in os.listdir(proc):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if _zombie(proc, name):
                continue  # it has exited; only its parent's bookkeeping is left
            if uid is not None and os.stat(os.path.join(proc, name)).st_uid == uid:
                found.append(int(name))
                continue
            if argv_has:
                with open(os.path.join(proc, name, "cmdline"), "rb") as handle:
                    if argv_has.encode() in handle.read().split(b"\0"):
                        found.append(int(name))
        except OSError:  # gone meanwhile
            continue
    return sorted(found)


def _zombie(proc: str, pid: str) -> bool:
    """An exited process whose parent has not reaped it (one orphaned when
    auditd stopped, where init is slow to reap)."""
    with open(os.path.join(proc, pid, "stat")) as handle:
        return handle.read().rsplit(")", 1)[-1].split()[0] == "Z"


def kernel_cmdline(path: str = "/proc/cmdline") -> List[str]:
    with open(path) as handle:
        return handle.read().split()


def processes(proc: str = "/proc") -> List[Tuple[int, int, str, str]]:
    """(pid, parent pid, comm, command line) of every process we can see."""
    found = []
    for name in os.listdir(proc) if os.path.isdir(proc) else ():
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(proc, name, "status")) as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            with open(os.path.join(proc, name, "cmdline"), "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue  # gone meanwhile
        if fields.get("State", "").strip().startswith("Z"):
            continue  # exited
        found.append((int(name), int(fields.get("PPid", "0").strip() or 0), fields.get("Name", "").strip(), cmdline))
    return found

