"""Rules: the blacklist and the allow-list an admin writes.

The original's ``field value`` lines keep their meaning; the extended form
has ``field=value``, ``field~glob``, ``field=~regex`` conditions (``!``
negates), ANDed on one line.  Two conditions are about time, not fields:
``at=01:00-05:30`` (local time of day) and ``on=mon-fri`` or ``on=sat,sun``
(weekdays).  A line that starts with ``critical:``, ``warning:`` or
``info:`` sets the severity of what it matches instead of dropping it.
Time never mutes a critical event: a blacklist line with a time condition
does not drop one, a severity line with one does not lower one.  Files are
parsed strictly: an error names ``file:line`` and what was expected.
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field, replace
from typing import Dict, FrozenSet, List, Optional, Tuple

from .config import Config, Error, read_text
from .events import _EVENT_LEVEL, _SUMMARY, Event
from .severity import CRITICAL, LEVELS, RANK

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
        else:  # loops, not any(generator): this runs for every event
            test = self.pattern.search if self.op.endswith("=~") else self.pattern.match
            hit = False
            for value in values:
                if test(value):
                    hit = True
                    break
        return hit != (self.op[0] == "!")


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class TimeCondition:
    """``at=HH:MM-HH:MM`` (a span that may wrap midnight) or ``on=DAYS``
    (``mon-fri``, ``sat,sun``), tested on the event's local time."""

    name: str
    value: str
    spans: Tuple[Tuple[int, int], ...]  # minutes of the day, or weekday numbers (mon = 0)

    def matches(self, event: Event) -> bool:
        moment = time.localtime(event.timestamp)
        point = moment.tm_hour * 60 + moment.tm_min if self.name == "at" else moment.tm_wday
        return any(start <= point < end if start <= end else point >= start or point < end
                   for start, end in self.spans)


def _time_condition(name: str, value: str, where: str) -> TimeCondition:
    spans = []
    try:
        for part in value.lower().split(","):
            first, _, last = part.partition("-")
            if name == "at":
                start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (first, last))
                if not (len(first) == len(last) == 5 and first[2] == last[2] == ":" and start < 1440 >= end):
                    raise ValueError
                spans.append((start, end))
            else:
                start = _DAYS.index(first)
                end = _DAYS.index(last) + 1 if last else start + 1
                spans.append((start, end) if end > start else (start, end % 7))
    except ValueError:
        expected = "at=HH:MM-HH:MM" if name == "at" else "on=mon-fri or on=sat,sun"
        raise Error("%s: expected %s, got %s=%s" % (where, expected, name, value)) from None
    return TimeCondition(name, value, tuple(spans))


@dataclass(frozen=True)
class Rule:
    """All conditions must match (AND); a rule file's lines are OR-ed.
    With a ``severity`` the line sets it instead of dropping the event."""

    conditions: Tuple[Condition, ...]
    where: str
    when: Tuple[TimeCondition, ...] = ()
    severity: str = ""

    def matches(self, event: Event) -> bool:
        return self.fields_match(event) and self.time_matches(event)

    def fields_match(self, event: Event) -> bool:
        return _all_match(self.conditions, event)

    def time_matches(self, event: Event) -> bool:
        return _all_match(self.when, event)


