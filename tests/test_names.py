"""Names (names.py): a user id as auparse names it, looked up once.

Event.who() against auparse itself is tested in test_events.py; here the
cache: one lookup per uid, again once /etc/passwd changes, bounded."""

import os

from audit_notify.names import UserNames, user_field


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _names(tmp_path, limit=256):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\n")
    asked, clock = [], Clock()

    def look_up(uid):
        asked.append(uid)
        return "user%d" % uid
    return UserNames(str(passwd), limit, clock, look_up), passwd, asked, clock


def test_a_uid_is_looked_up_once_while_passwd_stays_the_same(tmp_path):
    names, _passwd, asked, clock = _names(tmp_path)
    assert [names.name(1000) for _ in range(5)] == ["user1000"] * 5
    clock.now += 3600
    assert names.name(1000) == "user1000" and names.name(0) == "root"
    assert asked == [1000]


def test_a_changed_passwd_is_looked_up_again_within_a_second(tmp_path):
    names, passwd, asked, clock = _names(tmp_path)
    names.name(1000)
    passwd.write_text("root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n")
    os.utime(passwd, ns=(1, 1))
    clock.now += 0.5
    names.name(1000)
    assert asked == [1000]  # not looked at yet
    clock.now += 0.5
    names.name(1000)
    assert asked == [1000, 1000]


def test_the_cache_is_bounded(tmp_path):
    names, _passwd, asked, _clock = _names(tmp_path, limit=10)
    for uid in range(1, 31):
        names.name(uid)
    names.name(30)
    assert len(asked) == 30 and len(names._names) <= 10


def test_a_raw_log_names_ids_as_auparse_prints_them():
    line = "type=SYSCALL msg=audit(1.0:1): auid=%s\n"
    assert user_field(line % "4294967295", "auid", "4294967295") == "unset"
    assert user_field(line % "0", "auid", "0") == "root"
    assert user_field(line % "x", "auid", "x") is None
    assert user_field(line % "99999999999", "auid", "99999999999") is None
    enriched = "type=SYSCALL msg=audit(1.0:1): auid=1000 uid=0\x1dAUID=\"zed\" UID=\"root\"\nnext\x1dAUID=\"no\"\n"
    assert (user_field(enriched, "auid", "1000"), user_field(enriched, "uid", "0")) == ("zed", "root")
    assert user_field(enriched, "euid", "0") == "root"  # not enriched: looked up
