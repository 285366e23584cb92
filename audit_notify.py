#!/usr/bin/python3
"""audit-notify from a checkout: ``python3 audit_notify.py [...]``.

The code lives in src/audit_notify/, one module per stage of the data (its
__init__.py draws the pipeline).  This file only puts src/ first on the
path and runs the command line, so every way of running the plugin from a
checkout works as before: by hand, from auditd's plugins.d, or piped
``ausearch --raw``.  A host installs one file built from the package
(``python3 audit_notify.py build FILE``; setup does it for you).
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    from audit_notify.cli import main

    sys.exit(main())
