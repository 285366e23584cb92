"""Answers from the room, the pure parts: reactions read from the wire, who
may answer, what each answer decides, the mutes' bookkeeping (time passed
in), and the ledger that keeps them in the spool's database."""

import sqlite3

import pytest

from audit_notify.clocks import ANY
from audit_notify.answers import (
    ACK,
    MUTE,
    Message,
    Mute,
    Mutes,
    Reaction,
    action_of,
    decide,
    mute_shape,
    parse_reaction,
    parse_redaction,
    who_may_answer,
)
from audit_notify.config import Error, parse_config
from audit_notify.ledger import Ledger
from audit_notify.message import Notification
from audit_notify.spool import Spool

ALICE, CAROL = "@alice:example.org", "@carol:example.org"


def reaction_event(key="✅", sender=ALICE, wire="m.reaction", target="$msg"):
    return {"type": wire, "event_id": "$r1", "sender": sender, "origin_server_ts": 1700000000123,
            "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}}


# -- reading the wire -----------------------------------------------------------

def test_a_plain_reaction_and_an_encrypted_one_with_a_clear_annotation_read_alike():
    plain = parse_reaction(reaction_event())
    encrypted = reaction_event(wire="m.room.encrypted")
    encrypted["content"].update(algorithm="m.megolm.v1.aes-sha2", ciphertext="AwgAEn...")
    assert plain == parse_reaction(encrypted) == Reaction("$r1", "$msg", "✅", ALICE, 1700000000.123)


@pytest.mark.parametrize("event", [
    {"type": "m.room.message", "content": {"body": "✅"}},
    {"type": "m.reaction", "event_id": "$r", "sender": ALICE, "content": {}},  # redacted: no content
    {"type": "m.reaction", "event_id": "$r", "sender": ALICE,
     "content": {"m.relates_to": {"rel_type": "m.replace", "event_id": "$m", "key": "✅"}}},
    {"type": "m.room.encrypted", "event_id": "$r", "sender": ALICE, "content": {"ciphertext": "x"}},
    {"type": "m.reaction", "event_id": "$r", "sender": ALICE,
     "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": 7, "key": "✅"}}},
    "not a dict", {"type": "m.reaction", "content": "x"},
])
def test_what_is_not_a_reaction_is_none(event):
    assert parse_reaction(event) is None


def test_a_redaction_names_what_it_removes_in_both_room_versions():
    assert parse_redaction({"type": "m.room.redaction", "redacts": "$r1", "content": {}}) == "$r1"
    assert parse_redaction({"type": "m.room.redaction", "content": {"redacts": "$r2"}}) == "$r2"
    assert parse_redaction({"type": "m.reaction", "redacts": "$r1"}) is None
    assert parse_redaction({"type": "m.room.redaction", "content": {}}) is None


def test_emoji_with_a_variation_selector_or_skin_tone_are_the_same_answer():
    assert action_of("✅") == action_of("✅\ufe0f") == action_of("👍🏽") == action_of("👀") == ACK
    assert action_of("🔕") == action_of("🔕\ufe0f") == MUTE
    assert action_of("🎉") == action_of("🔔") == ""


# -- who may answer, and what an answer decides ------------------------------------

def test_responders_or_else_the_people_mentioned_or_else_nobody():
    assert who_may_answer((CAROL,), (ALICE,)) == (CAROL,)
    assert who_may_answer((), (ALICE,)) == (ALICE,)
    assert who_may_answer((), ()) == ()


def test_responders_key_parses_ids_and_durations_have_units():
    config = parse_config("responders = @alice:example.org, @bob:example.org\nmute = 2h\nreannounce = 0\n"
                          "reannounce_times = 3\n", "x.conf")
    assert config.responders == (ALICE, "@bob:example.org")
    assert (config.mute, config.reannounce, config.reannounce_times) == (7200.0, 0.0, 3)
    assert parse_config("mute = 90\n", "x.conf").mute == 90.0
    for bad in ("mute = 0\n", "mute = soon\n", "reannounce = -5m\n", "responders = alice\n"):
        with pytest.raises(Error):
            parse_config(bad, "x.conf")


INCIDENT = Message("k1", "$msg", "#audit:example.org", "incident", "critical", "web1\x1fcommand\x1falice", "web1",
                   "🚨 web1: alice ran …")


def test_decide():
    mute = Reaction("$r", "$msg", "🔕", ALICE, 1.0)
    assert decide(mute, INCIDENT, (ALICE,)) == (MUTE, "")
    assert decide(Reaction("$r", "$msg", "👍", ALICE, 1.0), INCIDENT, (ALICE,)) == (ACK, "")
    action, why = decide(Reaction("$r", "$msg", "🔕", CAROL, 1.0), INCIDENT, (ALICE,))
    assert action == "" and "may not answer" in why
    assert decide(mute, INCIDENT, ())[0] == ""
    assert decide(mute, None, (ALICE,))[0] == ""
    assert decide(Reaction("$r", "$msg", "🎉", ALICE, 1.0), INCIDENT, (ALICE,))[0] == ""


