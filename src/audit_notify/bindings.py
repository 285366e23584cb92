"""The system's auparse bindings (python3-audit), found wherever the
system keeps them: the plugin may run under another interpreter than the
one they were built for (the original README's PYTHONPATH trouble)."""

from __future__ import annotations

import glob
import os
import sys
from typing import Sequence

from .config import Error

# Where Debian, Fedora and RHEL put python3-audit when the plugin runs under
# another interpreter (the original README's PYTHONPATH troubleshooting).
SYSTEM_SITE_GLOBS = (
    "/usr/lib/python3/dist-packages",
    "/usr/lib64/python3*/site-packages",
    "/usr/lib/python3*/site-packages",
    "/usr/lib/python3*/dist-packages",
)
AUPARSE_PACKAGE_HINT = (
    "install the system package python3-audit (Debian/Ubuntu: apt-get install "
    "python3-audit; Fedora/RHEL: dnf install python3-audit)"
)

def import_auparse(search: Sequence[str] = SYSTEM_SITE_GLOBS):
    """Import the system's auparse bindings, looking in the system's
    site-packages when the running interpreter is not the system one."""
    try:
        import auparse  # type: ignore

        return auparse
    except ImportError:
        pass
    for pattern in search:
        for directory in sorted(glob.glob(pattern), reverse=True):
            if not glob.glob(os.path.join(directory, "auparse*")):
                continue
            sys.path.append(directory)
            try:
                import auparse  # type: ignore

                return auparse
            except ImportError:
                sys.path.remove(directory)
    raise Error(
        "cannot import auparse (Python %d.%d): %s" % (sys.version_info[0], sys.version_info[1], AUPARSE_PACKAGE_HINT)
    )
