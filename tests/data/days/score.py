#!/usr/bin/env python3
"""How the plugin as shipped (default config, blacklist.example) scores a
recorded day against its manifest: the figures the severity work is judged
by.

    python3 tests/data/days/score.py admin bfuzzy           # one pass
    python3 tests/data/days/score.py --twice admin          # the second pass

For each DAY it prints:

* each attack step (manifest kind "attack", severity above "none"): the
  worst severity among the messages that hold its evidence (tests/days.py
  finds the evidence as the manifest's notes say), "not in log" when the
  rule set left no record of it, or "no message" when its records are in
  no message (filtered out);
* the warning and critical messages that hold ONLY ordinary work (none of
  the events of any attack-kind action), with their headlines;
* the number of messages, and (for days whose manifest lists "secrets")
  how many show a password typed on a command line.

--twice feeds the day, then the same day again with every time one day
later (new serials), into the same plugin, and prints the second pass:
its attack steps by the messages that hold the second pass's evidence,
and, for ordinary work and the total, the messages first sent during the
second pass (edits of the first day's messages are not new messages).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from days import Day  # noqa: E402  (tests/days.py; it puts src/ on the path)

from audit_notify.severity import RANK  # noqa: E402

LOUD = ("critical", "warning")


def worst(notes):
    """The most severe severity among NOTES ("" when there are none)."""
    severities = [n.severity for n in notes if n.severity in RANK]
    return min(severities, key=RANK.get) if severities else ""


def headline(note):
    return note.body.split("\n")[0]


def score(day, second=False):
    """The figures of one pass of a day, as lines of text."""
    out = []
    attack_serials = set()
    for action in day.actions("attack"):
        attack_serials |= day.evidence(action, second)
    out.append("attack steps (worst severity of the messages holding the step's evidence):")
    for action in day.actions("attack"):
        if action["severity"] == "none":
            continue
        serials = day.evidence(action, second)
        mark = worst(day.where(serials)) or "no message" if serials else "not in log"
        out.append("  %-10s [%s] %s" % (mark, action["severity"], action["label"]))
    messages = day.messages(second=second)
    ordinary = [n for n in messages if n.severity in LOUD and not set(n.serials) & attack_serials]
    counts = {s: sum(n.severity == s for n in ordinary) for s in LOUD}
    out.append("ordinary work only: %d warning, %d critical messages" % (counts["warning"], counts["critical"]))
    out += ["  %s" % headline(n)[:160] for n in ordinary]
    by = {}
    for note in messages:
        by[note.severity or "-"] = by.get(note.severity or "-", 0) + 1
    out.append("messages: %d (%s)" % (len(messages), ", ".join("%s %d" % kv for kv in sorted(by.items()))))
    secrets = day.manifest.get("secrets", [])
    if secrets:
        shown = [n for n in messages if any(s in n.body or s in n.html for s in secrets)]
        out.append("messages showing a typed password (manifest secrets): %d" % len(shown))
    if second:
        edited = [day.sent[key] for key in day.second_edits]
        out.append("first-day messages edited during the second pass: %d" % len(edited))
        out += ["  %s %s" % (n.severity or "-", headline(n)[:160]) for n in edited]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("days", nargs="+", metavar="DAY", help="a day of tests/data/days (admin, stig, ...)")
    parser.add_argument("--twice", action="store_true",
                        help="feed the day, then the same day a day later; print the second pass")
    args = parser.parse_args(argv)
    for name in args.days:
        day = Day(name, passes=2 if args.twice else 1)
        pass_name = "second pass, a day later" if args.twice else "one pass"
        print("== %s (%s; %d events per pass) ==" % (name, pass_name, len(day.events) // (2 if args.twice else 1)))
        print("\n".join(score(day, second=args.twice)))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
