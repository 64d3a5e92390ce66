"""Batch registration: classes, teachers, students and enrollments for a starting term.

No `from __future__ import annotations` here: Prefect builds the run form from the real type of
`config`, and a string annotation leaves a deployed flow unable to validate its parameters.
"""

from pydantic.json_schema import SkipJsonSchema
from prefect import flow
from prefect.states import State

from flows.config import RegistrationForm, RegistrationTuning
from flows.pipeline import start_batch


@flow(name="batch-registration", log_prints=True)
def batch_registration(config: RegistrationForm,
                       tuning: SkipJsonSchema[RegistrationTuning | None] = None) -> str | State:
    """Register the students of the uploaded sheets; waits for review and approval before committing.

    ``tuning`` (limits, waits, matcher thresholds) is the deployment's, kept out of the run form."""
    return start_batch("registration", config, tuning)
