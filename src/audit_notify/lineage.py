"""Lineage: what an event means by who spawned it.

An event alone can look ordinary and not be: ``ls -la /tmp`` is nothing,
unless the process that ran it descends from a shell a web server started
(a web shell: severity.py finds that shell); ``sh`` with no arguments is
nothing, unless its sibling in the same pipeline was ``base64 -d`` (a
decoded payload fed to a shell).  The kernel gives every exec its pid and
ppid, so both are read from the process tree as it goes by:

* taint: a process judged a web shell, and every process it starts after,
  are critical ("run from a web shell"), as laurel propagates process
  labels to children;
* siblings: the processes one shell starts for one pipeline share its pid
  as their ppid and start within a moment of each other; a bare shell
  among them fed by a decoder or a download runs what came through.

Both memories are bounded.  ``judge`` runs for every event, so it looks
at nothing when there is nothing to look for.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional, Tuple

from .events import Event
from .evidence import SHELLS, basename
from .programs import command_words
from .severity import CRITICAL, Verdict

WEB_SHELL = "shell started by a service account"  # severity._web_shell's verdict
MAX_TAINTED = 10000     # processes remembered as a web shell's
MAX_PIPELINES = 256     # recent pipelines (parent shells) remembered
PIPELINE_SECONDS = 2.0  # the processes of one pipeline start within this
_DECODERS = frozenset(("base64", "base32", "xxd", "openssl", "uudecode", "gpg"))
_FETCHERS = frozenset(("curl", "wget"))
_NOTED = _DECODERS | _FETCHERS | SHELLS


class Lineage:
    """See the module docstring."""

    def __init__(self):
        self._tainted: "OrderedDict[Tuple[str, str], bool]" = OrderedDict()
        # (node, parent pid) -> [(time, what)]: "bare" for a shell reading
        # its script from stdin, "decoder"/"fetcher" for what may feed one.
        self._pipelines: "OrderedDict[Tuple[str, str], List[Tuple[float, str, Event]]]" = OrderedDict()

    def judge(self, event: Event, verdict: Verdict) -> Verdict:
        facts = event.facts
        if self._tainted or verdict.why == WEB_SHELL:
            verdict = self._taint(event, verdict)
        if facts.command and verdict.severity != CRITICAL:
            words = command_words(event)
            if words and basename(words[0]) in _NOTED:
                verdict = self._pipeline(event, verdict, words)
        return verdict

    def _taint(self, event: Event, verdict: Verdict) -> Verdict:
        values = event.facts.values
        node = event.get("node")
        pid, ppid = values.get("pid", ""), values.get("ppid", "")
        if not pid:
            return verdict
        if verdict.why == WEB_SHELL or (node, ppid) in self._tainted:
            self._tainted[(node, pid)] = True
            self._tainted.move_to_end((node, pid))
            while len(self._tainted) > MAX_TAINTED:
                self._tainted.popitem(last=False)
            if verdict.severity != CRITICAL:
                return Verdict(CRITICAL, "run from a web shell")
        elif (node, pid) in self._tainted:
            return Verdict(CRITICAL, "run from a web shell") if verdict.severity != CRITICAL else verdict
        return verdict

    def _pipeline(self, event: Event, verdict: Verdict, words: List[str]) -> Verdict:
        what = _role(words)
        if what is None:
            return verdict
        key = (event.get("node"), event.facts.get("ppid", ""))
        when = event.timestamp
        seen = [one for one in self._pipelines.pop(key, []) if when - one[0] <= PIPELINE_SECONDS]
        seen.append((when, what, event))
        self._pipelines[key] = seen[-8:]
        while len(self._pipelines) > MAX_PIPELINES:
            self._pipelines.popitem(last=False)
        roles = {one[1] for one in seen}
        if "bare" in roles and ("decoder" in roles or "fetcher" in roles):
            feeding = "decoded payload run" if "decoder" in roles else "downloaded script run"
            return Verdict(CRITICAL, "%s by a shell" % feeding)
        return verdict


def _role(words: List[str]) -> Optional[str]:
    program = basename(words[0])
    if program in SHELLS:
        # No script and no -c: it reads its commands from stdin (a pipe, or
        # a terminal: the tty tells apart only the latter, not worth it).
        return "bare" if all(word.startswith("-") and "c" not in word for word in words[1:]) else None
    if program in _DECODERS:
        return "decoder" if any(word in ("-d", "--decode", "-r", "-D") or word.startswith("-d")
                                for word in words[1:]) else None
    if program in _FETCHERS:
        # Written to stdout (-O- or no -o): what it fetched goes down the pipe.
        outputs = [i for i, word in enumerate(words) if word in ("-o", "-O", "--output", "--output-document")]
        to_stdout = all(i + 1 < len(words) and words[i + 1] == "-" for i in outputs) if outputs else \
            program == "curl" or "-O-" in words or "-qO-" in words
        return "fetcher" if to_stdout else None
    return None
