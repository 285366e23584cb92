"""The SELinux policy module in selinux/: it compiles with Debian's
selinux-policy-dev, its .fc labels every path the README installs to, and,
linked into a copy of Debian's full policy (selinux-policy-default), it
really has the domains, transitions and limits that selinux/README.md
promises.

SELinux need not be enabled: compiling, linking and querying a policy are
ordinary programs.  Nothing here touches the system's policy store; the
module is installed into a copy of it under tmp_path.
"""

import glob
import os
import re
import shutil
import subprocess

import pytest
from corpus import ROOT

SELINUX_DIR = os.path.join(ROOT, "selinux")
README = os.path.join(ROOT, "README.md")
DEVEL_MAKEFILE = "/usr/share/selinux/devel/Makefile"
POLICY_NAME = "default"  # Debian's selinux-policy-default
POLICY_STORE = "/var/lib/selinux/" + POLICY_NAME
MODULE = "audit_notify"

# Where the plugin's own files live (README, "Install"); a path the README
# installs under one of these must be labelled by audit_notify.fc.
OUR_ROOTS = ("/usr/local/sbin/audit-notify", "/etc/audit-notify", "/var/lib/audit-notify",
             "/var/log/audit-notify")
# log_file is the admin's choice (syslog by default); this is the one the
# module labels, and it must stay labelled even while the README does not
# mention it.
LOG_FILE = "/var/log/audit-notify.log"

needs_devel = pytest.mark.skipif(
    not os.path.exists(DEVEL_MAKEFILE),
    reason="%s is absent: apt-get install selinux-policy-dev" % DEVEL_MAKEFILE)


# ---------------------------------------------------------------------------
# What the README installs


def section(text, heading):
    """A level-2 section of the README, with its subsections."""
    match = re.search(r"^## %s\n(.*?)(?=^## )" % re.escape(heading), text, re.S | re.M)
    assert match, "README.md has no '## %s' section" % heading
    return match.group(1)


def code_blocks(text):
    """Fenced blocks (also indented ones, inside lists), with backslash
    continuations joined."""
    blocks = re.findall(r"^[ \t]*```[a-z]*\n(.*?)^[ \t]*```", text, re.S | re.M)
    return [block.replace("\\\n", " ") for block in blocks]


PATH_WORD = re.compile(r"(?<![\w.~$/-])(/[\w.@/-]*[\w.@-])(/?)")


def readme_paths(install, configuration):
    """The paths README's "Install" section installs to, and the defaults
    of its configuration table: absolute paths in the commands, a file
    moved into a directory ("mv DIR/FILE OTHER/" is OTHER/FILE), the
    matrix-commander login's -c/-s paths relative to a "cd DIR"; and
    PIPX_HOME."""
    paths = set()
    for block in code_blocks(install):
        cwd = None
        for line in block.splitlines():
            for command in re.split(r"[;&|]+", line):
                words = command.split()
                paths.update(m.group(1) for m in PATH_WORD.finditer(command))
                cd = re.search(r"(?:^|[\s'\"])cd\s+(/[^\s'\"]+)", command)
                if cd:
                    cwd = cd.group(1)
                if len(words) == 3 and words[0] == "mv" and words[2].endswith("/"):
                    paths.add(words[2] + os.path.basename(words[1]))
                for option, value in zip(words, words[1:]):
                    if (option in ("-c", "-s", "--credentials", "--store") and cwd
                            and not value.startswith(("/", "'", '"'))):
                        paths.add(os.path.join(cwd, value.strip("'\"")))
    for key, value in re.findall(r"^\| `(\w+)` \| `(/[^`]+)` \|", configuration, re.M):
        paths.add(value)
    pipx = re.search(r"\bPIPX_HOME=(/\S+)", install)
    return paths, pipx.group(1) if pipx else None


def ours(path):
    return any(path == root or path.startswith(root + "/") or path.startswith(root + ".")
               for root in OUR_ROOTS)


def readme_text():
    with open(README, encoding="utf-8") as handle:
        return handle.read()


