"""Real audit records for the tests: ../shared/corpora and tests/data.

The corpora are used as they are (see ../shared/corpora/SOURCES.md); helpers
here only read them and run them through the plugin's own pipeline.
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

CORPORA = os.environ.get("AUDIT_NOTIFY_CORPORA", os.path.join(ROOT, "..", "shared", "corpora"))
DATA = os.path.join(HERE, "data")
auparse = import_auparse()


def corpus(*parts):
    """Path of a corpus file; the test is skipped, not passed, if absent."""
    import pytest

    path = os.path.join(CORPORA, *parts)
    if not os.path.exists(path):
        pytest.skip("corpus file %s is not here" % path)
    return path


def all_corpus_files():
    """Every corpus log (none when ../shared is not beside the checkout: the
    tests parametrized over them are then empty, and skipped)."""
    found = []
    for top, _dirs, files in os.walk(CORPORA):
        for name in files:
            if name.endswith((".txt", ".log")) or name in ("selinux-ssh",):
                found.append(os.path.join(top, name))
    return sorted(found)


def every_corpus_file():
    """all_corpus_files() for a test that checks a claim over all of them:
    skipped, not passed on nothing, when the corpora are not here."""
    import pytest

    found = all_corpus_files()
    if not found:
        pytest.skip("no corpora at %s" % CORPORA)
    return found


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
