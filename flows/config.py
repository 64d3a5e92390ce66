"""What a run is given: the run form a data team fills, the tuning the deployment sets, and the
settings of the machine running it, joined into one typed configuration per batch.

Prefect renders the flow's ``config`` parameter (``RegistrationForm``, ``MigrationForm``) as the run
form: only what a data team sets for each run. The matcher's thresholds, timeouts and limits are the
deployment's (``RunTuning``: `make serve` sets them; they are kept out of the form's schema), and the
warehouse, outbox and inbox folder come from the settings of the machine the run executes on.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path, PureWindowsPath

from pydantic import BaseModel, Field

from rosterflow.settings import Settings, SettingsError, load_settings
from tasks.matching import MatchConfig


def _inbox_named() -> str:
    """The inbox folder, named for the form's description (where `make serve` runs)."""
    try:
        return str(load_settings().inbox_dir.resolve())
    except SettingsError:
        return "var/inbox"


FILES_DESCRIPTION = (
    f"The roster workbooks (.xlsx, .xlsm, .xls), on the server running the flow: put them in the inbox folder "
    f"{_inbox_named()} (ROSTERFLOW_INBOX) and give their names there, e.g. `fall-2026/roster.xlsx`, a folder "
    f"(`fall-2026`, every workbook in it) or a pattern (`fall-2026/*.xlsx`); or a full path on the server. "
    f"A path on your own computer (C:\\Users\\...) cannot be read from here."
)


class RunForm(BaseModel):
    """The run form: what a data team sets for a batch."""

    # Not required non-empty here: a collecting migration on the command line starts with no file. A
    # run started from the form with none is refused when it starts (resolve_run_files).
    files: list[str] = Field(title="Roster files", description=FILES_DESCRIPTION)
    term: str = Field(min_length=1, title="Starting term",
                      description="Used in class names, e.g. Fall 2026 (`Fall {year}` is this year).")
    subscription_type: str = Field(min_length=1, title="Subscription type",
                                   description="The one subscription type this batch uses, e.g. K12 - 12 Month.")


class RegistrationForm(RunForm):
    """Batch registration: add classes, teachers, students and enrollments for a starting term."""


class MigrationForm(RunForm):
    """Yearly migration: the sheets are the truth for their schools; missing students are removed."""

    schools: list[str] = Field(
        default_factory=list, title="Schools",
        description="Schools the migration covers; empty means the schools named in the sheets. "
        "A listed school with active students and no rows is held.",
    )
    wait_for_all_uploads: bool = Field(
        default=False, title="Wait until all sheets are uploaded",
        description="Pause before reading until an administrator confirms every sheet is in the folder(s) "
        "named in files (partial uploads from several teachers).",
    )


class RunTuning(BaseModel):
    """Limits, waits and the matcher's thresholds: set by the deployment, not in the everyday form."""

    sheet: str | None = Field(default=None, description="Sheet to read; empty reads the one visible roster sheet.")
    max_rows: int = Field(default=10_000, ge=1, le=1_048_576, description="Largest batch accepted, in rows.")
    review_timeout_hours: float = Field(default=72, gt=0, le=24 * 30,
                                        description="How long the run waits for reviewers before failing.")
    approval_timeout_hours: float = Field(default=72, gt=0, le=24 * 30,
                                          description="How long the run waits for an approver before failing.")
    wait_poll_seconds: float = Field(default=10, ge=0.5, le=300,
                                     description="How often a waiting run checks whether its form was submitted.")
    review_page_size: int = Field(default=20, ge=1, le=200, description="Review items shown per form.")
    match: MatchConfig = Field(default_factory=MatchConfig, description="Matching thresholds and rules.")


class RegistrationTuning(RunTuning):
    """A registration's limits and matcher thresholds."""


class MigrationTuning(RunTuning):
    """A migration's limits, matcher thresholds and mass-removal guard."""

    max_rows: int = Field(default=1_048_576, ge=1, le=1_048_576, description="Largest migration accepted, in rows.")
    max_removal_share: float = Field(
        default=0.10, ge=0, le=1,
        description="A school losing more than this share of its active students is held for an explicit override.",
    )
    max_sheet_shrink: float = Field(
        default=0.25, ge=0, le=1,
        description="A sheet with more than this share fewer rows than the same file and sheet in the last "
        "committed batch is held for an explicit override (a truncated or filtered sheet).",
    )


class BatchRunConfig(RunForm, RunTuning):
    """Everything a batch runs with (recorded on the batch): the form, the tuning, where state lives."""

    warehouse_path: str = Field(default_factory=lambda: str(load_settings().warehouse_path),
                                description="The DuckDB warehouse file.")
    outbox_dir: str = Field(default_factory=lambda: str(load_settings().outbox_dir),
                            description="Where teacher rosters and confirmations are written.")


class RegistrationConfig(RegistrationForm, RegistrationTuning, BatchRunConfig):
    """A batch registration's whole configuration."""


class MigrationConfig(MigrationForm, MigrationTuning, BatchRunConfig):
    """A yearly migration's whole configuration."""


class RunRefused(ValueError):
    """The run form names files the machine running the flow cannot read; nothing was started."""


# A drive letter (C:\ or C:/) or a network share (\\server\share): a path on someone's own computer.
_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def resolve_run_files(files: list[str], inbox: Path) -> list[str]:
    """The form's files as absolute paths on this machine: a relative entry is in the inbox folder.
    Raises ``RunRefused`` naming every entry that is not on this machine (a path on a user's own
    computer, a missing file or folder, a pattern matching nothing) and the folder to put files in."""
    inbox = inbox.resolve()
    resolved, problems = [], []
    if not files:
        problems.append(f"no roster file is named: put the files in {inbox} and name them")
    for raw in files:
        text = raw.strip().strip('"').strip()
        if not text:
            problems.append("an empty entry names no file")
            continue
        if os.name != "nt" and (_WINDOWS_PATH.match(text) or "\\" in text):
            name = PureWindowsPath(text).name
            problems.append(f"{raw!r} is a path on your own computer, not on the server running the flow: copy "
                            f"{name} into {inbox} and name it `{name}`")
            continue
        path = Path(text)
        path = path if path.is_absolute() else inbox / path
        if any(ch in text for ch in "*?["):
            if not glob.glob(str(path)):
                problems.append(f"{raw!r} matches nothing in {path.parent}: put the files in {inbox} and name them "
                                f"there")
                continue
        elif not path.exists():
            problems.append(f"{raw!r} is not on the server running the flow (looked for {path}): put the file in "
                            f"{inbox} and name it `{path.name}`")
            continue
        resolved.append(str(path))
    if problems:
        raise RunRefused("Nothing was started: " + "; ".join(problems) + ".")
    return resolved


def run_config(form: RunForm, tuning: RunTuning | None, settings: Settings) -> BatchRunConfig:
    """The batch's whole configuration: the form's files resolved on this machine (``RunRefused``
    when one is not here), the deployment's tuning (its defaults when none), the settings' warehouse
    and outbox."""
    migration = isinstance(form, MigrationForm)
    tuning = tuning if tuning is not None else (MigrationTuning() if migration else RegistrationTuning())
    values = {**tuning.model_dump(), **form.model_dump(),
              "files": resolve_run_files(form.files, settings.inbox_dir),
              "warehouse_path": str(settings.warehouse_path), "outbox_dir": str(settings.outbox_dir)}
    return (MigrationConfig if migration else RegistrationConfig).model_validate(values)
