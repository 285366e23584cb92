"""The one file setup installs: the package as a stdlib zipapp.

``audit-notify build FILE`` (or ``python3 audit_notify.py build FILE``)
writes it; setup installs the same bytes as /usr/local/sbin/audit-notify.
Many modules to read, one file to install and replace: an admin upgrades
by replacing that one file.  It carries the shipped ``blacklist.example``,
so setup run from the installed copy writes the real defaults.

The build is reproducible: the same sources give the same bytes (entries
in sorted order, stored uncompressed, with a fixed date and mode), so
anyone can rebuild the file from a checkout and compare it with what runs
on a host (``cmp``, or ``sha256sum``).  ``unzip -l`` lists what is in it,
``unzip -p FILE audit_notify/daemon.py`` shows a module.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from typing import Optional

# The interpreter the installed file runs with: the system's, which has
# the auparse bindings (python3-audit).
SHEBANG = b"#!/usr/bin/python3\n"
# Zip entries carry a date; a fixed one keeps the build reproducible.
FIXED_DATE = (2020, 1, 1, 0, 0, 0)
DATA_FILES = ("blacklist.example",)
MAIN = b"""# The entry point of the one-file install (see audit_notify/bundle.py).
import sys

from audit_notify.cli import main

sys.exit(main())
"""


def package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def running_archive() -> Optional[str]:
    """The zipapp this code runs from, if it runs from one."""
    loader = globals().get("__loader__")
    archive = getattr(loader, "archive", None)
    return archive if archive and os.path.isfile(archive) else None


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, FIXED_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    return info


def build() -> bytes:
    """The one-file plugin, as bytes: from the running zipapp as it is, or
    built from the package's sources."""
    archive = running_archive()
    if archive:
        with open(archive, "rb") as handle:
            return handle.read()
    source = package_dir()
    names = sorted(n for n in os.listdir(source) if n.endswith(".py") or n in DATA_FILES)
    missing = [n for n in DATA_FILES if n not in names]
    if missing:
        raise FileNotFoundError("cannot build: %s missing from %s" % (", ".join(missing), source))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr(_entry("__main__.py"), MAIN)
        for name in names:
            with open(os.path.join(source, name), "rb") as handle:
                zipped.writestr(_entry("audit_notify/" + name), handle.read())
    return SHEBANG + buffer.getvalue()


def write(path: str, data: bytes, mode: int = 0o755):
    """Write ``data`` to ``path`` atomically, with its final mode."""
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def main(argv) -> int:
    """``build FILE``: write the one-file plugin to FILE ('-': stdout)."""
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: audit-notify build FILE   (the one-file plugin setup installs; '-': stdout)\n")
        return 2
    data = build()
    if argv[1] == "-":
        sys.stdout.buffer.write(data)
    else:
        write(argv[1], data)
        sys.stderr.write("wrote %s (%d bytes)\n" % (argv[1], len(data)))
    return 0
