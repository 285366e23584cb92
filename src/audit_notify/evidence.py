"""Evidence: what a command line says it does, whatever rule saw it.

A rule set that logs sudo's USER_CMD or the execs of a session, but has no
watch on /etc/cron.d, still records ``sudo sh -c 'echo ... > /etc/cron.d/x'``
in full: the command line is evidence of the write.  How loud an attack is
must not depend on which rule happened to see it, so severity.py asks this
module about every command line it meets (sudo's ``cmd``, an exec's argv,
and the string a shell runs with ``-c``), beside what the syscalls say.

A command line is read the way a shell reads it, only far enough to find
the simple commands, their redirections and their pipelines
(``commands()``); wrappers (sudo, env, nohup, sh -c ...) are looked
through.  Each simple command is then judged by what its program does with
its arguments (``judge_words``):

* writes into the places that decide who may log in, what runs at boot or
  for everyone (severity's place tables): ``>``, ``>>``, tee, cp, mv,
  install, dd of=, sed -i, ln;
* setuid/setgid modes and file capabilities (chmod, setcap);
* the firewall flushed or opened (iptables -F, -P ... ACCEPT, nft flush,
  ufw disable);
* uploads (curl -T / --data @file, wget --post-file, nc) and shells wired
  to the network (/dev/tcp), decoded or downloaded payloads piped into a
  shell;
* logins' records, auth logs and the audit trail wiped (truncation, rm,
  shred);
* password hashes or another user's private key read;
* code run from the world-writable scratch places.

It only reads text: it never runs anything, and every value it returns for
a message is marked as untrusted by the caller (phrases.py).
"""

from __future__ import annotations

import re
import shlex
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

CRITICAL, WARNING = "critical", "warning"

# -- the places ---------------------------------------------------------------
# Severity's tables are imported lazily (severity imports this module).


def _places():
    from . import severity
    return severity


class Finding(NamedTuple):
    """What a command line does that matters: its severity, a label for the
    verdict (the same for the same kind of deed, for counting repeats) and
    the deed in words, values apart (phrases.py marks them)."""

    severity: str
    why: str
    deed: Tuple[str, ...]  # alternating our words and values: ("wrote ", path, " (cron)")


# Labels (Verdict.why) of findings: phrases.py recognises them by this prefix.
PREFIX = "command: "


def _finding(severity: str, what: str, *deed: str) -> Finding:
    return Finding(severity, PREFIX + what, tuple(deed))


# -- reading a command line -----------------------------------------------------

class Simple(NamedTuple):
    """One simple command: its words and its redirections (operator, target)."""

    words: List[str]
    redirects: List[Tuple[str, str]]


_OPERATORS = frozenset((";", "&&", "||", "&", "\n", "(", ")", "{", "}"))
_REDIRECTS = frozenset((">", ">>", ">|", "&>", "&>>", ">&", "<", "<<", "<<<", "<>", "<&"))
# Shells, and programs that run the rest of their command line as a command.
SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "tcsh", "csh"))
_WRAPPERS = frozenset(("sudo", "doas", "env", "nohup", "timeout", "nice", "ionice", "stdbuf", "xargs", "exec",
                       "command", "builtin", "time", "setsid", "chroot", "runuser", "su", "unbuffer", "strace",
                       "flock", "chrt", "taskset", "eval"))
# Options of those wrappers that take a value (the command starts after it).
_WRAPPER_VALUES = {"sudo": "uUgpChrTD", "doas": "uC", "timeout": "sk", "nice": "n", "ionice": "cnp",
                   "runuser": "ugl", "su": "gGs", "chrt": "", "taskset": "", "xargs": "aEdILnPs", "stdbuf": "ioe"}
MAX_TEXT = 8192  # a command line longer than this is read only this far
MAX_DEPTH = 4    # sh -c 'sh -c "..."': how deep to look
MAX_WORDS = 1024  # an argv is read this far (a command line of 100,000 paths says no more than its first)
FEEDERS = 4      # commands ahead of a shell in its pipeline read for what feeds it (a|sh|sh|... stays linear)


# Operator characters quoted or escaped are a word's letters ("grep '>' f"
# redirects nothing), but the lexer gives a quoted ">" as it gives an
# operator: they are hidden from it as private-use characters, and given
# back in the words and targets.
_QUOTED = re.compile(r"\\." r"|'[^']*'" r'|"(?:[^"\\]|\\.)*"', re.S)  # \x, 'single', "double"
_HIDE = str.maketrans(";&|<>()", "\ue000\ue001\ue002\ue003\ue004\ue005\ue006")
_SHOW = {hidden: shown for shown, hidden in _HIDE.items()}


