"""Yearly migration: the sheets become the truth for their schools; missing students are removed."""


from prefect import flow

from flows.config import MigrationConfig
from flows.pipeline import run_batch


@flow(name="yearly-migration", log_prints=True)
def yearly_migration(config: MigrationConfig) -> str:
    """Migrate the uploaded sheets; waits for review and approval (with the removal count) before committing."""
    return run_batch("migration", config)
