"""Yearly migration: the sheets become the truth for their schools; missing students are removed."""

from pydantic.json_schema import SkipJsonSchema
from prefect import flow
from prefect.states import State

from flows.config import MigrationForm, MigrationTuning
from flows.pipeline import start_batch


@flow(name="yearly-migration", log_prints=True)
def yearly_migration(config: MigrationForm, tuning: SkipJsonSchema[MigrationTuning | None] = None) -> str | State:
    """Migrate the uploaded sheets; waits for review and approval (with the removal count) before committing.

    ``tuning`` (limits, waits, matcher thresholds, the removal guard) is the deployment's, kept out of
    the run form."""
    return start_batch("migration", config, tuning)
