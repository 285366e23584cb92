#!/usr/bin/env python3
"""Delivery benchmarks against a real Synapse on 127.0.0.1, decrypted by a
matrix-nio client; events from a real auditd.  Prints figures, asserts
nothing (the tests assert behaviour; this measures it).

    tests/bench/bench_delivery.py [--latency 60] [--throughput-seconds 70] [--rounds 3] [--idle 60] [--compare REV]

latency     kernel timestamp of a record (auditctl -m, one a second) to the
            receiver holding the decrypted message: p50, p95
throughput  notifications delivered and decrypted per second, sustained
            (the plugin fed the real execve log from make_execve_log.py, so
            the spool is always full), and matrix-commander store growth
            per 1,000 notifications; side by side, alternating, with
            matrix-commander's own streaming mode on one device and on two
            devices at once, with Synapse's CPU share during each
idle        CPU seconds used by the plugin and its matrix-commander while
            auditd is quiet
"""

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)

from auditd_env import private_auditd  # noqa: E402
from matrix_env import matrix_world, setup_bot  # noqa: E402
from test_e2e_matrix import Plugin  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(TESTS), "audit_notify.py")
FAST = "digest_after = 0\nmax_messages_per_minute = 0\n"


def wall(message):
    """The receiver's monotonic receive time as wall-clock time."""
    return time.time() - (time.monotonic() - message["received"])