# "2>/dev/null": the lexer cuts the descriptor from its operator into a word
# of the command ("cp x /etc/cron.d/y 2" copied to "2"); which descriptor
# is redirected does not matter here, so it goes.
_DESCRIPTOR = re.compile(r"(^|[\s;&|()])\d+(?=[<>])")


def _tokens(text: str) -> List[str]:
    if "'" in text or '"' in text or "\\" in text:
        text = _QUOTED.sub(lambda quoted: quoted.group().translate(_HIDE), text)
    if ">" in text or "<" in text:
        text = _DESCRIPTOR.sub(r"\1", text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: read it word by word
        return text.split()


def _split_redirect(token: str) -> Optional[str]:
    """"2>" "1>>" "&>": the operator of a redirection written with its fd."""
    stripped = token.lstrip("0123456789")
    return stripped if stripped in _REDIRECTS and stripped != token or token in _REDIRECTS else None


def pipelines(text: str) -> List[List[Simple]]:
    """The pipelines of a shell command line, each a list of simple
    commands (``a | b; c > f`` is [[a, b], [c > f]])."""
    text = text[:MAX_TEXT]
    out: List[List[Simple]] = []
    pipeline: List[Simple] = []
    words: List[str] = []
    redirects: List[Tuple[str, str]] = []
    tokens = _tokens(text)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        operator = _split_redirect(token) if not token.isalnum() else None
        if token in _OPERATORS or token == "|" or token == "|&":
            if words or redirects:
                pipeline.append(Simple(words, redirects))
            words, redirects = [], []
            if token not in ("|", "|&") and pipeline:
                out.append(pipeline)
                pipeline = []
        elif operator is not None:
            # "2>&1": the target is a descriptor, not a file.
            target = tokens[i + 1] if i + 1 < len(tokens) else ""
            if target == "&" and i + 2 < len(tokens):  # ">" "&" "1" as the lexer may cut it
                target, i = "&" + tokens[i + 2], i + 1
            redirects.append((operator, target.translate(_SHOW)))
            i += 1
        elif "=" in token and not words and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", token):
            pass  # VAR=value before the command
        else:
            words.append(token.translate(_SHOW))
        i += 1
    if words or redirects:
        pipeline.append(Simple(words, redirects))
    if pipeline:
        out.append(pipeline)
    return out


def basename(word: str) -> str:
    return word.rpartition("/")[2]


def _unwrap(words: List[str]) -> Tuple[List[str], Optional[str]]:
    """The command a wrapper runs (sudo -u bob cmd -> cmd), and the string a
    shell or su runs with -c, if any."""
    for _ in range(8):
        if not words:
            return words, None
        program = basename(words[0])
        if program in SHELLS or program in ("su", "runuser"):
            script = _dash_c(words)
            if script is not None:
                return [], script
            if program in SHELLS:
                return words, None
        if program not in _WRAPPERS:
            return words, None
        values = _WRAPPER_VALUES.get(program, "")
        rest, i = words[1:], 0
        while i < len(rest):
            word = rest[i]
            if word == "--":
                i += 1
                break
            if program == "env" and "=" in word and not word.startswith("-"):
                i += 1
                continue
            if word.startswith("-") and len(word) > 1:
                takes = not word.startswith("--") and word[-1] in values and len(word) == 2
                i += 2 if takes else 1
                continue
            if program == "timeout" and i == 0 or program == "nice" and word.lstrip("-").isdigit():
                i += 1  # the duration
                continue
            break
        words = rest[i:]
    return words, None


def _dash_c(words: List[str]) -> Optional[str]:
    """The string after -c (or -lc, -ic, --command=) of a shell or su (whose
    options may follow the user: su - bob -c CMD)."""
    anywhere = basename(words[0]) in ("su", "runuser")
    for i, word in enumerate(words[1:], 1):
        if word.startswith("--command="):
            return word.split("=", 1)[1]
        if word in ("-c", "--command") or (word.startswith("-") and not word.startswith("--") and "c" in word[1:]
                                           and word[1:].isalpha()):
            return words[i + 1] if i + 1 < len(words) else ""
        if not word.startswith("-") and not anywhere:
            return None
    return None


def commands(words: List[str], depth: int = 0) -> Iterator[Tuple[Simple, List[Simple]]]:
    """Every simple command an argv runs, each with its pipeline up to it, looking
    through wrappers and the strings shells run with -c."""
    words, script = _unwrap(words[:MAX_WORDS])
    if script is not None:
        if depth < MAX_DEPTH:
            yield from commands_of_text(script, depth + 1)
        return
    if words:
        simple = Simple(words, [])
        yield simple, [simple]


def commands_of_text(text: str, depth: int = 0) -> Iterator[Tuple[Simple, List[Simple]]]:
    """Every simple command of a shell command line (sudo's cmd= is one)."""
    for pipeline in pipelines(text):
        for at, simple in enumerate(pipeline):
            inner, script = _unwrap(simple.words)
            if script is not None:
                if depth < MAX_DEPTH:
                    yield from commands_of_text(script, depth + 1)
                if simple.redirects:
                    yield Simple([], simple.redirects), pipeline[:at + 1]
                continue
            yield Simple(inner, simple.redirects), pipeline[:at] + [Simple(inner, simple.redirects)]


# -- judging --------------------------------------------------------------------

_WRITERS_LAST = frozenset(("cp", "mv", "install", "rsync", "ln", "scp"))
_ERASERS = frozenset(("rm", "shred", "truncate", "unlink", "wipe", "srm"))
_DECODERS = frozenset(("base64", "base32", "xxd", "openssl", "uudecode", "gpg", "gunzip", "zcat", "rev"))
_FETCHERS = frozenset(("curl", "wget", "fetch", "nc", "ncat", "netcat", "socat"))
_INTERPRETERS = frozenset(("python", "python2", "python3", "perl", "ruby", "php", "node", "lua", "tclsh"))
_FIREWALLS = frozenset(("iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy", "iptables-nft",
                        "ip6tables-nft", "ebtables", "arptables"))
_NETCATS = frozenset(("nc", "ncat", "netcat", "nc.openbsd", "nc.traditional", "socat"))
# Programs that only look at a file's name, mode or checksum: naming a
# secret to them reads nothing of it.
_METADATA = frozenset(("ls", "stat", "file", "chmod", "chown", "chgrp", "chattr", "lsattr", "getfacl", "setfacl",
                       "test", "[", "touch", "md5sum", "sha1sum", "sha256sum", "sha512sum", "b2sum", "cksum", "wc",
                       "du", "namei", "realpath", "readlink", "dirname", "basename", "restorecon", "ssh-keygen",
                       "vipw", "vigr", "pwck", "grpck", "passwd", "chage", "visudo", "aide", "debsums", "dpkg"))
# Login records, the system's logs of who did what, and the audit trail:
# wiping them hides an intrusion.
_TRAIL = (("/var/log/wtmp", "login records"), ("/var/log/btmp", "login records"),
          ("/var/log/lastlog", "login records"), ("/var/log/faillog", "login records"),
          ("/var/run/utmp", "login records"), ("/run/utmp", "login records"), ("/var/log/wtmp.*", "login records"),
          ("/var/log/btmp.*", "login records"), ("/var/log/auth.log*", "auth log"), ("/var/log/secure*", "auth log"),
          ("/var/log/audit/", "audit trail"), ("/var/log/messages*", "system log"),
          ("/var/log/syslog*", "system log"), ("/var/log/journal/", "system log"))
_SETID_SYMBOLIC = re.compile(r"^[ugoa]*[+=][rwxXt]*s")
_OCTAL_MODE = re.compile(r"0?[0-7]{1,4}\Z")  # 4755, 04755, 3775 (setuid is 0o4000, setgid 0o2000)


def _paths(words: List[str]) -> List[str]:
    return [word for word in words[1:] if word.startswith(("/", "~"))]


def _write_target(program: str, words: List[str]) -> List[Tuple[str, str]]:
    """(path, how) pairs a program's arguments say it writes."""
    args = words[1:]
    found: List[Tuple[str, str]] = []
    if program == "tee":
        found += [(word, "wrote ") for word in args if not word.startswith("-")]
    elif program in _WRITERS_LAST:
        plain = [word for word in args if not word.startswith("-")]
        if program in ("cp", "mv", "install", "ln") and "-t" in args:  # -t DIR: into DIR, whatever comes last
            at = args.index("-t")
            directory = args[at + 1] if at + 1 < len(args) else ""
            plain = [word for word in plain if word != directory][-1:] + [directory.rstrip("/") + "/"] if directory \
                else []
        if len(plain) >= 2 or program == "install" and plain:
            target, source = plain[-1], plain[-2:][0]  # the source next to it: "-m 755" is no source
            if target.endswith("/"):
                target += basename(source)
            found.append((target, "replaced " if program == "mv" else "wrote "))
    elif program == "dd":
        found += [(word[3:], "wrote ") for word in args if word.startswith("of=")]
    elif program in ("sed", "perl") and any(word == "-i" or word.startswith(("-i", "--in-place")) for word in args):
        found += [(word, "edited ") for word in args if word.startswith("/")]
    return found


def _place_of_write(path: str) -> Optional[Tuple[str, str]]:
    sev = _places()
    label = sev.place(path, sev.CRITICAL_PLACES)
    if label:
        return CRITICAL, label
    label = sev.place(path, sev.WARNING_PLACES)
    if label:
        return WARNING, label
    return None


def _write(path: str, how: str) -> Optional[Finding]:
    """A write into a place that matters."""
    if path.startswith("/dev/") or not path.startswith("/"):
        return _network(path) if path.startswith(("/dev/tcp/", "/dev/udp/")) else None
    placed = _place_of_write(path)
    if placed is None:
        return None
    severity, label = placed
    return _finding(severity, label + " written", how, path, " (%s)" % label)


def _trail(path: str) -> Optional[Finding]:
    sev = _places()
    label = sev.place(path, _TRAIL)
    if label:
        return _finding(CRITICAL, label + " wiped", "wiped ", path, " (%s)" % label)
    label = sev.place(path, sev.EVIDENCE_PLACES)
    if label:
        return _finding(WARNING, label + " erased", "erased ", path, " (%s)" % label)
    return None


def _network(target: str) -> Finding:
    """/dev/tcp/HOST/PORT: bash's own network redirection."""
    parts = target.split("/")
    where = "%s:%s" % (parts[3], parts[4]) if len(parts) > 4 else target
    return _finding(CRITICAL, "shell wired to the network", "wired a shell to ", where, " (/dev/%s)" % (
        parts[2] if len(parts) > 2 else "tcp"))


def _url_host(words: List[str]) -> str:
    for word in words[1:]:
        found = re.match(r"[a-z][a-z0-9+.-]*://(?:[^/@\s]*@)?([^/\s?#]+)", word)
        if found:
            return found.group(1)
    return ""


def _upload(program: str, words: List[str]) -> Optional[Finding]:
    """curl -T FILE URL, curl --data @FILE, wget --post-file=FILE."""
    args = words[1:]
    sent = ""
    for i, word in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else ""
        if program == "curl":
            if word in ("-T", "--upload-file"):
                sent = value
            elif word.startswith("-T") and len(word) > 2:
                sent = word[2:]
            elif word in ("-d", "--data", "--data-binary", "--data-raw", "--data-urlencode", "-F", "--form") \
                    and "@" in value:
                sent = value.split("@", 1)[1]
            elif word.startswith(("--data-binary=@", "--data=@", "--upload-file=")):
                sent = word.split("=", 1)[1].lstrip("@")
        elif program == "wget" and word.startswith(("--post-file", "--body-file")):
            sent = word.split("=", 1)[1] if "=" in word else value
        if sent:
            break
    if not sent:
        return None
    host = _url_host(words)
    return _finding(CRITICAL, "file uploaded", "uploaded ", sent, " to ", host or "?")


def _secret_read(program: str, words: List[str], actor: str) -> Optional[Finding]:
    if program in _METADATA or program in _ERASERS:
        return None
    sev = _places()
    for path in _paths(words) + [word.split("=", 1)[1] for word in words[1:] if word.startswith("if=")]:
        label = sev.place(path, sev.SECRET_PLACES)
        if label is None or label == "sudoers" or path.endswith(".pub"):
            continue
        if label == "private keys":
            owner = _home_owner(path)
            if path.startswith("~/") or owner and owner == actor:
                continue  # one's own key
            if path.startswith("~"):
                owner = path[1:].split("/")[0]
            return _finding(CRITICAL, "private key read", "read ", path, " (%s's private key)" % (owner or "?"))
        return _finding(CRITICAL, label + " read", "read ", path, " (%s)" % label)
    return None


def _home_owner(path: str) -> str:
    if path.startswith("/root/"):
        return "root"
    if path.startswith("/home/"):
        return path.split("/")[2]
    return ""


def _firewall(program: str, words: List[str]) -> Optional[Finding]:
    args = words[1:]
    if program in _FIREWALLS:
        for i, word in enumerate(args):
            if word in ("-F", "--flush", "-X", "--delete-chain"):
                return _finding(CRITICAL, "firewall flushed", "flushed the firewall (", " ".join(words), ")")
            if word in ("-P", "--policy") and i + 2 < len(args) and args[i + 2] == "ACCEPT":
                return _finding(CRITICAL, "firewall opened", "opened the firewall (", " ".join(words), ")")
    if program == "nft" and ("flush" in args or ("delete" in args and "table" in args)):
        return _finding(CRITICAL, "firewall flushed", "flushed the firewall (", " ".join(words), ")")
    if program == "ufw" and ("disable" in args or "reset" in args):
        return _finding(CRITICAL, "firewall disabled", "disabled the firewall (", " ".join(words), ")")
    if program == "systemctl" and any(word in ("stop", "disable", "mask") for word in args) and any(
            basename(word).split(".")[0] in ("ufw", "firewalld", "nftables", "netfilter-persistent", "iptables")
            for word in args):
        return _finding(CRITICAL, "firewall disabled", "stopped the firewall (", " ".join(words), ")")
    return None


def _mode(program: str, words: List[str]) -> Optional[Finding]:
    args = [word for word in words[1:] if not word.startswith("-") or _SETID_SYMBOLIC.match(word[1:] or "x")]
    if program == "chmod" and len(args) >= 2:
        mode = args[0]
        setid = bool(_OCTAL_MODE.match(mode) and int(mode, 8) & 0o6000) or bool(
            any(_SETID_SYMBOLIC.match(part) for part in mode.split(",")))
        if setid:
            return _finding(CRITICAL, "setuid bit set", "set a setuid/setgid bit on ", args[-1], "")
    if program == "setcap" and len(args) >= 2 and args[0] != "-r":
        return _finding(CRITICAL, "file capabilities set", "gave ", args[-1], " the capabilities ", args[0], "")
    return None


def _runs_temp(program: str, words: List[str]) -> Optional[Finding]:
    """sh /tmp/x.sh, python3 /dev/shm/y: the interpreter is a system
    program, the code is not; sudo /tmp/x (sudo's cmd) runs it itself."""
    if program not in SHELLS and not program.startswith(tuple(_INTERPRETERS)):
        script = words[0]
    else:
        script = next((word for word in words[1:] if not word.startswith("-")), "")
    if script.startswith(_places().TEMP_PLACES):
        return _finding(CRITICAL, "program run from a temporary place", "ran ", script, " (a temporary place)")
    return None


def _netcat(program: str, simple: Simple, fed: bool) -> Optional[Finding]:
    """nc -e /bin/sh HOST PORT; and nc HOST PORT sending a file ("< file")
    or what a pipe feeds it ("tar c /etc | nc HOST PORT"): an upload."""
    if program not in _NETCATS:
        return None
    words = simple.words
    args = words[1:]
    if any(word in ("-e", "-c", "--exec", "--sh-exec") or word.startswith(("EXEC:", "exec:", "SYSTEM:")) for word in
           args):
        return _finding(CRITICAL, "shell wired to the network", "wired a shell to the network (", " ".join(words),
                        ")")
    listening = any(word.startswith("-") and "l" in word[1:] and not word.startswith("--") for word in args)
    plain = [word for word in args if not word.startswith("-")]
    sent = next((target for operator, target in simple.redirects if operator == "<"), "")
    if not listening and len(plain) >= 2 and (sent or fed):
        where = "%s:%s" % (plain[-2], plain[-1])
        if sent:
            return _finding(CRITICAL, "file uploaded", "uploaded ", sent, " to ", where)
        return _finding(CRITICAL, "file uploaded", "uploaded what a pipe fed it to ", where)
    return None


def judge_simple(simple: Simple, pipeline: List[Simple], actor: str = "") -> Optional[Finding]:
    """One simple command (the last of ``pipeline`` so far): its
    redirections, then what its program does."""
    for operator, target in simple.redirects:
        if target.startswith(("/dev/tcp/", "/dev/udp/")):
            return _network(target)
        if operator in (">", ">|", "&>", ">>", "&>>") and target.startswith("/"):
            appends = ">>" in operator
            # Overwriting a log is wiping it (": > /var/log/wtmp"); appending to one is logging.
            found = (None if appends else _trail(target)) or _write(target, "appended to " if appends else "wrote ")
            if found:
                return found
    words = simple.words
    if not words:
        return None
    program = basename(words[0])
    for target, how in _write_target(program, words):
        found = _write(target, how)
        if found:
            return found
    if program in _ERASERS or program == "ln" and "-sf" in words[1:2] and "/dev/null" in words:
        for path in _paths(words):
            found = _trail(path)
            if found:
                return found
    found = _mode(program, words) or _firewall(program, words) or _netcat(program, simple, len(pipeline) > 1) or \
        _runs_temp(program, words)
    if found:
        return found
    if program in _FETCHERS:
        found = _upload(program, words)
        if found:
            return found
    if program in SHELLS or program in _INTERPRETERS:
        found = _piped_into(simple, pipeline[:-1])
        if found:
            return found
    return _secret_read(program, words, actor)


def _piped_into(simple: Simple, before: List[Simple]) -> Optional[Finding]:
    """A shell reading its script from a pipe fed by a decoder or a download
    (``before``: the commands ahead of it in its pipeline)."""
    if len(simple.words) > 1 and not all(word.startswith("-") for word in simple.words[1:]):
        return None
    for earlier in before[-FEEDERS:]:
        words, script = _unwrap(earlier.words)
        if script is not None:  # sudo's cmd lost the quotes: "sh -c curl -s URL | sh"
            after = earlier.words.index(script) + 1 if script in earlier.words else len(earlier.words)
            words = script.split() + earlier.words[after:]
        if not words:
            continue
        program = basename(words[0])
        if program in _DECODERS and any(word in ("-d", "--decode", "-r", "-D") or word.startswith("-d")
                                        for word in words[1:]) or program in ("gunzip", "zcat", "rev"):
            return _finding(CRITICAL, "decoded payload run", "ran a decoded payload in ", simple.words[0], "")
        if program in _FETCHERS:
            return _finding(CRITICAL, "downloaded script run", "ran what ", program, " fetched in ",
                            simple.words[0], "")
    return None


def judge_words(words: List[str], actor: str = "") -> Optional[Finding]:
    """The worst deed of an argv (an exec's), None if nothing matters.  A
    flood runs the same few command lines again and again: each is judged
    once (while the memory of them, MAX_JUDGED, lasts)."""
    key = (tuple(words), actor)
    found = _JUDGED.get(key, _UNJUDGED)
    if found is _UNJUDGED:
        found = _worst(judge_simple(simple, pipeline, actor) for simple, pipeline in commands(words))
        if sum(map(len, words)) < MAX_JUDGED_TEXT:
            if len(_JUDGED) >= MAX_JUDGED:
                _JUDGED.clear()
            _JUDGED[key] = found
    return found


# (argv, actor) -> its worst deed (judge_words), for command lines shorter
# than MAX_JUDGED_TEXT; forgotten all at once when MAX_JUDGED are known.
_JUDGED: Dict[Tuple[Tuple[str, ...], str], Optional[Finding]] = {}
_UNJUDGED = Finding("", "", ())
MAX_JUDGED = 1024
MAX_JUDGED_TEXT = 4096


def judge_text(text: str, actor: str = "") -> Optional[Finding]:
    """The worst deed of a shell command line (sudo's cmd=)."""
    return _worst(judge_simple(simple, pipeline, actor) for simple, pipeline in commands_of_text(text))


def _worst(findings) -> Optional[Finding]:
    worst = None
    for found in findings:
        if found is not None and (worst is None or found.severity == CRITICAL and worst.severity != CRITICAL):
            worst = found
            if worst.severity == CRITICAL:
                break
    return worst


# Programs whose command lines can say something: the rest are passed over
# at once (an exec flood of one program must stay cheap).
JUDGED = frozenset(SHELLS | _WRAPPERS | _WRITERS_LAST | _ERASERS | _FETCHERS | _INTERPRETERS | _FIREWALLS | _NETCATS
                   | {"tee", "dd", "sed", "chmod", "setcap", "nft", "ufw", "systemctl", "cat", "tac", "less", "more",
                      "head", "tail", "tar", "zip", "7z", "gzip", "xxd", "od", "hexdump", "strings", "grep", "egrep",
                      "awk", "base64", "openssl", "john", "unshadow", "vi", "vim", "nano", "view", "sqlite3"})


def worth_reading(words: List[str]) -> bool:
    return bool(words) and basename(words[0]) in JUDGED
