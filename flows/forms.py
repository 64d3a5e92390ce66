"""The forms a paused run shows in the Prefect UI: review decisions and approval."""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field, SecretStr


class ReviewChoice(BaseModel):
    """One review item's decision in the form."""

    review_id: int = Field(title="Review item")
    action: Literal["skip", "link", "new", "exclude", "unsure"] = Field(
        default="skip", title="Decision",
        description="link: the row is candidate N; new: a new student; exclude: leave the row out; "
        "unsure: escalate (recorded, still needs a decision); skip: decide later",
    )
    candidate: int = Field(default=1, ge=1, le=10, title="Candidate number (for link)")


class ReviewForm(RunInput):
    """Decisions on the pending review items shown above the form."""

    reviewer: str = Field(default="", title="Your name", description="Recorded with every decision.")
    decisions: list[ReviewChoice] = Field(default_factory=list, title="Decisions")


class ApprovalForm(RunInput):
    """The administrator's decision on the plan shown above the form."""

    approver: str = Field(default="", title="Approver name", description="A registered approver.")
    approver_secret: SecretStr = Field(
        default=SecretStr(""), title="Your approver secret",
        description="The secret you were given when you were added as an approver (never stored or logged).",
    )
    plan_version: str = Field(
        default="", title="Plan version you approve",
        description="The version of the plan shown above; if the plan changes meanwhile, nothing is committed "
        "and the new plan is shown.",
    )
    approve: bool = Field(default=False, title="Approve and commit (subscriptions are used, not reversible)")
    removals_acknowledged: int = Field(
        default=0, ge=0, title="Number of students to remove",
        description="Type the number of students this migration removes, as shown in the plan.",
    )
    override_guard: bool = Field(
        default=False, title="Override the mass-removal guard",
        description="Only when the plan shows a guard and you have checked that those removals are real.",
    )
    comment: str = Field(default="", title="Comment")


class AllUploadedForm(RunInput):
    """The administrator's confirmation that every teacher's sheet is in the upload folder."""

    confirmed_by: str = Field(default="", title="Your name")
    all_uploaded: bool = Field(
        default=False, title="We have uploaded all the spreadsheets that are required for the migration",
        description="Students missing from the sheets will be removed: tick only when every sheet is in.",
    )
