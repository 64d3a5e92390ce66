"""`python -m rosterflow.cli`: the `rosterflow` command without its console script."""

import sys

from rosterflow.cli import main

sys.exit(main())
