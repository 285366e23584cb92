"""The command line: the plugin itself, --dry-run, --status, and the doors
to the admin tools (--check, setup, uninstall, build).

The admin tools live in their own modules (doctor, install, bundle) and
are imported only when asked for: the process auditd runs as root never
loads them.  Exit codes are decided here and nowhere else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from typing import Iterable, List, Optional, Sequence

from .config import DEFAULT_CONFIG, Config, Error, load_config
from .counters import Counters
from .daemon import EOF, STOPPED, Plugin, install_signals
from .kernel import open_kmsg
from .kernel import status as kernel_status
from .logs import setup_logging
from .privileges import check_config_files, prepare
from .reader import import_auparse
from .rules import load_ruleset
from .sender import Sender
from .spool import Printer, open_spool, spool_path, spool_status

log = logging.getLogger("audit-notify")

ADMIN_COMMANDS = ("setup", "uninstall", "build")
# How the last-resort handler counts and logs what nothing else caught.
UNEXPECTED = "unexpected error (a bug: please report it)"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="audit-notify",
        description="auditd plugin: send audit events as end-to-end-encrypted Matrix notifications.",
        epilog="Try: ausearch --start today --raw | audit-notify --dry-run.  Install: audit-notify setup --help.  "
               "Build the one-file plugin: audit-notify build FILE")
    parser.add_argument("--config", metavar="FILE", help="config file (default %s)" % DEFAULT_CONFIG)
    parser.add_argument("--dry-run", action="store_true", help="send nothing; print each notification")
    parser.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per line")
    parser.add_argument("--check", action="store_true", help="check the whole setup, one line per check")
    parser.add_argument("--send-test", action="store_true", help="with --check: send a test notification")
    parser.add_argument("--status", action="store_true",
                        help="print the spool and counters of the running plugin, read-only")
    parser.add_argument("files", nargs="*", metavar="FILE", help="audit logs to read instead of stdin")
    args = parser.parse_args(argv)
    if args.json and not args.dry_run:
        parser.error("--json needs --dry-run")
    if args.send_test and not args.check:
        parser.error("--send-test needs --check")
    return args


def _open_inputs(files: Sequence[str]):
    if not files:
        yield sys.stdin.fileno()
        return
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise Error("cannot read %s: %s" % (path, exc)) from None
        try:
            yield fd
        finally:
            os.close(fd)


def print_status(config: Config, out) -> int:
    """--status: the spool and the running plugin's counters, read-only."""
    path = spool_path(config)
    if not os.path.exists(path):
        out.write("no spool at %s: the plugin has not run with this config\n" % path)
        return 1
    status = spool_status(path)
    now = time.time()
    state = status["state"]
    pid = int(state.get("pid", "0") or 0)
    running = pid > 0 and os.path.exists("/proc/%d" % pid)
    oldest = "%.0f s ago" % (now - status["oldest"]) if status["oldest"] else "-"
    out.write("spool: %s\n" % path)
    out.write("spooled: %d notifications, %d bytes, oldest accepted %s\n" % (status["depth"], status["bytes"], oldest))
    out.write("dead letters: %d\n" % status["dead"])
    out.write("plugin: pid %d, %s; state saved %.0f s ago\n" % (
        pid, "running" if running else "not running", now - float(state.get("updated", now))))
    counters = json.loads(state.get("counters", "{}"))
    problems = counters.pop("problems", {})
    out.write("counters: %s\n" % " ".join("%s=%s" % item for item in counters.items()))
    for kind, count in sorted(problems.items()):
        out.write("problem: %s: %d\n" % (kind, count))
    return 0


def _log_somewhere(args: argparse.Namespace):
    """A failure before the log was set up from the config (a config that
    cannot be read, say) is logged where a config-less start logs: syslog,
    or FALLBACK_LOG.  auditd gives its plugins no stderr to read."""
    if not log.handlers and not args.dry_run and not args.status:
        setup_logging(Config(), to_stderr=False)


def _admin(argv: List[str]) -> int:
    """setup, uninstall, build: modules the plugin's run path never loads."""
    if argv[0] == "build":
        from . import bundle

        return bundle.main(argv)
    from . import install

    return install.main(argv)


