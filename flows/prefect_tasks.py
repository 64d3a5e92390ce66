"""The Prefect tasks the flows run: each a thin wrapper over a stage's plain function in ``tasks/``,
declaring its retries (and, for the reports, publishing Prefect artifacts).

They live here, beside the flows, so that ``tasks/`` imports no Prefect: the command line runs the
same plain functions and starts without paying Prefect's import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from tasks.approve import approval_context, decide_from_form, forget_changed_plan
from tasks.commit import commit_batch
from tasks.match import match_batch
from tasks.matching import MatchConfig
from tasks.messages import MailSettings, MessageBuildFailed, deliver
from tasks.pipeline import fail_if_unreadable, ingest_and_validate, open_batch, uploads_confirmed
from tasks.plan import build_plan, preview_plan
from tasks.progress import Progress
from tasks.report import artifact_key, validation_summary, write_plan_xlsx, write_validation_report
from tasks.retries import WAREHOUSE_TASK
from tasks.review import apply_form_choices, close_review, review_items
from warehouse import batches
from warehouse.handle import Warehouse


def artifact_progress(what: str, batch_id: int) -> Progress:
    """A stage's ``progress(done, total)`` callback for a flow run: a progress artifact on the run
    (created at the first count, moved at every further percent) and a log line at every tenth."""
    logger = get_run_logger()
    shown: dict[str, Any] = {}

    def tell(done: int, total: int) -> None:
        percent = 100.0 * done / total if total else 100.0
        description = f"Batch {batch_id}: {done:,} of {total:,} {what}"
        if "artifact" not in shown:
            shown["artifact"] = create_progress_artifact(
                progress=percent, key=artifact_key(what.replace(" ", "-"), batch_id), description=description)
        elif percent - shown["percent"] >= 1 or done == total:
            update_progress_artifact(shown["artifact"], progress=percent, description=description)
        else:
            return
        if int(percent // 10) != shown.get("tenth") or done == total:
            logger.info("%s", description)
            shown["tenth"] = int(percent // 10)
        shown["percent"] = percent

    return tell


@task(name="open-batch", **WAREHOUSE_TASK)
def open_batch_task(warehouse: Warehouse, run_key: str, mode: str, config: dict[str, Any], actor: str,
                    collecting: bool = False) -> int:
    """Prefect task: open (or find again) the batch of this flow run."""
    with warehouse.write() as con:
        return open_batch(con, run_key, mode, config, actor, collecting=collecting)


@task(name="uploads-confirmed", **WAREHOUSE_TASK)
def uploads_confirmed_task(warehouse: Warehouse, batch_id: int, actor: str) -> None:
    """Prefect task: the sheets in the run's folders are all in; the batch may be read now."""
    with warehouse.write() as con:
        uploads_confirmed(con, batch_id, actor)


@task(name="fail-if-unreadable", **WAREHOUSE_TASK)
def fail_if_unreadable_task(warehouse: Warehouse, batch_id: int, ingest: dict[str, Any]) -> str | None:
    """Prefect task: mark the batch failed when a file could not be read; return why."""
    with warehouse.write() as con:
        return fail_if_unreadable(con, batch_id, ingest, actor="prefect")


@task(name="finished-stages", **WAREHOUSE_TASK)
def finished_stages_task(warehouse: Warehouse, batch_id: int) -> list[str]:
    """Prefect task: the stages the batch has finished (a re-run skips the gates already passed)."""
    with warehouse.read() as con:
        return batches.get_batch(con, batch_id)["stages"]


