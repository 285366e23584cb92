#!/usr/bin/env python3
"""Capture a real audit sample on this machine (Debian 12, root, no system
auditd running).  See README.md in this folder for how the bundled files were
made.

    /opt/audit-notify-test/py/bin/python tests/data/make_sample.py \
        --format RAW --stream OUT.log --log OUT.audit.log [--short]

What happens, under a private auditd (tests/auditd_env.py) whose plugin is
`cat >> STREAM` (so STREAM holds exactly what a plugin reads on stdin):

* rules: identity watches on /etc/passwd, group, shadow, gshadow; sudoers
  watches; a watch on the private sshd_config (key sshd_config) and on a temp
  file (key watched); the execve rule
  `-a always,exit -F arch=b64 -S execve -F euid=0 -F auid>=1000 -F auid!=unset -k root-cmd`;
* before the capture, root creates group anops and users anadmin and anuser;
  in the capture root (auid unset) writes /etc/sudoers.d/an-sample (anadmin:
  NOPASSWD ALL; anuser: NOPASSWD /usr/bin/true, password for /usr/bin/ls);
* a private sshd (UsePAM yes, password auth) on 127.0.0.1:<free port>,
  announced with SERVICE_START/SERVICE_STOP user messages;
* over SSH (paramiko; the first command of anadmin and anvictim with a pty,
  so sshd also logs USER_LOGIN/USER_LOGOUT res=success): anadmin logs in and, via sudo, creates group anteam and
  user anvictim, sets its password (chpasswd), adds it to anteam and to sudo
  (usermod -aG), writes the watched file; anvictim logs in; anuser logs in,
  runs an allowed sudo, a refused sudo, a sudo with 3 wrong passwords and one
  with the right password; failed password for anuser, for root, and for the
  invalid users admin and oracle; anadmin deletes anvictim and anteam;
* root writes the watched file and the sshd_config copy, deletes the sudoers
  file, sends an `auditctl -m` message, SIGHUPs auditd (DAEMON_CONFIG: log
  only, plugins do not get it), deletes the rules (CONFIG_CHANGE), stops
  auditd; after the capture root deletes anadmin, anuser and anops.

Everything created is removed again; /var/log/{wtmp,btmp,lastlog} are cut
back to their old sizes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import paramiko  # noqa: E402

from auditd_env import private_auditd  # noqa: E402

USERS = ("anadmin", "anuser", "anvictim")
GROUPS = ("anops", "anteam")
PASSWORDS = {"anadmin": "Adm1n-pass-4711", "anuser": "Us3r-pass-4711",
             "anvictim": "V1ctim-pass-4711"}
SUDOERS = "/etc/sudoers.d/an-sample"
UTMP_FILES = ("/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog")


def run(*cmd, input=None, check=True):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, input=input, text=True, check=check,
                          capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_message(kind: str, unit: str) -> None:
    """A SERVICE_START/STOP record as systemd would send (via libaudit)."""
    import audit
    fd = audit.audit_open()
    try:
        typ = audit.AUDIT_SERVICE_START if kind == "start" else audit.AUDIT_SERVICE_STOP
        audit.audit_log_user_comm_message(fd, typ, f"unit={unit}", "an-sample",
                                          None, None, None, 1)
    finally:
        audit.audit_close(fd)


def ssh(port, user, password, commands=(), expect_ok=True):
    """One SSH connection with password auth; run each command (str, or
    (str, stdin_text[, pty])); return their outputs."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    outputs = []
    try:
        client.connect("127.0.0.1", port=port, username=user,
                       password=password, look_for_keys=False,
                       allow_agent=False, timeout=15, auth_timeout=15,
                       banner_timeout=15)
    except paramiko.AuthenticationException:
        print(f"  ssh {user}: authentication failed (expected: {not expect_ok})")
        client.close()
        if expect_ok:
            raise
        time.sleep(0.5)
        return outputs
    if not expect_ok:
        client.close()
        raise RuntimeError(f"ssh login of {user} unexpectedly succeeded")
    try:
        for cmd in commands:
            stdin_text, pty = None, False
            if isinstance(cmd, tuple):
                cmd, stdin_text, *rest = cmd
                pty = bool(rest and rest[0])
            # with a pty sshd also logs USER_LOGIN/USER_LOGOUT (res=success)
            chan_in, chan_out, chan_err = client.exec_command(
                cmd, timeout=30, get_pty=pty)
            if stdin_text is not None:
                chan_in.write(stdin_text)
                chan_in.flush()
                chan_in.channel.shutdown_write()
            out = chan_out.read().decode(errors="replace")
            err = chan_err.read().decode(errors="replace")
            rc = chan_out.channel.recv_exit_status()
            print(f"  ssh {user}$ {cmd} -> {rc} {out.strip()!r} {err.strip()!r}")
            outputs.append((rc, out, err))
            time.sleep(0.2)
    finally:
        client.close()
    time.sleep(0.5)  # let sshd finish the session's records
    return outputs