def _plugin(args: argparse.Namespace, counters: Counters) -> int:
    """Run the plugin (or the dry run) until EOF or SIGTERM."""
    fixed: List[str] = []
    live = not args.dry_run and not args.files and _fed_by_auditd()
    kmsg, kernel_lost = None, None
    try:
        config = load_config(args.config)
        if args.status:
            return print_status(config, sys.stdout)
        rules = load_ruleset(config)
        auparse = import_auparse()
        rights = None
        if args.dry_run:
            setup_logging(Config(), to_stderr=False, syslog_socket="", fallback="")
            sink = Printer(sys.stdout, args.json, counters)
        else:
            setup_logging(config, to_stderr=sys.stderr.isatty())
            if live:  # what only root may read: asked now, before dropping it
                kmsg, kernel_lost = open_kmsg(), _kernel_lost()
            fixed = prepare(config)
            sink, rights = open_spool(config)
    except Error as exc:
        sys.stderr.write("audit-notify: %s\n" % exc)
        _log_somewhere(args)
        log.error("not started: %s", exc)
        return 1

    def reload():
        new = load_config(args.config)
        if not args.dry_run:
            check_config_files(new)
        return new, load_ruleset(new)

    def make_sender(current: Config) -> Sender:
        return Sender(current, sink, counters)

    plugin = Plugin(config, rules, auparse, sink, counters, rights=rights, make_sender=make_sender, reload=reload,
                    hostname=socket.gethostname(), live=live, kmsg=kmsg, kernel_lost=kernel_lost)
    if plugin.sender is not None:
        plugin.notifier.repeats.restore(sink.state("repeats"))
        plugin.notifier.lifecycle.restore(sink.state("lifecycle"))  # a stop of auditd's the last run told
        plugin.announce_restart()
    wakeup = install_signals(plugin)
    if args.dry_run:
        mode = "dry run"
    elif plugin.sender is None:
        mode = ("another audit-notify (pid %s) holds the spool: this one spools, and sends once that one exits"
                % sink.state("pid", "?"))
    else:
        mode = "spool %s, sending with %s" % (config.spool_dir, config.matrix_commander)
    if live:
        mode += "; under auditd: event numbers watched for losses, %s" % (
            "the kernel's log too" if kmsg is not None else "not the kernel's log (/dev/kmsg cannot be opened)")
    log.info("started: config %s, %s, %s", config.source, rules.summary(), mode)
    for what in fixed:
        log.warning("fixed permissions: %s", what)
    if not args.dry_run and config.user == "root":
        log.warning("running as root, and so does matrix-commander: set user = audit-notify (see README)")
    return serve(plugin, sink, counters, _open_inputs(args.files), wakeup[0])


def _kernel_lost() -> Optional[int]:
    """The kernel's count of lost events now (as root), or None."""
    try:
        return kernel_status().lost
    except OSError:
        return None


def _fed_by_auditd(proc: str = "/proc") -> bool:
    """Whether auditd started us (plugins.d): its stream has every event
    number, so gaps are losses; a log piped by hand has gaps by design."""
    try:
        with open("%s/%d/comm" % (proc, os.getppid())) as handle:
            return handle.read().strip() == "auditd"
    except OSError:
        return False


def serve(plugin: Plugin, sink, counters: Counters, inputs: Iterable[int], wakeup_fd: Optional[int]) -> int:
    """Run until EOF of the last input, SIGTERM or a failure; then finish
    (what was accepted is saved whatever happened) and say how it went."""
    ending = EOF
    try:
        for fd in inputs:
            ending = plugin.run(fd, wakeup_fd)
            if ending != EOF:
                break
            plugin.reader.end_of_input()
    except Error as exc:
        log.error("%s", exc)
        sys.stderr.write("audit-notify: %s\n" % exc)
        ending = "error"
    except Exception:  # noqa: BLE001 - the last resort; what was accepted is still saved below
        counters.problem(UNEXPECTED, exc_info=True)
        ending = "crash"
    try:
        plugin.finish(ending)
    finally:
        sink.close()
    return 0 if ending in (EOF, STOPPED) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ADMIN_COMMANDS:
        return _admin(argv)
    args = parse_args(argv)
    if args.check:
        from .doctor import Doctor

        return 1 if Doctor(sys.stdout).check(args.config, args.send_test) else 0
    counters = Counters()
    try:
        return _plugin(args, counters)
    except Exception:  # noqa: BLE001 - the last resort: say why, where the plugin logs, and fail
        _log_somewhere(args)
        counters.problem(UNEXPECTED, exc_info=True)
        sys.stderr.write("audit-notify: unexpected error; the traceback is in the plugin's log\n")
        return 1
