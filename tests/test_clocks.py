"""Each host's own time (clocks.py): where a quiet host is, and when it
will reach a moment, from its latest event and the wall clock's silence
since."""

from audit_notify.clocks import ANY, HostClocks


def test_a_quiet_host_is_at_its_latest_events_time_plus_the_silence_since():
    clocks = HostClocks()
    clocks.heard("web1", 1000.0, wall=5000.0)   # 10 minutes behind, or late: either way the same
    clocks.heard("web1", 999.0, wall=5001.0)    # an older event: heard, but no step back
    assert clocks.now("web1", 5001.0) == 1000.0
    assert clocks.now("web1", 5004.0) == 1003.0
    assert clocks.wall_at("web1", 1003.0) == 5004.0
    assert clocks.wall_at("web1", 990.0) < 5001.0  # reached already


def test_an_unknown_host_is_at_the_wall_clocks_time_and_any_is_the_host_furthest_on():
    clocks = HostClocks()
    assert clocks.now("restored", 5000.0) == 5000.0 and clocks.wall_at("restored", 5007.0) == 5007.0
    assert clocks.now(ANY, 5000.0) == 5000.0
    clocks.heard("behind", 4400.0, wall=5000.0)
    clocks.heard("ahead", 5000.0, wall=5000.0)
    assert clocks.now(ANY, 5002.0) == 5002.0
    assert clocks.wall_at(ANY, 5010.0) == 5010.0