def _all_match(conditions, event: Event) -> bool:
    """Whether every condition (field or time) matches: a loop, not
    all(generator), as this runs for every event."""
    for condition in conditions:
        if not condition.matches(event):
            return False
    return True


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
    severity = ""
    if first[0].endswith(":") and first[0][:-1] in LEVELS:
        if len(first) < 2:
            raise Error("%s: expected conditions after %r" % (where, first[0]))
        severity, line = first[0][:-1], first[1]
        first = line.split(None, 1)
    elif first[0].endswith(":"):
        raise Error("%s: %r is not a severity (critical:, warning: or info:)" % (where, first[0]))
    if re.fullmatch(_FIELD_NAME, first[0]) and not severity:
        if len(first) < 2:
            raise Error("%s: expected 'field value' or 'field=value ...', got %r" % (where, line))
        return Rule((Condition(first[0], "=", first[1].strip()),), where)
    conditions, when = [], []
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
        position = found.end()
        if name in ("at", "on"):
            if op != "=":
                raise Error("%s: %s takes =, not %s" % (where, name, op))
            when.append(_time_condition(name, value, where))
            continue
        pattern = None
        if op.endswith("=~"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise Error("%s: bad regular expression %r: %s" % (where, value, exc)) from None
        elif op.endswith("~"):
            pattern = re.compile(fnmatch.translate(value))
        conditions.append(Condition(name, op, value, pattern))
    return Rule(tuple(conditions), where, tuple(when), severity)


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
    minus what the blacklist matches; severity lines (from either file, in
    order) set the severity of what they match."""

    deny: Tuple[Rule, ...] = ()
    allow: Tuple[Rule, ...] = ()
    levels: Tuple[Rule, ...] = ()
    # Rules indexed by one exact condition each (see _index), so that an
    # event is tested only against the rules that can match it.
    _index: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", (_index(self.deny), _index(self.allow)))

    @classmethod
    def from_lines(cls, deny: List[Rule], allow: List[Rule]) -> "RuleSet":
        """Split the severity lines out of the two files' rules."""
        levels = tuple(r for r in deny + allow if r.severity)
        return cls(tuple(r for r in deny if not r.severity), tuple(r for r in allow if not r.severity), levels)

    def fields(self) -> FrozenSet[str]:
        """Every field a rule looks at."""
        return frozenset(c.name for rule in self.deny + self.allow + self.levels for c in rule.conditions)

    def summary(self) -> str:
        """How many rules of each sort were read, for the log."""
        return "%d blacklist, %d allow-list and %d severity rules" % (len(self.deny), len(self.allow),
                                                                     len(self.levels))

    def wanted(self, event: Event, severity: str = "") -> bool:
        deny, allow = self._index
        if self.allow and not _any_matches(allow, event, severity, allowing=True):
            return False
        return not _any_matches(deny, event, severity)

    def severity(self, event: Event, classified: str) -> str:
        """The severity the admin's lines give the event, else ``classified``."""
        for rule in self.levels:
            if rule.matches(event):
                if rule.when and classified == CRITICAL and RANK[rule.severity] > RANK[CRITICAL]:
                    continue  # time never mutes a critical event
                return rule.severity
        return classified


# Summary fields with one value per event: a glob on one is tested on it alone.
_ONE_VALUED = _SUMMARY & _EVENT_LEVEL


def _index(rules: Tuple[Rule, ...]):
    """Rules by the value of one ``name=value`` condition on a summary field
    (``type`` first); then rules by the literal start of one ``name~PREFIX*``
    glob on a one-valued summary field (the shipped ``type~CRYPTO_*``),
    tested with startswith before the rule is; and the rules with neither.
    Within a rule, conditions on summary fields come first: a rule that
    fails on them never makes the event be read whole."""
    indexed: Dict[str, Dict[str, List[Rule]]] = {}
    prefixed: Dict[str, List[Tuple[str, Rule]]] = {}
    other = []
    for rule in rules:
        rule = replace(rule, conditions=tuple(sorted(rule.conditions, key=lambda c: c.name not in _SUMMARY)))
        exact = [c for c in rule.conditions if c.op == "=" and c.name in _SUMMARY]
        starts = [(c.name, start) for c in rule.conditions if (start := _literal_start(c)) is not None]
        if exact:
            key = min(exact, key=lambda c: c.name != "type")
            indexed.setdefault(key.name, {}).setdefault(key.value, []).append(rule)
        elif starts:
            name, start = starts[0]
            prefixed.setdefault(name, []).append((start, rule))
        else:
            other.append(rule)
    return indexed, prefixed, other


def _literal_start(condition: Condition) -> Optional[str]:
    """``PREFIX`` of a ``name~PREFIX*`` condition on a summary field with
    one value per event, whose glob says nothing else; None otherwise."""
    value = condition.value
    if condition.op != "~" or condition.name not in _ONE_VALUED or \
            not value.endswith("*") or any(char in value[:-1] for char in "*?["):
        return None
    return value[:-1]


def _any_matches(index, event: Event, severity: str = "", allowing: bool = False) -> bool:
    """Whether a rule matches.  Time never mutes a critical event: for one,
    a blacklist line with a time condition does not match, and an
    allow-list line's time condition does not count."""
    critical = severity == CRITICAL
    indexed, prefixed, other = index
    for name, by_value in indexed.items():
        rules = by_value.get(event.get(name, None))
        if rules and _hits(rules, event, critical, allowing):
            return True
    for name, starts in prefixed.items():
        value = event.get(name, None)
        if value is not None:
            for start, rule in starts:
                if value.startswith(start) and _hits((rule,), event, critical, allowing):
                    return True
    return bool(other) and _hits(other, event, critical, allowing)


def _hits(rules, event: Event, critical: bool, allowing: bool) -> bool:
    for rule in rules:
        if critical and rule.when:
            if allowing and rule.fields_match(event):
                return True
        elif rule.matches(event):
            return True
    return False


def load_ruleset(config: Config) -> RuleSet:
    return RuleSet.from_lines(load_rules(config.blacklist), load_rules(config.allowlist))