@pytest.mark.parametrize("kind, shape", [("notice", ""), ("heartbeat", ""), ("routine", ""), ("incident", "")])
def test_the_watchers_messages_and_unshaped_ones_are_never_muted_but_can_be_acknowledged(kind, shape):
    message = Message("k", "$m", "", kind, "critical", shape)
    action, why = decide(Reaction("$r", "$m", "🔕", ALICE, 1.0), message, (ALICE,))
    assert action == "" and "never muted" in why
    assert decide(Reaction("$r", "$m", "✅", ALICE, 1.0), message, (ALICE,))[0] == ACK


def test_a_shape_is_the_fingerprint_without_its_severity():
    assert mute_shape("web1\x1fcommand\x1fcritical\x1falice\x1fx") == mute_shape("web1\x1fcommand\x1fwarning\x1falice\x1fx")
    assert mute_shape("web1\x1fcommand\x1fcritical\x1falice") != mute_shape("web2\x1fcommand\x1fcritical\x1falice")


# -- mutes: time passed in ------------------------------------------------------

def make_mute(mute_id=1, shape="s", since=100.0, until=200.0, severity="warning", **more):
    return Mute(mute_id, shape, "web1", "⚠️ web1: alice ran x", severity, ALICE, since, until, **more)


def test_a_mute_counts_what_it_holds_back_until_its_time_and_then_says_so_once():
    mutes = Mutes()
    mutes.add(make_mute())
    assert mutes.hit("other", 150.0) is None
    assert mutes.hit("s", 150.0).count == 1
    assert mutes.hit("s", 199.0).count == 2
    assert mutes.summary() == [make_mute(count=2).summary()] and "2 times since" in mutes.summary()[0]
    assert mutes.hit("s", 200.0) is None  # over
    assert mutes.active == {}
    after = mutes.after("s")
    assert "happened 2 times meanwhile" in after.after()
    assert mutes.after("s") is None  # said once


def test_removing_the_reaction_ends_a_mute_early_and_its_line_says_when():
    mutes = Mutes()
    mutes.add(make_mute(reaction="$bell"))
    assert mutes.by_reaction("$bell").id == 1
    ended = mutes.end(1, 150.0)
    assert ended.ended == 150.0 and "ended at" in ended.line()
    assert mutes.hit("s", 160.0) is None
    assert mutes.by_reaction("$bell") is None


def test_a_critical_mute_is_in_every_summary_even_before_it_held_anything_back():
    mutes = Mutes()
    mutes.add(make_mute(1, "a", severity="critical"))
    mutes.add(make_mute(2, "b"))
    assert len(mutes.summary()) == 1 and "(critical)" in mutes.summary()[0]


def test_muting_a_shape_again_carries_the_count_on():
    mutes = Mutes()
    mutes.add(make_mute(1))
    mutes.hit("s", 150.0)
    mutes.add(make_mute(2, since=160.0, until=300.0))
    assert mutes.active["s"].id == 2 and mutes.active["s"].count == 1
    assert {m.id for m in mutes.take_changes()} == {1, 2}
    assert mutes.take_changes() == []


# -- the ledger ------------------------------------------------------------------

def note(key="k1", severity="critical", shape="web1\x1fcommand\x1falice"):
    return Notification(body="🚨 web1: alice ran x\ndetails", html="x", fields={}, timestamp=1.0, kind="incident",
                        severity=severity, key=key, shape=shape, mentions=(ALICE,))


@pytest.fixture
def ledger(tmp_path):
    now = [1000.0]
    path = str(tmp_path / "spool.sqlite3")
    spool = Spool(path, 1 << 20, 86400.0, clock=lambda: now[0])
    spool._db.execute("INSERT INTO sent (key, room, event_id, at) VALUES ('k1', '', '$m1', 1000.0)")
    ledger = Ledger(path, clock=lambda: now[0])
    ledger.now = now
    yield ledger
    ledger.close()
    spool.close()


def test_a_message_noted_is_found_by_its_event_id_once_committed(ledger):
    ledger.note(note(), "🚨 web1: alice ran x")
    assert ledger.message("$m1") is None  # not on disk yet
    ledger.commit()
    assert ledger.message("$m1") == Message("k1", "$m1", "", "incident", "critical", "web1\x1fcommand\x1falice",
                                            "", "🚨 web1: alice ran x")
    assert ledger.content("k1")["m.mentions"] == {"user_ids": [ALICE]}


