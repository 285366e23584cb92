"""The rule keys of the rule sets people run, and how much their events
matter on their own.

severity.py asks this table only when what an event did says nothing more
specific: a write to /etc/sudoers is critical whatever its key, a setuid
bit, a module load, a ptrace poke too; a key marks what the rule set's
author meant the rule for.  Sources, each with its file: Neo23x0/auditd
``audit.rules`` (neo), linux-audit/audit-userspace ``rules/`` (la: STIG,
OSPP, PCI-DSS, privileged, injection, module-load, installers, NISPOM,
IDS), bfuzzy/auditd-attack (bf: ATT&CK ids), laurel's
laurel-audit-rules(7) (laurel), Wazuh's default keys (wazuh), CIS and
RHEL 9 STIG as ansible-lockdown deploys them (cis, stig9).  Keys are
case-sensitive.  Each entry says why.
"""

from typing import Dict

KEY_SEVERITY: Dict[str, str] = {
    '10.2.1-cardholder-access': "warning",  # [la] a person read cardholder data
    '10.2.2-priv-config-changes': "critical",  # [la] sudoers changed
    '10.2.3-access-audit-trail': "info",  # [la] audit log read/queried
    '10.2.5.b-elevated-privs-session': "warning",  # [la] su/sudo to root (several events per invocation: dedupe by
    #   ses/pid)
    '10.2.5.b-elevated-privs-setuid': "info",  # [la] every setuid-root exec (sudo, passwd, mount, unix_chkpwd...); exe
    #   outside the known setuid set -> critical (planted setuid backdoor)
    '10.2.5.c-accounts': "critical",  # [la] account databases written
    '10.2.7-system-objects': "warning",  # [la] mount/device-node creation by a user; landlock -> info
    '10.4.2b-time-change': "warning",  # [la] clock/zone changed; auid unset (time daemon) -> info
    '10.5.5-modification-audit': "critical",  # [la] audit trail modified (auditd's own writes are not audited)
    '10.5.5-modification-log': "warning",  # [la] other critical log modified
    '32bit-abi': "warning",  # [la] 32-bit syscalls on a 64-bit host (exploit/evasion); one 32-bit program floods it
    '32bit_abi': "warning",  # [neo] 32-bit syscalls on a 64-bit host (int 0x80 audit evasion/exploit); one 32-bit
    #   program floods it: one message per exe, then count
    '32bit_api': "warning",  # [neo(old)] renamed 32bit_abi
    'access': "info",  # [la,cis] failed file access by users (EACCES/EPERM); sensitive path -> warning
    'access-audit-trail': "info",  # [la] someone read the audit logs (usually an admin's ausearch)
    'actions': "critical",  # [neo,la] sudoers changed
    'anon_file_create': "info",  # [neo] systemd, runc, browsers, pipewire use memfd; refine: any event whose exe starts
    #   with `/memfd:` -> critical (fileless exec)
    'apache-httpd': "info",  # [laurel] web server start; label key
    'audispconfig': "critical",  # [neo,bf] dispatcher/plugin config changed: could cut off this very plugin
    'audit-logs': "critical",  # [la(nispom)] audit trail modified; read -> info
    'audit-wazuh-a': "info",  # [wazuh] generic attribute watch (rule 80786, level 3)
    'audit-wazuh-c': "info",  # [wazuh] every root command: flood (rule 80792, level 3)
    'audit-wazuh-r': "info",  # [wazuh] generic read watch (rule 80783, level 3)
    'audit-wazuh-w': "info",  # [wazuh] generic user-chosen watch; Wazuh rule 80780 level 3; path rules give the real
    #   severity
    'audit-wazuh-x': "info",  # [wazuh] generic exec watch (rule 80789, level 3)
    'auditconfig': "critical",  # [neo,bf] audit rules/auditd.conf changed: auditing can be blinded
    'auditlog': "critical",  # [neo,bf] audit trail written/removed = tampering; read -> info
    'audittools': "warning",  # [neo,bf] audit control tools run (auditctl can disable audit); ausearch/aureport ->
    #   info; boot -> info
    'auth': "critical",  # [la(nispom)] account databases written
    'close': "info",  # [la(nispom)] I/O error on close; hardware/NFS trouble, not security
    'code-injection': "critical",  # [la] PTRACE_POKETEXT into another process
    'code_injection': "critical",  # [neo] writing code into another process
    'container': "info",  # [laurel] container runtime churn (runc per container op); label key for process tracking
    'container-config': "info",  # [la] systemd sandboxed services, nsenter, docker exec, snap-confine: routine
    'container-create': "info",  # [la] every container/sandbox start (docker, podman, bwrap, browsers)
    'creation': "info",  # [la(nispom)] failed creations; sensitive path -> warning
    'cron': "critical",  # [neo] scheduled-job persistence; refine: written by a package manager -> warning
    'cronjobs': "critical",  # [stig9] cron persistence
    'crowdstrike_network': "info",  # [neo] EDR network telemetry; the rule may not load
    'data-injection': "critical",  # [la] PTRACE_POKEDATA into another process
    'Data_Compressed': "info",  # [neo] logrotate/backups/initramfs compress all day (Sigma: low)
    'data_injection': "critical",  # [neo] writing data into another process
    'dbus_send': "warning",  # [neo] rare on servers; polkit exploit vector (CVE-2021-3560); desktops -> info
    'delete': "info",  # [neo,la,la(nispom),cis,stig9] file deletions/renames by users (flood); NISPOM meaning = failed
    #   deletions only; sensitive path -> warning
    'detect_execve_www': "critical",  # [neo] web server user executing programs = web shell (Sigma: critical); apps
    #   that shell out need an exe allowlist
    'docker': "info",  # [neo] engine churn (image pulls write thousands of files under /var/lib/docker); refine: write
    #   to /etc/docker/daemon.json -> warning
    'einval-retcode': "info",  # [la] debugging aid; the file says not for production
    'etcgroup': "critical",  # [neo] group database changed (e.g. user added to sudo/wheel); read -> info
    'etcissue': "info",  # [neo] login banner text only
    'etcpasswd': "critical",  # [neo] user/password database changed; read -> info (pam_unix reads /etc/shadow on every
    #   login, sudo and cron job)
    'execpriv': "info",  # [stig9] every setuid/setgid-root exec; unknown exe -> critical
    'export': "warning",  # [la] user mounted media (export)
    'external-access': "info",  # [la] every connection in or out: flood
    'falcon_agent': "info",  # [neo] the EDR's own processes
    'falcon_sensor': "info",  # [neo] sensor writes its own dirs constantly; deletion by a logged-in user -> critical
    #   (EDR tampering)
    'falcon_sensor_update': "warning",  # [neo] EDR config changed; normally the sensor's auto-update
    'file_access': "info",  # [neo] failed access by users (Neo marks it High Volume); sensitive path (/etc/shadow,
    #   /etc/sudoers*, /root, /var/log/audit, ssh host keys) -> warning
    'file_creation': "info",  # [neo] failed creations incl. daemons; sensitive path -> warning
    'file_modification': "info",  # [neo] failed modifications; sensitive path -> warning
    'filebeat': "warning",  # [neo] log-shipper config/binary change can blind the SIEM; usually a package update
    'fork': "info",  # [laurel] process tracking only; laurel's docs tell you to drop it (filter-keys)
    'gdubs_call': "warning",  # [neo] same as dbus_send; desktops -> info
    'group-modify': "critical",  # [la] group database written
    'group_modification': "warning",  # [neo] group administration; the resulting /etc/group write is critical via
    #   etcgroup
    'identity': "critical",  # [la,cis,stig9] account databases (+ CIS: pam.d, nsswitch.conf; + RHEL9-STIG: sudoers)
    #   written
    'ids-archive': "info",  # [la(ids)] archive handling, everyday use
    'ids-connections': "info",  # [la(ids)] data-moving tools used daily; nc/ncat/nmap/nping -> warning
    'ids-mkexec': "warning",  # [la(ids)] dropper pattern: making a downloaded file executable in a tmp dir (Wazuh
    #   ANOM_MK_EXEC: level 7)
    'ids-recon': "info",  # [la(ids)] discovery commands, everyday admin use
    'init': "critical",  # [neo] SysV/upstart boot persistence; refine: package manager -> warning
    'Inter-Process_Communication': "info",  # [neo] SysV IPC by PostgreSQL, Apache, Oracle, X11: a top flood
    'kernel_modules': "critical",  # [cis] module load/unload; exec with comm lsmod/modinfo/depmod -> info
    'KEXEC': "critical",  # [neo] loading a replacement kernel; refine: kdump at boot (auid unset) -> info
    'kubelet': "info",  # [neo] kubelet start/reads; write (binary replaced) -> warning
    'libpath': "critical",  # [neo] library search path hijack; refine: package manager -> warning
    'localtime': "warning",  # [neo] time zone changed; rare admin action
    'locklvm': "info",  # [neo,bf] never-rule: suppresses events, produces none
    'login': "warning",  # [neo] mixed: login.defs/securetty = auth policy (path -> warning/critical); lastlog is
    #   written by every login (-> info)
    'logins': "info",  # [la,la(nispom),cis,stig9] lastlog/faillock/tallylog bookkeeping; failed logins come as
    #   USER_AUTH/USER_LOGIN res=failed
    'MAC-policy': "critical",  # [la,cis] SELinux config/policy changed; package update -> warning
    'mac_policy': "critical",  # [neo] SELinux config/policy changed (SELINUX=disabled); refine: selinux-policy package
    #   update -> warning
    'mail': "warning",  # [neo] mail config; an alias can pipe mail into a command
    'maybe-escalation': "warning",  # [la] privilege elevation helpers that are not audit-aware; pkexec argc=0 ->
    #   critical
    'modprobe': "critical",  # [neo] modprobe.d `install` lines run commands as root at module load (persistence) or
    #   blacklist security modules
    'mods': "info",  # [la(nispom)] failed modifications; sensitive path -> warning
    'module': "critical",  # [laurel] kernel module load/unload; udev/kernel autoloads -> info (as module-load)
    'module-load': "critical",  # [la] kernel module loaded; no auid filter, so autoloads appear too: exe
    #   systemd-udevd/systemd-modules-load, or modprobe with ppid 2 (kernel request_module) -> info
    'module-unload': "critical",  # [la] kernel module removed (rootkits unload security modules)
    'module_chng': "critical",  # [stig9] module load/unload by a user
    'modules': "critical",  # [neo,stig9] module load/unload (Neo23x0: exec + syscalls; RHEL9-STIG: kmod exec,
    #   lsmod/modinfo -> info)
    'mount': "warning",  # [neo] admin mounted/unmounted a filesystem
    'mounts': "warning",  # [cis] user mount
    'network': "warning",  # [neo] Debian ifupdown config; if-up.d scripts run as root on link up
    'network_connect_4': "info",  # [neo] every outbound IPv4 connection: telemetry, flood (issue #96)
    'network_connect_6': "info",  # [neo] every outbound IPv6 connection: telemetry, flood (issue #96)
    'network_modifications': "warning",  # [neo] network/host identity config changed; refine: auid unset (DHCP,
    #   cloud-init at boot) -> info
    'network_socket_created': "info",  # [neo] every DNS lookup and connection creates a socket: flood
    'nginx': "info",  # [laurel] web server start; label key
    'opasswd': "warning",  # [neo] password history: written together with /etc/shadow on each password change; read ->
    #   info
    'open': "info",  # [la(nispom)] failed opens incl. daemons; sensitive path -> warning
    'pam': "critical",  # [neo] authentication stack changed (PAM backdoor/keylogger; Sigma: high)
    'passwd_modification': "warning",  # [neo] password changed (USER_CHAUTHTOK records come too)
    'perm_access': "info",  # [stig9] failed access; sensitive path -> warning
    'perm_chng': "info",  # [cis] label/ACL changes by users
    'perm_mod': "info",  # [neo,la,cis,stig9] chmod/chown/xattr by users; setuid/setgid bit set -> critical; RHEL9-STIG
    #   also puts umount and setfacl/chcon here
    'pkexec': "warning",  # [neo] polkit elevation, rare on servers; EXECVE argc=0 (PwnKit, CVE-2021-4034) -> critical
    'pkg_mgmt': "warning",  # [laurel] software installed by hand; auid unset -> info
    'power': "warning",  # [neo] host is going down (Sigma: informational)
    'power-abuse': "warning",  # [la] admin (as root) touching another user's home
    'power_abuse': "warning",  # [neo] an admin (as root) touching other users' home files; recursive commands give one
    #   event per file
    'priv_cmd': "warning",  # [stig9] privilege/shell change commands
    'priv_esc': "warning",  # [neo] routine authorised su/sudo; real escalation shows via sudoers writes, setuid bits,
    #   pkexec argc=0
    'privileged': "info",  # [la,cis,stig9] setuid/setgid binary exec by users (31-privileged, CIS); RHEL9-STIG uses it
    #   for setsebool (would be warning)
    'privileged-chage': "warning",  # [stig9] password aging changed
    'privileged-crontab': "info",  # [stig9] crontab -l/-e; the spool write is critical via cronjobs
    'privileged-gpasswd': "warning",  # [stig9] group administration
    'privileged-init': "warning",  # [stig9] runlevel change by a user
    'privileged-mount': "warning",  # [stig9] user mount
    'privileged-pam_timestamp_check': "info",  # [stig9] helper
    'privileged-passwd': "warning",  # [stig9] password change
    'privileged-poweroff': "warning",  # [stig9] host going down
    'privileged-priv_change': "warning",  # [stig9] su use
    'privileged-reboot': "warning",  # [stig9] host going down
    'privileged-shutdown': "warning",  # [stig9] host going down
    'privileged-ssh': "info",  # [stig9] ssh-agent starts with sessions
    'privileged-unix-update': "info",  # [stig9] mostly helper noise; semanage -> warning
    'privileged-usermod': "warning",  # [stig9] account modified
    'puppet_ssl': "warning",  # [neo] config-management agent's TLS identity changed; usually agent cert renewal (auid
    #   unset)
    'qemu': "info",  # [neo] emulator start
    'qemu-img': "info",  # [neo] disk image tool
    'qemu-kvm': "info",  # [neo] VM start
    'qemu-system-x86_64': "info",  # [neo] VM start; libvirt spawns one per guest
    'recon': "info",  # [neo] run constantly by login scripts/motd/monitoring
    'register-injection': "critical",  # [la] PTRACE_POKEUSER (registers/user area)
    'register_injection': "critical",  # [neo] changing another process's registers/user area
    'remote_shell': "critical",  # [neo] bash opened its own network connection (reverse shell); ignore AF_UNIX
    'rootcmd': "info",  # [neo] every command (and child) run as root by a logged-in admin
    'rootkey': "critical",  # [neo] root authorized_keys backdoor; refine: known_hosts written by root's own ssh client
    #   -> warning
    'sbin_susp': "warning",  # [neo] firewall change or sniffing by hand (Sigma: medium/high firewall, low sniffing);
    #   refine: auid unset (docker, fail2ban, firewalld, kube-proxy) -> info
    'sched_task': "info",  # [laurel] scheduler daemon start; label key
    'scope': "critical",  # [cis] sudoers changed
    'session': "info",  # [neo,la,cis] utmp/wtmp/btmp bookkeeping written at every login; logins arrive as USER_LOGIN
    #   records
    'sharedmemaccess': "info",  # [neo,bf] never-rule: suppresses events, produces none
    'shell_profiles': "critical",  # [neo] system-wide shell init persistence (Sigma: medium); package manager ->
    #   warning
    'soft_besclient': "info",  # [neo] BigFix agent's own state dir: constant churn
    'soft_chef': "warning",  # [neo] Chef client config/keys changed
    'soft_otter': "warning",  # [neo] Otter config changed
    'soft_salt': "warning",  # [neo] Salt minion config/PKI changed
    'software-installer': "warning",  # [la] software installed by hand; auid unset -> info
    'software_mgmt': "warning",  # [neo] software installed/removed by hand; refine: auid unset (unattended-upgrades,
    #   dnf-automatic, PackageKit) -> info; dedupe per session (apt runs dpkg many times)
    'special-config-changes': "warning",  # [la] mixed: write (sudoers) -> critical; exec of
    #   unix_chkpwd/newuidmap/newgidmap/grub2-set-bootflag/crontab/mount/umount and landlock -> info
    'specialfiles': "info",  # [neo] mostly FIFOs and container/device setup (Sigma: low); block/char device created by
    #   a user -> warning
    'sshd': "critical",  # [neo,laurel] sshd_config changed (Neo23x0, rwxa watch); read -> info; exec -> info = laurel
    #   meaning (sshd exec per connection on OpenSSH < 9.8)
    'string_search': "info",  # [neo] grep runs in every script; refine: argv contains password/passwd/secret/token ->
    #   warning (Sigma 'Credentials In Files': high)
    'stunnel': "warning",  # [neo] TLS tunnel started: a C2/exfil wrapper on hosts that do not run it as a service
    'successful-access': "info",  # [la] every open by users; the file itself says 'likely to result in a whole lot of
    #   events'
    'successful-create': "info",  # [la] every file a user creates: flood
    'successful-delete': "info",  # [la] every deletion/rename by users: flood
    'successful-modification': "info",  # [la] every file a user writes: flood
    'successful-owner-change': "info",  # [la] ordinary chown by users
    'successful-perm-change': "info",  # [la] ordinary chmod/xattr; setuid/setgid bit set -> critical
    'sudo_log_file': "info",  # [cis] sudo writes it on every run; unlink/truncate by a user -> critical
    'susp_activity': "info",  # [neo] curl/wget/ssh/ss are everyday admin+script tools (Sigma uses the key at medium);
    #   refine: nc/ncat/netcat/socat/nmap/*shark/tftpd, or run by a service account (www-data...) -> warning
    'susp_shell': "info",  # [neo] includes every sh/bash start (scripts, system(), cron): the biggest exec flood
    'swap': "warning",  # [neo] rare manual admin action
    'sysctl': "warning",  # [neo,bf] kernel tunables (ASLR, ptrace_scope, ip_forward) changed by an admin
    'system-locale': "warning",  # [la,la(nispom),cis] hostname/hosts/issue/NetworkManager config changed; auid unset ->
    #   info
    'systemd': "critical",  # [neo] unit/timer persistence; exec -> info (every systemctl call); package manager ->
    #   warning
    'systemd_generator': "critical",  # [neo] generator persistence runs at every boot before units
    'systemwide_preloads': "critical",  # [neo] classic userland rootkit/LD_PRELOAD persistence (Sigma: high)
    'T1002_Data_Compressed': "info",  # [neo(old)] renamed Data_Compressed
    'T1005_Data_from_Local_System': "info",  # [bf] cp runs everywhere; dd of a disk device -> warning
    'T1005_Data_From_Local_System_audit_log': "critical",  # [neo(old)] = auditlog (+audittools); read/exec -> info
    'T1011_Exfiltration_Over_Other_Network_Medium': "info",  # [neo(old)] renamed network_socket_created
    'T1016_System_Network_Configuration_Discovery': "info",  # [bf] every DNS lookup reads resolv.conf: flood; write to
    #   hosts.allow/deny or resolv.conf by a user -> warning
    'T1021_Remote_Services': "info",  # [bf] mostly lastlog writes per login; sshd_config write -> critical (path rule),
    #   sshd_config read -> info
    'T1033_System_Owner_User_Discovery': "info",  # [bf] routine
    'T1043_Commonly_Used_Port': "info",  # [bf] every connect(): flood
    'T1049_System_Network_Connections_discovery': "warning",  # [bf] packet capture by hand can harvest credentials;
    #   traceroute alone -> info
    'T1052_Exfiltration_Over_Physical_Medium': "warning",  # [bf] user mounted a filesystem/media
    'T1055_Process_Injection': "warning",  # [bf] all ptrace gets this key; refine a0 4/5/6 -> critical, 0x10/0x4206
    #   attach/seize -> warning, other requests (strace/gdb traffic) -> info
    'T1057_Process_Discovery': "info",  # [bf] monitoring scripts run ps constantly
    'T1059_CommandLine_Interface': "info",  # [bf] every exec
    'T1068_Exploitation_for_Privilege_Escalation': "warning",  # [bf] system binary written; refine: package manager ->
    #   info, anything else -> critical (trojaned binary)
    'T1070_Indicator_Removal_on_Host': "info",  # [bf] all deletions in direct-root sessions; path under /var/log ->
    #   warning
    'T1071_Standard_Application_Layer_Protocol': "critical",  # [bf] authentication stack changed
    'T1072_third_party_software': "warning",  # [neo(old),bf] software installs by hand (bfuzzy: rpm/dpkg/apt; old
    #   Neo23x0: pip/npm/gem); auid unset -> info
    'T1078_Valid_Accounts': "info",  # [neo,bf] Neo23x0: setuid helper execs; bfuzzy: every root exec + sudoers write;
    #   write -> critical, account-tool exec -> warning
    'T1079_Multilayer_Encryption': "warning",  # [bf] TLS tunnel started
    'T1081_Credentials_In_Files': "info",  # [neo(old),bf] grep exec; argv with password/secret -> warning
    'T1082_System_Information_Discovery': "info",  # [bf] mixed; login.defs/securetty write -> warning (path rule);
    #   iptables exec -> warning
    'T1087_Account_Discovery': "critical",  # [bf] writes = account database change; read -> info (shadow read per
    #   auth); exec of nologin -> warning
    'T1099_Timestomp': "warning",  # [bf] clock changed; auid unset (chronyd/timesyncd: the chrony never-rule is
    #   commented out here) -> info
    'T1105_remote_file_copy': "info",  # [bf] rare client
    'T1107_File_Deletion': "info",  # [bf] every deletion by users: flood
    'T1108_Redundant_Access': "info",  # [bf] session bookkeeping written by every login
    'T1156_bash_profile_and_bashrc': "critical",  # [bf] shell-init persistence; read -> info (every login shell reads
    #   /etc/profile: flood)
    'T1166_Seuid_and_Setgid': "info",  # [bf] flood (every privilege drop and daemon exec); setuid/setgid bit set ->
    #   critical
    'T1168_Local_Job_Scheduling': "critical",  # [bf] cron/at/init persistence; read -> info (crontabs dir without -p)
    'T1169_Sudo': "warning",  # [bf] su/sudo use; write -> critical; read -> info (sudo reads sudoers on every run)
    'T1201_Password_Policy_Discovery': "critical",  # [bf] password policy changed; probably never seen because the
    #   /etc/pam.d/ rule above matches first
    'T1215_Kernel_Modules_and_Extensions': "critical",  # [bf] kernel module load/unload or modprobe config
    'T1219_Remote_Access_Tools': "info",  # [neo(old),bf] remote-access/transfer tool exec; nc/ncat/netcat/socat ->
    #   warning
    'T1497_Virtualization_Sandbox_Evasion_System_Checks': "info",  # [neo(old)] later virt_tool, then per-binary keys
    'T1543_Create_or_Modify_System_Process_systemd_generator': "critical",  # [neo(old)] renamed systemd_generator
    'T1559_Inter-Process_Communication': "info",  # [neo(old)] renamed Inter-Process_Communication
    'third_party_software_mgmt': "warning",  # [neo] language-package installs by hand (supply chain); CI/dev hosts ->
    #   info
    'time': "warning",  # [neo] clock changed by hand; refine: auid unset (chronyd, systemd-timesyncd, ntpd) -> info
    'time-change': "warning",  # [la,la(nispom),cis] clock/zone changed; auid unset (time daemon) -> info
    'tracing': "info",  # [neo,la] ptrace use (strace/gdb bursts); PTRACE_ATTACH/SEIZE -> warning
    'TT1087_Account_Discovery': "critical",  # [bf] passwd written
    'unauthedfileaccess': "info",  # [neo] any failed open incl. ENOENT; only `open` (glibc uses openat, so it rarely
    #   fires); EACCES/EPERM on a sensitive path -> warning
    'unsuccessful-access': "info",  # [la] failed opens by users; sensitive path -> warning
    'unsuccessful-create': "info",  # [la] failed creations by users; sensitive path -> warning
    'unsuccessful-delete': "info",  # [la] failed deletions; sensitive path -> warning
    'unsuccessful-modification': "info",  # [la] failed writes by users; sensitive path -> warning
    'unsuccessful-owner-change': "info",  # [la] failed ownership changes
    'unsuccessful-perm-change': "info",  # [la] failed permission changes
    'user-modify': "critical",  # [la] user/password database written
    'user_emulation': "info",  # [cis] every setuid exec by a logged-in user (sudo, su, passwd...)
    'user_modification': "warning",  # [neo] account administration; the /etc/passwd write is critical via etcpasswd
    'usermod': "warning",  # [cis] account modified
    'VBoxManage': "info",  # [neo] VirtualBox CLI
    'virt-manager': "info",  # [neo] desktop virtualisation GUI
    'virt_tool': "info",  # [neo(old)] virtualisation tools
    'virtualbox': "info",  # [neo] desktop virtualisation
    'wazuh_fim': "info",  # [wazuh] Wazuh FIM telemetry; Wazuh rates it itself; path rules still apply
    'wazuh_hc': "info",  # [wazuh] agent self-test event
    'wr_apparmor': "critical",  # [laurel] MAC profiles changed; package manager -> warning
    'wr_audit_config': "critical",  # [laurel] audit config changed
    'wr_audit_tools': "warning",  # [laurel] audit tools run; boot/auditd restart (auid unset) -> info
    'wr_cron': "critical",  # [laurel] cron/at persistence
    'wr_group': "critical",  # [laurel] group database written
    'wr_laurel_config': "critical",  # [laurel] audit pipeline (laurel) config changed
    'wr_ldso': "critical",  # [laurel] dynamic linker/preload hijack
    'wr_modules': "critical",  # [laurel] module config or .ko files written; kernel/DKMS package updates -> info
    'wr_pam': "critical",  # [laurel] authentication stack changed
    'wr_passwd': "critical",  # [laurel] user/password database written
    'wr_selinux': "critical",  # [laurel] MAC policy changed; package manager -> warning
    'wr_sshd': "critical",  # [laurel] sshd config changed
    'wr_sudo': "critical",  # [laurel] sudoers changed
    'wr_systemd': "critical",  # [laurel] systemd/udev persistence; package manager -> warning
    'yast': "warning",  # [neo(old)] later software_mgmt
}
