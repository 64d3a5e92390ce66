"""The wiring shared by both flows: stages as tasks, gates as pauses, a status at the end.

Each stage records its result in the warehouse, so a re-run of the same flow run (retry, crash,
suspension) finds its batch by the run's id and resumes after the last finished stage. Every task
opens and closes the warehouse itself, through the run's handle (it waits its turn while another
process holds the warehouse): nothing holds the DuckDB file while the run waits.

Waiting for people may take days. Under a deployment the run is suspended: its process exits, and
when the form is submitted the run starts again from the top, finds every finished stage in the
warehouse, and picks up the submitted input by the wait's key. Run directly (tests, the demo), it
pauses in place instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.input.actions import create_flow_run_input, delete_flow_run_input
from prefect.runtime import deployment, flow_run
from prefect.states import Failed, State

from flows.config import BatchRunConfig, RunForm, RunRefused, RunTuning, run_config
from flows.forms import AllUploadedForm, ApprovalForm, approval_form_for, prefilled, review_form
from rosterflow.settings import load_settings
from flows.prefect_tasks import (apply_review_choices_task, approval_context_task, close_review_task,
                                 commit_task, decide_batch_task, fail_if_unreadable_task, finished_stages_task,
                                 forget_changed_plan_task, ingest_validate_task, match_task, messages_task,
                                 open_batch_task, pending_review_task, plan_task, publish_issues_task,
                                 publish_plan_preview_task, publish_plan_task, uploads_confirmed_task,
                                 write_plan_workbook_task)
from tasks.commit import PlanStale
from tasks.ingest import expand_paths
from tasks.pipeline import resolve_term
from tasks.plan_view import plan_in_brief
from tasks.report import artifact_key
from warehouse.handle import Warehouse
from warehouse.locks import HeldLock

MAX_FORM_ATTEMPTS = 20


def wait_for(form: RunInput, key: str, timeout: int, poll_interval: int, lock: HeldLock):
    """Wait for a person to submit ``form``: suspended under a deployment (no process, no lock
    held; survives a restart of the server or worker), paused in place otherwise. The batch's
    lock is let go while waiting (the batch is at a gate) and taken back after.

    ``key`` names the wait: a re-run after a suspension gets back the input submitted for it.
    """
    lock.release()
    if deployment.id:
        return suspend_flow_run(wait_for_input=form, key=key, timeout=timeout)
    submitted = pause_flow_run(wait_for_input=form, key=key, timeout=timeout, poll_interval=poll_interval)
    lock.acquire()
    return submitted


def _warehouse(config: BatchRunConfig) -> Warehouse:
    """The run's handle on the warehouse: its tasks wait their turn (up to ``ROSTERFLOW_BUSY_TIMEOUT``,
    then Prefect retries them), log whom they wait for, and name the run to whoever waits for them."""
    return Warehouse(Path(config.warehouse_path), who=f"flow run {flow_run.get_name()} ({flow_run.get_id()})",
                     busy_timeout=load_settings().busy_timeout, on_wait=get_run_logger().info)


def start_batch(mode: str, form: RunForm, tuning: RunTuning | None) -> str | State:
    """Run the batch a run form asks for, with the deployment's tuning and this machine's settings;
    a form naming files that are not on this machine ends the run Failed ("Refused") before any
    batch is opened, saying which and where to put them."""
    try:
        config = run_config(form, tuning, load_settings())
    except RunRefused as refused:
        get_run_logger().error("%s", refused)
        return Failed(name="Refused", message=str(refused))
    return run_batch(mode, config)


def run_batch(mode: str, config: BatchRunConfig) -> str | State:
    """Run one batch to its end: 'committed' or 'rejected'. Every other end is a Failed state with
    the reason as its message, so that a run that did nothing (a scheduled one above all) alerts
    rather than ending green: files that could not be read (none found included), a batch held
    whole by its plan's blockers ("Held"), no approval accepted after every attempt, and a batch
    that committed but whose messages could not be written (the teachers have nothing).

    The run holds the batch's lock while it works on it (not while it waits for people), so a run
    that dies shows as interrupted in `rosterflow batch list`; running it again finishes it."""
    warehouse = _warehouse(config)
    # Waiting for uploads, the batch is collecting: nobody works on it until the sheets are in.
    batch_id = open_batch_task(warehouse, f"prefect:{flow_run.get_id()}", mode, config.model_dump(mode="json"),
                               "prefect", collecting=getattr(config, "wait_for_all_uploads", False))
    lock = HeldLock(config.warehouse_path, batch_id, f"flow run {flow_run.get_id()}")
    lock.acquire()
    try:
        return _drive_batch(mode, config, batch_id, lock)
    finally:
        lock.release()


def _drive_batch(mode: str, config: BatchRunConfig, batch_id: int, lock: HeldLock) -> str | State:
    """Walk the batch through its stages; each stage finished by an earlier run of the flow is
    found in the warehouse and passes at once."""
    logger = get_run_logger()
    logger.info("Batch %s (%s, %s)", batch_id, mode, resolve_term(config.term))
    _wait_for_uploads(config, batch_id, lock)
    unreadable = _ingest_validate_match(config, batch_id)
    if unreadable is not None:
        return unreadable
    decision, changed, asked, carried = None, None, 0, None
    for plan_round in range(MAX_FORM_ATTEMPTS):
        if plan_round:
            # The plan changed since it was shown: only now is it made again, and shown again.
            forget_changed_plan_task(_warehouse(config), batch_id)
            match_task(_warehouse(config), batch_id, config.match)
        _review_until_decided(config, batch_id, lock, plan_round)
        context = _publish_plan(config, batch_id)
        if isinstance(context, str):
            return Failed(name="Held", message=context)
        decision, changed, asked, carried = _wait_for_approval(config, batch_id, context, lock, changed, asked,
                                                               carried)
        if changed is not None:
            continue
        if decision is None or not decision["approved"]:
            break
        try:
            committed = commit_task(_warehouse(config), batch_id, decision["approver"])
        except PlanStale as stale:
            # Another batch committed between this approval and its commit: the batch is matched and
            # planned again; the approval stands only if the new plan is the version it approved.
            logger.warning("%s", stale)
            decision, changed = None, "; ".join(stale.reasons)
            continue
        logger.info("Batch %s committed: %s", batch_id, committed)
        return _send_messages(config, batch_id)
    if decision is None:
        message = f"Batch {batch_id}: no approval was accepted after {MAX_FORM_ATTEMPTS} forms; nothing was committed."
        logger.error("%s", message)
        return Failed(name="Approval abandoned", message=message)
    logger.info("Batch %s rejected by %s: nothing changed", batch_id, decision["approver"])
    return "rejected"


def _wait_for_uploads(config: BatchRunConfig, batch_id: int, lock: HeldLock) -> None:
    """When the run waits for all uploads (and no earlier run ingested the batch), ask until
    someone confirms that every sheet is in; then record the uploads as confirmed."""
    warehouse = _warehouse(config)
    waits_for_uploads = getattr(config, "wait_for_all_uploads", False) and "ingest" not in finished_stages_task(
        warehouse, batch_id)
    for attempt in range(MAX_FORM_ATTEMPTS * 10):
        if not waits_for_uploads:
            break
        found = expand_paths(config.files)
        form = wait_for(
            AllUploadedForm.with_initial_data(
                description=f"# Batch {batch_id}: are all sheets uploaded?\n\n{len(found)} file(s) so far:\n\n"
                + "\n".join(f"- {Path(f).name}" for f in found),
            ),
            key=f"uploads-{attempt}", timeout=int(config.review_timeout_hours * 3600),
            poll_interval=config.wait_poll_seconds, lock=lock,
        )
        if form.all_uploaded and form.confirmed_by.strip():
            get_run_logger().info("All sheets uploaded, confirmed by %s", form.confirmed_by)
            break
    uploads_confirmed_task(warehouse, batch_id, "prefect")


def _ingest_validate_match(config: BatchRunConfig, batch_id: int) -> State | None:
    """Read, validate and match the batch's files, publishing the issues found; a Failed state
    naming the file errors when no file could be read."""
    logger = get_run_logger()
    warehouse = _warehouse(config)
    ingest, validated = ingest_validate_task(warehouse, batch_id, config.files, config.sheet, config.max_rows)
    publish_issues_task(warehouse, batch_id, config.outbox_dir, ingest["rows_staged"])
    failure = fail_if_unreadable_task(warehouse, batch_id, ingest)
    if failure:
        logger.error(failure)
        return Failed(message=failure)
    logger.info("Read %s rows; %s valid, %s with errors; %s file errors", ingest["rows_staged"],
                validated["rows_valid"], validated["rows_invalid"], len(ingest["file_errors"]))
    matched = match_task(warehouse, batch_id, config.match)
    logger.info("Matched %s, to review %s, new %s", matched["matched"], matched["review"], matched["new"])
    return None


def _review_until_decided(config: BatchRunConfig, batch_id: int, lock: HeldLock, plan_round: int = 0) -> None:
    """Ask for decisions on the rows that need review, a page at a time, until none is pending
    (``plan_round``: how many times the plan changed before; each round's forms have their own keys).

    Before each page the plan so far is published, so what the batch would do (or that it is held)
    shows before anyone reviews. A refused page comes back with the reason at the top of its
    description and what was filled in kept."""
    warehouse = _warehouse(config)
    notice, reviewer, chosen = "", "", {}
    for attempt in range(MAX_FORM_ATTEMPTS * 10):
        if close_review_task(warehouse, batch_id)["pending"] == 0:
            break
        publish_plan_preview_task(warehouse, batch_id)
        pending = pending_review_task(warehouse, batch_id)
        page = pending[: config.review_page_size]
        key = f"review-{plan_round}-{attempt}" if plan_round else f"review-{attempt}"
        form = wait_for(
            review_form(notice + review_description(batch_id, len(pending), len(page)), page, reviewer, chosen),
            key=key, timeout=int(config.review_timeout_hours * 3600),
            poll_interval=config.wait_poll_seconds, lock=lock,
        )
        # Applied once, by the form's key: after a suspension this input comes back once more, and
        # gets its first outcome (not logged again). Only items still pending are decided: a
        # decision made since (on the command line, in a spreadsheet) is not overwritten.
        outcome = apply_review_choices_task(warehouse, batch_id, form.choices(), form.reviewer,
                                            f"{flow_run.get_id()}:{key}")
        if not outcome.get("already_applied"):
            for problem in outcome["problems"]:
                get_run_logger().warning("Review decision not applied: %s", problem)
        notice = f"**Not accepted:** {' '.join(outcome['problems'])}\n\n" if outcome["problems"] else ""
        reviewer, chosen = form.reviewer, form.choices()


def review_description(batch_id: int, pending: int, shown: int) -> str:
    """The review form's description: short (the items and their candidates are the form's fields)."""
    more = f" This page shows {shown}; the others follow." if pending > shown else ""
    rows = "1 row needs" if pending == 1 else f"{pending} rows need"
    return (f"# Review batch {batch_id}: {rows} a decision\n\n"
            "For each row, choose who it is: one of its candidates (link), a new student, exclude (the row is "
            "left out), or unsure (escalated: someone else decides). A row left at \"decide later\" is asked "
            f"again.{more} The plan so far is in the run's artifacts (plan-preview-batch-{batch_id}).")


def _publish_plan(config: BatchRunConfig, batch_id: int) -> dict | str:
    """Plan the batch and publish the plan (artifact and workbook); the approval context, or why
    the batch is held when the plan has blockers."""
    logger = get_run_logger()
    warehouse = _warehouse(config)
    summary = plan_task(warehouse, batch_id)
    context = approval_context_task(warehouse, batch_id)
    publish_plan_task(batch_id, context)
    logger.info("Plan workbook: %s", write_plan_workbook_task(warehouse, batch_id, config.outbox_dir))
    if summary["blockers"]:
        held = (f"Batch {batch_id} is held, nothing was committed: " + "; ".join(summary["blockers"])
                + f". The plan (artifact plan-batch-{batch_id}) shows it; once resolved, upload corrected sheets "
                f"(rosterflow upload {batch_id} FILE --by NAME) or start a new run.")
        logger.warning("%s", held)
        return held
    return context


def _wait_for_approval(config: BatchRunConfig, batch_id: int, context: dict, lock: HeldLock, changed: str | None,
                       asked: int, carried: tuple[dict, Any] | None = None
                       ) -> tuple[dict | None, str | None, int, tuple[dict, Any] | None]:
    """The batch's approval decision: the one already recorded, or asked for until a registered
    approver's decision (with their secret, naming the plan version shown) is accepted.

    Returns (decision or None when none was accepted after every attempt, why the plan changed
    when the approval named a plan that is no longer the batch's, approval forms asked so far, the
    refused approval's answers and secret when the plan changed). ``changed``: why the previous plan
    changed, shown above this one. ``asked`` numbers the forms across plans, so each wait has its
    own key. ``carried``: an approval refused because the batch had to be planned again: when the
    plan made again is the very version it approved (another batch committed, but nothing this
    batch would do changed), it stands; it is never carried to another version."""
    decision = context["decision"]
    version = context["summary"]["version"]
    form_class = approval_form_for(context["summary"]["mode"])
    problems: list[str] = []
    # What the approver filled in, kept when the form is asked again (never the secret); for a
    # plan that changed, only who they are and their comment: the rest answered another plan.
    kept: dict[str, Any] = {}
    if decision is None and carried is not None and carried[0].get("plan_version") == version:
        get_run_logger().info("Batch %s was planned again (%s) and is still version %s: the approval given for "
                              "that version stands", batch_id, changed, version)
        outcome = decide_batch_task(_warehouse(config), batch_id, carried[0], carried[1])
        if outcome["plan_changed"]:
            return None, outcome["plan_changed"], asked, carried
        decision, problems = outcome["decision"], outcome["problems"]
    elif changed:
        problems = [f"The plan changed since it was shown ({changed}); nothing was committed. Below is the new "
                    f"plan, version {version}."]
    if carried is not None:
        kept = {k: carried[0][k] for k in ("approver", "comment") if carried[0].get(k)}
    for _ in range(MAX_FORM_ATTEMPTS):
        if decision is not None:
            break
        notice = f"**Not accepted:** {' '.join(problems)}\n\n" if problems else ""
        # A plain line rather than a heading: the UI shows the description in a box of a few lines,
        # and the plan's counts go beside the decision itself, where the UI always shows them.
        form = wait_for(
            prefilled(form_class, f"{notice}**Approve batch {batch_id}, plan version {version}?** The plan "
                      f"is below and in the run's artifacts ({artifact_key('plan', batch_id)}).\n\n"
                      f"{context['markdown']}", field_help={"approve": plan_in_brief(context["summary"])},
                      **{**kept, "plan_version": version}),
            key=f"approval-{asked}", timeout=int(config.approval_timeout_hours * 3600),
            poll_interval=config.wait_poll_seconds, lock=lock,
        )
        key = f"approval-{asked}"
        asked += 1
        secret = form.approver_secret
        forget_secret(form)
        answers = form.model_dump(include=set(form_class.model_fields) - {"approver_secret"})
        outcome = decide_batch_task(_warehouse(config), batch_id, answers, secret, f"{flow_run.get_id()}:{key}")
        decision, problems = outcome["decision"], outcome["problems"]
        if not outcome.get("already_applied"):
            for problem in problems:
                get_run_logger().warning("Approval not accepted: %s", problem)
        if outcome["plan_changed"]:
            return None, outcome["plan_changed"], asked, (answers, secret)
        if decision is not None:
            return decision, None, asked, (answers, secret)
        kept = {k: v for k, v in answers.items() if k != "plan_version"}
    return decision, None, asked, carried


def forget_secret(form: ApprovalForm) -> None:
    """Replace the submitted form kept by Prefect with the same answers without the secret: a
    re-run after a suspension reads it back (and finds no secret), and nothing keeps the secret."""
    key, flow_run_id = form.metadata.key, form.metadata.receiver
    delete_flow_run_input(key=key, flow_run_id=flow_run_id)
    create_flow_run_input(key=key, value=form.model_dump(mode="json", exclude={"approver_secret"}),
                          flow_run_id=flow_run_id)


def _send_messages(config: BatchRunConfig, batch_id: int) -> str | State:
    """Write (and send) the committed batch's messages: 'committed', or a Failed state when they
    could not be written."""
    logger = get_run_logger()
    delivered = messages_task(_warehouse(config), batch_id, config.outbox_dir, load_settings().mail)
    if delivered.get("error"):
        logger.error("%s", delivered["error"])
        return Failed(message=delivered["error"])
    logger.info("Messages: %s written to %s, %s sent, %s failed (kept for `rosterflow messages send`)",
                delivered["messages"], config.outbox_dir, delivered["sent"], delivered["failed"])
    return "committed"
