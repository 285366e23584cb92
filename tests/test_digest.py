"""Digests: the first few of a shape alone, then one summary per window of event time."""

from audit_notify.digest import Digester
from audit_notify.events import Event


def _exec(t, exe="/usr/bin/true", node="vm", uid="root"):
    fields = {"type": "SYSCALL", "key": "k", "kind": "audit-rule", "action": "executed", "node": node,
              "primary_subject": "%s = auid" % uid, "success": "yes", "how": exe, "syscall": "execve",
              "argv": exe.rsplit("/", 1)[1], "auid": uid, "uid": uid, "serial": str(int(t * 10))}
    return Event(fields=fields, records=[("SYSCALL", fields)], timestamp=t)


def _run(digester, events):
    alone, summaries = [], []
    for event in events:
        send, closed = digester.offer(event)
        summaries += closed
        if send:
            alone.append(event)
    return alone, summaries


def test_first_n_alone_then_one_summary_per_window():
    digester = Digester(after=3, window=60)
    events = [_exec(1000 + i * 0.01) for i in range(2000)]  # 20 s of events
    alone, summaries = _run(digester, events)
    summaries += digester.close_all()
    assert len(alone) == 3
    assert len(summaries) == 1
    assert summaries[0].body.startswith("🔁 +1,997 more in 60 s, like: Command: true by root (rule k) on vm")
    assert summaries[0].fields["digest"] == "1,997"


def test_windows_follow_event_time_not_the_clock():
    digester = Digester(after=1, window=60)
    events = [_exec(1000 + i) for i in range(150)]  # one per second for 150 s
    alone, summaries = _run(digester, events)
    summaries += digester.close_all()
    # Windows start at 1000, 1060, 1120: one alone and one summary each.
    assert [e.timestamp for e in alone] == [1000, 1060, 1120]
    assert [s.fields["digest"] for s in summaries] == ["59", "59", "29"]
    assert len(alone) + sum(int(s.fields["digest"]) for s in summaries) == 150


def test_shapes_are_counted_apart_per_host_and_program():
    digester = Digester(after=2, window=60)
    events = []
    for i in range(30):
        events += [_exec(1000 + i, node="web1"), _exec(1000 + i, node="web2"), _exec(1000 + i, exe="/usr/bin/id")]
    alone, summaries = _run(digester, events)
    summaries += digester.close_all()
    assert len(alone) == 6
    heads = sorted(s.body.split("\n")[0] for s in summaries)
    assert heads == ["🔁 +28 more in 60 s, like: Command: id by root (rule k) on vm",
                     "🔁 +28 more in 60 s, like: Command: true by root (rule k) on web1",
                     "🔁 +28 more in 60 s, like: Command: true by root (rule k) on web2"]


def test_due_closes_only_windows_that_ended():
    digester = Digester(after=1, window=60)
    _run(digester, [_exec(1000), _exec(1001), _exec(1030, exe="/usr/bin/id"), _exec(1031, exe="/usr/bin/id")])
    assert digester.due(1059) == []
    [first] = digester.due(1060)
    assert "Command: true" in first.body
    assert [s.body.split("\n")[0] for s in digester.due(1100)] == [
        "🔁 +1 more in 60 s, like: Command: id by root (rule k) on vm"]
    assert digester.windows == {}


def test_zero_means_never_digest():
    digester = Digester(after=0, window=60)
    alone, summaries = _run(digester, [_exec(1000 + i * 0.001) for i in range(500)])
    assert len(alone) == 500 and summaries == [] and digester.close_all() == []


def test_state_survives_a_restart():
    digester = Digester(after=1, window=60)
    _run(digester, [_exec(1000 + i) for i in range(10)])
    again = Digester(after=1, window=60)
    again.restore(digester.snapshot())
    _run(again, [_exec(1010 + i) for i in range(5)])
    [summary] = again.close_all()
    assert summary.fields["digest"] == "14"


def test_hostile_text_in_a_digest_sample_is_escaped():
    digester = Digester(after=0 + 1, window=60)
    evil = "/tmp/<b>@room\u202e"
    _run(digester, [_exec(1000, exe=evil), _exec(1001, exe=evil)])
    [summary] = digester.close_all()
    assert "<b>@room" not in summary.html and "@" not in summary.body and "\u202e" not in summary.body
    assert "&lt;b&gt;" in summary.html
