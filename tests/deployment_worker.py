"""A worker for the suspension test: serves the registration flow as a deployment until killed.

    python -m tests.deployment_worker NAME

It runs against whatever Prefect API ``PREFECT_API_URL`` names (the test's temporary server).
"""

from __future__ import annotations

import sys

from flows.registration import batch_registration

if __name__ == "__main__":
    batch_registration.serve(name=sys.argv[1], print_starting_message=False)
