"""audit-notify: Linux audit events as end-to-end-encrypted Matrix notifications.

An auditd plugin (see auditd-plugins(5)).  The data flows one way, one
module per stage::

    auditd (format = string) ─ stdin ─┐
    ausearch --raw ... | or FILE ... ─┴─> reader    auparse feed: records -> events (bindings: finding auparse)
                                          events    an event's records and fields (facts: raw-text lookups;
                                                    names: ids named as auparse would, from the text)
                                          rules     allow-list / blacklist / severity lines
                                          severity  one event -> critical, warning or info, and why
                                                    (places: which class of a path table a path is;
                                                    evidence: what a command line does; lineage:
                                                    what a web shell or a pipeline started)
                                          grouper   events -> incidents (one human action each; incidents,
                                                    programs: what sshd, sudo, apt... mean; agenda:
                                                    when each goes out, is edited, closes, in its
                                                    host's own time (clocks: a quiet host's time goes
                                                    on by the wall clock); lane: a flood's repeats
                                                    counted without becoming incidents)
                                          notify    incidents -> messages: alone, as a repeat, or in the
                                                    routine summary (repeats; known: a warning the
                                                    host has seen before is routine; answers: mutes);
                                                    auditd's own stop, start and reload as one (lifecycle)
                                          format    headline + details (phrases: who, where, what it did;
                                                    headlines: one event's; message: safe text;
                                                    masking: no typed password, read with shellwords)
                                          spool     sqlite3 (WAL): accepted = on disk; edits by key
                                          sender    one warm matrix-commander (matrix), via a FIFO
                                          daemon    the select() loop, signals, reload (answering, room,
                                                    ledger: reactions read from the room, acks, mutes)
                                          cli       main(): the plugin, --dry-run, --status

Around them: config (settings and default paths), counters, logs,
privileges (the files we trust, the user we become).  The admin tools are
apart, and the plugin's run path never imports them: doctor (--check),
install (setup, uninstall), host (facts about the host they share) and
bundle (the one file setup installs).

Try it by hand, without any homeserver::

    ausearch --start today --raw | python3 audit_notify.py --dry-run
    python3 audit_notify.py --dry-run --json tests/data/debian12-sample.log

The plugin runs as root inside auditd (until it drops to its own user), so
it is kept to the standard library plus the system's auparse bindings,
does nothing at import time, and treats every byte of audit data as
hostile: it never reaches argv or a shell, and it is escaped for every
renderer it reaches.
"""

__version__ = "0.2.0"
