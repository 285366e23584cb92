"""Shell words: a command line read the way a shell would, forgivingly.

Audit records hold command lines as shell text (sudo's ``cmd``, the string
of ``sh -c``, a proctitle auparse joined with spaces), written by anyone.
masking.py needs its words, operators, simple commands and where a
command's name stands to know what is a password (``echo PW | sudo -S
id``).  This reads any text without
failing: an unclosed quote runs to the end, what it does not know (``$(``,
globs, ``#``) stays part of a word.  Each token keeps where it stands in
the text, so a masked word can be put back in place with its quotes.

    >>> [t.value for t in lex("echo 'a b' | sudo -S id")]
    ['echo', 'a b', '|', 'sudo', '-S', 'id']
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

_OPERATORS = ("<<<", "<<-", "&&", "||", "|&", ";;", ">>", "<<", "&>", ">&", "<&", ">|", "|", "&", ";", "(", ")",
              "<", ">", "\n")
# Operators that end a simple command (the rest are redirections).
SEPARATORS = frozenset(("|", "||", "&&", ";", "&", "|&", "(", ")", "\n", ";;"))
PIPES = frozenset(("|", "|&"))
HERE = frozenset(("<<<", "<<", "<<-"))  # here-string, here-documents
_WORD_END = frozenset(" \t\n|&;()<>")
_OP_START = frozenset("<>&|;()\n")
_PLAIN_RUN = re.compile(r"[^ \t\n|&;()<>'\"\\$]+")  # read in one step: no quote, escape or operator
_FD_REDIRECTS = (">", "<", ">>", "<&", ">&", ">|")


class Token:
    """A word ("word": ``value`` without its quotes, ``quote`` the one it
    opened with), an operator ("op"), or a here-document's text ("body");
    ``start``/``end`` say where it stands in the text."""

    __slots__ = ("kind", "value", "start", "end", "quote", "body", "fd")

    def __init__(self, kind: str, value: str, start: int = -1, end: int = -1, quote: str = ""):
        self.kind, self.value, self.start, self.end, self.quote = kind, value, start, end, quote
        self.body: Optional[int] = None  # on a << operator: its here-document's token
        self.fd = False                  # the "2" of "2>/dev/null": not an argument


def lex(text: str) -> List[Token]:
    """The words and operators of ``text`` (here-document bodies after the
    line that opens them).  Never fails."""
    tokens: List[Token] = []
    heredocs: List[Tuple[int, bool]] = []  # (operator's token, strip tabs), waiting for their newline
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t":
            i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None) if text[i] in _OP_START else None
        if op is None:
            i = _read_word(text, i, tokens)
            continue
        if op in _FD_REDIRECTS and tokens and tokens[-1].kind == "word" and tokens[-1].end == i and \
                tokens[-1].value.isdigit():
            tokens[-1].fd = True
        tokens.append(Token("op", op, i, i + len(op)))
        i += len(op)
        if op in ("<<", "<<-"):
            heredocs.append((len(tokens) - 1, op == "<<-"))
        elif op == "\n" and heredocs:
            i = _read_heredocs(text, i, tokens, heredocs)
            heredocs = []
    return tokens


def _read_word(text: str, i: int, tokens: List[Token]) -> int:
    start, n, value = i, len(text), []
    quote = text[i] if text[i] in "'\"" else ""
    while i < n and text[i] not in _WORD_END:
        plain = _PLAIN_RUN.match(text, i)
        if plain:
            value.append(plain.group())
            i = plain.end()
            continue
        char = text[i]
        if char == "'" or text.startswith("$'", i):
            i += 2 if char == "$" else 1
            close = text.find("'", i)
            close = n if close < 0 else close
            value.append(text[i:close])
            i = close + 1
        elif char == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                    i += 1
                value.append(text[i])
                i += 1
            i += 1
        elif char == "\\" and i + 1 < n:
            value.append(text[i + 1])
            i += 2
        else:
            value.append(char)
            i += 1
    end = min(i, n)
    tokens.append(Token("word", "".join(value), start, end, quote))
    return end


def _read_heredocs(text: str, i: int, tokens: List[Token], heredocs: List[Tuple[int, bool]]) -> int:
    """The bodies of the here-documents opened on the line just ended; an
    unterminated one runs to the end of the text."""
    for op_index, strip in heredocs:
        after = op_index + 1
        if after >= len(tokens) or tokens[after].kind != "word":
            continue
        delimiter, start = tokens[after].value, i
        end_of_body = len(text)
        while i < len(text):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            line = text[i:end].rstrip("\r")
            if (line.lstrip("\t") if strip else line) == delimiter:
                end_of_body = i
                i = min(end + 1, len(text))
                break
            i = end + 1
        tokens.append(Token("body", text[start:end_of_body], start, end_of_body))
        tokens[op_index].body = len(tokens) - 1
    return i


class Command:
    """A simple command: its arguments (indexes of word tokens), its
    redirections (operator, the index of the token it reads: a file, a
    here-string's word, a here-document's body) and the separator before
    it ("" first)."""

    __slots__ = ("words", "redirects", "before")

    def __init__(self, before: str):
        self.words: List[int] = []
        self.redirects: List[Tuple[str, int]] = []
        self.before = before


def commands(tokens: List[Token]) -> List[Command]:
    """The simple commands of a token list, in order (an empty one between
    two separators too, so that the separators are all there)."""
    found = [Command("")]
    skip = False
    for index, token in enumerate(tokens):
        current = found[-1]
        if token.kind == "body":
            continue
        if token.kind == "op":
            if token.value in SEPARATORS:
                found.append(Command(token.value))
            elif token.value in ("<<", "<<-"):
                if token.body is not None:
                    current.redirects.append((token.value, token.body))
                skip = True  # its delimiter
            else:
                current.redirects.append((token.value, index + 1))
                skip = True  # its file or word
            continue
        if skip:
            skip = False
        elif not token.fd:
            current.words.append(index)
    return found


def pipeline_before(found: List[Command], number: int):
    """The commands whose output reaches command ``number`` through a pipe,
    back to where its pipeline starts (``(echo a; echo b) | sudo -S id``:
    both echoes).  None when nothing is piped into it."""
    if found[number].before not in PIPES:
        return
    depth = 0
    for earlier in range(number - 1, -1, -1):
        yield found[earlier]
        before = found[earlier].before
        if before == ")":
            depth += 1
        elif before == "(":
            depth -= 1
            if depth < 0:
                return
        elif before == "" or (depth == 0 and before not in PIPES):
            return


# -- where a command's name stands --------------------------------------------

# Programs that run the command following their options and operands (sudo
# id, env X=1 id, timeout 5 id, ssh -p 22 host id), by name: their
# one-letter options that take a value, and their operands before the
# command.
WRAPPERS = {
    "sudo": ("ugpCDhrtTU", 0), "doas": ("uC", 0), "env": ("uSC", 0), "nohup": ("", 0), "time": ("fo", 0),
    "timeout": ("sk", 1), "nice": ("n", 0), "ionice": ("cnp", 0), "stdbuf": ("ioe", 0), "exec": ("a", 0),
    "command": ("", 0), "chroot": ("", 1), "setsid": ("", 0), "xargs": ("aEeIiLlnPsd", 0), "runuser": ("ugl", 0),
    "ssh": ("bcDEeFIiJLlmOopQRSWw", 1),
}
_SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "su"))  # their -c CMD
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def command_positions(values: List[str]) -> List[int]:
    """Where a command's name stands among a simple command's words: first
    (after VAR=value), then after each of WRAPPERS, or as the string of
    ``sh -c``.  ``tee -a /etc/passwd``: tee's, not passwd's."""
    positions, i = [], 0
    while i < len(values):
        while i < len(values) and _ASSIGNMENT.match(values[i]):
            i += 1
        if i >= len(values):
            break
        positions.append(i)
        name = values[i].rpartition("/")[2]
        if name in _SHELLS:
            if "-c" not in values[i + 1:]:
                break
            i = values.index("-c", i + 1) + 1
            continue
        if name not in WRAPPERS:
            break
        takes, operands = WRAPPERS[name]
        i += 1
        while i < len(values) and values[i].startswith("-") and values[i] != "-":
            option = values[i]
            i += 1
            if option == "--":
                break
            if len(option) == 2 and option[1] in takes:
                i += 1  # its value
        i += operands
    return positions
