"""Real audit records for the tests: tests/data/corpora and tests/data.

The corpora are other projects' test records, kept in the repository as they
are, under their own licences (see tests/data/corpora/SOURCES.md), so that a
fresh clone runs every test.  Helpers here only read them and run them
through the plugin's own pipeline.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
sys.path.insert(0, SRC)

from audit_notify.counters import Counters  # noqa: E402
from audit_notify.format import format_event  # noqa: E402
from audit_notify.reader import EventReader, import_auparse  # noqa: E402
from audit_notify.rules import RuleSet  # noqa: E402

DATA = os.path.join(HERE, "data")
# AUDIT_NOTIFY_CORPORA runs the tests over another copy (or a larger set).
CORPORA = os.environ.get("AUDIT_NOTIFY_CORPORA", os.path.join(DATA, "corpora"))
auparse = import_auparse()


def corpus(*parts):
    """Path of a corpus file.  A missing one is an error, not a skip: the
    corpora ship with the tests, so a test that cannot find its records
    must fail rather than pass unnoticed."""
    path = os.path.join(CORPORA, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError("corpus file %s is missing (see tests/data/corpora/SOURCES.md)" % path)
    return path


def all_corpus_files():
    """Every corpus log, sorted.  None found is an error: the tests that
    check a claim over all of them would otherwise pass on nothing."""
    found = []
    for top, _dirs, files in os.walk(CORPORA):
        for name in files:
            if name.endswith((".txt", ".log")) or name in ("selinux-ssh",):
                found.append(os.path.join(top, name))
    if not found:
        raise FileNotFoundError("no corpus logs under %s (see tests/data/corpora/SOURCES.md)" % CORPORA)
    return sorted(found)


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def events_of(data, chunk=4096, node="testhost", lazy=True, counters=None):
    """Feed bytes to an EventReader in chunks of ``chunk`` bytes."""
    events = []
    reader = EventReader(auparse, events.append, counters or Counters(), node, lazy=lazy)
    for start in range(0, len(data), chunk):
        reader.feed(data[start:start + chunk])
    reader.flush()
    return events


def notifications_of(data, rules=RuleSet()):
    """One message per event, as the plugin sends with group_events = no."""
    return [format_event(e) for e in events_of(data) if rules.wanted(e)]


def messages_of(data, config=None, rules=RuleSet(), node="vm", counters=None):
    """What the plugin sends for these records: each message in its last
    version (an edit replaces the text of the message it edits), in the
    order the messages were first sent."""
    from audit_notify.config import Config
    from audit_notify.notify import Notifier
    latest, order = {}, []

    def accept(notification):
        key = notification.key or "#%d" % len(order)
        if key not in latest:
            order.append(key)
        latest[key] = notification

    notifier = Notifier(config or Config(), rules, accept, counters or Counters())
    for event in events_of(data, node=node):
        notifier.on_event(event)
    notifier.close_all()
    return [latest[key] for key in order]


def headlines(notifications):
    return [n.body.split("\n", 1)[0] for n in notifications]