def dir_bytes(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(count, tmp, script=SCRIPT, label="audit-notify", severity=""):
    """Kernel time stamp to decrypted, per message.  ``severity``: the
    admin's severity line makes the markers critical (or warning)
    incidents, to measure that path (a critical one goes out at once, a
    warning once its quiet spell is over)."""
    with matrix_world(tmp / "lat") as world:
        extra = FAST
        if severity:
            rules = tmp / "lat" / "severity.rules"
            rules.parent.mkdir(parents=True, exist_ok=True)
            rules.write_text("%s: type=USER\n" % severity)
            extra += "blacklist = %s\n" % rules
            label += ", %s" % severity
        plugin = Plugin(world, tmp / "lat", extra=extra)
        with private_auditd(tmp / "lat", plugin_path=script, plugin_args=("--config=%s" % plugin.config,)) as ad:
            world.receiver.wait_for_messages(5, timeout=5)  # let it start, skip auditd's own events
            markers, got = [], []
            for i in range(count):
                markers.append("an-lat-%03d" % i)
                ad.user_message(markers[-1])
                # Receive while the next second passes: the receive time is
                # when the sync that carried the message returned.
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    got += world.receiver.wait_for_messages(1, timeout=max(0.01, end - time.monotonic()))
            end = time.monotonic() + 60
            while time.monotonic() < end and len({m for m in markers if any(m in g["body"] for g in got)}) < count:
                got += world.receiver.wait_for_messages(1, timeout=2)
            log = ad.log_text()
    stamps = {}
    for line in log.split("\n"):
        found = re.search(r"msg=audit\((\d+\.\d+):\d+\).*text=(an-lat-\d+)", line)
        if found:
            stamps[found.group(2)] = float(found.group(1))
    delays = []
    for message in got:
        found = re.search(r"an-lat-\d+", message["body"])
        if found and found.group(0) in stamps:
            delays.append(wall(message) - stamps[found.group(0)])
    delays.sort()
    p50, p95 = statistics.median(delays), delays[int(0.95 * (len(delays) - 1))]
    print("latency (%s): %d events a second apart, %d received: p50 %.3f s, p95 %.3f s, max %.3f s"
          % (label, count, len(delays), p50, p95, delays[-1]))
    return p50, p95


def old_script(revision, into):
    """audit_notify.py of an older revision (git archive), runnable by auditd."""
    archive = subprocess.run(["git", "-C", os.path.dirname(TESTS), "archive", revision], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    os.chmod(into, 0o755)
    return str(Path(into) / "audit_notify.py")


def receive(world, seconds):
    """Receive for ``seconds``; the decrypted messages and the share of
    one CPU Synapse used meanwhile."""
    got = []
    synapse_before, started = cpu_seconds(world.homeserver.pid), time.monotonic()
    while time.monotonic() < started + seconds:
        got += world.receiver.wait_for_messages(200, timeout=1)
    synapse = (cpu_seconds(world.homeserver.pid) - synapse_before) / (time.monotonic() - started)
    return got, synapse


def sustained_rate(got):
    """Messages per second, from the 10th decrypted message on (warm)."""
    times = sorted(wall(m) for m in got if m["decrypted"])[10:]
    return (len(times) - 1) / (times[-1] - times[0]), len(times) + 10, times[-1] - times[0]


def throughput(seconds, tmp, log):
    with open(log, "rb") as handle:
        data = handle.read()
    with matrix_world(tmp) as world:
        plugin = Plugin(world, tmp, extra=FAST)
        store_before = dir_bytes(world.store_dir)
        process = subprocess.Popen(["/usr/bin/python3", SCRIPT, "--config", str(plugin.config)],
                                   stdin=subprocess.PIPE)
        process.stdin.write(data)
        process.stdin.flush()
        got, synapse = receive(world, seconds)
        process.terminate()
        process.wait()
        got += world.receiver.drain()
        store_after = dir_bytes(world.store_dir)
    rate, count, span = sustained_rate(got)
    per_thousand = (store_after - store_before) * 1000.0 / max(1, count)
    print("audit-notify: %d notifications decrypted over %.0f s: %.1f per second sustained; Synapse %.0f%% of a CPU"
          % (count, span, rate, 100 * synapse))
    print("  store growth: %d bytes for %d notifications: %.0f bytes per 1,000 (store now %d bytes)"
          % (store_after - store_before, count, per_thousand, store_after))
    return rate


def feed(process, text):
    """Write all of ``text`` to a matrix-commander that may be killed first."""
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(text.encode())
        process.stdin.close()


def reference(seconds, tmp, devices=1):
    """matrix-commander's own streaming mode (-m _: plain lines, no HTML,
    no m.mentions) at full speed, on the same machine in the same run;
    with ``devices`` > 1, that many matrix-commanders at once, each its
    own device and store (what sending in parallel could gain)."""
    import threading

    with matrix_world(tmp) as world:
        stores = [(world.creds_path, world.store_dir)]
        for n in range(2, devices + 1):
            bot = tmp / ("bot%d" % n)
            bot.mkdir()
            setup_bot(world.homeserver, world.mc_binary, bot / "credentials.json", bot / "store", world.room_alias,
                      "bot", world.bot_password, home=world.mc_home, device="audit-notify-%d" % n)
            stores.append((bot / "credentials.json", bot / "store"))
        processes, feeders = [], []
        for n, (creds, store) in enumerate(stores):
            process = subprocess.Popen([world.mc_binary, "-c", str(creds), "-s", str(store), "--log-level", "ERROR",
                                        "ERROR", "-m", "_"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       env=world.mc_env())
            lines = "".join("an-ref-%d-%05d plain reference line\n" % (n, i) for i in range(int(seconds * 60)))
            feeders.append(threading.Thread(target=feed, args=(process, lines)))
            feeders[-1].start()
            processes.append(process)
        got, synapse = receive(world, seconds)
        for process in processes:
            process.kill()
            process.wait()
        for feeder in feeders:
            feeder.join()
    rate, count, span = sustained_rate(got)
    print("matrix-commander -m _ streaming, %d device%s: %d messages decrypted over %.0f s: %.1f per second; "
          "Synapse %.0f%% of a CPU" % (devices, "s" * (devices > 1), count, span, rate, 100 * synapse))
    return rate


def idle(seconds, tmp):
    with matrix_world(tmp / "idle") as world:
        plugin = Plugin(world, tmp / "idle")
        with private_auditd(tmp / "idle", plugin_path=SCRIPT, plugin_args=("--config=%s" % plugin.config,)) as ad:
            world.receiver.wait_for_messages(1, timeout=15)
            time.sleep(5)
            [plugin_pid] = ad.plugin_pids()
            children = subprocess.run(["pgrep", "-P", str(plugin_pid)], capture_output=True, text=True).stdout.split()
            pids = [plugin_pid] + [int(c) for c in children]
            before = [cpu_seconds(p) for p in pids]
            time.sleep(seconds)
            after = [cpu_seconds(p) for p in pids]
    print("idle %d s: plugin used %.2f s of CPU, matrix-commander %.2f s"
          % (seconds, after[0] - before[0], sum(after[1:]) - sum(before[1:])))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=60, metavar="EVENTS")
    parser.add_argument("--severity", choices=("critical", "warning"), default="",
                        help="measure latency for incidents of this severity (the admin's severity line)")
    parser.add_argument("--throughput-seconds", type=int, default=70)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds, alternating (medians)")
    parser.add_argument("--idle", type=int, default=60, metavar="SECONDS")
    parser.add_argument("--log", default="/var/tmp/audit-notify-bench/execve.log")
    parser.add_argument("--compare", metavar="REV",
                        help="also measure latency with this git revision, alternating with this one (rounds)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.latency and args.compare:
            old = old_script(args.compare, tempfile.mkdtemp(dir="/var/tmp", prefix="an-bench-old-"))
            figures = {"this": [], args.compare: []}
            for n in range(args.rounds):
                figures["this"].append(latency(args.latency, tmp / ("lat-new%d" % n), severity=args.severity))
                figures[args.compare].append(latency(args.latency, tmp / ("lat-old%d" % n), old, args.compare))
            for name, rounds in figures.items():
                print("latency %s, medians of %d rounds: p50 %.3f s, p95 %.3f s" % (
                    name, len(rounds), statistics.median(r[0] for r in rounds),
                    statistics.median(r[1] for r in rounds)))
        elif args.latency:
            latency(args.latency, tmp, severity=args.severity)
        if args.throughput_seconds:
            rates = {"ours": [], "one": [], "two": []}
            for n in range(args.rounds):
                rates["ours"].append(throughput(args.throughput_seconds, tmp / ("tp%d" % n), args.log))
                rates["one"].append(reference(args.throughput_seconds, tmp / ("ref%d" % n)))
                rates["two"].append(reference(args.throughput_seconds, tmp / ("two%d" % n), devices=2))
            ours, one, two = (statistics.median(rates[k]) for k in ("ours", "one", "two"))
            print("throughput medians over %d rounds: audit-notify %.1f/s, matrix-commander streaming %.1f/s "
                  "(two devices at once %.1f/s); ratio audit-notify / streaming %.2f (per round: %s)"
                  % (args.rounds, ours, one, two, ours / one,
                     ", ".join("%.2f" % (a / b) for a, b in zip(rates["ours"], rates["one"]))))
        if args.idle:
            idle(args.idle, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
