"""The forms a paused run shows in the Prefect UI: review decisions and approval.

Both Prefect UIs show a form's field titles, descriptions and drop-down options whatever the
window's size, while a long description above the form may collapse: so each form carries what a
person needs in its fields (a review item's candidates are its drop-down's options) and keeps its
description short, with a refusal's reason at its top.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from prefect.input import RunInput
from pydantic import ConfigDict, Field, SecretStr, create_model

from tasks.review import NO_DECISION, review_choices, review_item_help, review_item_title


def _required_in_schema(schema: dict[str, Any], model: type) -> None:
    """List the form's ``REQUIRED`` fields as required in its JSON schema: the UI then does not label
    them "(Optional)", and the server refuses a submission without them. They keep their prefilled
    values (the UI fills a field from its schema default)."""
    names = [name for name in getattr(model, "REQUIRED", ()) if name in schema.get("properties", {})]
    if names:
        schema["required"] = list(dict.fromkeys([*schema.get("required", []), *names]))


class FormInput(RunInput):
    """A form of this project: ``REQUIRED`` fields are required in its schema. Fields it no longer has
    are ignored when a kept submission is read back (a review page rebuilt after a suspension may
    lack an item decided meanwhile elsewhere)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_required_in_schema)
    REQUIRED: ClassVar[tuple[str, ...]] = ()


def prefilled(form: type[FormInput], description: str, field_help: dict[str, str] | None = None,
              **initial: Any) -> type[FormInput]:
    """``form`` with ``initial`` as its fields' values and ``description`` shown above it. Unlike
    ``RunInput.with_initial_data``, each field keeps its title and description; ``field_help``
    puts a text before a field's own description (the UI always shows it, beside the field)."""
    fields: dict[str, Any] = {}
    field_help = field_help or {}
    for name in {*initial, *field_help}:
        info = copy.copy(form.model_fields[name])
        if name in initial:
            info.default, info.default_factory = initial[name], None
        if name in field_help:
            info.description = f"{field_help[name]} {info.description or ''}".strip()
        fields[name] = (form.model_fields[name].annotation, info)
    model = create_model(form.__name__, __base__=form, **fields)
    model._description = description
    return model


class ReviewForm(FormInput):
    """Decisions on a page of review items: one drop-down per item (``item_<review id>``), built by
    ``review_form``."""

    REQUIRED = ("reviewer",)
    reviewer: str = Field(default="", title="Your name", description="Recorded with every decision.")

    def choices(self) -> dict[int, str]:
        """The choice made for each item on the page (item number -> the option's text)."""
        return {int(name.removeprefix("item_")): value for name, value in self if name.startswith("item_")}


def review_form(description: str, items: list[dict[str, Any]], reviewer: str = "",
                chosen: dict[int, str] | None = None) -> type[ReviewForm]:
    """The review form for ``items``: per item a drop-down whose options are its candidates
    ("link: Caleb Allen, born 2012-12-19, ID 30000006, Summerwind HS (score 88)"), "new student",
    "exclude", "unsure" and, preselected, "decide later" (no decision); its title names the row and
    why it is asked. ``reviewer`` and ``chosen`` (item -> option) prefill what was filled before.

    The field is text whose options live in the JSON schema (``enum``): the UI shows a drop-down and
    the server accepts only an option, while the run maps the option back itself, so a kept answer
    whose candidates changed since is refused with a reason rather than failing the run."""
    chosen = chosen or {}
    fields: dict[str, Any] = {}
    for item in items:
        options = list(review_choices(item))
        initial = chosen.get(item["review_id"])
        fields[f"item_{item['review_id']}"] = (str, Field(
            default=initial if initial in options else NO_DECISION, title=review_item_title(item),
            description=review_item_help(item), json_schema_extra={"enum": options}))
    model = create_model("ReviewForm", __base__=ReviewForm, **fields)
    return prefilled(model, description, reviewer=reviewer)


class ApprovalForm(FormInput):
    """The administrator's decision on the plan shown above the form (a registration's)."""

    REQUIRED = ("approver", "approver_secret", "plan_version")
    approver: str = Field(default="", title="Approver name", description="A registered approver.")
    approver_secret: SecretStr = Field(
        default=SecretStr(""), title="Your approver secret",
        description="The secret you were given when you were added as an approver (never stored or logged).",
    )
    plan_version: str = Field(
        default="", title="Plan version you approve",
        description="The version of the plan shown (above, and beside the approval switch below); if the plan "
        "changes meanwhile, nothing is committed and the new plan is shown.",
    )
    approve: bool = Field(default=False, title="Approve and commit (subscriptions are used, not reversible)",
                          description="Leave off to reject the batch: nothing is committed.")
    comment: str = Field(default="", title="Comment")


class MigrationApprovalForm(ApprovalForm):
    """A migration's approval: it also acknowledges the removals and, where the plan shows the
    mass-removal guard, overrides it."""

    REQUIRED = (*ApprovalForm.REQUIRED, "removals_acknowledged")
    removals_acknowledged: int = Field(
        default=0, ge=0, title="Number of students to remove",
        description="Type the number of students this migration removes, as shown in the plan.",
    )
    override_guard: bool = Field(
        default=False, title="Override the mass-removal guard",
        description="Only when the plan shows a guard and you have checked that those removals are real.",
    )


def approval_form_for(mode: str) -> type[ApprovalForm]:
    """The approval form of a batch's mode: only a migration removes students."""
    return MigrationApprovalForm if mode == "migration" else ApprovalForm


class AllUploadedForm(FormInput):
    """The administrator's confirmation that every teacher's sheet is in the upload folder."""

    REQUIRED = ("confirmed_by",)
    confirmed_by: str = Field(default="", title="Your name")
    all_uploaded: bool = Field(
        default=False, title="We have uploaded all the spreadsheets that are required for the migration",
        description="Students missing from the sheets will be removed: tick only when every sheet is in.",
    )
