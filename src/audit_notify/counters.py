"""Counters: what the plugin did, for the log, --status and the exit line."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict


log = logging.getLogger("audit-notify")


@dataclass
class Counters:
    """What the plugin did; logged periodically and at exit.  ``problems``
    counts each kind of bad input, which is logged once, not once per hit."""

    records: int = 0
    events: int = 0
    filtered: int = 0    # dropped by the blacklist / allow-list
    incidents: int = 0   # incidents sent as messages of their own
    notified: int = 0    # events in those incidents
    digested: int = 0    # events in incidents counted as repeats instead
    digests: int = 0     # repeat counts sent (each a message edited as it climbs)
    routine: int = 0     # events in info incidents, counted into the routine summary
    sent: int = 0        # messages the homeserver acknowledged
    retried: int = 0     # failed send attempts, retried later
    rate_limited: int = 0  # of those, refused by the homeserver's rate limit
    failed: int = 0      # messages given up on (dead letters)
    dropped: int = 0     # messages dropped at the spool's bounds
    errors: int = 0
    problems: Dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict:
        return dict(self.__dict__, problems=dict(self.problems))

    def problem(self, kind: str, count: int = 1, exc_info: bool = False):
        self.errors += count
        seen = self.problems.get(kind, 0)
        self.problems[kind] = seen + count
        if not seen:
            log.error("%s (logged once; counted at exit)", kind, exc_info=exc_info)

    def line(self) -> str:
        text = " ".join("%s=%d" % (k, v) for k, v in self.__dict__.items() if isinstance(v, int))
        return text + "".join("; %s: %d" % item for item in sorted(self.problems.items()))