def fail_login(port, user, password):
    ssh(port, user, password, expect_ok=False)


def cleanup_accounts():
    for u in USERS:
        if subprocess.run(["getent", "passwd", u], capture_output=True).returncode == 0:
            run("userdel", "-r", "-f", u, check=False)
    for g in GROUPS:
        if subprocess.run(["getent", "group", g], capture_output=True).returncode == 0:
            run("groupdel", g, check=False)
    if os.path.exists(SUDOERS):
        os.unlink(SUDOERS)
    for u in USERS:
        for p in (f"/var/lib/sudo/lectured/{u}", f"/run/sudo/ts/{u}",
                  f"/var/mail/{u}", f"/home/{u}"):
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.lexists(p):
                os.unlink(p)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", default="RAW", choices=["RAW", "ENRICHED"])
    ap.add_argument("--stream", required=True,
                    help="file for what the plugin read on stdin")
    ap.add_argument("--log", help="file for auditd's own log_file")
    ap.add_argument("--short", action="store_true",
                    help="fewer repetitions (smaller sample)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("must run as root")
    for u in USERS:
        if subprocess.run(["getent", "passwd", u], capture_output=True).returncode == 0:
            sys.exit(f"user {u} exists already; refusing")
    for g in GROUPS:
        if subprocess.run(["getent", "group", g], capture_output=True).returncode == 0:
            sys.exit(f"group {g} exists already; refusing")

    utmp_sizes = {p: os.path.getsize(p) for p in UTMP_FILES if os.path.exists(p)}
    made_run_sshd = not os.path.exists("/run/sshd")
    made_run_sudo = not os.path.exists("/run/sudo")  # sudo creates it
    work = Path(tempfile.mkdtemp(prefix="an-sample-"))
    sshd = None
    reps = 1 if args.short else 2  # failed-login rounds
    try:
        os.chmod(work, 0o755)
        if made_run_sshd:
            os.mkdir("/run/sshd", 0o755)
        # private sshd: own host key and config, 127.0.0.1 only
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "hostkey"))
        port = free_port()
        sshd_config = work / "sshd_config"
        sshd_config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\n"
            f"HostKey {work}/hostkey\nPidFile {work}/sshd.pid\n"
            "UsePAM yes\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication no\n"
            "PermitRootLogin prohibit-password\nUseDNS no\nPrintMotd no\n"
            "MaxAuthTries 3\nLogLevel VERBOSE\nAcceptEnv LANG LC_*\n"
        )
        os.chmod(sshd_config, 0o600)
        run("/usr/sbin/sshd", "-t", "-f", str(sshd_config))
        watched = work / "watched.txt"
        watched.write_text("initial\n")
        recorder = work / "record.sh"
        recorder.write_text('#!/bin/sh\nexec /bin/cat >> "$1"\n')
        os.chmod(recorder, 0o750)
        stream = work / "stream.log"

        rules = [
            "-w /etc/passwd -p wa -k identity",
            "-w /etc/group -p wa -k identity",
            "-w /etc/shadow -p wa -k identity",
            "-w /etc/gshadow -p wa -k identity",
            "-w /etc/sudoers -p wa -k sudoers",
            "-w /etc/sudoers.d/ -p wa -k sudoers",
            f"-w {sshd_config} -p wa -k sshd_config",
            f"-w {watched} -p wa -k watched",
            "-a always,exit -F arch=b64 -S execve -F euid=0 -F auid>=1000 "
            "-F auid!=unset -k root-cmd",
        ]
        # the two login accounts exist before the capture starts
        run("groupadd", "anops")
        run("useradd", "-m", "-s", "/bin/bash", "-G", "anops", "anadmin")
        run("useradd", "-m", "-s", "/bin/bash", "anuser")
        run("chpasswd", input="".join(
            f"{u}:{PASSWORDS[u]}\n" for u in ("anadmin", "anuser")))

        with private_auditd(work, plugin_path=str(recorder),
                            plugin_args=(str(stream),),
                            log_format=args.format, rules=rules) as ad:
            time.sleep(0.5)
            # -- root grants sudo rights (auid unset: run from a daemon) --
            with open(SUDOERS, "w") as f:
                f.write("anadmin ALL=(ALL:ALL) NOPASSWD: ALL\n"
                        "anuser ALL=(root) NOPASSWD: /usr/bin/true\n"
                        "anuser ALL=(root) PASSWD: /usr/bin/ls\n")
            os.chmod(SUDOERS, 0o440)
            run("visudo", "-c", "-f", SUDOERS)

            # -- the ssh "service" --
            service_message("start", "an-sample-sshd")
            sshd = subprocess.Popen(
                ["/usr/sbin/sshd", "-D", "-f", str(sshd_config),
                 "-E", str(work / "sshd.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("sshd did not start")
                    time.sleep(0.1)
            time.sleep(0.3)

            # -- admin work over ssh + sudo (auid = anadmin) --
            ssh(port, "anadmin", PASSWORDS["anadmin"], [
                ("id", None, True),
                "sudo -n true",
                "sudo -n id -u",
                "sudo -n /usr/sbin/groupadd anteam",
                "sudo -n /usr/sbin/useradd -m -s /bin/bash anvictim",
                ("sudo -n /usr/sbin/chpasswd",
                 f"anvictim:{PASSWORDS['anvictim']}\n"),
                "sudo -n /usr/sbin/usermod -aG anteam anvictim",
                "sudo -n /usr/sbin/usermod -aG sudo anvictim",
                f"sudo -n /usr/bin/touch {watched}",
                f"echo by-anadmin | sudo -n /usr/bin/tee -a {watched}",
            ])
            ssh(port, "anvictim", PASSWORDS["anvictim"], [("id", None, True)])
            ssh(port, "anuser", PASSWORDS["anuser"], [
                "sudo -n true",
                "sudo -n /usr/bin/cat /etc/shadow",
                ("sudo -S -k -p '' /usr/bin/ls /root",
                 "wrong-1\nwrong-2\nwrong-3\n"),
                ("sudo -S -k -p '' /usr/bin/ls /root", PASSWORDS["anuser"] + "\n"),
            ])
            # -- failed logins --
            for _ in range(reps):
                fail_login(port, "anuser", "not-the-password")
                fail_login(port, "root", "toor")
                fail_login(port, "admin", "admin")
            fail_login(port, "oracle", "oracle")
            # -- admin cleans up --
            ssh(port, "anadmin", PASSWORDS["anadmin"], [
                "sudo -n /usr/sbin/userdel -r anvictim",
                "sudo -n /usr/sbin/groupdel anteam",
            ])
            time.sleep(0.5)

            # -- root edits watched files --
            run("touch", str(watched))
            with open(watched, "a") as f:
                f.write("appended by root\n")
            with open(sshd_config, "a") as f:
                f.write("# edited by make_sample.py\n")

            # -- stop the ssh service --
            sshd.send_signal(signal.SIGTERM)
            sshd.wait(timeout=15)
            sshd = None
            service_message("stop", "an-sample-sshd")

            # -- root revokes the sudo rights --
            os.unlink(SUDOERS)

            # -- audit configuration changes --
            ad.user_message("an-sample: sudo rights revoked")
            os.kill(ad.pid, signal.SIGHUP)  # DAEMON_CONFIG
            ad.wait_for_text("DAEMON_CONFIG", timeout=10)
            time.sleep(0.5)
            run("auditctl", "-D")
            time.sleep(1.0)
        # stopped: DAEMON_END written
        time.sleep(0.3)
        run("userdel", "-r", "anuser")
        run("userdel", "-r", "anadmin")
        run("groupdel", "anops")
        shutil.copyfile(stream, args.stream)
        if args.log:
            shutil.copyfile(ad.log_file, args.log)
        print("auditd daemon messages:", *ad.daemon_messages(), sep="\n  ")
    finally:
        if sshd is not None:
            sshd.send_signal(signal.SIGTERM)
            try:
                sshd.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sshd.kill()
        cleanup_accounts()
        for p, size in utmp_sizes.items():
            if os.path.getsize(p) > size:
                os.truncate(p, size)
        if made_run_sshd and os.path.isdir("/run/sshd"):
            shutil.rmtree("/run/sshd", ignore_errors=True)
        if made_run_sudo and os.path.isdir("/run/sudo"):
            shutil.rmtree("/run/sudo", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
