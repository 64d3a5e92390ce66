"""Batch registration: classes, teachers, students and enrollments for a starting term.

No `from __future__ import annotations` here: Prefect builds the run form from the real type of
`config`, and a string annotation leaves a deployed flow unable to validate its parameters.
"""

from prefect import flow

from flows.config import RegistrationConfig
from flows.pipeline import run_batch

@flow(name="batch-registration", log_prints=True)
def batch_registration(config: RegistrationConfig) -> str:
    """Register the students of the uploaded sheets; waits for review and approval before committing."""
    return run_batch("registration", config)