@task(name="ingest-and-validate", **WAREHOUSE_TASK)
def ingest_validate_task(warehouse: Warehouse, batch_id: int, paths: list[str], sheet: str | None,
                         max_rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Prefect task: read the batch's files and validate their rows."""
    return ingest_and_validate(warehouse, batch_id, paths, sheet, max_rows, artifact_progress("rows read", batch_id))


@task(name="publish-validation-report", **WAREHOUSE_TASK)
def publish_issues_task(warehouse: Warehouse, batch_id: int, report_dir: str, rows: int) -> int:
    """Publish every validation issue of the batch as a table artifact and an .xlsx; with none, a
    markdown artifact saying so ("0 problems in N rows"), so a run always shows its validation.
    Return how many."""
    issues = write_validation_report(warehouse, batch_id, Path(report_dir))
    headline = validation_summary(batch_id, issues.height, rows)
    if issues.height:
        create_table_artifact(
            key=artifact_key("validation", batch_id),
            table=issues.to_dicts(),
            description=f"{headline}: rows with errors are not imported; fix them and upload again.",
        )
    else:
        create_markdown_artifact(key=artifact_key("validation", batch_id), markdown=f"# {headline}\n",
                                 description=headline)
    return issues.height


@task(name="match", **WAREHOUSE_TASK)
def match_task(warehouse: Warehouse, batch_id: int, config: MatchConfig) -> dict[str, Any]:
    """Prefect task: match the batch's valid rows."""
    return match_batch(warehouse, batch_id, config, artifact_progress("rows matched", batch_id))


@task(name="close-review", **WAREHOUSE_TASK)
def close_review_task(warehouse: Warehouse, batch_id: int) -> dict[str, Any]:
    """Prefect task: close the review stage if nothing is pending."""
    return close_review(warehouse, batch_id)


@task(name="review-items", **WAREHOUSE_TASK)
def pending_review_task(warehouse: Warehouse, batch_id: int) -> list[dict[str, Any]]:
    """Prefect task: the pending review items, read with a short-lived connection."""
    with warehouse.read() as con:
        return review_items(con, batch_id, pending_only=True)


@task(name="apply-review-decisions", **WAREHOUSE_TASK)
def apply_review_choices_task(warehouse: Warehouse, batch_id: int, choices: dict[int, str], reviewer: str,
                              request_id: str) -> dict[str, Any]:
    """Prefect task: apply the review form's choices once; return the outcome (its problems, and
    ``already_applied`` when a re-run read the same form again)."""
    return apply_form_choices(warehouse, batch_id, choices, reviewer, request_id)


@task(name="publish-plan-preview", **WAREHOUSE_TASK)
def publish_plan_preview_task(warehouse: Warehouse, batch_id: int) -> dict[str, Any]:
    """Publish the plan so far while rows wait for review (holds, removals, subscriptions), so what
    the batch would do, or that it is held, shows before anyone reviews; return its summary."""
    preview = preview_plan(warehouse, batch_id)
    create_markdown_artifact(key=artifact_key("plan-preview", batch_id), markdown=preview["markdown"],
                             description=f"Batch {batch_id}: the plan so far, rows in review left out")
    return preview["summary"]


@task(name="plan", **WAREHOUSE_TASK)
def plan_task(warehouse: Warehouse, batch_id: int) -> dict[str, Any]:
    """Prefect task: build the plan and return its summary."""
    return build_plan(warehouse, batch_id)


@task(name="plan-summary", **WAREHOUSE_TASK)
def approval_context_task(warehouse: Warehouse, batch_id: int) -> dict[str, Any]:
    """Prefect task: the plan summary and tables for the approval form, then close the warehouse."""
    return approval_context(warehouse, batch_id)


@task(name="publish-plan")
def publish_plan_task(batch_id: int, context: dict[str, Any]) -> None:
    """Publish the plan summary (markdown) and each of its tables (classes, students per class,
    removals, removals per school, new teachers, name differences) as a table artifact."""
    create_markdown_artifact(key=artifact_key("plan", batch_id), markdown=context["markdown"],
                             description=f"What batch {batch_id} will do if approved")
    for name, rows in context["tables"].items():
        if rows:
            create_table_artifact(key=artifact_key(f"plan-{name.replace('_', '-')}", batch_id), table=rows,
                                  description=f"Batch {batch_id}: {name.replace('_', ' ')}")


@task(name="write-plan-workbook", **WAREHOUSE_TASK)
def write_plan_workbook_task(warehouse: Warehouse, batch_id: int, report_dir: str) -> str:
    """Prefect task: write the plan workbook next to the batch's other reports; return its path."""
    with warehouse.read() as con:
        return str(write_plan_xlsx(con, batch_id, Path(report_dir) / f"batch-{batch_id}" / "plan.xlsx",
                                   private=True))


@task(name="record-decision", cache_policy=NO_CACHE, **WAREHOUSE_TASK)
def decide_batch_task(warehouse: Warehouse, batch_id: int, decision: dict[str, Any],
                      secret: SecretStr | None, request_id: str | None = None) -> dict[str, Any]:
    """Prefect task: record the approval form's decision (never cached: it carries the approver's
    secret); invalid input comes back as problems, so the task does not fail. ``request_id``: the
    form's key, so a refused form read again after a suspension gets its first verdict."""
    return decide_from_form(warehouse, batch_id, decision, secret, request_id)


@task(name="forget-changed-plan", **WAREHOUSE_TASK)
def forget_changed_plan_task(warehouse: Warehouse, batch_id: int) -> None:
    """Prefect task: the plan changed since it was shown: forget it so it is made again (and, when
    students changed since the batch was matched, match it again first; review decisions are kept
    where they still apply)."""
    with warehouse.write() as con:
        forget_changed_plan(con, batch_id, "prefect")


@task(name="commit", **WAREHOUSE_TASK)
def commit_task(warehouse: Warehouse, batch_id: int, actor: str) -> dict[str, Any]:
    """Prefect task: commit the approved batch (exactly once)."""
    return commit_batch(warehouse, batch_id, actor, hashed=artifact_progress("passwords hashed", batch_id))


@task(name="messages", retries=2, retry_delay_seconds=30)
def messages_task(warehouse: Warehouse, batch_id: int, outbox_dir: str, mail: MailSettings) -> dict:
    """Prefect task: write, read back, record and send the batch's messages. A build that fails is
    recorded and returned as ``error`` (the commit stands; the flow reports it); building again
    cannot help until its cause is fixed, so it is not retried."""
    try:
        return deliver(warehouse, batch_id, Path(outbox_dir), mail, artifact_progress("messages written", batch_id))
    except MessageBuildFailed as failure:
        return {"messages": 0, "sent": 0, "failed": 0, "outbox": [], "error": failure.advice}
