"""Rules: the blacklist and the allow-list an admin writes.

The original's ``field value`` lines keep their meaning; the extended form
has ``field=value``, ``field~glob``, ``field=~regex`` conditions (``!``
negates), ANDed on one line.  Files are parsed strictly: an error names
``file:line`` and what was expected.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from .config import Config, Error, read_text
from .events import Event, _SUMMARY

_FIELD_NAME = r"[A-Za-z_][\w-]*(?:\[\d+\])?"
_CONDITION = re.compile(
    r'(?P<name>%s)(?P<op>!=~|=~|!=|!~|=|~)(?P<value>"(?:[^"\\]|\\.)*"|[^"\s]\S*)' % _FIELD_NAME)


@dataclass(frozen=True)
class Condition:
    """One ``field OP value`` test.  Ops: ``=`` exact, ``~`` glob, ``=~``
    regular expression (search); a leading ``!`` negates."""

    name: str
    op: str
    value: str
    pattern: Optional["re.Pattern"] = None  # for ~ (a translated glob) and =~

    def matches(self, event: Event) -> bool:
        values = event.values(self.name)
        if self.op in ("=", "!="):
            hit = self.value in values
        elif self.op.endswith("=~"):
            hit = any(self.pattern.search(v) for v in values)
        else:
            hit = any(self.pattern.match(v) for v in values)
        return hit != (self.op[0] == "!")


@dataclass(frozen=True)
class Rule:
    """All conditions must match (AND); a rule file's lines are OR-ed."""

    conditions: Tuple[Condition, ...]
    where: str

    def matches(self, event: Event) -> bool:
        return all(c.matches(event) for c in self.conditions)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_rule(line: str, where: str) -> Rule:
    """One line of a rule file.

    The original format is ``field value``: the value is the rest of the
    line, matched exactly (``primary_subject root = auid`` has spaces).  A
    line whose first word holds an operator is the extended form: one or more
    ``field OP value`` conditions separated by spaces, values with spaces in
    double quotes.
    """
    first = line.split(None, 1)
    if re.fullmatch(_FIELD_NAME, first[0]):
        if len(first) < 2:
            raise Error("%s: expected 'field value' or 'field=value ...', got %r" % (where, line))
        return Rule((Condition(first[0], "=", first[1].strip()),), where)
    conditions = []
    position = 0
    while position < len(line):
        if line[position].isspace():
            position += 1
            continue
        found = _CONDITION.match(line, position)
        if not found or (found.end() < len(line) and not line[found.end()].isspace()):
            raise Error("%s: expected field=value, field~glob or field=~regex (optionally with !) at %r"
                        % (where, line[position:]))
        (name, op), value = found.group("name", "op"), _unquote(found.group("value"))
        pattern = None
        if op.endswith("=~"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise Error("%s: bad regular expression %r: %s" % (where, value, exc)) from None
        elif op.endswith("~"):
            pattern = re.compile(fnmatch.translate(value))
        conditions.append(Condition(name, op, value, pattern))
        position = found.end()
    return Rule(tuple(conditions), where)


def parse_rules(text: str, path: str) -> List[Rule]:
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append(parse_rule(line, "%s:%d" % (path, number)))
    return rules


def load_rules(path: str) -> List[Rule]:
    """Read a rule file; no path means no rules."""
    if not path:
        return []
    return parse_rules(read_text(path, "rule file"), path)


@dataclass(frozen=True)
class RuleSet:
    """Notify what the allow-list matches (everything if it is empty),
    minus what the blacklist matches."""

    deny: Tuple[Rule, ...] = ()
    allow: Tuple[Rule, ...] = ()
    # Rules indexed by one exact condition each (see _index), so that an
    # event is tested only against the rules that can match it.
    _index: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", (_index(self.deny), _index(self.allow)))

    def wanted(self, event: Event) -> bool:
        deny, allow = self._index
        if self.allow and not _any_matches(allow, event):
            return False
        return not _any_matches(deny, event)


def _index(rules: Tuple[Rule, ...]) -> Tuple[Dict[str, Dict[str, List[Rule]]], List[Rule]]:
    """Rules by the value of one ``name=value`` condition on a summary field
    (``type`` first), and the rules without one.  Within a rule, conditions
    on summary fields come first: a rule that fails on them never makes the
    event be read whole."""
    indexed: Dict[str, Dict[str, List[Rule]]] = {}
    other = []
    for rule in rules:
        rule = replace(rule, conditions=tuple(sorted(rule.conditions, key=lambda c: c.name not in _SUMMARY)))
        exact = [c for c in rule.conditions if c.op == "=" and c.name in _SUMMARY]
        if exact:
            key = min(exact, key=lambda c: c.name != "type")
            indexed.setdefault(key.name, {}).setdefault(key.value, []).append(rule)
        else:
            other.append(rule)
    return indexed, other


def _any_matches(index, event: Event) -> bool:
    indexed, other = index
    for name, by_value in indexed.items():
        if any(r.matches(event) for r in by_value.get(event.get(name, None), ())):
            return True
    return any(r.matches(event) for r in other)


def load_ruleset(config: Config) -> RuleSet:
    return RuleSet(tuple(load_rules(config.blacklist)), tuple(load_rules(config.allowlist)))

