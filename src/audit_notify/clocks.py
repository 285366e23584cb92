"""Each host's own time, for the moments when its input is quiet.

Incidents, repeat counts and the routine summary keep time by the events'
own clock, host by host (agenda.py, repeats.py): an event is handled at its
own time whatever the wall clock says, so a host whose clock lags, or
auditd catching up a backlog, groups exactly as a prompt one and as a
--dry-run of the same file.  Only what a quiet host left open needs the
wall clock: a host whose latest event was at its time T, and which has
been silent for W seconds of the wall clock since, is at T + W.

The daemon tells HostClocks of each event as it comes (heard), asks where
a quiet host is now (now), and when a host will reach a moment (wall_at),
to sleep until then.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Tuple

# The routine summary's "host": whichever host is furthest on.
ANY = None
# At most this many hosts are remembered, the least recently heard
# forgotten first (a bound on memory, not a setting): a forgotten host
# is at the wall clock's time until it is heard again.
MAX_HOSTS = 10000


class HostClocks:
    """Per host: its latest event's time, and the wall clock's when that
    host was last heard."""

    def __init__(self):
        self._hosts: "OrderedDict[str, Tuple[float, float]]" = OrderedDict()

    def heard(self, node: str, when: float, wall: float):
        """An event of ``node`` at its time ``when`` came at ``wall``."""
        known = self._hosts.pop(node, None)
        if known is not None and known[0] > when:
            when = known[0]
        self._hosts[node] = (when, wall)
        if len(self._hosts) > MAX_HOSTS:
            self._hosts.popitem(last=False)

    def now(self, node: Optional[str], wall: float) -> float:
        """Where host ``node`` (ANY: the one furthest on) is in its own
        time at ``wall``; a host not heard of is at the wall clock's."""
        if node is ANY:
            return max((when + max(0.0, wall - at) for when, at in self._hosts.values()), default=wall)
        known = self._hosts.get(node)
        if known is None:
            return wall
        return known[0] + max(0.0, wall - known[1])

    def wall_at(self, node: Optional[str], moment: float) -> float:
        """When (wall clock) host ``node`` reaches ``moment`` of its time if
        it stays quiet; a moment it has reached already is in the past."""
        if node is ANY:
            return min((at + moment - when for when, at in self._hosts.values()), default=moment)
        known = self._hosts.get(node)
        if known is None:
            return moment
        return known[1] + moment - known[0]
