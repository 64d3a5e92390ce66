"""One typed configuration per flow; Prefect renders each as the run form."""

from __future__ import annotations

from pydantic import BaseModel, Field

from rosterflow.settings import load_settings
from tasks.matching import MatchConfig


class BatchRunConfig(BaseModel):
    """What every batch needs: the files, the term, the subscription type, and where state lives."""

    files: list[str] = Field(description="Paths of the .xlsx/.xls roster files on the machine running the flow.")
    term: str = Field(min_length=1, description="Starting term, used in class names, e.g. Fall 2012.")
    subscription_type: str = Field(min_length=1, description="The one subscription type this batch consumes.")
    sheet: str | None = Field(default=None, description="Sheet to read; empty reads the one visible roster sheet.")
    max_rows: int = Field(default=10_000, ge=1, le=1_048_576, description="Largest batch accepted, in rows.")
    warehouse_path: str = Field(default_factory=lambda: str(load_settings().warehouse_path),
                                description="The DuckDB warehouse file.")
    outbox_dir: str = Field(default_factory=lambda: str(load_settings().outbox_dir),
                            description="Where teacher rosters and confirmations are written.")
    review_timeout_hours: float = Field(default=72, gt=0, le=24 * 30,
                                        description="How long the run waits for reviewers before failing.")
    approval_timeout_hours: float = Field(default=72, gt=0, le=24 * 30,
                                          description="How long the run waits for an approver before failing.")
    wait_poll_seconds: float = Field(default=10, ge=0.5, le=300,
                                     description="How often a waiting run checks whether its form was submitted.")
    review_page_size: int = Field(default=20, ge=1, le=200, description="Review items shown per form.")
    match: MatchConfig = Field(default_factory=MatchConfig, description="Matching thresholds and rules.")


class RegistrationConfig(BatchRunConfig):
    """Batch registration: add classes, teachers, students and enrollments for a starting term."""


class MigrationConfig(BatchRunConfig):
    """Yearly migration: the sheets are the truth for their schools; missing students are removed."""

    max_rows: int = Field(default=1_048_576, ge=1, le=1_048_576, description="Largest migration accepted, in rows.")
    schools: list[str] = Field(
        default_factory=list,
        description="Schools the migration covers; empty means the schools named in the sheets. "
        "A listed school with active students and no rows is held.",
    )
    wait_for_all_uploads: bool = Field(
        default=False,
        description="Pause before reading until an administrator confirms every sheet is in the folder(s) "
        "named in files (partial uploads from several teachers).",
    )
    max_removal_share: float = Field(
        default=0.10, ge=0, le=1,
        description="A school losing more than this share of its active students is held for an explicit override.",
    )
    max_sheet_shrink: float = Field(
        default=0.25, ge=0, le=1,
        description="A sheet with more than this share fewer rows than the same file and sheet in the last "
        "committed batch is held for an explicit override (a truncated or filtered sheet).",
    )
