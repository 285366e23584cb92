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
import sqlite3
import sys
import time
from typing import Iterable, List, Optional, Sequence

from .answering import Answering
from .answers import Mutes, clock_text, who_may_answer
from .config import DEFAULT_CONFIG, Config, Error, load_config
from .counters import Counters
from .daemon import EOF, STOPPED, Plugin, install_signals
from .kernel import open_kmsg
from .known import Known, known_path
from .kernel import status as kernel_status
from .ledger import Ledger, ledger_path
from .logs import setup_logging
from .privileges import check_config_files, prepare
from .reader import import_auparse
from .room import RoomReader
from .rules import load_ruleset
from .sender import Sender
from .spool import Printer, open_spool, spool_path, spool_status

log = logging.getLogger("audit-notify")

ADMIN_COMMANDS = ("setup", "uninstall", "build")
# Every subcommand, as the main --help names them (what each one is for).
SUBCOMMANDS = (
    ("setup", "install the plugin, log the bot in, send a test notification"),
    ("uninstall", "remove the plugins.d entry; --purge: the plugin, its config, state and user"),
    ("build", "write the one-file plugin that setup installs (build FILE; '-': stdout)"),
    ("known", "list what the plugin knows as ordinary work, or --forget it"),
    ("mutes", "list the mutes set from the room, or --clear them"),
)
BUILD_USAGE = "usage: audit-notify build FILE   (the one-file plugin setup installs; '-': stdout)\n"
# How the last-resort handler counts and logs what nothing else caught.
UNEXPECTED = "unexpected error (a bug: please report it)"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="audit-notify",
        usage="%(prog)s [options] [FILE ...]\n       %(prog)s {" + ",".join(n for n, _ in SUBCOMMANDS)
              + "} [--help] ...",
        description="auditd plugin: send audit events as end-to-end-encrypted Matrix notifications.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands (each has its own --help):\n"
               + "".join("  %-10s %s\n" % item for item in SUBCOMMANDS)
               + "\nTry: ausearch --start today --raw | audit-notify --dry-run")
    parser.add_argument("--config", metavar="FILE", help="config file (default %s)" % DEFAULT_CONFIG)
    parser.add_argument("--dry-run", action="store_true", help="send nothing; print each notification")
    parser.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per line")
    parser.add_argument("--check", action="store_true", help="check the whole setup, one line per check")
    parser.add_argument("--send-test", action="store_true", help="with --check: send a test notification")
    parser.add_argument("--status", action="store_true",
                        help="print the spool and counters of the running plugin, read-only")
    parser.add_argument("--state", metavar="DIR",
                        help="with --dry-run: start from what the plugin knows in DIR (its state_dir), "
                             "read-only, and apply the mutes active in DIR/spool; without it a dry run learns "
                             "from an empty memory and no mute applies")
    parser.add_argument("files", nargs="*", metavar="FILE", help="audit logs to read instead of stdin")
    args = parser.parse_args(argv)
    if args.json and not args.dry_run:
        parser.error("--json needs --dry-run")
    if args.send_test and not args.check:
        parser.error("--send-test needs --check")
    if args.state and not args.dry_run:
        parser.error("--state needs --dry-run")
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
    _list_mutes(_read_ledger(path), out)
    return 0


def _read_ledger(path: str) -> Optional[Ledger]:
    try:
        return Ledger(path, readonly=True)
    except sqlite3.Error:
        return None


def _list_mutes(ledger: Optional[Ledger], out) -> int:
    """The mutes that last, one line each (--status, audit-notify mutes)."""
    try:
        mutes = ledger.listed() if ledger is not None else []
    except sqlite3.Error:  # a spool from before answers existed
        mutes = []
    finally:
        if ledger is not None:
            ledger.close()
    if not mutes:
        out.write("mutes: none\n")
    for mute in mutes:
        out.write("mute %d: %s; by %s from %s until %s; %d held back\n" % (
            mute.id, mute.label, mute.by, clock_text(mute.since), clock_text(mute.until), mute.count))
    return len(mutes)


def mutes_command(argv: List[str], out=sys.stdout) -> int:
    """audit-notify mutes: what people muted from the room (a 🔕), and
    --clear to end one or all from the shell (the plugin notices within
    a quarter of a minute and edits the message)."""
    parser = argparse.ArgumentParser(
        prog="audit-notify mutes",
        description="List the mutes set from the room (a 🔕 reaction), or end them.")
    parser.add_argument("--config", metavar="FILE", help="config file (default %s)" % DEFAULT_CONFIG)
    parser.add_argument("--clear", nargs="?", const="all", metavar="ID", help="end mute ID, or all of them")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        clear = None if args.clear in (None, "all") else int(args.clear)
    except Error as exc:
        sys.stderr.write("audit-notify: %s\n" % exc)
        return 1
    except ValueError:
        parser.error("--clear takes a mute's number (see audit-notify mutes) or nothing")
    path = ledger_path(config.spool_dir)
    if not os.path.exists(path):
        out.write("mutes: none (no spool at %s)\n" % path)
        return 0
    if args.clear is None:
        _list_mutes(_read_ledger(path), out)
        return 0
    ledger = Ledger(path)
    try:
        ended = ledger.clear(clear)
    finally:
        ledger.close()
    out.write("ended %d mute%s\n" % (ended, "" if ended == 1 else "s"))
    return 0 if ended or clear is None else 1