def test_a_critical_is_announced_again_at_most_so_often_and_never_once_answered(ledger):
    ledger.note(note(), "x")
    ledger.commit()
    assert ledger.unanswered(0, 2) == [] and ledger.unanswered(900.0, 0) == []
    assert ledger.unanswered(900.0, 2) == [("k1", "$m1", "", 1900.0, 0)]
    ledger.reannounced("k1")
    assert ledger.unanswered(900.0, 2) == [("k1", "$m1", "", 2800.0, 1)]
    ledger.reannounced("k1")
    assert ledger.unanswered(900.0, 2) == []
    ledger.note(note("k2"), "x")
    ledger.commit()
    ledger._db.execute("INSERT INTO sent (key, room, event_id, at) VALUES ('k2', '', '$m2', 1000.0)")
    ledger.answered("k2", ACK, ALICE, 1100.0)
    assert ledger.unanswered(900.0, 2) == []
    assert ledger.acknowledgements() == {"k2": (ALICE, 1100.0)}


def test_mutes_survive_a_new_ledger_and_can_be_cleared_from_the_shell(ledger, tmp_path):
    mutes = Mutes()
    mutes.add(make_mute(ledger.new_mute_id(), since=900.0, until=5000.0, key="k1", reaction="$bell"))
    mutes.hit("s", 1000.0)
    ledger.commit(mutes)
    again = Ledger(ledger.path, clock=lambda: 1000.0)
    assert again.mutes().active["s"].count == 1 and again.mutes().active["s"].reaction == "$bell"
    assert [m.id for m in again.listed()] == [1]
    assert again.clear(7) == 0 and again.clear(1) == 1
    assert ledger.ended_elsewhere([1]) == [1]
    assert again.listed() == []
    again.close()


def test_a_reaction_is_applied_once(ledger):
    reaction = Reaction("$r", "$m1", "✅", ALICE, 1.0)
    assert not ledger.seen("$r")
    ledger.remember(reaction, ACK)
    ledger.remember(reaction, ACK)
    assert ledger.seen("$r")


def test_a_read_only_ledger_reads_and_never_writes(ledger):
    ledger.commit(Mutes(active={"s": make_mute(until=5000.0)}, changed={1: make_mute(until=5000.0)}))
    readonly = Ledger(ledger.path, readonly=True)
    assert list(readonly.mutes().active) == ["s"]
    with pytest.raises(sqlite3.OperationalError):
        readonly.clear()
    readonly.close()


# -- behind the Notifier ----------------------------------------------------------

def _notifier(mutes):
    from audit_notify.counters import Counters
    from audit_notify.config import Config
    from audit_notify.notify import Notifier
    from audit_notify.rules import RuleSet

    notes = []
    return Notifier(Config(digest_after=0), RuleSet(), notes.append, Counters(), mutes=mutes), notes


def _critical(serial, when):
    from records import syscall

    return syscall("execve", exe="/usr/bin/dash", argv=("sh", "-c", "echo x >> /etc/sudoers"), uid="0",
                   pid=4000 + serial, stamp="%.3f:%d" % (when, serial))


def _feed(notifier, text, now):
    from corpus import events_of

    for event in events_of(text.encode()):
        notifier.on_event(event)
    for node in ("testhost", ANY):
        notifier.due(node, now)


def test_a_muted_shape_goes_into_the_routine_summary_and_the_first_after_says_so():
    notifier, notes = _notifier(Mutes())
    _feed(notifier, _critical(1, 1800000000.0), 1800000100.0)
    [first] = [n for n in notes if n.kind == "incident"]
    assert first.shape and first.severity == "critical"
    notifier.mutes.add(make_mute(1, first.shape, since=1800000100.0, until=1800000500.0, severity="critical"))
    _feed(notifier, _critical(2, 1800000200.0), 1800000300.0)
    assert [n for n in notes if n.kind == "incident"] == [first]  # held back
    notifier.close_all()
    summary = [n for n in notes if n.kind == "routine"][-1]
    assert "1 muted: " in summary.body and "(critical)" in summary.body and "1 time since" in summary.body
    _feed(notifier, _critical(3, 1800000600.0), 1800000700.0)  # the mute is over
    last = [n for n in notes if n.kind == "incident"][-1]
    assert last is not first and "was muted by %s" % ALICE in last.body and "happened 1 time meanwhile" in last.body


def test_audit_rules_deleted_has_no_shape_to_mute():
    from records import config_change

    notifier, notes = _notifier(Mutes())
    _feed(notifier, config_change('op=remove_rule key="identity" list=4', stamp="1800000000.000:5"), 1800000100.0)
    [alarm] = [n for n in notes if n.kind == "incident"]
    assert alarm.severity == "critical" and alarm.shape == ""