def readme_install():
    text = readme_text()
    paths, pipx_home = readme_paths(section(text, "Install"), section(text, "Configuration"))
    return sorted(p for p in paths if ours(p)), pipx_home


def sender_script(pipx_home):
    return os.path.join(pipx_home, "venvs", "matrix-commander", "bin", "matrix-commander")


def directory_paths():
    """What the README makes as directories (install -d, the -s store, the
    state, spool and store of the configuration table)."""
    text = readme_text()
    dirs = set()
    for block in code_blocks(section(text, "Install")):
        for line in block.splitlines():
            if re.match(r"\s*install\s+(\S+\s+)*-d\b", line):
                dirs.update(w.rstrip("/") for w in line.split() if w.startswith("/"))
    for key, value in re.findall(r"^\| `(\w+)` \| `(/[^`]+)` \|", section(text, "Configuration"), re.M):
        if key in ("store", "state_dir", "spool_dir"):
            dirs.add(value)
    return dirs


# ---------------------------------------------------------------------------
# audit_notify.fc, read as libselinux reads file_contexts

FC_LINE = re.compile(r"^(\S+)\s+(?:(-[-dlpsbc])\s+)?gen_context\(\s*([^,)]+)")


def fc_entries():
    entries = []
    with open(os.path.join(SELINUX_DIR, MODULE + ".fc"), encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            match = FC_LINE.match(line)
            assert match, "audit_notify.fc:%d: cannot parse %r" % (number, line)
            regex, kind, context = match.groups()
            entries.append((re.compile(regex), kind or "", context.split(":")[2], number))
    return entries


def fc_matches(path, is_dir):
    """The .fc lines whose regular expression matches all of ``path``
    (libselinux anchors them) and whose file type fits."""
    wanted = ("", "-d") if is_dir else ("", "--")
    return [(t, n) for regex, kind, t, n in fc_entries() if kind in wanted and regex.fullmatch(path)]


def test_readme_install_section_is_parsed():
    """The parsing below finds the paths it is meant to find, so that an
    empty result cannot pass the label test."""
    paths, pipx_home = readme_install()
    for wanted in ("/usr/local/sbin/audit-notify", "/etc/audit-notify", "/var/lib/audit-notify",
                   "/etc/audit-notify/audit-notify.conf", "/etc/audit-notify/credentials.json",
                   "/var/lib/audit-notify/store", "/var/lib/audit-notify/spool"):
        assert wanted in paths, (wanted, paths)
    assert pipx_home == "/opt/pipx"
    assert not ours("/etc/audit/plugins.d/matrix-notifications.conf")
    assert not ours("/usr/local/bin/matrix-commander")
    assert {"/etc/audit-notify", "/var/lib/audit-notify", "/var/lib/audit-notify/store"} <= directory_paths()


def test_readme_parsing_rules():
    install = """
```sh
install -d -m 0700 -o u /var/lib/x
install -m 0600 a.conf /etc/x/a.conf
```

1. Log in:

   ```sh
   sudo -u u sh -c 'cd /var/lib/x; HOME=/var/lib/x \\
     mc --login -c creds.json -s store'
   mv /var/lib/x/creds.json /etc/x/
   ```
"""
    configuration = "| `store` | `/srv/store` | the store |\n| `room` | (none) | alias |\n"
    paths, pipx_home = readme_paths(install, configuration)
    assert paths == {"/var/lib/x", "/etc/x/a.conf", "/var/lib/x/creds.json", "/var/lib/x/store",
                     "/etc/x", "/etc/x/creds.json", "/srv/store"}
    assert pipx_home is None


def test_fc_labels_every_path_the_readme_installs():
    paths, pipx_home = readme_install()
    dirs = directory_paths()
    missing = [p for p in paths + [LOG_FILE] if not fc_matches(p, p in dirs)]
    assert not missing, "audit_notify.fc labels none of: %s" % missing
    assert [t for t, _ in fc_matches(sender_script(pipx_home), False)] == ["audit_notify_sender_exec_t"]


def test_fc_only_uses_the_module_s_own_types():
    entries = fc_entries()
    assert len(entries) >= 8
    assert {t for _, _, t, _ in entries} <= {
        "audit_notify_exec_t", "audit_notify_sender_exec_t", "audit_notify_conf_t",
        "audit_notify_credentials_t", "audit_notify_var_lib_t", "audit_notify_spool_t",
        "audit_notify_store_t", "audit_notify_log_t"}


def test_fc_matching_is_not_vacuous():
    """A path outside the module's trees matches no line."""
    for path in ("/usr/local/sbin/audit-notifyX", "/etc/audit-notify-old/x", "/var/lib/other",
                 "/usr/local/bin/matrix-commander"):
        assert not fc_matches(path, False), path


# ---------------------------------------------------------------------------
# Compiling the module


# A second module that uses every interface of audit_notify.if, as another
# policy would: it must compile and link too.
IF_USER = "audit_notify_if_user"
IF_USER_TE = """policy_module(%s, 1.0.0)
gen_require(`
	type sysadm_t;
	role sysadm_r;
')
type audit_notify_if_user_t;
domain_type(audit_notify_if_user_t)
audit_notify_domtrans(audit_notify_if_user_t)
audit_notify_read_config(audit_notify_if_user_t)
audit_notify_read_spool(audit_notify_if_user_t)
audit_notify_read_log(audit_notify_if_user_t)
audit_notify_admin(sysadm_t, sysadm_r)
""" % IF_USER


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """selinux/ copied to a temporary directory and compiled there, with
    the module that uses its interfaces."""
    work = tmp_path_factory.mktemp("selinux") / "module"
    shutil.copytree(SELINUX_DIR, work, ignore=shutil.ignore_patterns("tmp", "*.pp"))
    result = subprocess.run(["make", "-f", DEVEL_MAKEFILE, MODULE + ".pp"], cwd=work,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (work / (IF_USER + ".te")).write_text(IF_USER_TE)
    result = subprocess.run(["make", "-f", DEVEL_MAKEFILE, IF_USER + ".pp"], cwd=work,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return work


def expanded_source(work):
    """The policy text checkmodule compiled: the .te with every interface
    and macro of the reference policy expanded by m4."""
    with open(work / "tmp" / (MODULE + ".tmp"), encoding="utf-8") as handle:
        return handle.read()


def statements(text):
    """Policy statements, comments removed and whitespace normalized."""
    text = re.sub(r"#[^\n]*", "", text)
    return {" ".join(s.split()) + ";" for s in text.split(";") if s.strip()}


@needs_devel
def test_module_compiles(built):
    package = built / (MODULE + ".pp")
    assert package.is_file() and package.stat().st_size > 0


@needs_devel
def test_compiled_source_is_permissive_and_entered_from_auditd(built):
    compiled = statements(expanded_source(built))
    assert "permissive audit_notify_t;" in compiled
    assert "permissive audit_notify_sender_t;" in compiled
    assert "type_transition auditd_t audit_notify_exec_t:process audit_notify_t;" in compiled
    assert "type_transition audit_notify_t audit_notify_sender_exec_t:process audit_notify_sender_t;" in compiled
    # The comment that says how to go enforcing is in the source.
    with open(os.path.join(SELINUX_DIR, MODULE + ".te"), encoding="utf-8") as handle:
        source = handle.read()
    assert "To go enforcing" in source


# ---------------------------------------------------------------------------
# Linked into Debian's full policy

needs_policy = pytest.mark.skipif(
    not (os.path.exists(DEVEL_MAKEFILE) and os.path.isdir(POLICY_STORE) and shutil.which("semodule")),
    reason="needs selinux-policy-dev and Debian's policy store %s: apt-get install selinux-policy-default"
           % POLICY_STORE)


@pytest.fixture(scope="module")
def linked(built, tmp_path_factory):
    """The module installed into a copy of the system's policy store, in a
    private root: semodule links it against every module of the policy,
    checks the neverallow rules, and writes the kernel policy and the
    file_contexts there."""
    root = tmp_path_factory.mktemp("policy-root")
    shutil.copytree(POLICY_STORE, root / "var" / "lib" / "selinux" / POLICY_NAME, symlinks=True)
    shutil.copytree("/etc/selinux", root / "etc" / "selinux", symlinks=True)
    result = subprocess.run(["semodule", "-p", str(root), "-s", POLICY_NAME, "-n",
                             "-i", str(built / (MODULE + ".pp")), "-i", str(built / (IF_USER + ".pp"))],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = subprocess.run(["semodule", "-p", str(root), "-s", POLICY_NAME, "-l"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert MODULE in listed and IF_USER in listed
    policy = sorted(glob.glob(str(root / "etc" / "selinux" / POLICY_NAME / "policy" / "policy.*")))
    assert policy, "semodule wrote no kernel policy"
    return {"policy": policy[-1],
            "file_contexts": str(root / "etc" / "selinux" / POLICY_NAME / "contexts" / "files" / "file_contexts")}


# The domains whose rules the tests read.
SUBJECTS = ("audit_notify_t", "audit_notify_sender_t", "auditd_t")


class Policy:
    """The linked kernel policy, and an index of its allow rules for
    SUBJECTS with attributes expanded on both sides: for each (source,
    target, class) the permissions granted always (unconditional rules) and
    under some setting of the booleans."""

    def __init__(self, setools, path):
        self.setools = setools
        self.pol = setools.SELinuxPolicy(path)
        self.perms = {}
        for rule in self.pol.terules():
            if str(rule.ruletype) != "allow":
                continue
            sources = set(SUBJECTS) & {str(t) for t in rule.source.expand()}
            if not sources:
                continue
            try:
                rule.conditional
                conditional = True
            except setools.exception.RuleNotConditional:
                conditional = False
            for source in sources:
                for target in rule.target.expand():
                    always, ever = self.perms.setdefault((source, str(target), str(rule.tclass)), (set(), set()))
                    ever |= set(rule.perms)
                    if not conditional:
                        always |= set(rule.perms)


@pytest.fixture(scope="module")
def policy(linked):
    setools = pytest.importorskip("setools", reason="python3-setools is not installed")
    indexed = Policy(setools, linked["policy"])
    assert ("auditd_t", "auditd_t", "capability") in indexed.perms  # the index is not empty
    return indexed


def rules(policy, ruletype, source, target=None, tclass=None):
    query = policy.setools.TERuleQuery(policy.pol, ruletype=[ruletype], source=source, source_indirect=False,
                                       target=target, tclass=[tclass] if tclass else None)
    return list(query.results())


def allowed(policy, source, target, tclass, ever=False):
    """The permissions ``source`` has on ``target`` of ``tclass``, through
    attributes too: always, or with ``ever`` under some setting of the
    booleans (for asserting what must never be)."""
    assert source in SUBJECTS
    always, sometimes = policy.perms.get((source, target, tclass), (set(), set()))
    return sometimes if ever else always


def never(policy, source, target, tclass):
    return allowed(policy, source, target, tclass, ever=True)


def port_type(policy, number):
    best = None
    for portcon in policy.pol.portcons():
        if str(portcon.protocol) == "tcp" and portcon.ports.low <= number <= portcon.ports.high:
            if best is None or (portcon.ports.high - portcon.ports.low) < (best.ports.high - best.ports.low):
                best = portcon
    return str(best.context.type_)


@needs_policy
def test_linked_policy_has_the_domains_permissive(policy):
    types = {str(t): t for t in policy.pol.types()}
    for domain in ("audit_notify_t", "audit_notify_sender_t"):
        assert domain in types
        assert types[domain].ispermissive, domain
    # Neighbours are unchanged: auditd itself stays enforced.
    assert not types["auditd_t"].ispermissive


@needs_policy
def test_auditd_starts_the_plugin_in_its_domain(policy):
    transitions = {(str(r.source), str(r.target), str(r.default))
                   for r in rules(policy, "type_transition", "auditd_t", tclass="process")}
    assert ("auditd_t", "audit_notify_exec_t", "audit_notify_t") in transitions
    assert "transition" in allowed(policy, "auditd_t", "audit_notify_t", "process")
    assert {"execute", "getattr"} <= allowed(policy, "auditd_t", "audit_notify_exec_t", "file")
    assert "entrypoint" in allowed(policy, "audit_notify_t", "audit_notify_exec_t", "file")
    # SIGTERM/SIGHUP reach the plugin after it has become its own user.
    assert "signal" in allowed(policy, "auditd_t", "audit_notify_t", "process")
    assert "kill" in allowed(policy, "auditd_t", "auditd_t", "capability")
    # Its stdin is auditd's socketpair.
    assert "read" in allowed(policy, "audit_notify_t", "auditd_t", "unix_stream_socket")


@needs_policy
def test_plugin_runs_matrix_commander_in_the_sender_domain(policy):
    transitions = {(str(r.target), str(r.default))
                   for r in rules(policy, "type_transition", "audit_notify_t", tclass="process")}
    assert transitions == {("audit_notify_sender_exec_t", "audit_notify_sender_t")}
    assert "entrypoint" in allowed(policy, "audit_notify_sender_t", "audit_notify_sender_exec_t", "file")
    # The plugin has set no_new_privs by then.
    assert "nnp_transition" in allowed(policy, "audit_notify_t", "audit_notify_sender_t", "process2")
    assert {"sigkill", "signal"} <= allowed(policy, "audit_notify_t", "audit_notify_sender_t", "process")


@needs_policy
def test_only_the_sender_reaches_the_homeserver(policy):
    for number in (443, 8448, 8008):
        port = port_type(policy, number)
        assert "name_connect" in allowed(policy, "audit_notify_sender_t", port, "tcp_socket"), number
        assert "name_connect" not in never(policy, "audit_notify_t", port, "tcp_socket"), number
    # The plugin cannot even make an IP socket; the sender can.
    for tclass in ("tcp_socket", "udp_socket"):
        assert "create" not in never(policy, "audit_notify_t", "audit_notify_t", tclass)
    assert "create" in allowed(policy, "audit_notify_sender_t", "audit_notify_sender_t", "tcp_socket")
    # No port other than DNS and HTTP(S).
    connect = {target for (source, target, tclass), (_, ever) in policy.perms.items()
               if source == "audit_notify_sender_t" and tclass == "tcp_socket" and "name_connect" in ever}
    assert connect == {"http_port_t", "dns_port_t"}


@needs_policy
def test_each_domain_gets_exactly_its_files(policy):
    def can(source, target, tclass, perm):
        return perm in allowed(policy, source, target, tclass)

    def cannot(source, target, tclass, perm):
        return perm not in never(policy, source, target, tclass)

    plugin, sender = "audit_notify_t", "audit_notify_sender_t"
    # The access token and the keys: only the sender reads them; the
    # plugin only fixes their owner and mode.
    assert can(sender, "audit_notify_credentials_t", "file", "read")
    assert cannot(plugin, "audit_notify_credentials_t", "file", "read")
    assert can(plugin, "audit_notify_credentials_t", "file", "setattr")
    assert can(sender, "audit_notify_store_t", "file", "write")
    assert cannot(plugin, "audit_notify_store_t", "file", "read")
    assert can(plugin, "audit_notify_store_t", "file", "setattr")
    # Config, spool and log are the plugin's alone.
    assert can(plugin, "audit_notify_conf_t", "file", "read")
    assert cannot(plugin, "audit_notify_conf_t", "file", "write")
    assert cannot(sender, "audit_notify_conf_t", "file", "read")
    for perm in ("create", "write", "map", "lock"):
        assert can(plugin, "audit_notify_spool_t", "file", perm), perm
    assert cannot(sender, "audit_notify_spool_t", "file", "read")
    assert can(plugin, "audit_notify_log_t", "file", "append")
    assert cannot(sender, "audit_notify_log_t", "file", "append")
    # The FIFO: the plugin makes and writes it, the sender reads it.
    assert {"create", "write", "rename", "unlink"} <= allowed(policy, plugin, "audit_notify_var_lib_t", "fifo_file")
    assert can(sender, "audit_notify_var_lib_t", "fifo_file", "read")
    assert cannot(sender, "audit_notify_var_lib_t", "fifo_file", "write")
    # New files get the module's types, not var_log_t or var_lib_t.
    filetrans = {(str(r.target), str(r.tclass), str(r.default))
                 for r in rules(policy, "type_transition", plugin)}
    assert ("var_log_t", "file", "audit_notify_log_t") in filetrans
    assert ("audit_notify_var_lib_t", "dir", "audit_notify_spool_t") in filetrans


@needs_policy
def test_capabilities_only_in_the_plugin(policy):
    assert never(policy, "audit_notify_t", "audit_notify_t", "capability") == {
        "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "setgid", "setuid"}
    assert not never(policy, "audit_notify_sender_t", "audit_notify_sender_t", "capability")
    assert not never(policy, "audit_notify_sender_t", "audit_notify_sender_t", "capability2")


@needs_policy
def test_interfaces_grant_what_they_say(policy):
    def perms(source, target, tclass):
        found = set()
        for rule in rules(policy, "allow", source, target=target, tclass=tclass):
            found |= set(rule.perms)
        return found

    user = "audit_notify_if_user_t"
    assert {(str(r.target), str(r.default)) for r in rules(policy, "type_transition", user, tclass="process")} \
        == {("audit_notify_exec_t", "audit_notify_t")}
    assert "read" in perms(user, "audit_notify_conf_t", "file")
    assert "read" not in perms(user, "audit_notify_credentials_t", "file")
    assert {"read", "map"} <= perms(user, "audit_notify_spool_t", "file")
    assert "read" in perms(user, "audit_notify_log_t", "file")
    assert {"relabelto", "relabelfrom", "read", "write"} <= perms("sysadm_t", "audit_notify_credentials_t", "file")
    assert "sigkill" in perms("sysadm_t", "audit_notify_sender_t", "process")


def label(file_contexts, path, mode):
    result = subprocess.run(["matchpathcon", "-f", file_contexts, "-m", mode, path],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()[-1].split(":")[2]


@needs_policy
def test_installed_paths_get_the_module_s_types_in_the_full_policy(linked):
    """With every other module's file contexts present, the README's paths
    resolve to the module's types (precedence included), and pipx's link in
    /usr/local/bin stays an ordinary command."""
    if not shutil.which("matchpathcon"):
        pytest.skip("matchpathcon is not installed (selinux-utils)")
    fc = linked["file_contexts"]
    paths, pipx_home = readme_install()
    dirs = directory_paths()
    expected = {
        "/usr/local/sbin/audit-notify": "audit_notify_exec_t",
        "/etc/audit-notify": "audit_notify_conf_t",
        "/etc/audit-notify/audit-notify.conf": "audit_notify_conf_t",
        "/etc/audit-notify/blacklist": "audit_notify_conf_t",
        "/etc/audit-notify/allowlist": "audit_notify_conf_t",
        "/etc/audit-notify/credentials.json": "audit_notify_credentials_t",
        "/var/lib/audit-notify": "audit_notify_var_lib_t",
        # Where the login leaves credentials.json before it is moved to
        # /etc/audit-notify (mv keeps the label: hence restorecon).
        "/var/lib/audit-notify/credentials.json": "audit_notify_var_lib_t",
        "/var/lib/audit-notify/run/events": "audit_notify_var_lib_t",
        "/var/lib/audit-notify/.run/matrix-commander.x.pid": "audit_notify_var_lib_t",
        "/var/lib/audit-notify/spool": "audit_notify_spool_t",
        "/var/lib/audit-notify/spool/spool.sqlite3-wal": "audit_notify_spool_t",
        "/var/lib/audit-notify/store": "audit_notify_store_t",
        LOG_FILE: "audit_notify_log_t",
        sender_script(pipx_home): "audit_notify_sender_exec_t",
    }
    for path in paths:
        assert path in expected, "README installs %s: add its expected type here" % path
    for path, wanted in expected.items():
        mode = "dir" if path in dirs else "file"
        assert label(fc, path, mode) == wanted, path
    assert label(fc, "/usr/local/bin/matrix-commander", "lnk_file") == "bin_t"
    assert label(fc, "/var/lib/other", "file") == "var_lib_t"
