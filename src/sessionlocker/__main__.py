"""``python -m sessionlocker``: the same as the ``sessionlocker`` command."""

import sys

from sessionlocker.cli.main import main

sys.exit(main())
