"""``python3 -m audit_notify``: the same as the audit-notify command."""

import sys

from audit_notify.cli import main

sys.exit(main())
