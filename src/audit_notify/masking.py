"""Masking: secrets typed on command lines never reach the room.

People type passwords where they should not: ``echo PW | sudo -S id``,
``sshpass -p PW ssh host``, ``mysql -pPW``, ``curl -u bob:PW``,
``https://bob:PW@host/``, ``echo 'user:PW' | chpasswd``.  The audit trail
records them (EXECVE, PROCTITLE, sudo's USER_CMD), and a message would
carry them to every phone in the room.  This module finds them and puts
``***`` in their place, keeping the command's shape::

    echo '***' | sudo -S id        sshpass -p *** ssh -p 2222 host
    https://bob:***@example.org/   echo 'svc:***' | chpasswd

It reads a command line two ways: as an argv (a word list, from EXECVE
or a NUL-split PROCTITLE) with ``mask_words``, and as shell text (sudo's
``cmd``, ``sh -c '...'``, a proctitle auparse joined with spaces, a
command we quoted ourselves) with ``mask_command``, which lexes it the way
a shell would, forgivingly (an unbalanced quote runs to the end).  A word
that is itself a command (the string of ``sh -c``, ssh's remote command)
is read again as one.  ``secrets`` / ``secrets_in`` return what was found,
for tests that look for it in the messages.

Where a program takes a password as an option is knowledge, kept in the
tables below: ``-p`` is sshpass's password, but ssh's port and mkdir's
parents, so ``-p`` is masked only for programs known to mean it.

message.py's ``shown`` masks every audit value a message renders (then
decodes URL escapes and cuts long tokens); format.py masks the fields
printed beside a message (``mask_fields``).  It runs where a message is
formatted, never per event, and most values pass one regex search and
are returned as they are.

Try it by hand::

    python3 -c 'from audit_notify.masking import mask_command as m; print(m("echo pw | sudo -S id"))'
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from .shellwords import HERE, WRAPPERS, Command, Token, command_positions, commands, lex, pipeline_before

MASK = "***"
# Nested commands (sh -c 'ssh host "sh -c ..."') are read this deep.
_MAX_DEPTH = 4

# Words one of which (in any case) a command line must hold for any rule
# below to apply.  Most command lines hold none and are returned after
# one search (~2 us for a short line).
_TRIGGERS = ("pass", "pwd", "pw", "secret", "token", "apikey", "api-key", "api_key", "auth", "://", "%3a%2f%2f",
             "sudo", "mysql", "maria", "mongo", "redis", "ldap", "curl", "lftp", "smb", "rpcclient", "net ",
             "hydra", "medusa", "rdesktop", "freerdp", "winrm", "crackmapexec", "cme ", "nxc ", "netexec", "sqlcmd",
             "bcp ", "osql", "zip", "7z", "rar ", "ipmitool", "keygen", "useradd", "usermod", "groupadd", "groupmod",
             "openssl", "snmp", "rabbitmqctl", "nmcli", "login", "cryptsetup", "kinit", "impacket", "newusers",
             "/p:")


_TRIGGER = re.compile("|".join(re.escape(word) for word in _TRIGGERS))  # on lowered text: (?i) is 10x slower


def _triggered(text: str) -> bool:
    return _TRIGGER.search(text.lower()) is not None


# -- where programs take a password -------------------------------------------

# How an option's value holds the password: all of it, only what an
# attached value holds (mysql's -pPW; a bare -p prompts), or what follows
# a separator (curl's user:PW, smbclient's user%PW, lftp's user,PW).
WHOLE, ATTACHED, COLON, PERCENT, COMMA = "whole", "attached", ":", "%", ","

_MYSQL = ("mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlshow", "mysqlcheck", "mysqlpump", "mysqlslap",
          "mysqlbinlog", "mysqlsh", "mariadb", "mariadb-dump", "mariadb-admin", "mariadb-import", "mariadb-check",
          "mariadb-show", "mariadb-slap", "mariadb-binlog")
_MONGO = ("mongo", "mongosh", "mongodump", "mongorestore", "mongoexport", "mongoimport", "mongostat", "mongotop",
          "mongofiles")
_LDAP = ("ldapsearch", "ldapadd", "ldapmodify", "ldapdelete", "ldapmodrdn", "ldapcompare", "ldapwhoami",
         "ldapexop", "ldapurl")
_SAMBA = ("smbclient", "rpcclient", "smbcacls", "smbget", "smbtar", "net", "samba-tool", "smbstatus", "wbinfo",
          "mount.smb3")
_SNMP = ("snmpwalk", "snmpget", "snmpset", "snmpbulkwalk", "snmpbulkget", "snmpgetnext", "snmptrap", "snmptable",
         "snmpdelta", "snmpstatus", "snmpinform", "snmpdf", "snmpnetstat")
_ATTACKS = ("hydra", "medusa", "ncrack", "rdesktop", "evil-winrm", "crackmapexec", "cme", "nxc", "netexec", "smbmap")


def _table() -> Dict[str, Dict[str, str]]:
    table: Dict[str, Dict[str, str]] = {
        "sshpass": {"-p": WHOLE},                       # the password itself (sshpass -f FILE, -e: none here)
        "redis-cli": {"-a": WHOLE},                     # redis-cli -a PW (--pass PW: a long option, below)
        "ldappasswd": {"-w": WHOLE, "-s": WHOLE, "-a": WHOLE},  # bind, new and old password
        "ipmitool": {"-P": WHOLE},
        "ssh-keygen": {"-N": WHOLE, "-P": WHOLE},       # new and old passphrase
        "openssl": {"-k": WHOLE, "-K": WHOLE},          # enc's passphrase and raw key
        "curl": {"-u": COLON, "--user": COLON, "-U": COLON, "--proxy-user": COLON},  # user:PW (no ':' prompts)
        "lftp": {"-u": COMMA},                          # lftp -u user,PW
    }
    for names, options in ((_MYSQL, {"-p": ATTACHED}), (_MONGO, {"-p": WHOLE}), (_LDAP, {"-w": WHOLE}),
                           (_SAMBA, {"-U": PERCENT, "--user": PERCENT, "--username": PERCENT}),
                           (_SNMP, {"-A": WHOLE, "-X": WHOLE, "-c": WHOLE}),  # auth, privacy, community
                           (_ATTACKS, {"-p": WHOLE}),
                           (("sqlcmd", "bcp", "osql"), {"-P": WHOLE}),
                           (("zip", "unzip", "zipcloak"), {"-P": WHOLE}),
                           (("7z", "7za", "7zr", "7zz", "rar", "unrar"), {"-p": ATTACHED}),
                           (("useradd", "usermod", "groupadd", "groupmod"), {"-p": WHOLE})):  # a crypt hash
        for name in names:
            table.setdefault(name, {}).update(options)
    return table


_OPTIONS = _table()
# A program's options are looked for in the words after its name, this
# many at most (``mysql mysql mysql ...`` stays linear).
_MAX_SCAN = 64
# Programs whose options end at their first operand (what follows is the
# command they run: ``sshpass -p PW ssh -p 2222 host`` keeps ssh's port).
_OPTIONS_FIRST = frozenset(("sshpass",))
# Registry clients: -p is the password only after "login" (docker run -p
# publishes a port).
_LOGIN_CLIENTS = frozenset(("docker", "podman", "nerdctl", "buildah", "skopeo", "helm", "oras", "crane"))

# Programs that read a password on standard input: what is piped or
# here-stringed into them is masked.  chpasswd-like ones read "user:PW"
# lines, and keep the user.
_STDIN_WHOLE = frozenset(("passwd", "smbpasswd", "cryptsetup", "kinit", "vncpasswd", "htdigest"))
_STDIN_LINES = frozenset(("chpasswd", "chgpasswd", "newusers"))
# What writes the text into such a pipe.
_PRODUCERS = frozenset(("echo", "printf", "yes"))
# Both count only where a command's name stands (shellwords.command_positions):
# ``echo 'x:0:0::/root:/bin/bash' | tee -a /etc/passwd`` keeps the line
# written, /etc/passwd there is a file, not passwd(1).

# Single-dash long options whose next word is a password (openssl's -passin
# pass:PW, keytool's -storepass PW, influx -password PW).
_DASH_PASSWORD = re.compile(r"-(?:pass(?:in|out|word|wd|phrase)?|(?:src|dest)?(?:store|key)pass)")
# openssl's other pass phrase sources; "pass:PW" is _in_word's (the PW only)
_NOT_A_PASSWORD = ("env:", "file:", "fd:", "stdin", "pass:")

# -- finding the secrets ------------------------------------------------------

def _basename(word: str) -> str:
    return word.rpartition("/")[2]


def _secret_name(name: str, value: Optional[str] = None) -> bool:
    """Whether a key or option name (``--db-password``, ``PGPASSWORD``,
    ``MYSQL_PWD``, ``pass``) holds a secret."""
    name = name.lstrip("-").lower()
    if name in ("pwd",) and value is not None and value.startswith(("/", "~")):
        return False  # the shell's $PWD, a directory
    return name.endswith(("password", "passwd", "passphrase", "passwort", "secret", "token", "apikey", "api-key",
                          "api_key", "sshpass")) or re.search(r"(?:^|[-_.])(?:pass|pwd|pw)$", name) is not None


class _Finder:
    """The secrets in one token list: for each token, the spans of its
    value to hide."""

    def __init__(self, tokens: List[Token], depth: int):
        self.tokens = tokens
        self.depth = depth
        self.spans: Dict[int, List[Tuple[int, int]]] = {}
        self.replaced: Dict[int, str] = {}  # a word that is a command of its own, masked as one
        self.found: List[str] = []

    def hide(self, index: int, start: int = 0, end: Optional[int] = None):
        value = self.tokens[index].value
        end = len(value) if end is None else end
        if start < end:
            self.spans.setdefault(index, []).append((start, end))

    def hide_after(self, index: int, offset: int, how: str):
        """Hide a value standing at ``offset`` in a word, as ``how`` says."""
        value = self.tokens[index].value
        if how in (COLON, PERCENT, COMMA):
            cut = value.find(how, offset)
            if cut >= 0:
                self.hide(index, cut + 1)
        else:
            self.hide(index, offset)

    def run(self):
        """Every rule, then a word that is a command line of its own read
        again as one (the string of sh -c, ssh's remote command)."""
        found = commands(self.tokens)
        for index, token in enumerate(self.tokens):
            if token.kind != "op":
                self._in_word(index, token.value)
        for command in found:
            self._options(command.words)
            self._programs(command.words)
        self._stdin(found)
        for index, token in enumerate(self.tokens):
            whole = [(0, len(token.value))] == _merge(self.spans.get(index, []))
            if token.kind == "word" and not whole and self.depth < _MAX_DEPTH and _is_command(token.value):
                inner = _Masked(token.value, self.depth + 1)
                if inner.found:  # the inner reading holds what this one saw in the word, and more
                    self.replaced[index] = inner.text
                    self.found.extend(inner.found)
                    self.spans.pop(index, None)
        for index in sorted(self.spans):
            value = self.tokens[index].value
            self.found.extend(value[a:b] for a, b in _merge(self.spans[index]))

    def _in_word(self, index: int, value: str):
        """What a word says by itself: a URL's user:PW@, KEY=PW, a header."""
        for match in _URL_USERINFO.finditer(value):
            self.hide(index, match.start(3), match.end(3))
        for match in _KEY_VALUE.finditer(value):
            key = match.group(1)
            rest = value[match.end():]
            whole = match.start() == 0 or key.startswith("-")  # the word is KEY=VALUE: all of the rest is it
            length = len(rest) if whole else len(re.match(r"[^\s,&;'\"]*", rest).group())
            if _secret_name(key, rest[:length]):
                self.hide(index, match.end(), match.end() + length)
        match = _HEADER.match(value)
        if match:
            self.hide(index, match.start(2))
        for prefix in ("pass:", "/p:", "/password:", "/pth:"):  # openssl's pass:PW; xfreerdp /p:PW
            if value.startswith(prefix):
                self.hide(index, len(prefix))

    def _options(self, words: List[int]):
        """``--password PW``, ``-passin pass:PW``: an option whose name says
        it (any program); the value attached with = is _in_word's."""
        for position, index in enumerate(words[:-1]):
            word = self.tokens[index].value
            nxt = words[position + 1]
            value = self.tokens[nxt].value
            if word.startswith("--") and "=" not in word and _secret_name(word) and \
                    not word[2:].startswith(("no-", "ask-", "prompt")) and not value.startswith("--"):
                self.hide(nxt)
            elif _DASH_PASSWORD.fullmatch(word) and not value.startswith(_NOT_A_PASSWORD):
                self.hide(nxt)

    def _programs(self, words: List[int]):
        for position, index in enumerate(words):
            name = _basename(self.tokens[index].value)
            if name not in _PROGRAMS and not name.startswith("impacket-"):
                continue
            rest = words[position + 1:position + 1 + _MAX_SCAN]
            if name in _OPTIONS:
                self._program_options(_OPTIONS[name], rest, name in _OPTIONS_FIRST)
            if name in _LOGIN_CLIENTS:
                after = [i for i in rest if self.tokens[i].value == "login"]
                if after:
                    self._program_options({"-p": WHOLE}, [i for i in rest if i > after[0]], False)
            positional = _POSITIONAL.get(name)
            if positional is not None:
                positional(self, rest)
            if name.startswith("impacket-") or name in _IMPACKET:
                for i in rest:
                    match = _IMPACKET_TARGET.match(self.tokens[i].value)
                    if match:
                        self.hide(i, match.start(1), match.end(1))

    def _program_options(self, options: Dict[str, str], rest: List[int], options_first: bool):
        skip_next = False
        for position, index in enumerate(rest):
            word = self.tokens[index].value
            if skip_next:
                skip_next = False
                continue
            if options_first and not word.startswith("-"):
                return
            for option, how in options.items():
                if word == option and how != ATTACHED and position + 1 < len(rest):
                    nxt = rest[position + 1]
                    if not self.tokens[nxt].value.startswith("--"):
                        self.hide_after(nxt, 0, how)
                        skip_next = True
                elif option.startswith("--") and word.startswith(option + "="):
                    self.hide_after(index, len(option) + 1, how)
                elif not option.startswith("--") and word.startswith(option) and len(word) > len(option) and \
                        not word.startswith("--"):
                    self.hide_after(index, len(option), how)

    def _stdin(self, found: List[Command]):
        """What is piped or here-stringed into a program that reads a
        password on its standard input (sudo -S, chpasswd, passwd...).
        Readers are taken last first, and a walk back along a pipeline
        stops where a later reader's walk went (what it read before is
        done), so a pipeline of many readers costs its length, not its
        square."""
        readers = [(number, self._reader(c.words)) for number, c in enumerate(found)]
        done: Dict[int, str] = {}  # a command walked: for which kind of reader (WHOLE hides the most)
        for number, how in reversed(readers):
            if how is None:
                continue
            self._stdin_redirects(found[number].redirects, how)
            for producer in pipeline_before(found, number):
                if done.get(id(producer)) in (how, WHOLE):
                    break
                done[id(producer)] = how
                self._produced(producer, how)

    def _reader(self, words: List[int]) -> Optional[str]:
        """WHOLE or COLON when this command reads a password on stdin."""
        values = [self.tokens[i].value for i in words]
        if "--password-stdin" in values:  # docker login --password-stdin
            return WHOLE
        for position in command_positions(values):
            value = values[position]
            name = _basename(value)
            if name in ("sudo", "sudo-rs") and _sudo_reads_stdin(values[position + 1:]):
                return WHOLE
            if name in _STDIN_LINES:
                return COLON
            if name in _STDIN_WHOLE or \
                    (name == "htpasswd" and any(v.startswith("-") and "i" in v for v in values[position:])):
                return WHOLE
        return None

    def _produced(self, command: Command, how: str):
        """Hide what echo, printf or yes write, or a here-string holds."""
        words = command.words
        for position in command_positions([self.tokens[i].value for i in words]):
            index = words[position]
            if _basename(self.tokens[index].value) in _PRODUCERS:
                args = [i for i in words[position + 1:] if not re.fullmatch(r"-[neE]+", self.tokens[i].value)]
                if _basename(self.tokens[index].value) == "printf" and len(args) > 1 and \
                        "%" in self.tokens[args[0]].value:
                    args = args[1:]  # the format, not the text
                for i in args:
                    self._hide_input(i, how)
                break
        self._stdin_redirects(command.redirects, how)

    def _stdin_redirects(self, redirects, how: str):
        """A here-string's word, a here-document's body."""
        for op, index in redirects:
            if op in HERE and index < len(self.tokens) and self.tokens[index].kind != "op":
                self._hide_input(index, how)

    def _hide_input(self, index: int, how: str):
        value = self.tokens[index].value
        if how != COLON:
            self.hide(index)
            return
        # user:PW lines (a literal \n, as echo -e and printf take it, ends one too)
        position = 0
        for line in re.split(r"(\n|\\n)", value):
            if line not in ("\n", "\\n") and line:
                colon = line.find(":")
                self.hide(index, position + (colon + 1 if colon >= 0 else 0), position + len(line))
            position += len(line)


def _sudo_reads_stdin(args: List[str]) -> bool:
    """Whether sudo's own options (before its command) hold -S/--stdin."""
    takes_value = WRAPPERS["sudo"][0]
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--stdin":
            return True
        if not arg.startswith("-") or arg == "--":
            return False
        if arg.startswith("--"):
            continue
        for position, letter in enumerate(arg[1:]):
            if letter == "S":
                return True
            if letter in takes_value:
                skip = position == len(arg) - 2
                break
    return False


def _htpasswd(finder: _Finder, rest: List[int]):
    """htpasswd -b FILE USER PW, htpasswd -nb USER PW."""
    flags, operands, skip = "", [], False
    for index in rest:
        value = finder.tokens[index].value
        if skip:
            skip = False
        elif value.startswith("-") and len(value) > 1:
            flags += value[1:]
            skip = value.endswith("C")  # -C COST
        else:
            operands.append(index)
    wanted = 1 if "n" in flags else 2
    if "b" in flags and len(operands) > wanted:
        finder.hide(operands[wanted])


def _operands(finder: _Finder, rest: List[int]) -> List[int]:
    return [i for i in rest if not finder.tokens[i].value.startswith("-")]


def _after_word(words: Sequence[str], nth: int):
    """A rule: hide the nth operand after any of ``words`` (mysqladmin
    password PW, rabbitmqctl add_user USER PW, nmcli ... password PW)."""
    def rule(finder: _Finder, rest: List[int]):
        operands = _operands(finder, rest)
        for position, index in enumerate(operands):
            if finder.tokens[index].value in words and position + nth < len(operands):
                finder.hide(operands[position + nth])
    return rule


def _nth_operand(nth: int):
    def rule(finder: _Finder, rest: List[int]):
        operands = _operands(finder, rest)
        if len(operands) > nth:
            finder.hide(operands[nth])
    return rule


def _first_operand(after: str, value_options: Sequence[str]):
    """A rule: hide the first operand (after the word ``after``, if given),
    stepping over the values of ``value_options`` (openssl passwd -salt S
    PW, mkpasswd -m sha-512 PW)."""
    def rule(finder: _Finder, rest: List[int]):
        values = [finder.tokens[i].value for i in rest]
        if after:
            if after not in values:
                return
            rest = rest[values.index(after) + 1:]
        skip = False
        for index in rest:
            value = finder.tokens[index].value
            if skip or value.startswith("-"):
                skip = not skip and value in value_options
                continue
            finder.hide(index)
            return
    return rule


_POSITIONAL = {
    "htpasswd": _htpasswd,
    "openssl": _first_operand("passwd", ("-salt", "-in")),
    "mkpasswd": _first_operand("", ("-m", "-S", "-R", "-P", "--method", "--salt", "--rounds", "--password-fd")),
    "wpa_passphrase": _nth_operand(1),                                     # SSID PASSPHRASE
    "mysqladmin": _after_word(("password", "old-password"), 1),            # mysqladmin password NEW
    "rabbitmqctl": _after_word(("add_user", "change_password", "authenticate_user"), 2),
    "nmcli": _after_word(("password", "wifi-sec.psk", "802-11-wireless-security.psk"), 1),
}
_IMPACKET = frozenset(("psexec.py", "smbexec.py", "wmiexec.py", "atexec.py", "dcomexec.py", "secretsdump.py",
                       "GetUserSPNs.py", "GetNPUsers.py", "smbclient.py", "mssqlclient.py", "lookupsid.py"))
_IMPACKET_TARGET = re.compile(r"(?:[\w.-]+/)?[\w.$-]+:(.+)@[\w.:\[\]-]+$")  # domain/user:PW@host
# Every program some rule above knows (impacket-* too, by its prefix).
_PROGRAMS = frozenset(_OPTIONS) | _LOGIN_CLIENTS | frozenset(_POSITIONAL) | _IMPACKET
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#@:'\"]*):([^\s/'\"]*)@")
_KEY_VALUE = re.compile(r"(?<![\w.-])(-{0,2}[A-Za-z_][\w.-]*)=")
_HEADER = re.compile(r"(?i)\s*((?:proxy-)?authorization|[\w-]*(?:api-?key|token|secret|password))\s*:\s*"
                     r"(?:(?:basic|bearer|token|digest|negotiate|ntlm)\s+)?(\S)")


def _merge(spans: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    merged: List[Tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _apply(value: str, spans: List[Tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in _merge(spans):
        out.append(value[last:start] + MASK)
        last = end
    return "".join(out) + value[last:]


def _is_command(value: str) -> bool:
    """A word that is a command line of its own (sh -c's, ssh's remote one)."""
    return any(c in value for c in " \t\n|;&<") and _triggered(value)


_BARE = re.compile(r"[\w@%+=:,./*~-]+")


def _requote(token: Token, value: str) -> str:
    """A masked word as it stands in shell text: in its own quotes if they
    still fit, bare if it needs none, else single-quoted."""
    quote = token.quote
    if quote and quote not in value and (quote == "'" or not any(c in value for c in "\\$`")):
        return quote + value + quote
    if _BARE.fullmatch(value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


class _Masked:
    """One shell text, lexed and masked: ``text`` and what was ``found``."""

    def __init__(self, text: str, depth: int = 0):
        self.text, self.found = text, []
        if not _triggered(text):
            return
        tokens = lex(text)
        finder = _Finder(tokens, depth)
        finder.run()
        if not finder.found:
            return
        self.found = finder.found
        edits = []
        for index, spans in finder.spans.items():
            token = tokens[index]
            masked = _apply(token.value, spans)
            edits.append((token.start, token.end, masked if token.kind == "body" else _requote(token, masked)))
        for index, masked in finder.replaced.items():
            token = tokens[index]
            edits.append((token.start, token.end, _requote(token, masked)))
        out, last = [], 0
        for start, end, new in sorted(edits):
            if start >= last:
                out.append(text[last:start] + new)
                last = end
        self.text = "".join(out) + text[last:]


# -- the API ------------------------------------------------------------------

def mask_command(text: str) -> str:
    """Shell text (sudo's cmd, sh -c's string, a proctitle joined with
    spaces) with every password it shows replaced by ``***``."""
    return _Masked(text).text


def secrets_in(text: str) -> List[str]:
    """The passwords shell text shows (what mask_command hides)."""
    return _Masked(text).found


def _words_finder(words: Sequence[str]) -> Optional[_Finder]:
    if not any(_triggered(word) for word in words):
        return None
    finder = _Finder([Token("word", word) for word in words], 0)
    finder.run()
    return finder


def mask_words(words: Sequence[str]) -> List[str]:
    """An argv (EXECVE's words, a NUL-split proctitle) with every password
    it shows replaced by ``***``; a word that is a command line of its
    own (``sh -c '...'``) is masked as one."""
    finder = _words_finder(words)
    if finder is None or not finder.found:
        return list(words)
    out = list(words)
    for index, spans in finder.spans.items():
        out[index] = _apply(words[index], spans)
    for index, masked in finder.replaced.items():
        out[index] = masked
    return out


def secrets(words: Sequence[str]) -> List[str]:
    """The passwords an argv shows (what mask_words hides)."""
    finder = _words_finder(words)
    return finder.found if finder is not None else []


# Of a longer text field only this much is printed, masked.
_FIELD_CHARS = 65536
# The fields that hold a command line or free text: read as one.
_TEXT_FIELDS = frozenset(("argv", "cmd", "proctitle", "text", "msg", "data", "cmdline"))
_ARG_FIELD = re.compile(r"a\d+(?:\[\d+\])?")


def mask_fields(fields: Dict[str, str], words: Sequence[str] = ()) -> Dict[str, str]:
    """An event's fields (what --json prints beside a message) without the
    passwords its command line shows: a text field masked as a command,
    an argument field (a2) that is one masked whole, and a password found
    in ``words`` (its argv) or a text field masked wherever else it stands
    (auparse's primary_object repeats sudo's cmd)."""
    found = secrets(words) if words else []
    for name in _TEXT_FIELDS.intersection(fields):
        found.extend(secrets_in(fields[name]))
    anywhere = [secret for secret in found if len(secret) >= 4]  # "abc" would mask unrelated values
    out = {}
    for name, value in fields.items():
        if isinstance(value, str):
            if value in found and _ARG_FIELD.fullmatch(name):
                value = MASK
            for secret in anywhere:
                value = value.replace(secret, MASK)
            if name in _TEXT_FIELDS:
                value = mask_command(value[:_FIELD_CHARS]) + (
                    "… (%d more characters)" % (len(value) - _FIELD_CHARS) if len(value) > _FIELD_CHARS else "")
        out[name] = value
    return out