def _log_somewhere(args: argparse.Namespace):
    """A failure before the log was set up from the config (a config that
    cannot be read, say) is logged where a config-less start logs: syslog,
    or FALLBACK_LOG.  auditd gives its plugins no stderr to read."""
    if not log.handlers and not args.dry_run and not args.status:
        setup_logging(Config(), to_stderr=False)


def _report(message: str, context: str = ""):
    """A failure for the person who ran us and for the log, each told once.

    A dry run's log is stderr itself, and so is a log with no handler yet
    (Python's last resort prints it there): writing it to stderr as well
    printed every config error twice.
    """
    if not any(getattr(handler, "stream", None) is sys.stderr for handler in log.handlers):
        sys.stderr.write("audit-notify: %s\n" % message)
    if log.handlers:
        log.error("%s%s", context, message)


def _admin(argv: List[str]) -> int:
    """setup, uninstall, build: modules the plugin's run path never loads."""
    if argv[0] == "build":
        if len(argv) == 2 and argv[1] in ("-h", "--help"):  # asked for: the usage, and success
            sys.stdout.write(BUILD_USAGE)
            return 0
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
            known = _open_known(known_path(config.state_dir), writable=True)
            answering = _answering(config)
        if args.dry_run:  # never the live memory's file, unless asked, and then read-only
            known = _open_known(known_path(args.state), writable=False) if args.state else Known()
            mutes = _dry_run_mutes(args.state)
    except Error as exc:
        _log_somewhere(args)
        _report(str(exc), "not started: ")
        return 1

    def reload():
        new = load_config(args.config)
        if not args.dry_run:
            check_config_files(new)
        return new, load_ruleset(new)

    def make_sender(current: Config) -> Sender:
        return Sender(current, sink, counters)

    plugin = Plugin(config, rules, auparse, sink, counters, rights=rights, make_sender=make_sender, reload=reload,
                    hostname=socket.gethostname(), live=live, kmsg=kmsg, kernel_lost=kernel_lost, known=known,
                    mutes=mutes if args.dry_run else None, answering=None if args.dry_run else answering)
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


def _answering(config: Config):
    """The answer path (answering.py) for the plugin, when someone may
    answer (responders, else mention): the room read for reactions, and
    re-announcements that call them again.  Nobody to answer, nobody to
    call again: no answer path (--check says so)."""
    if not who_may_answer(config.responders, config.mention):
        return None
    try:
        ledger = Ledger(spool_path(config))
    except sqlite3.Error as exc:
        raise Error("cannot open the answers in %s: %s" % (spool_path(config), exc)) from None
    reader = None
    if who_may_answer(config.responders, config.mention):
        reader = RoomReader(config.credentials, (config.room, config.critical_room or config.room,
                                                 config.warning_room or config.room, config.routine_room or config.room))
    return lambda accept: Answering(config, ledger, reader, accept)


def _dry_run_mutes(state: Optional[str]) -> Optional[Mutes]:
    """A dry run applies no mute, or with --state DIR those active in
    DIR/spool (read-only)."""
    path = ledger_path(os.path.join(state, "spool")) if state else ""
    if not path or not os.path.exists(path):
        return None
    ledger = _read_ledger(path)
    try:
        return ledger.mutes() if ledger is not None else None
    except sqlite3.Error:
        return None
    finally:
        if ledger is not None:
            ledger.close()


def _open_known(path: str, writable: bool) -> Known:
    """What the plugin knows of the hosts' ordinary work (known.py); a file
    that cannot be opened is said, and the plugin learns in memory."""
    try:
        return Known(path, writable=writable)
    except sqlite3.Error as exc:
        log.warning("cannot open %s (%s): what is known is kept in memory until the next start", path, exc)
        return Known()


def known_command(argv: List[str], out=sys.stdout) -> int:
    """audit-notify known: what the plugin has learned is ordinary, per
    host; --forget clears it (all, or the labels matching a glob)."""
    parser = argparse.ArgumentParser(
        prog="audit-notify known",
        description="List the shapes of ordinary actions the plugin has seen (a new one is a warning, a known "
                    "one routine), or forget them.")
    parser.add_argument("--config", metavar="FILE", help="config file (default %s)" % DEFAULT_CONFIG)
    parser.add_argument("--state", metavar="DIR", help="the state directory (default: the config's state_dir)")
    parser.add_argument("--forget", nargs="?", const="*", metavar="PATTERN",
                        help="forget every shape, or those whose label or host matches PATTERN (a glob)")
    args = parser.parse_args(argv)
    try:
        state = args.state or load_config(args.config).state_dir
    except Error as exc:
        sys.stderr.write("audit-notify: %s\n" % exc)
        return 1
    path = known_path(state)
    if not os.path.exists(path):
        out.write("nothing known yet: no %s\n" % path)
        return 0
    known = Known(path, writable=args.forget is not None)
    try:
        if args.forget is not None:
            out.write("forgot %d shapes\n" % known.forget(args.forget))
            return 0
        for node, label, first, last, times in known.entries():
            out.write("%s  %s  first %s, last %s, %d times\n" % (
                node, label, time.strftime("%Y-%m-%d %H:%M", time.localtime(first)),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(last)), times))
        return 0
    finally:
        known.close()


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
        _report(str(exc))
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
    if argv and argv[0] == "known":
        return known_command(argv[1:])
    if argv and argv[0] == "mutes":
        return mutes_command(argv[1:])
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
