"""``python -m codex_lb``: the codex-lb command."""

import sys

from codex_lb.cli import main

sys.exit(main())
